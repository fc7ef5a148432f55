// One connection to a PostgreSQL backend: connect, log in, run pgmux's own queries (reset, parameter sync)
// and, while linked to a client, forward replies to it watching only ReadyForQuery and ParameterStatus.
#pragma once
#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "protocol/auth_scram.hpp"
#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/lru_map.hpp"
#include "proxy/net/failure.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/net/stream_conn.hpp"
#include "proxy/server/pool_server.hpp"
#include "proxy/server/reply_queue.hpp"
#include "proxy/server/session_params.hpp"
#include "proxy/server/statement_description.hpp"

namespace pgmux::proxy {

class ClientConn;
class Pool;
class Worker;

class ServerConn final : public StreamConn, public PoolServer {
 public:
  enum class RelayEvent : uint8_t { None, Ready, CopyIn, Retry };

  ServerConn(Worker& worker, Pool& pool, uint64_t id);

  Pool& pool() { return pool_; }
  const SessionParams& params() const override { return params_; }
  // default_transaction_read_only as the server last reported it (kept apart: read on every ReadyForQuery).
  bool default_read_only() const { return default_read_only_; }
  const protocol::BackendKeyData& key() const { return key_; }
  double last_request() const { return last_request_; }  // loop time

  // StreamConn's, for the pool.
  bool open() const override { return StreamConn::open(); }
  void close() override { StreamConn::close(); }

  // Runs a simple query of pgmux's own; every reply is consumed here. done(ok, error_message) runs at
  // ReadyForQuery. The server must be Idle (or freshly logged in) and is Internal meanwhile.
  void run_internal(std::string sql, InternalDone done);
  // Same with ready-made frontend messages that produce `ready_count` ReadyForQuery replies.
  // described: the shared statements whose Describe 'S' the messages hold, in order (their shapes are recorded).
  // expected_failure: the ordinal of a Query sent to fail (InternalRun::expected_failure), or -1.
  void run_internal_messages(protocol::ByteVector messages, int ready_count, InternalDone done,
                             std::vector<std::string> described = {}, int expected_failure = -1);
  void run_pool_query(std::string sql, QueryDone done) override;

  void link(PoolClient* client) override;  // a ClientConn: the only kind a worker's pools serve
  void unlink() override;
  ClientConn* client() const { return client_; }
  PoolClient* linked_client() const override;

  // The linked client forwarded a request (`closes`: it ends with Sync or is a simple Query; else it leaves an
  // extended sequence open and the next request continues it). Returns its entry in the reply queue, for the
  // client to say what the reply is for (a session command to record, a request that may be retried).
  OwedReply& expect_reply(bool closes, bool extended);
  // pgmux sends a statement of its own (a deferred BEGIN) in front of the client's next request: its reply is
  // dropped, and should it fail the server is closed (the request must not run outside the transaction the
  // client asked for). Call before expect_reply for that request.
  void expect_skipped_reply() { owed_.push_skipped(); }
  // pgmux sends a statement that fails, behind a deferred BEGIN, to fail the block as it failed for the client:
  // its reply is dropped, and the server is closed unless it leaves the block failed ('E'). Also before
  // expect_reply.
  void expect_failing_reply() { owed_.push_failing(); }
  // pgmux sent a query of its own behind the client's last request (an SQL PREPARE's), reading the parameter types
  // of `statement`: its reply is kept from the client, which learns the types at its end (learn_prepare_types).
  void expect_captured_reply(std::string statement) { owed_.push_capture(std::move(statement)); }
  // The last request sent, a simple query, is all that is in flight here but pgmux's queries behind PREPAREs.
  bool only_last_request_in_flight() const { return owed_.lone_simple_request_at_back(); }
  // True when nothing is in flight and the session is idle outside a transaction: safe to reset and reuse.
  bool reusable() const override;
  // The client sent a CopyDone or CopyFail behind its last request before PostgreSQL asked for COPY data: the COPY
  // that request starts is over already (OwedReply::copy_ends).
  void note_copy_end_ahead() {
    OwedReply* last = owed_.last_for_client();
    if (!last) return;
    if (last->copy_ends == 0) last->copy_end_after_sync = last->synced;
    if (last->copy_ends < UINT16_MAX) ++last->copy_ends;
    last->copy_may_start = false;
  }
  // The last request sent may still start COPY FROM STDIN (OwedReply::copy_may_start). Not in an extended
  // sequence left open: a COPY that fails there answers nothing more until the Sync, which must not wait.
  bool copy_may_start() {
    const OwedReply* last = owed_.last_for_client();
    return last && last->copy_may_start && !last->open;
  }
  // Replies still to come for requests sent (or an extended sequence not yet closed by Sync).
  // Also true while the last reply is still being written to the client (its ReadyForQuery not yet delivered).
  bool has_outstanding() const { return !owed_.empty() || pending_event_ != RelayEvent::None || pinned(); }
  // How many requests are queued here: a client that pipelines deeper waits for replies to catch up.
  size_t owed_depth() const { return owed_.size(); }
  // The reply last dropped for a retry, whole (ReadyForQuery included).
  protocol::ByteView dropped_reply() const { return dropped_reply_; }
  // What the linked client still waits for here (its answers if the connection is lost now).
  size_t owed_client_requests() const { return owed_.client_requests(); }
  char tx_status() const { return tx_status_; }
  // Inside a transaction as its client sees it: the server says so, or the BEGIN pgmux answered for the client
  // (expect_skipped_reply) is still on its way.
  bool in_client_transaction() const { return tx_status_ != 'I' || owed_.front_fate() == ReplyFate::SkipOwn; }
  // The front request's reply is held until its ReadyForQuery (none of it relayed yet).
  bool holds_reply_for_retry() const { return owed_.front_fate() == ReplyFate::HeldForRetry; }
  // The ErrorResponse body of the internal run that just finished (empty when it succeeded): valid in its callback.
  protocol::ByteView last_internal_error() const { return last_internal_error_; }
  // Whether its Query number `ordinal` (counted by ReadyForQuery from 0) failed: valid in its callback.
  bool last_internal_failed(uint16_t ordinal) const {
    return std::find(last_internal_failed_.begin(), last_internal_failed_.end(), ordinal) !=
           last_internal_failed_.end();
  }
  // The last request left an extended sequence open (Flush, no Sync): the next one continues it.
  bool extended_open() const { return owed_.open_sequence(); }
  // PostgreSQL may answer nothing more before the client's next Sync (ReplyQueue::awaits_sync): the client's next
  // requests must come here, and none may wait for the replies owed.
  bool awaits_sync() const { return owed_.awaits_sync(); }
  // Replies to the client's requests are owed that come without more from it (ReplyQueue).
  bool owes_client_before_doubt() const { return owed_.client_requests_before_doubt() > 0; }
  bool commit_owed() const { return owed_.commit_owed(); }
  int backend_index() const;
  // A partial message was forwarded to the client: the client's stream cannot take anything else now.
  bool mid_message() const { return pass_remaining_ > 0; }
  bool fatal_forwarded() const { return fatal_forwarded_; }

  // What this server has of its linked client's session: reset on link.
  size_t applied_log = 0;                     // session-log entries applied here
  using StatementDescription = proxy::StatementDescription;
  // The client's named statements prepared here (looked up by a message's name without a copy); described in
  // session pooling when the session's statements may move between servers (the split).
  std::unordered_map<std::string, StatementDescription, protocol::TransparentStringHash, std::equal_to<>> prepared;
  std::vector<std::string> pending_closes;    // statement names to close here before the next request
  // Transaction pooling: SETs back to the client's startup values of parameters a RESET in the open block brought to
  // this server's login values; run before the client's next request if that block is still open.
  std::vector<std::string> block_resets;
  std::unordered_set<std::string> sql_statements;  // transaction pooling: its SQL PREPAREd statements here
  // Transaction pooling: a client may have changed session state here (any session command, a multi-statement
  // string that may hold one), or a pinned client used it: DISCARD ALL before the next client. Reset on link.
  bool session_dirty = false;
  // (A query of pgmux's still owed counts: the reset must queue behind it, never a client's request.)
  bool session_changed() const override { return applied_log > 0 || session_dirty || !owed_.empty(); }
  void forget_session() override;
  // Survive links (transaction pooling): the pgmux-named prepared statements ("pgmux_<hash of text and types>")
  // this server has, shared by all clients (and applied_unreported, in PoolServer), each with the uv_hrtime() at
  // which it was prepared here: a copy older than a client's own Parse of the statement may predate DDL that
  // changed its result columns, so it is prepared again for that client.
  struct SharedStatement {
    uint64_t prepared_at = 0;
    StatementDescription description;
  };
  protocol::LruMap<std::string, SharedStatement, protocol::TransparentStringHash> server_statements;
  std::vector<std::string> server_closes;  // evicted from server_statements: close before the next request
  // A statement's description here, by the name the server knows it by (`shared`, transaction pooling: from
  // server_statements; session pooling: the client's, from prepared); null when it is not known to be here.
  const StatementDescription* description_of(std::string_view statement, bool shared) const {
    if (shared) {
      const SharedStatement* copy = server_statements.peek(statement);
      return copy ? &copy->description : nullptr;
    }
    auto it = prepared.find(statement);
    return it == prepared.end() ? nullptr : &it->second;
  }

  // Relays buffered server bytes to the linked client (also called when the client's write completes).
  void relay();
  void fail_timeout() override;

 protected:
  ~ServerConn() override;  // tells its pool (a reload deletes drained pools only once no server refers to them)
  void on_data() override;
  void on_read_end(int status) override;
  void on_write_error(int status) override;
  void on_forward_done() override;
  void on_closing() override;
  void on_tls_ready() override;
  void on_tls_failed(const std::string& why) override;
  // Connects to the pool's backend with startup_params(): they become the session's defaults, so a client whose
  // own startup parameters match gets exactly PostgreSQL's RESET semantics.
  void start_connect() override;

 private:
  static void on_connected(uv_connect_t* req, int status);
  void send_startup();
  // The backend's sslmode (server_tls.cpp): an SSLRequest first, then the handshake or, in prefer, plain text.
  bool request_tls();
  void answer_to_ssl_request();
  void handle_login_message(char tag, protocol::ByteView body);
  void handle_auth_request(protocol::ByteView body);
  void handle_internal_message(char tag, protocol::ByteView body);
  void consume_whole_messages(void (ServerConn::*handler)(char, protocol::ByteView));
  void record_parameter(std::string_view name, std::string_view value);
  struct RelayPass;
  bool relay_turn();
  void offer_held_error();
  // The ErrorResponses received and not relayed, in order (body, whole message), until visit returns true.
  void visit_unread_errors(const std::function<bool(protocol::ByteView body, protocol::ByteView message)>& visit) const;
  void note_fatal(protocol::ByteView error_body);
  // On a close by the server: it ended every session of its backend, or closed without a word (the server or the
  // network went away), so the other connections to that backend are gone too.
  bool ended_with_backend() const;
  bool collect_relay_pass(RelayPass& pass);
  bool take_whole_message(char tag, protocol::ByteView body, size_t size, RelayPass& pass);
  bool drop_own_reply(char tag, protocol::ByteView body, size_t size, RelayPass& pass);
  void take_captured_reply(char tag, protocol::ByteView body, size_t size, RelayPass& pass);
  void drop_orphan_capture(char tag, protocol::ByteView body);
  bool decide_read_only_retry(RelayPass& pass);
  bool reply_whole_without_error(size_t from) const;
  bool take_hidden_describe(char tag, protocol::ByteView body, size_t size, RelayPass& pass);
  enum class ResetView : uint8_t { AsIs, Rewritten, Dropped };
  ResetView client_view_of_reset(protocol::ByteView body, protocol::ByteVector** own);
  size_t report_silent_resets(protocol::ByteView ready);
  void add_silent_resets(protocol::ByteView ready, RelayPass& pass);
  protocol::ByteVector* client_view_of_error(protocol::ByteView body);
  void note_parse_complete();
  void note_relayed(char tag, protocol::ByteView body, RelayPass& pass);
  void note_ready(protocol::ByteView body);
  // At each relayed ReadyForQuery the request's writes join its transaction's (pipelined requests are answered in
  // order); acknowledge_commit publishes a transaction that wrote when it ends.
  void fold_writes(const OwedReply& request) {
    if (request.writes && tx_written_ == Written::Nothing) tx_written_ = Written::Applied;
  }
  void acknowledge_commit();
  void deliver(RelayEvent event);
  OwedReply take_front() { return owed_.empty() ? OwedReply{} : owed_.pop(); }
  void deliver_ready();
  // Logs the failure and closes; one that ends a connect or login goes to the pool (and the waiting client).
  void fail(FailureReport report);

  Worker& worker_;
  Pool& pool_;
  uv_connect_t connect_req_;
  ClientConn* client_ = nullptr;
  double last_request_ = 0;
  SessionParams params_;
  bool default_read_only_ = false;
  std::shared_ptr<const TlsClientContext> tls_context_;  // while the SSLRequest waits for its answer
  bool awaiting_ssl_answer_ = false;
  protocol::BackendKeyData key_;
  std::optional<protocol::ScramClient> scram_;
  // Relay bookkeeping (linked state).
  size_t pass_remaining_ = 0;  // bytes of a forwarded message not yet received
  char tx_status_ = 'I';
  bool fatal_forwarded_ = false;
  // What the transaction open here wrote in the requests answered so far (each request's own writes are in its
  // reply queue entry: pipelined requests are answered in order, each folded in at its ReadyForQuery).
  Written tx_written_ = Written::Nothing;
  // What the server said of its end, as far as read (relayed or consumed here): nothing yet, a FATAL that ends this
  // session only, or one that ends every session of the backend (a crash, an immediate shutdown, a PANIC).
  enum class FatalSeen : uint8_t { None, Session, Backend };
  FatalSeen fatal_seen_ = FatalSeen::None;
  ReplyQueue owed_;  // what this server owes, oldest first
  RelayEvent pending_event_ = RelayEvent::None;  // to deliver once the pinned write completes
  // A Describe pgmux put behind a client's Parse (transaction pooling): its two answers are kept from the client
  // and the statement's shape recorded. 2: the ParameterDescription is next, 1: the RowDescription or NoData.
  uint8_t hidden_describe_ = 0;
  std::string described_statement_;
  void record_shape(const std::string& statement, protocol::ByteView row_description_body);
  void record_parameter_types(const std::string& statement, protocol::ByteView parameter_description_body);
  StatementDescription* description_to_record(const std::string& statement);
  protocol::ByteVector dropped_reply_;  // the last reply dropped for a retry (DropForRetry), ReadyForQuery included
  protocol::ByteVector last_internal_error_;
  std::vector<uint16_t> last_internal_failed_;
  std::vector<protocol::ByteVector> rewritten_;  // messages of the current relay pass that pgmux wrote itself
};

}  // namespace pgmux::proxy
