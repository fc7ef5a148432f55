#include "proxy/client/client_conn.hpp"

#include "proxy/ops/admin/console.hpp"

#include <arpa/inet.h>

#include <cctype>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/startup.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/forward_batch.hpp"
#include "routing/read_your_writes.hpp"
#include "routing/session_sql.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/control/probe_connection.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
// The client's address and port ("?" and 0 when unknown; ClientConn::kUnixPeer and 0 over a Unix-domain socket).
std::pair<std::string, int> peer_address(uv_tcp_t* tcp) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {"?", 0};
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_UNIX) return {std::string(ClientConn::kUnixPeer), 0};
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    uv_ip4_name(in, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    uv_ip6_name(in6, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return {host, port};
}
}  // namespace


ClientConn::ClientConn(Worker& worker, uint64_t id) : StreamConn(worker.loop()), worker_(worker), id_(id) {
  count_bytes(&worker.client_byte_counters());
}

ClientConn::~ClientConn() = default;

bool ClientConn::accept(uv_stream_t* listener) {
  if (const int rc = uv_accept(listener, stream()); rc != 0) {
    close_reason_ = Failure::ClientSocketError;
    close_status_ = rc;
    close();
    return false;
  }
  auto [host, port] = peer_address(tcp());
  peer_host_length_ = static_cast<uint8_t>(std::min<size_t>(host.size(), 255));  // an IPv6 text is 45 at most
  peer_ = host + ":" + std::to_string(port);
  if (!over_unix_socket()) uv_tcp_nodelay(tcp(), 1);
  created_at_ = worker_.now();
  worker_.add_client(this);
  start_reading();
  return true;
}

void ClientConn::set_state(ClientState next) {
  const ClientState before = state_;
  if (next == before) return;
  if (!is_legal_transition(before, next)) {
    LOG_ERROR("C-%llu %s: illegal state change %s -> %s", static_cast<unsigned long long>(id_), peer_.c_str(),
              to_string(before), to_string(next));
  }
  LOG_DEBUG("C-%llu %s: %s -> %s", static_cast<unsigned long long>(id_), peer_.c_str(), to_string(before),
            to_string(next));
  state_ = next;
  // Leaving a wait: off the list that would have woken it.
  if (waits_for_primary(before)) worker_.stop_waiting_for_primary(this);
  if (before == ClientState::ReplayWait) worker_.stop_waiting_for_replay(this);
  if (before == ClientState::Paused) worker_.stop_holding(this);
  if (before == ClientState::CatalogWait) worker_.stop_waiting_for_catalog(this);
  if (waits_for_pool(before) && !waits_for_pool(next)) {
    if (waiting_pool_) waiting_pool_->withdraw(this);
    waiting_pool_ = nullptr;
  }
  // Entering one: on the list that will.
  // Decided by the next views: a primary appears; a probe round shows how the server ended.
  if (waits_for_primary(next)) worker_.wait_for_primary(this);
  if (next == ClientState::ReplayWait) worker_.wait_for_replay(this, replay_wait_->deadline - monotonic_now());
  if (next == ClientState::Paused) worker_.hold_paused(this);
  if (next == ClientState::CatalogWait) worker_.wait_for_catalog(this);
  if ((waits_for_pool(next) && !waits_for_pool(before)) || next == ClientState::Paused ||
      next == ClientState::CatalogWait || next == ClientState::PrimaryWait || next == ClientState::LoginPrimaryWait) {
    wait_started_ = worker_.now();
    wait_started_ns_ = 0;  // taken by acquire() once the pool could not answer at once
  }
}

void ClientConn::on_data() {
  switch (state_) {
    case ClientState::Startup: handle_startup(); break;
    case ClientState::Auth: handle_auth(); break;
    case ClientState::Ready:
    case ClientState::Admin: pump(); break;
    default: break;  // waiting: the bytes stay in the buffer until the wait ends
  }
}

// One step of the password exchange: a failure ends the login, a reply goes out, success logs the client in.
void ClientConn::apply_auth_step(ClientAuth::Step step) {
  if (step.verdict == ClientAuth::Verdict::Failed) {
    // auth_query: the role's password may have changed since it was looked up; the next login asks again.
    if (looked_up_user_ && step.failure->failure() == Failure::AuthFailed) worker_.shared().auth_cache.forget(user_);
    fail(*step.failure);
    return;
  }
  send_owned(std::move(step.reply));
  // A write to a client that has gone fails and closes it: then there is no one to log in.
  if (open() && step.verdict == ClientAuth::Verdict::Ok) auth_succeeded();
}

void ClientConn::handle_auth() {
  while (open() && state_ == ClientState::Auth) {
    // PostgreSQL reads the type byte first, and refuses another message before it reads its length.
    if (in_.unparsed() > 0 && in_.unparsed_bytes()[0] != std::byte{frontend::kPassword}) {
      fail({Failure::AuthUnexpectedMessage,
            {auth_->expected_response(), std::to_string(static_cast<unsigned char>(in_.unparsed_bytes()[0]))}});
      return;
    }
    Frame frame = next_frame(in_.unparsed_bytes(), auth_->max_message());
    if (frame.status == FrameStatus::NeedMore) {
      in_.make_room(kFrameHeaderSize);
      return;
    }
    if (frame.status == FrameStatus::Error) {
      LOG_INFO("C-%llu %s: %s message of length %u not read (longest: %u)", static_cast<unsigned long long>(id_),
               peer_.c_str(), auth_->expected_response(), frame.length, auth_->max_message());
      apply_auth_step(auth_->refuse_unreadable(to_string(frame.error)));
      return;
    }
    if (in_.unparsed() < frame.total()) {
      in_.make_room(frame.total());
      return;
    }
    ByteView body = in_.unparsed_bytes().subspan(5, frame.length - 4);
    ClientAuth::Step step = auth_->on_message(body);
    in_.advance_parsed(frame.total());
    in_.consume_to(in_.parsed());
    apply_auth_step(std::move(step));
  }
}

void ClientConn::auth_succeeded() {
  ByteVector ok;
  build_authentication_ok(ok);
  send_owned(std::move(ok));
  // The client may be gone (SASLFinal went out, AuthenticationOk did not): nothing may queue it in a pool now.
  if (!open()) return;
  if (!user_config_) {  // trust: PostgreSQL too says so only after AuthenticationOk
    fail({Failure::UnknownRole, {user_}});
    return;
  }
  if (!may_log_in()) return;

  if (database_ == AdminConsole::kDatabase) {
    start_admin_session();
    return;
  }
  database_config_ = config_->find_database(database_);
  if (!database_config_) {
    fail({Failure::UnknownDatabase, {database_}});
    return;
  }
  update_backend_mask(*worker_.config());
  pool_mode_ = conf::Config::effective_pool_mode(user_config_, *database_config_);
  cancel_slot_ = std::make_shared<CancelSlot>(worker_.index());

  const LoginTarget target = login_target();
  // Transaction pooling needs no server to log a client in once the pool knows what a server reports: that set,
  // with the client's own startup values applied, as PostgreSQL would report them.
  if (transaction_pooling() && !target.awaits_primary) {
    std::optional<FailureReport> no_pool;
    Pool* pool = worker_.pool_for(database_, *database_config_, *user_config_, pool_mode_, target.backend, &no_pool);
    SessionParams params = pool ? pool->login_params() : SessionParams{};
    if (!params.entries().empty()) {
      adopt_login_secret(*pool);
      // As PostgreSQL reports them (psycopg refuses a DateStyle of "iso,dmy"), and wanted so: check-outs then
      // compare like with like, and SET a whole DateStyle over another client's.
      SessionParams wanted = session_.wanted_params;
      for (const auto& [name, value] : session_.wanted_params.entries()) {
        const std::string* current = params.find(name);
        const std::string spelled = postgres_spelling(name, value, current);
        if (current) params.set(name, spelled);
        if (spelled != value) wanted.set(name, spelled);
      }
      session_.wanted_params = std::move(wanted);
      if (!finish_login(params, "the pool's parameters")) return;
      set_state(ClientState::Ready);
      pump();
      return;
    }
  }
  log_in_through(target);
}

// What this login proved to each pool it asks for a server. auth_query: the secret just looked up is the newest one
// (ALTER ROLE ... PASSWORD since the pool was made): new servers log in with it. Only at the login's first ask
// (still in Auth): a login held for a primary asks again later, when another login may have looked up a newer
// secret, which this one must not take the pool back from. SCRAM: the client's recovered key, if it is the key
// of the pool's secret (not of one a reload or another login replaced since).
void ClientConn::adopt_login_secret(Pool& pool) {
  if (looked_up_user_ && state_ == ClientState::Auth) pool.set_password(looked_up_user_->user.password);
  const std::optional<protocol::ScramSecret>& secret = pool.login().scram_secret;
  if (auto key = auth_->client_key(); key && secret && protocol::client_key_matches(*key, *secret)) {
    pool.login().client_key = key;
  }
}

// The database's backends as a mask over the config's backend list (the view uses the same order), by name: a
// reload may reorder the list. A database a reload removed keeps the backends it had.
void ClientConn::update_backend_mask(const conf::Config& config) {
  const conf::Database* database = config.find_database(database_);
  const std::vector<std::string>& names = (database ? database : database_config_)->backends;
  uint64_t mask = 0;
  for (size_t i = 0; i < config.backends.size() && i < 64; ++i) {
    if (names.empty() || std::find(names.begin(), names.end(), config.backends[i].name) != names.end()) {
      mask |= uint64_t{1} << i;
    }
  }
  session_.route.backend_mask = mask;
}

// Log in through the primary when there is one, else through any readable standby: its ParameterStatus set is
// what the client sees, as on a direct connection. With the read/write split off every statement goes to the
// primary and a standby must not hold the session either (its pid would be the client's): the login waits.
ClientConn::LoginTarget ClientConn::login_target() const {
  const routing::BackendsView& view = worker_.view();
  const uint64_t mask = session_.route.backend_mask;
  if (view.primary >= 0 && (mask >> view.primary) & 1) return {view.primary, Role::Primary, false};
  const bool split = worker_.config()->routing.read_write_split;
  bool any_up = false;
  for (size_t i = 0; i < view.backends.size() && i < 64; ++i) {
    if (!((mask >> i) & 1)) continue;
    if (split && view.backends[i].readable) return {static_cast<int>(i), Role::Standby, false};
    any_up |= view.backends[i].reachable;
  }
  if (any_up && !split) return {-1, Role::Primary, true};  // a failover: no standby takes the session
  // Nothing known to be up: before the first probe round, or everything is down. Try the first backend of the
  // database: a clear connection error beats waiting.
  for (size_t i = 0; i < worker_.config()->backends.size() && i < 64; ++i) {
    if ((mask >> i) & 1) return {static_cast<int>(i), Role::Primary, false};
  }
  return {-1, Role::Primary, false};
}

// Asks the target's pool for the login's server, or waits for a primary (LoginPrimaryWait).
void ClientConn::log_in_through(const LoginTarget& target) {
  if (target.awaits_primary) {
    if (primary_wait_.since == 0) {
      LOG_INFO("%s: no primary to log in through, and read_write_split is off: holding the login for one (up to "
               "failover_timeout)", log_prefix().c_str());
    }
    wait_for_primary(routing::Route{routing::RouteTarget::WaitForPrimary, -1, routing::RouteReason::SplitOff});
    return;
  }
  acquire(target.backend, target.role);
}

void ClientConn::on_config_changed(const conf::Config& config) {
  if (database_config_) update_backend_mask(config);
}

void ClientConn::on_pool_draining(Pool* pool) {
  if (!open()) return;
  if (waiting_pool_ == pool) {
    waiting_pool_ = nullptr;
    routed_.reset();
    if (state_ == ClientState::ServerWait) resume_requests();  // routed again by the pump below
    if (state_ == ClientState::LoginWait) {
      log_in_through(login_target());
      return;
    }
  }
  release_idle_servers();
  pump();
}

// Takes a server for `role` from the backend's pool; the pool calls on_server_ready (maybe right away).
// The client's pool on a backend for a role (remembered per role: most requests go where the last one went).
Pool* ClientConn::pool_of(int backend_index, Role role, std::optional<FailureReport>* no_pool) {
  CachedPool& cached = pool_cache_[static_cast<size_t>(role)];
  if (cached.pool && cached.generation == worker_.pool_generation() && cached.backend == backend_index) {
    return cached.pool;
  }
  Pool* pool = worker_.pool_for(database_, *database_config_, *user_config_, pool_mode_, backend_index, no_pool);
  cached = pool ? CachedPool{pool, worker_.pool_generation(), backend_index} : CachedPool{};
  return pool;
}

bool ClientConn::acquire(int backend_index, Role role) {
  std::optional<FailureReport> no_pool;
  waiting_role_ = role;  // on_server_unavailable reads it, also when no pool can be made
  Pool* pool = pool_of(backend_index, role, &no_pool);
  if (!pool) {
    on_server_unavailable(*no_pool);  // as a pool would say it: the request fails (before login: the login)
    return false;
  }
  waiting_pool_ = pool;
  if (!logged_in()) adopt_login_secret(*pool);  // before the pool opens a server that logs in with it
  set_state(logged_in() ? ClientState::ServerWait : ClientState::LoginWait);
  pool->request(this);  // may hand a server over at once (on_server_ready)
  // The clock is read only for a wait that outlasts the call (a check-out from the idle list waits 0 ns).
  // A retried wait (the server died while readied, its pool drained) keeps its first start.
  if (waits_for_pool(state_) && waiting_pool_ == pool && wait_started_ns_ == 0) wait_started_ns_ = uv_hrtime();
  return open();
}

void ClientConn::on_server_ready(PoolServer* pooled) {
  auto* server = static_cast<ServerConn*>(pooled);  // a worker's pools hold ServerConns only
  waiting_pool_ = nullptr;
  if (!open()) {
    ServerLease(server).give_back({}, close_reason_);  // the client left while the pool readied it
    return;
  }
  ++server->pool().stats.server_assignments;
  if (waits_for_pool(state_)) {
    worker_.metrics().pool_wait_done(wait_started_ns_ != 0 ? uv_hrtime() - wait_started_ns_ : 0,
                                     server->pool().stats);
    wait_started_ns_ = 0;
  }
  ServerLease& slot = slot_for(waiting_role_);
  drop_server(slot);
  slot = ServerLease(server);
  if (state_ == ClientState::LoginWait &&
      !finish_login(server->params(), server->pool().backend().name.c_str(), server)) {
    return;  // the client is closing: its close releases the server just linked
  }
  if (waits_for_pool(state_)) set_state(ClientState::Ready);
  pump();
  release_idle_servers();  // a login-only checkout in transaction pooling goes straight back
}

// Also in session pooling: a server of a draining pool (its backend removed by a reload) goes back at the first
// transaction boundary, and the next statement is routed afresh.
void ClientConn::release_idle_servers() {
  // Not while a request is being dispatched or waits in the buffer: it is about to use the server.
  if (!open() || pumping_ || !reads_requests(state_) || in_.unparsed() > 0) return;
  drop_idle_servers();
}

bool ClientConn::in_transaction() const {
  if (!session_.deferred_begin.empty()) return true;  // BEGIN answered by pgmux: the transaction has begun for
                                                      // the client
  for (const ServerConn* server : {primary_.get(), standby_.get()}) {
    if (server && (server->has_outstanding() || server->tx_status() != 'I')) return true;
  }
  return false;
}

bool ClientConn::accept_unsolicited(ServerConn* server) {
  if (!open() || server != primary_ || state_ != ClientState::Ready || copying() || routed_ || preparing_) {
    return false;
  }
  if (active_ && (active_->has_outstanding() || active_->mid_message())) return false;
  make_active(server);
  return true;
}

void ClientConn::drop_idle_servers() {
  for (ServerLease* lease : {&primary_, &standby_}) {
    ServerConn* server = lease->get();
    if (!server || server == routed_server() || server->state() != ServerState::Linked) continue;
    if (server->has_outstanding() || server->tx_status() != 'I' || (server == active_ && copying())) continue;
    if (server->pool().draining()) {
      if (server == primary_ && (session_.pin_reason || session_.route.pinned_primary)) {
        LOG_WARN("%s: backend %s was removed by a reload; the session state only its server had (%s) is lost",
                 log_prefix().c_str(), server->pool().backend().name.c_str(),
                 session_.pin_reason ? session_.pin_reason : "pinned to the primary");
      }
    } else if (!transaction_pooling() || session_.pin_reason) {
      continue;  // session pooling keeps its servers; a pinned client keeps the servers its state lives on
    }
    drop_server(*lease);
  }
}

bool ClientConn::finish_login(const SessionParams& server_params, const char* via, const ServerConn* login_server) {
  auth_.reset();       // what it proved went to the pools it asked (adopt_login_secret)
  primary_wait_ = {};  // a login held for a failover is through
  // Session pooling: the client's pid is that of the server it logged in through and keeps (the primary when
  // there is one), so pg_backend_pid(), NOTIFY's pid and pg_terminate_backend agree with BackendKeyData as on a
  // direct connection. The secret key stays pgmux's: cancel requests come to pgmux, which knows where the
  // client's request runs. Transaction pooling moves between servers: a pid of pgmux's own.
  const int32_t pid = login_server && !transaction_pooling() ? login_server->key().process_id : 0;
  const CancelRegistry::Key key = worker_.cancels().add(cancel_slot_, pid);
  cancel_key_ = key;
  // A role or database default pgmux learned from an earlier session's refusal counts from the start.
  session_.route.serializable_server_default = worker_.serializable_default_of(database_, user_config_->name);
  session_.route.serializable_default = session_.resets_to_serializable();
  ByteVector out;
  for (const auto& [name, value] : server_params.entries()) {
    build_parameter_status(out, name, value);
    session_.misread_noted = session_.misread_noted || routing::lexer_may_misread(name, value);
  }
  build_backend_key_data(out, key.process_id, key.secret_key);
  build_ready_for_query(out, 'I');
  send_owned(std::move(out));
  worker_.metrics().client_logins.add();
  last_activity_ = worker_.now();
  // Only once a server took the login (or one did before): a database name a client made up through "*" must
  // not get a catalog slot, which the control loop would keep trying to load.
  if (database_config_) {
    catalog_ = CatalogReader(worker_.shared().catalogs.slot_for(database_config_->server_database_for(database_)));
  }
  if (!open()) return false;
  LOG_INFO("%s: login ok (pid %d%s, parameters from %s, %s pooling)", log_prefix().c_str(), key.process_id,
           pid != 0 ? ", its server's" : ", pgmux's own", via, conf::to_string(pool_mode_));
  return true;
}

void ClientConn::on_server_unavailable(const FailureReport& failure) {
  const int failed_backend = waiting_pool_ ? waiting_pool_->backend_index() : -1;
  waiting_pool_ = nullptr;
  if (waiting_role_ == Role::Standby && read_on_primary_instead(failure)) return;
  std::optional<routing::Route> route = routed_ ? routed_->route : std::nullopt;
  routed_.reset();
  if (waiting_role_ == Role::Primary && hold_for_failover(failure, route, failed_backend)) return;
  // A request after login never reached a server: the session goes on with an error for it (the table's
  // severity); before login the login fails.
  if (logged_in()) resume_requests();
  fail(failure);
  if (logged_in() && open()) pump();
}

double ClientConn::monotonic_now() const { return monotonic_seconds(); }  // the prober's clock


void ClientConn::drop_server(ServerLease& lease, std::optional<Failure> why) {
  ServerConn* server = lease.get();
  if (!server) return;
  ServerFacts facts;  // what only the client knows; the pool adds the rest
  facts.copy_in = server == active_ && copying();
  // A pinned client left state only a full reset removes (temp tables, locks, cursors, LISTEN, SQL PREPARE).
  facts.session_state = transaction_pooling() && session_.pin_reason != nullptr;
  facts.cancel_on_its_way = let_go_of(server);
  // WITH HOLD cursors on it go with it (a failover, a reload that removed its backend): no statement is sent to
  // the next standby connection for them (client_standby_cursors.cpp).
  if (&lease == &standby_) session_.standby_hold_cursors.clear();
  lease.give_back(facts, why);
}

// The one place the client's observers of a server (which one is relayed, is the cancel target, holds the
// unnamed statement, is being prepared) are cleared, whichever way the server leaves: given back, or lost. True
// when a cancel request sent to it may still be on its way: given back, it must then be closed.
bool ClientConn::let_go_of(ServerConn* server) {
  // One locked step of the slot: no cancel takes the server as a target from now on (it must never reach the
  // server's next client), and the slot says whether one may already be on its way and forgets its count.
  const bool cancel_on_its_way = cancel_slot_ && cancel_slot_->release(server->id());
  if (server == active_) active_ = nullptr;
  unnamed_.forget_server(server);
  if (server == preparing_) preparing_ = nullptr;
  return cancel_on_its_way;
}

void ClientConn::on_forward_done() {
  in_.consume_to(in_.parsed());
  pump();
}

void ClientConn::fail(const FailureReport& failure) {
  if (!open()) return;
  const Severity severity = effective_severity(failure.failure(), logged_in());
  if (severity == Severity::Error) {
    answer_locally_with_error(failure);
    return;
  }
  if (!close_reason_) close_reason_ = failure.failure();
  ByteVector out;
  report_failure(failure, severity, worker_.metrics(), log_prefix(), out);
  if (!logged_in() && (severity == Severity::Fatal || severity == Severity::FatalUnsent)) {
    worker_.metrics().client_login_failures.add();
  }
  send_owned(std::move(out));
  close();
}

std::string ClientConn::log_prefix() const {
  // User and database are the client's words from its startup packet: escaped, they cannot forge a log line.
  return format_log("C-%llu %s user=%s db=%s", static_cast<unsigned long long>(id_), peer_.c_str(),
                    escape_for_log(user_, 64).c_str(), escape_for_log(database_, 64).c_str());
}

void ClientConn::on_read_end(int status) {
  // Requests not sent yet run first, and the session ends after their replies (end_session). A client gone while
  // only requests already sent run is closed at once, as before and as PgBouncer does: its server is closed
  // mid-request, not held until that query ends (the backend goes on with what it read until a send fails). A
  // client that shut down only its sending side then misses their replies, which PostgreSQL would send (README).
  if (status == UV_EOF && holds_unsent_requests()) {
    pump();
    return;
  }
  if (!close_reason_) {
    close_reason_ = status == UV_EOF ? Failure::ClientClosed : Failure::ClientSocketError;
    close_status_ = status == UV_EOF ? 0 : status;
  }
  close();
}

void ClientConn::on_write_error(int status) {
  if (!close_reason_) {
    close_reason_ = Failure::ClientSocketError;
    close_status_ = status;
  }
  close();
}

void ClientConn::on_closing() {
  const char* before = to_string(state_);
  set_state(ClientState::Closing);  // off every wait list
  for (ServerLease* lease : {&primary_, &standby_}) {
    drop_server(*lease, close_reason_);
  }
  if (cancel_key_) worker_.cancels().remove(*cancel_key_);
  worker_.remove_client(this);
  const Failure reason = close_reason_.value_or(Failure::ClientClosed);
  worker_.metrics().count_disconnect(reason);
  LOG_INFO("%s: disconnect (%s%s%s) in state %s", log_prefix().c_str(), failure_row(reason).log,
           close_status_ ? ": " : "", close_status_ ? uv_strerror(close_status_) : "", before);
}

}  // namespace pgmux::proxy
