// One connection to a PostgreSQL backend: connect, log in, run pgmux's own queries (reset, parameter sync)
// and, while linked to a client, forward replies to it watching only ReadyForQuery and ParameterStatus.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "protocol/auth_scram.hpp"
#include "protocol/backend_messages.hpp"
#include "protocol/lru_map.hpp"
#include "proxy/net/failure.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/net/stream_conn.hpp"
#include "proxy/server/pool_server.hpp"
#include "proxy/server/session_params.hpp"

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
  using InternalDone = std::function<void(ServerConn&, bool ok, const std::string& sqlstate, const std::string& error)>;
  void run_internal(std::string sql, InternalDone done);
  // Same with ready-made frontend messages that produce `ready_count` ReadyForQuery replies.
  void run_internal_messages(protocol::ByteVector messages, int ready_count, InternalDone done);
  void run_pool_query(std::string sql, QueryDone done) override;

  void link(PoolClient* client) override;  // a ClientConn: the only kind a worker's pools serve
  void unlink() override;
  ClientConn* client() const { return client_; }
  PoolClient* linked_client() const override;

  // Called by the linked client for each request it forwards, to track what is outstanding.
  void note_request(bool ends_with_ready, bool leaves_extended_open);
  // True when nothing is in flight and the session is idle outside a transaction: safe to reset and reuse.
  bool reusable() const override;
  // Replies still to come for requests sent (or an extended batch not yet closed by Sync).
  // Also true while the last reply is still being written to the client (its ReadyForQuery not yet delivered).
  bool has_outstanding() const {
    return pending_syncs_ > 0 || unsynced_extended_ || pending_event_ != RelayEvent::None || pinned();
  }
  // pgmux sent a statement of its own (a deferred BEGIN) in front of the client's request: its reply, up to and
  // including its ReadyForQuery, is dropped. Should it fail, the server is closed (the request must not run
  // outside the transaction the client asked for).
  void skip_next_reply() {
    ++skip_replies_;
    ++pending_syncs_;
  }
  // The next reply starts a request pgmux may send again: if its first message is PostgreSQL's "cached plan must
  // not change result type" error, that error and its ReadyForQuery are kept from the client and the client is
  // told to re-prepare and retry (nothing of the reply has reached it).
  void arm_plan_retry() { retry_armed_ = true; }
  // Another request went out behind the armed one: a retry would reorder replies, so the error is relayed.
  void disarm_plan_retry() { retry_armed_ = false; }
  // PostgreSQL ignores a Sync that arrives during COPY FROM STDIN: that Sync will get no ReadyForQuery.
  void forget_one_sync() {
    if (pending_syncs_ > 0) --pending_syncs_;
  }
  char tx_status() const { return tx_status_; }
  // An extended sequence was left open by Flush and nothing else is owed: its next messages must come here.
  bool only_open_sequence() const { return unsynced_extended_ && pending_syncs_ == 0; }
  // The last request left an extended sequence open (Flush, no Sync): the next one continues it.
  bool extended_open() const { return unsynced_extended_; }
  int backend_index() const;
  // A partial message was forwarded to the client: the client's stream cannot take anything else now.
  bool mid_message() const { return pass_remaining_ > 0; }
  bool fatal_forwarded() const { return fatal_forwarded_; }

  // What this server has of its linked client's session: reset on link.
  size_t applied_log = 0;                     // session-log entries applied here
  std::unordered_set<std::string> prepared;   // the client's named statements prepared here
  std::vector<std::string> pending_closes;    // statement names to close here before the next request
  bool wrote = false;                         // a write was sent since the last ReadyForQuery 'I'
  // Transaction pooling: a client may have changed session state here (any session command, a multi-statement
  // string that may hold one), or a pinned client used it: DISCARD ALL before the next client. Reset on link.
  bool session_dirty = false;
  bool session_changed() const override { return applied_log > 0 || session_dirty; }
  void forget_session() override;
  // Survive links (transaction pooling): the pgmux-named prepared statements ("pgmux_<hash of text and types>")
  // this server has, shared by all clients (and applied_unreported, in PoolServer).
  protocol::LruMap<std::string, bool, protocol::TransparentStringHash> server_statements;
  std::vector<std::string> server_closes;  // evicted from server_statements: close before the next request

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
  // Connects to the pool's backend with startup_params(): they become the session's defaults, so a client whose
  // own startup parameters match gets exactly PostgreSQL's RESET semantics.
  void start_connect() override;

 private:
  static void on_connected(uv_connect_t* req, int status);
  void send_startup();
  void handle_login_message(char tag, protocol::ByteView body);
  void handle_auth_request(protocol::ByteView body);
  void handle_internal_message(char tag, protocol::ByteView body);
  void consume_whole_messages(void (ServerConn::*handler)(char, protocol::ByteView));
  void record_parameter(std::string_view name, std::string_view value);
  void deliver(RelayEvent event);
  // Logs the failure and closes; one that ends a connect or login goes to the pool (and the waiting client).
  void fail(FailureReport report);

  Worker& worker_;
  Pool& pool_;
  uv_connect_t connect_req_;
  ClientConn* client_ = nullptr;
  double last_request_ = 0;
  SessionParams params_;
  bool default_read_only_ = false;
  protocol::BackendKeyData key_;
  std::optional<protocol::ScramClient> scram_;
  InternalDone internal_done_;
  int internal_ready_left_ = 0;
  std::string internal_error_state_;
  std::string internal_error_;

  // Relay bookkeeping (linked state).
  size_t pass_remaining_ = 0;  // bytes of a forwarded message not yet received
  int pending_syncs_ = 0;      // Query/Sync/FunctionCall sent minus ReadyForQuery received
  bool unsynced_extended_ = false;
  char tx_status_ = 'I';
  bool request_error_ = false;   // an ErrorResponse was relayed since the last ReadyForQuery
  bool fatal_forwarded_ = false;
  bool retry_armed_ = false;
  bool swallowing_ = false;      // dropping a failed attempt's reply up to its ReadyForQuery
  int skip_replies_ = 0;         // replies to pgmux's own statements sent ahead of the request (skip_next_reply)
  bool skipped_error_ = false;   // one of them failed
  RelayEvent pending_event_ = RelayEvent::None;  // to deliver once the pinned write completes
};

}  // namespace pgmux::proxy
