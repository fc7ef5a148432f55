// One application connection: startup and authentication, then its requests. Each complete request (DESIGN.md
// §3.6) is classified and routed: writes to the primary, reads to a standby by weight, transactions and
// pipelines kept on one server; replies are relayed back untouched. In session mode the client holds at most one
// primary and one standby server connection for its whole session.
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

#include "conf/config.hpp"
#include "protocol/error_response.hpp"
#include "protocol/startup.hpp"
#include "proxy/client/cancel.hpp"
#include "proxy/control/auth_cache.hpp"
#include "proxy/client/client_auth.hpp"
#include "proxy/client/client_state.hpp"
#include "proxy/client/session.hpp"
#include "proxy/client/statement_steps.hpp"
#include "proxy/client/unnamed_statement.hpp"
#include "proxy/control/function_catalogs.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/client/request_scanner.hpp"
#include "proxy/net/failure.hpp"
#include "proxy/server/pool_server.hpp"
#include "proxy/server/reply_queue.hpp"
#include "proxy/server/server_lease.hpp"
#include "proxy/server/session_params.hpp"
#include "proxy/server/statement_description.hpp"
#include "proxy/net/stream_conn.hpp"
#include "routing/classifier.hpp"
#include "routing/router.hpp"

namespace pgmux::proxy {

class AdminConsole;
class Pool;
class ServerConn;
class Worker;

class ClientConn final : public StreamConn, public PoolClient {
 public:
  ClientConn(Worker& worker, uint64_t id);
  ~ClientConn() override;

  bool accept(uv_stream_t* listener);
  uint64_t id() const { return id_; }
  ClientState state() const { return state_; }
  const std::string& peer() const { return peer_; }
  std::string_view peer_host() const { return std::string_view(peer_).substr(0, peer_host_length_); }
  // A client of a Unix-domain socket listener: its "address" is PostgreSQL's "[local]" (hba messages, logs).
  // libuv's stream I/O does not depend on the socket's family, so such a client is a uv_tcp_t like the others.
  static constexpr std::string_view kUnixPeer = "[local]";
  bool over_unix_socket() const { return peer_host() == kUnixPeer; }
  // Whether the client talks TLS to pgmux, and the common name of the certificate it presented (only one that
  // verified against tls.client.ca_file). The hba rules' hostssl / hostnossl / cert ask these.
  bool tls_active() const { return tls() != nullptr; }
  std::optional<std::string> tls_client_common_name() const {
    if (!tls() || !tls()->peer_certificate_valid()) return std::nullopt;
    return tls()->peer_common_name();
  }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  const SessionParams& wanted_params() const override { return session_.wanted_params; }
  // The client's name of a statement servers know by pgmux's name (the relay's view of an error naming it).
  const std::string* statement_name_for(std::string_view server_name) const {
    return session_.name_of_server_statement(server_name);
  }
  void build_plan_changed_error(protocol::ByteVector& out);
  // Statements it prepared, by protocol or SQL PREPARE (SHOW CLIENTS).
  size_t prepared_statement_count() const { return session_.statement_count() + session_.sql_statements.size(); }
  double created_at() const { return created_at_; }
  double wait_started() const override { return wait_started_; }
  ServerConn* active_server() const { return active_; }
  double last_activity() const { return last_activity_; }
  conf::PoolMode pool_mode() const { return pool_mode_; }
  ServerConn* primary_server() const { return primary_; }
  ServerConn* standby_server() const { return standby_; }
  // Waiting for a server connection, a primary, or its own replies to drain.
  bool waiting() const { return is_waiting(state_); }
  bool is_admin() const { return admin_ != nullptr; }
  // A transaction is open (BEGIN answered by pgmux included) or replies are owed: PAUSE waits for it to end.
  bool in_transaction() const;
  AdminConsole* admin_console() { return admin_.get(); }
  // The admin console's answer to the query it was running: send it and read the next one.
  void on_admin_answer(protocol::ByteVector bytes);
  // PAUSE was lifted: a request held at a transaction boundary goes on.
  void on_resume();
  // Held by PAUSE for query_wait_timeout: the request fails.
  void on_paused_too_long(double query_wait_timeout);
  // A cancel request with this client's key (client_cancel.cpp), on the client's own worker.
  void on_cancel_request();
  const CancelSlot* cancel_slot() const { return cancel_slot_.get(); }

  // From the pool.
  void on_server_ready(PoolServer* server) override;
  void on_server_unavailable(const FailureReport& failure) override;
  // From a linked server.
  // `skipped`: requests PostgreSQL skipped to the Sync this ReadyForQuery answers (after an error in the extended
  // sequence a Query continued, OwedReply::skips_to_sync); nothing of them ran.
  void on_ready_for_query(ServerConn* server, char tx_status, OwedReply done, std::span<OwedReply> skipped = {});
  // The parameter types of the SQL prepared statement `name`, read behind its PREPARE (capture_prepare_types).
  void learn_prepare_types(const std::string& name, const std::string& types);
  // COPY FROM STDIN began; `batch`: the extended batch that started it, whose reply ends here.
  // `ended_ahead`: the client sent the COPY's end before PostgreSQL asked for its data (nothing streams).
  void on_copy_in(ServerConn* server, const OwedReply* batch, bool ended_ahead);
  // A read the standby refused (standby_refusal: 25006, 0A000, a recovery conflict) before any row reached the client
  // (ReplyFate::HeldForRetry): the request runs again, on the primary. may_run_again is asked when the error
  // arrives, on_read_only_retry runs at its ReadyForQuery.
  bool may_run_again(const ServerConn* server) const;
  // Its session may have changed synchronous_commit: its commits may not have waited for the standbys that apply
  // every commit (ClientConn::note_commit_wait_change).
  bool commits_may_skip_apply() const { return session_.route.commits_may_skip_apply; }
  void on_read_only_retry(ServerConn* server, OwedReply dropped);
  void on_server_lost(ServerConn* server, bool fatal_forwarded, bool mid_message);
  // An ErrorResponse from a linked server, under a request or unasked while idle: true when it is a FATAL the
  // session outlives, which the client drops or keeps for now instead of passing it on (client_server_ending.cpp).
  bool absorb_server_fatal(ServerConn& server, protocol::ByteView body, protocol::ByteView message);
  // A server that is not the active one received bytes no request asked for (NotificationResponse, a FATAL
  // before it closes). True when it may relay them now: it is the session's primary connection, the one whose
  // pid the client knows, and nothing else is in flight. It is then the active server.
  bool accept_unsolicited(ServerConn* server);
  // From the worker: a new backends view, the periodic tick while waiting for a primary, or the end of a replay
  // wait (routing.causal_wait).
  void on_view_changed();
  // From the worker: a reloaded config (its backend list may be reordered, grown or shrunk). Nothing is routed
  // here; the next request uses the new list.
  void on_config_changed(const conf::Config& config);
  // From a pool whose backend a reload removed or moved: stop waiting on it (the request is routed again), and
  // give back its servers at the next transaction boundary (at once when idle).
  void on_pool_draining(Pool* pool) override;

  // Worker tick: closes the client past idle_transaction_timeout (idle inside a transaction) or
  // client_idle_timeout (idle outside one).
  void check_idle(double now, const conf::Timeouts& timeouts);

  // Does what the failure table says: a FATAL ErrorResponse and close; an ERROR for the request in hand while the
  // session goes on (FATAL before login: there is no session yet); or a silent close.
  void fail(const FailureReport& failure) override;

  ListNode worker_node;        // worker's list of all clients
  // The worker's list of the wait the state is in: waiting for a primary (waits_for_primary), for a standby's
  // replay (ReplayWait), held by PAUSE (Paused), waiting for the first function catalog (CatalogWait). One state at
  // a time, so one node: set_state takes it off the list of the state it leaves before the next state's list.
  ListNode state_wait_node;
  // From the worker: the wait for the first catalog is over (`loaded`, or it took longer than kFirstCatalogWait).
  void on_catalog_wait_over(bool loaded);
  bool first_catalog_pending() { return catalog_.first_load_pending(); }

 protected:
  void on_data() override;
  void on_read_end(int status) override;
  void on_write_error(int status) override;
  void on_forward_done() override;
  void on_closing() override;
  void on_tls_ready() override;
  void on_tls_failed(const std::string& why) override;

 private:
  enum class Role : uint8_t { Primary, Standby };
  // The only writer of state_: keeps the worker's wait lists (primary, PAUSE), the pool's FIFO and the wait
  // clock in step with the state.
  void set_state(ClientState next);
  // The wait of the current request is over: read requests again.
  void resume_requests() { set_state(admin_ ? ClientState::Admin : ClientState::Ready); }
  bool logged_in() const { return is_logged_in(state_); }
  void handle_startup();  // client_startup.cpp: the startup-phase packets as PostgreSQL 15 reads them
  void decline_encryption(bool ssl);
  void answer_ssl_request();
  bool starts_direct_tls();
  bool transport_allowed();
  void forward_cancel(const protocol::CancelRequest& cancel);
  bool cancel_waiting_request();
  bool fail_canceled_request(ServerConn& s);
  void fail_server_block(ServerConn& server);
  void refuse_startup_length(uint32_t length);
  void refuse_startup(const protocol::StartupParseError& error, uint32_t length);
  void negotiate_protocol(const protocol::StartupMessage& startup);
  void handle_startup_message(const protocol::StartupMessage& startup);
  bool apply_hba(conf::AuthMethod* method);
  void start_authentication(const conf::User* user, conf::AuthMethod method,
                            std::optional<Failure> refusal = std::nullopt);
  void look_up_user(conf::AuthMethod method);  // client_auth_query.cpp
  void on_user_record(const AuthRecord& record, conf::AuthMethod method);
  bool may_log_in();
  void handle_auth();
  void apply_auth_step(ClientAuth::Step step);
  void auth_succeeded();
  void adopt_login_secret(Pool& pool);
  bool read_on_primary_instead(const FailureReport& failure);
  void update_backend_mask(const conf::Config& config);
  // Where the login goes: a backend's pool for a role, or (awaits_primary) nowhere until a primary appears.
  struct LoginTarget {
    int backend = -1;
    Role role = Role::Primary;
    bool awaits_primary = false;
  };
  LoginTarget login_target() const;
  void log_in_through(const LoginTarget& target);
  // login_server: the server the client logged in through, whose pid session pooling gives the client.
  // Sends the login's last messages; false when the client has gone meanwhile (a failed write closed it).
  bool finish_login(const SessionParams& server_params, const char* via, const ServerConn* login_server = nullptr);

  // Request path.
  void pump();
  void pump_requests();
  bool end_session(Failure reason);
  bool forward_end(Failure reason);
  bool holds_unsent_requests() const;
  bool dispatch();
  bool dispatch_copy_message();  // dispatch()'s contract
  bool defer_begin(const routing::Classification& c);
  void class_behind_deferred_begin(routing::Classification& c);
  bool hold_set_transaction(const routing::Classification& c);
  void answer_held(std::string_view tag);
  void note_parameter_resets(OwedReply& owed, const routing::Classification& c);
  bool dispatch_admin();
  void start_admin_session();
  bool held_by_pause();
  bool waits_for_first_catalog();
  bool is_explain_route_request() const;
  bool answer_explain_route();  // dispatch()'s contract: true to go on with the next request
  bool relay_copy();
  routing::Classification classify_request();
  routing::Classification classify_request_texts();
  void read_as_session_does(routing::Classification& c) const;
  void note_text_reading(const routing::Classification& c);
  // One statement's class, against the function catalog of the client's database as it is now.
  routing::Classification classify_sql(std::string_view sql);
  // The class of a statement parsed by an earlier request, as the catalog says now (see client_routing.cpp).
  routing::Classification stored_class(PreparedStatement& stored, const routing::CatalogState& catalog);
  routing::Classification unnamed_class(const routing::CatalogState& catalog) const;
  bool resume_routed();  // dispatch()'s contract
  // The slot of this client's held server for the request that waits for it, if it is still there.
  ServerConn* routed_server() { return routed_ ? slot_for(routed_->role).get() : nullptr; }
  Role role_of(const ServerConn* server) const { return server == standby_ ? Role::Standby : Role::Primary; }
  std::optional<ServerConn*> server_to_follow(const routing::Classification& c, bool read_only);
  ServerConn* choose_server(const routing::Classification& c);
  routing::Route standby_with_room(const routing::Classification& c, const routing::Route& picked,
                                   const routing::RouteSettings& settings);
  void wait_for_primary(const routing::Route& route);
  bool hold_for_failover(const FailureReport& failure, const std::optional<routing::Route>& route,
                         int failed_backend);
  static bool primary_unreachable(const FailureReport& failure);
  static bool login_refused_for_role(const FailureReport& failure);
  bool primary_takes_reads() const;
  void forget_unmade_copies(ServerConn* server, const OwedReply& dropped);
  bool login_through_standby();
  bool primary_worth_trying() const;
  void decide_server_ending();  // client_server_ending.cpp
  bool absorb_recovery_conflict(ServerConn& server);
  // 08006 "may or may not have been executed" for each request a lost server owed, then the session goes on.
  void answer_lost_requests(const std::string& backend, size_t requests, bool open_sequence);
  bool wait_for_replay();
  bool acquire(int backend_index, Role role);
  bool prepare(ServerConn* server, const routing::Classification& c);
  bool nothing_to_prepare(const ServerConn& server) const;
  // What a prepare step brought to a server, for when its replies are in.
  struct PrepareStep {
    routing::Classification c;         // the request's class (it is not routed again)
    std::vector<std::string> prepared;  // client names of the statements prepared there
    // ... of those among them parsed under other settings than the session's now (add_reparsed_statements), sent
    // after the others (and listed after them in `prepared` once sent).
    std::vector<std::string> reparsed;
    size_t log_size = 0;               // the session log it replayed up to
    size_t replay_from = 0;            // ... from this entry on: its Queries 0 .. log_size - replay_from - 1
    uint64_t log_generation = 0;       // ClientSession::log_generation then (the failed command's text is read)
    int begin_at = -1;                 // the deferred BEGIN's Query among the step's, if it sent it
    int fail_block_at = -1;            // the Query that fails its block behind it (write_deferred_begin), if any
    bool prepares_statements = false;
    bool prepares_unnamed = false;     // the unnamed statement an earlier request parsed
    // SQL prepared statements (by name) prepared there, each with the ordinal of its PREPARE among the step's
    // queries (ServerConn::last_internal_failed).
    std::vector<std::pair<std::string, uint16_t>> sql_prepared;
  };
  void finish_prepare(ServerConn& s, const PrepareStep& step, bool ok, const std::string& sqlstate,
                      const std::string& error);
  bool fail_unrestored_session(ServerConn& s, const PrepareStep& step, const std::string& sqlstate,
                               const std::string& error);
  void forward(ServerConn* server, const routing::Classification& c);
  void note_outstanding(const routing::Classification& c, bool is_primary, OwedReply& owed);
  void note_session_effects(ServerConn* server, const routing::Classification& c, bool is_primary, OwedReply& owed);
  void apply_statement_steps(ServerConn* server, OwedReply& owed);
  void forget_statement_elsewhere(ServerConn* server, std::string_view name, bool here_too);
  void settle_statements(ServerConn* server, const OwedReply& done);
  void confirm_statements(ServerConn* server, const OwedReply& done);
  struct UnconfirmedStatement;
  void confirm_parse(ServerConn* server, const OwedReply& done, const UnconfirmedStatement& parsed);
  void take_closed_statement(ServerConn* server, const OwedReply& owed, unsigned ordinal, std::string_view name);
  void restore_closed_statement(ServerConn* server, UnconfirmedStatement& closed);
  void restore_skipped_closes(ServerConn* server, const OwedReply& done);
  bool parsed_again_later(std::string_view name, uint64_t request) const;
  bool can_run_again(const ServerConn* server, size_t owed) const;
  bool may_run_on_primary_instead(const ServerConn* server, const routing::Classification& c) const;
  bool may_run_again_if_lost(const ServerConn* server, const routing::Classification& c) const;
  // The server was lost before any of the held request's reply reached the client: it goes back in the input
  // (false: it could not, and is answered as lost).
  bool run_again_after_loss(const std::string& backend);
  void learn_from_refusal(protocol::ByteView request, bool unlogged);
  static protocol::StandbyRefusal refusal_in(protocol::ByteView reply);  // a whole reply: its ErrorResponse
  static protocol::StandbyRefusal refusal_of(protocol::ByteView error_body);
  void learn_serializable_default(ServerConn& standby);
  void make_active(ServerConn* server);
  // A Close of pgmux's own in front of a request, its CloseComplete kept from the client.
  enum class HiddenClose : uint8_t { None, UnnamedStatement, SequenceSentinel };
  void send_request(ServerConn* server, HiddenClose hidden);
  void note_pin(routing::PinReason pin, bool pinned_primary);
  // WITH HOLD cursors on the standby connection (client_standby_cursors.cpp).
  std::vector<std::string_view> request_statement_texts();
  bool note_standby_cursors(ServerConn* server, const routing::Classification& c);
  void close_standby_cursors();
  ServerConn* standby_cursor_server(const routing::Classification& c);
  void describe_held_standby(routing::ClientRouteState& state) const;
  bool add_statement_prep(ServerConn* server, protocol::ByteVector* messages, PrepareStep* step);
  bool binds_earlier_unnamed(const ServerConn* server) const;
  void learn_description(ServerConn& server, std::string_view client_name);
  const PreparedStatement* stale_statement(const ServerConn* server);
  bool copy_is_stale(const ServerConn* server, const PreparedStatement& stored) const;
  bool lacks_shared_copy(ServerConn* server, std::string_view client_name, const PreparedStatement& stored,
                         bool prepares);
  bool request_uses_shared(std::string_view server_name);
  void add_session_statement(ServerConn* server, std::string_view client_name, const PreparedStatement& stored,
                             protocol::ByteVector& messages, PrepareStep& step);
  bool append_statement_parse(ServerConn* server, std::string_view client_name, protocol::ByteVector& messages);
  // statement_settings.cpp: statements prepared under the settings of their Parse.
  std::vector<std::string> settings_reset_queries(bool in_block) const;
  static std::vector<std::string> settings_restore_queries(bool in_block);
  int add_reparsed_statements(ServerConn* server, protocol::ByteVector& messages, PrepareStep& step, bool in_block);
  bool forward_renamed(ServerConn* server, OwedReply& owed, bool first_use_checked);
  bool hides_unnamed_close(const ServerConn* server, OwedReply& owed);
  bool hides_sequence_sentinel(OwedReply& owed, bool continues_sequence);
  void note_duplicate_names(const BatchServerNames& names, OwedReply& owed);
  bool resolve_server_names(ServerConn* server, BatchServerNames& names, bool first_use_checked);
  unsigned close_messages_before(protocol::ByteView request, size_t end) const;
  bool depends_on_unanswered_statement();
  const ParsedStatement* duplicate_parse();
  bool answer_parse_instead_of_waiting();
  void count_statement_traffic(PoolStats& stats, size_t created);
  // Transaction pooling rewrites requests that parse, use or close named statements, or use the unnamed statement
  // an earlier request parsed (forward_renamed). The unnamed statement and portals keep their names: a request
  // of only those goes out as it is, without a copy.
  bool forwards_renamed() const {
    return transaction_pooling() &&
           (!request_.used.empty() || request_.closes > 0 || request_.uses_prior_unnamed || request_.parses_named);
  }
  // Session pooling with the split: a request that parses named statements goes out with a Describe behind each
  // (forward_described), for the types and columns PostgreSQL fixed at its Parse.
  bool forwards_described() const { return !transaction_pooling() && request_.parses_named && statements_may_move(); }
  void forward_described(ServerConn* server, OwedReply& owed);
  // Session pooling: the session's statements may run on another server than the one that parsed them (the split,
  // with more than one backend to read from).
  bool statements_may_move() const;
  // The name a server knows a client statement by: shared in transaction pooling, the client's own otherwise.
  std::string_view statement_on_server(const PreparedStatement& stored, std::string_view client_name) const {
    return transaction_pooling() ? std::string_view(stored.server_name) : client_name;
  }
  // client_session_state.cpp: session state that follows the session.
  void note_session_request(OwedReply& owed, const routing::Classification& c);
  void note_commit_wait_change(const routing::Classification& c);
  bool executed_statements(std::vector<std::string>& out);
  // client_portals.cpp: portals bound by one request and executed by a later one.
  const std::string* earlier_bound_portal(std::string_view portal) const;
  void for_each_earlier_portal_run(const std::function<void(const std::string&)>& visit) const;
  void note_bound_portals(uint64_t request);
  void end_bound_portals(const ServerConn& server, uint64_t request);
  std::optional<std::string_view> statement_text(std::string_view name) const;
  bool unnamed_is_plain_read(std::string_view statement) const;
  std::vector<TrackedStatement> tracked_statements(const SessionCommand& command);
  void note_block_resets(ServerConn& server, const std::vector<TrackedStatement>& tracked);
  void finish_session_request(ServerConn* server, const SessionCommand& command, bool failed, char tx_status,
                              uint64_t request);
  void lose_track_of_session(ServerConn* server);
  // client_sql_statements.cpp: SQL-level PREPARE / EXECUTE / DEALLOCATE in transaction pooling.
  struct SqlStatementPrep {
    std::string name;                  // as PostgreSQL folds it
    std::vector<std::string> queries;  // what prepares it there, one Query each
    uint16_t prepare_at = 0;           // which of them is the PREPARE itself
    bool check_prepared = false;       // inside a block, behind a savepoint rolled back: see build_prepare_step
  };
  std::vector<SqlStatementPrep> missing_sql_statements(const ServerConn& server, bool in_block,
                                                       bool deallocates_parsed);
  int build_prepare_step(ServerConn* server, std::vector<SqlStatementPrep>& sql_preps, protocol::ByteVector& messages,
                         PrepareStep& step);
  void set_sql_prepare_queries(SqlStatementPrep& prep, const SqlStatement& stored, bool in_block) const;
  void capture_prepare_types(ServerConn& server, const routing::Classification& c);
  void keep_unsure_statements_on(ServerConn& server, const std::vector<TrackedStatement>& tracked);
  bool client_utf8(const ServerConn* server) const;
  std::vector<TrackedStatement> take_sql_statements(ServerConn* server, std::vector<TrackedStatement>& tracked,
                                                    bool failed);
  void apply_sql_statements(ServerConn* server, const std::vector<TrackedStatement>& ran, uint64_t request);
  // SQL DEALLOCATE or PREPARE of a name made with Parse (one name space on PostgreSQL), answered here
  // (client_sql_statements.cpp): what dispatch returns, or nullopt when the command goes to a server.
  std::optional<bool> answer_statement_command(const routing::Classification& c);
  bool single_statement_request() const;
  void answer_deallocate(const std::string& name);
  bool dropped_parsed_statement(ServerConn* server, const TrackedStatement& t, uint64_t request);
  void close_stand_ins(ServerConn& server);
  void forget_protocol_statements(ServerConn* runner, uint64_t request);
  void answer_locally_with_error(const FailureReport& failure);
  char status_after_local_error() const;  // the ReadyForQuery status of such an answer
  void write_deferred_begin(protocol::ByteVector& out) const;
  std::string log_prefix() const;  // "C-<id> <peer> user=<user> db=<database>"
  // Ends a checkout (why: the failure ending the request or session, if any); the pool decides whether the
  // server is reused, reset or closed (server_fate).
  void drop_server(ServerLease& lease, std::optional<Failure> why = std::nullopt);
  bool let_go_of(ServerConn* server);  // true: a cancel request may still reach the server
  // Transaction pooling: servers with nothing outstanding, outside a transaction and not pinned go back.
  void release_idle_servers();
  void drop_idle_servers();  // release_idle_servers' work, without its checks for a request in progress
  bool transaction_pooling() const { return pool_mode_ != conf::PoolMode::Session; }
  ServerLease& slot_for(Role role) { return role == Role::Primary ? primary_ : standby_; }
  double monotonic_now() const;
  routing::RouteSettings route_settings() const;

  Worker& worker_;
  uint64_t id_;
  ClientState state_ = ClientState::Startup;
  // Here, in the padding after state_ (every client carries this object: issue 13's memory per idle client).
  uint8_t peer_host_length_ = 0;  // how much of peer_ is the address (hba rules and their messages)
  Role waiting_role_ = Role::Primary;  // of the pool waiting_pool_ points to
  bool sent_again_after_loss_ = false;  // retry_request_ already went again once after its server was lost
  std::string peer_;  // "address:port", for logs
  std::string user_;
  std::string database_;
  // The snapshot this client logged in under: its user and database entries, the pool mode and server database
  // it keeps for the session. Per-request settings come from worker_.config() (reloads apply to them).
  std::shared_ptr<const conf::Config> config_;
  const conf::User* user_config_ = nullptr;
  const conf::Database* database_config_ = nullptr;
  std::unique_ptr<ClientAuth> auth_;
  // auth_query: the user the database described (the config does not list it) and whether the role may log in;
  // user_config_ points into it.
  struct LookedUpUser {
    conf::User user;
    bool can_login = false;
  };
  std::unique_ptr<const LookedUpUser> looked_up_user_;
  std::shared_ptr<char> alive_;  // a lookup's reply, posted from the control loop, finds the client through it
  std::unique_ptr<AdminConsole> admin_;  // set for sessions on the admin database "pgmux"
  std::shared_ptr<CancelSlot> cancel_slot_;
  std::optional<CancelRegistry::Key> cancel_key_;  // the BackendKeyData it was given, while registered
  protocol::EncryptionRequestsDone encryption_done_;  // SSLRequest / GSSENCRequest already answered
  bool direct_tls_ = false;  // the connection opened with a ClientHello (PostgreSQL 17's sslnegotiation=direct)
  double created_at_ = 0;
  double wait_started_ = 0;
  uint64_t wait_started_ns_ = 0;  // uv_hrtime() once a pool request had to wait (pool wait metric); 0: not (yet)
  uint64_t tx_started_ns_ = 0;    // uv_hrtime() of the first request of the running transaction; 0: none
  double last_activity_ = 0;  // loop time of the last request sent or reply finished
  std::optional<Failure> close_reason_;  // why the connection ends: the first reason set wins
  int close_status_ = 0;                 // the libuv error behind Failure::ClientSocketError
  conf::PoolMode pool_mode_ = conf::PoolMode::Session;

  // Servers: held ones, the one whose replies are relayed now, and the pool a request waits on.
  ServerLease primary_;
  ServerLease standby_;
  ServerConn* active_ = nullptr;
  UnnamedStatement unnamed_;  // the client's unnamed statement: which server holds it, its Parse, its class
  routing::Classification request_unnamed_class_;  // the class of the request's last Parse "" (classify_request)
  Pool* waiting_pool_ = nullptr;  // (waiting_role_: next to state_)
  // Worker::pool_for's last answer per role, while the worker's pool_generation() stays (transaction pooling asks
  // at every transaction; the worker's own cache compares the database and user names).
  struct CachedPool {
    Pool* pool = nullptr;
    uint64_t generation = 0;
    int backend = -1;
  };
  std::array<CachedPool, 2> pool_cache_;
  Pool* pool_of(int backend_index, Role role, std::optional<FailureReport>* no_pool);
  // A request routed to a server that is not there yet (server_wait) or that pgmux brought up to date
  // (preparing): when the server is ready the request goes on from this decision, not classified and routed
  // again.
  struct RoutedRequest {
    routing::Classification c;
    Role role = Role::Primary;
    std::optional<routing::Route> route;  // counted in the metrics once the request goes out
    bool prepared = false;                // the prepare step ran on that server: forward straight away
  };
  std::optional<RoutedRequest> routed_;
  ServerConn* preparing_ = nullptr;  // the server a prepare step runs on (observers: cleared in let_go_of)
  protocol::ByteVector prepare_error_;  // a statement the request needs could not be prepared: the server's error
  // A wait for a primary (primary_wait, login_primary_wait, and the tries between), in monotonic seconds: when it
  // began (0: none; it ends failover_timeout later, as the config says now: a reload applies to the waits under
  // way), and when and on which backend a new connection to the primary last failed (primary_worth_trying).
  struct PrimaryWaitClock {
    double since = 0;
    double failed_at = 0;
    int failed_backend = -1;
  };
  PrimaryWaitClock primary_wait_;
  // ServerEnding: the FATAL the session's primary connection sent, which backend and when (monotonic seconds);
  // the requests that were in flight there, answered once the session is known to go on.
  struct EndedServer {
    protocol::ByteVector fatal;
    std::string backend_name;
    double at = 0;
    bool in_flight = false;  // a request (or a COPY) was under way there: its answers are owed
    size_t lost_requests = 0;
    bool open_sequence = false;
  };
  std::unique_ptr<EndedServer> ended_server_;  // rarely set: kept out of every client's footprint
  // A read that waits for a standby to replay what it must see: until when, and the commits it must see (those
  // acknowledged when it was first routed; later ones are concurrent with it). Set only while it waits.
  struct ReplayWait {
    double deadline = 0;                 // monotonic seconds
    std::optional<double> cluster_commit;
  };
  std::optional<ReplayWait> replay_wait_;

  // Request state.
  RequestInfo request_;
  // COPY FROM STDIN, client to server: Streaming until CopyDone or CopyFail. A message only partly through when COPY
  // ends must still reach the server whole: EndingMessage, the client's CopyDone or CopyFail (COPY's reply is still
  // to come); DroppedMessage, a CopyData when the server's error ended COPY (it reads the rest and drops it).
  enum class CopyIn : uint8_t { Off, Streaming, EndingMessage, DroppedMessage };
  CopyIn copy_in_ = CopyIn::Off;
  bool copying() const { return copy_in_ != CopyIn::Off; }
  bool discard_until_sync_ = false;   // an extended batch failed before reaching a server
  bool pumping_ = false;
  bool repump_ = false;
  size_t copy_pass_remaining_ = 0;
  protocol::ByteVector begin_message_;  // that BEGIN as a Query message (and kFailBlock), while it is being written
  protocol::ByteVector retry_request_;  // the request held for a retry (HeldForRetry) as it came from the client
  // (sent_again_after_loss_: next to state_)
  static constexpr size_t kMaxRetriedRequest = 64 * 1024;  // larger reads are not copied for a retry
  // Requests a client may have queued on its server before pgmux waits for replies (bounds the queue's memory).
  static constexpr size_t kMaxPipelineDepth = 64;
  uint64_t requests_sent_ = 0;  // numbers the requests forwarded (OwedReply::request)
  // Named statements parsed or closed by requests still running, by request number. A Parse ran if its
  // ParseComplete came, a Close if its CloseComplete did: an error earlier in the batch makes PostgreSQL skip both
  // (confirm_statements).
  struct ClosedStatement {
    PreparedStatement statement;  // the session's entry the Close removed
    std::optional<StatementDescription> here;  // and the server's, if it had one
  };
  struct UnconfirmedStatement {
    uint64_t request = 0;   // the request that parsed or closed it
    unsigned ordinal = 0;   // a Parse: among the entry's Parse messages; a Close: among the client's Close messages
    std::string name;
    std::unique_ptr<ClosedStatement> closed;  // set for a Close: put back if PostgreSQL skipped it
  };
  std::vector<UnconfirmedStatement> unconfirmed_;
  // Resolving a batch's statement messages in order, and their server names (transaction pooling); reused.
  StatementSteps statement_steps_;
  uint64_t parses_answered_here_ = 0;  // answer_parse_instead_of_waiting's, not yet counted in a pool's stats

  ClientSession session_;  // what the session is; follows the client from server to server
  CatalogReader catalog_;  // the function catalog of the client's server database
  CatalogChangeHold catalog_hold_;  // catalog DDL sent: held until nothing is owed outside a transaction
};

}  // namespace pgmux::proxy
