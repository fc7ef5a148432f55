#include "proxy/client/client_conn.hpp"

#include "proxy/ops/admin/console.hpp"

#include <arpa/inet.h>

#include <cctype>

#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/forward_batch.hpp"
#include "routing/read_your_writes.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/control/probe_connection.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/client/sql_text.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
// Authentication messages are small; refusing big ones before login keeps strangers from making us allocate.
constexpr uint32_t kMaxAuthMessage = 10000;

std::string peer_name(uv_tcp_t* tcp) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    uv_ip4_name(in, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    uv_ip6_name(in6, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}
}  // namespace


const char* to_string(ClientState s) {
  switch (s) {
    case ClientState::Startup: return "startup";
    case ClientState::Auth: return "auth";
    case ClientState::WaitingServer: return "waiting";
    case ClientState::Linked: return "active";
    case ClientState::Closing: return "closing";
  }
  return "?";
}

ClientConn::ClientConn(Worker& worker, uint64_t id) : StreamConn(worker.loop()), worker_(worker), id_(id) {
  count_bytes({&worker.metrics().client_bytes_received, &worker.metrics().client_bytes_sent});
}

ClientConn::~ClientConn() = default;

bool ClientConn::accept(uv_stream_t* listener) {
  if (uv_accept(listener, stream()) != 0) {
    close();
    return false;
  }
  uv_tcp_nodelay(tcp(), 1);
  peer_ = peer_name(tcp());
  created_at_ = worker_.now();
  worker_.add_client(this);
  start_reading();
  return true;
}

void ClientConn::set_state(ClientState s) {
  LOG_DEBUG("C-%llu %s: %s -> %s", static_cast<unsigned long long>(id_), peer_.c_str(), to_string(state_), to_string(s));
  state_ = s;
}

void ClientConn::on_data() {
  switch (state_) {
    case ClientState::Startup: handle_startup(); break;
    case ClientState::Auth: handle_auth(); break;
    case ClientState::Linked: pump(); break;
    case ClientState::WaitingServer:  // kept in the buffer until a server is linked
    case ClientState::Closing: break;
  }
}

void ClientConn::handle_startup() {
  while (open() && state_ == ClientState::Startup) {
    Frame frame = next_startup_frame(in_.unparsed_bytes());
    if (frame.status == FrameStatus::NeedMore) return;
    if (frame.status == FrameStatus::Error) {
      close_reason_ = "invalid startup packet";
      fail(sqlstate::kProtocolViolation, std::string("invalid startup packet: ") + to_string(frame.error));
      return;
    }
    StartupPacket packet = parse_startup_packet(in_.unparsed_bytes().first(frame.total()));
    in_.advance_parsed(frame.total());
    in_.consume_to(in_.parsed());
    if (std::holds_alternative<SslRequest>(packet) || std::holds_alternative<GssEncRequest>(packet)) {
      // No TLS or GSS encryption on this listener: 'N' tells the client to go on in plain text.
      send_owned(ByteVector{std::byte{'N'}});
      continue;
    }
    if (auto* cancel = std::get_if<CancelRequest>(&packet)) {
      auto slot = worker_.cancels().find(cancel->process_id, cancel->secret_key);
      auto target = slot ? slot->get() : std::nullopt;
      if (target) {
        LOG_INFO("C-%llu %s: forwarding cancel request for client pid %d", static_cast<unsigned long long>(id_),
                 peer_.c_str(), cancel->process_id);
        send_cancel_request(loop(), *target);
      } else {
        LOG_INFO("C-%llu %s: cancel request for unknown key (pid %d) ignored", static_cast<unsigned long long>(id_),
                 peer_.c_str(), cancel->process_id);
      }
      close_reason_ = "cancel request";
      close();
      return;
    }
    if (auto* error = std::get_if<StartupParseError>(&packet)) {
      close_reason_ = "bad startup packet";
      fail(sqlstate::kProtocolViolation, error->message);
      return;
    }
    handle_startup_message(std::get<StartupMessage>(packet));
  }
}

void ClientConn::handle_startup_message(const StartupMessage& startup) {
  const std::string* user = startup.find("user");
  if (!user || user->empty()) {
    fail(sqlstate::kInvalidAuthorization, "no PostgreSQL user name specified in startup packet");
    return;
  }
  user_ = *user;
  const std::string* database = startup.find("database");
  database_ = database && !database->empty() ? *database : user_;
  if (startup.find("replication")) {
    fail(sqlstate::kFeatureNotSupported, "pgmux does not support replication connections");
    return;
  }
  for (const auto& [name, value] : startup.parameters) {
    if (name == "options") {
      if (!parse_options_parameter(value, wanted_params_)) {
        fail(sqlstate::kFeatureNotSupported,
             "pgmux supports only \"-c name=value\" settings in the options startup parameter");
        return;
      }
    } else if (!is_connection_key(name)) {
      wanted_params_.set(name, value);
    }
  }

  config_ = worker_.config();
  user_config_ = config_->find_user(user_);
  if (!user_config_) {
    fail(sqlstate::kInvalidAuthorization, "role \"" + user_ + "\" does not exist");
    return;
  }
  conf::AuthMethod method = user_config_->auth_method.value_or(config_->auth_method);
  std::optional<ScramSecret> secret;
  if (method == conf::AuthMethod::ScramSha256) {
    const ScramSecret* cached = worker_.scram_secret_for(*user_config_);
    if (cached) secret = *cached;
  }
  auth_ = std::make_unique<ClientAuth>(*user_config_, method, std::move(secret));
  set_state(ClientState::Auth);
  ClientAuth::Step step = auth_->start();
  if (step.verdict == ClientAuth::Verdict::Failed) {
    close_reason_ = "authentication failed";
    fail(step.sqlstate, step.message);
    return;
  }
  send_owned(std::move(step.reply));
  if (step.verdict == ClientAuth::Verdict::Ok) auth_succeeded();
}

void ClientConn::handle_auth() {
  while (open() && state_ == ClientState::Auth) {
    Frame frame = next_frame(in_.unparsed_bytes(), kMaxAuthMessage);
    if (frame.status == FrameStatus::NeedMore) {
      in_.make_room(kFrameHeaderSize);
      return;
    }
    if (frame.status == FrameStatus::Error || frame.tag != frontend::kPassword) {
      close_reason_ = "protocol violation during authentication";
      fail(sqlstate::kProtocolViolation,
           frame.status == FrameStatus::Error
               ? std::string("invalid authentication message: ") + to_string(frame.error)
               : std::string("expected password response, got message type \"") + frame.tag + "\"");
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
    if (step.verdict == ClientAuth::Verdict::Failed) {
      close_reason_ = "authentication failed";
      LOG_WARN("C-%llu %s user=%s db=%s: authentication failed: %s", static_cast<unsigned long long>(id_),
               peer_.c_str(), user_.c_str(), database_.c_str(), step.message.c_str());
      fail(step.sqlstate, step.message);
      return;
    }
    send_owned(std::move(step.reply));
    if (step.verdict == ClientAuth::Verdict::Ok) auth_succeeded();
  }
}

void ClientConn::auth_succeeded() {
  ByteVector ok;
  build_authentication_ok(ok);
  send_owned(std::move(ok));

  if (database_ == AdminConsole::kDatabase) {
    start_admin_session();
    return;
  }
  database_config_ = config_->find_database(database_);
  if (!database_config_) {
    close_reason_ = "unknown database";
    fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
    return;
  }
  update_backend_mask(*worker_.config());
  pool_mode_ = conf::Config::effective_pool_mode(user_config_, *database_config_);
  cancel_slot_ = std::make_shared<CancelSlot>();
  set_state(ClientState::WaitingServer);
  wait_started_ = worker_.now();

  Role role = Role::Primary;
  const int backend = login_backend(&role);
  // Transaction pooling needs no server to log a client in once the pool knows what a server reports: that set,
  // with the client's own startup values applied, as PostgreSQL would report them.
  if (transaction_pooling()) {
    std::string error;
    Pool* pool = worker_.pool_for(database_, *database_config_, *user_config_, pool_mode_, backend, &error);
    SessionParams params = pool ? pool->login_params() : SessionParams{};
    if (!params.entries().empty()) {
      if (auto key = auth_->client_key(); key && pool->login().scram_secret) pool->login().client_key = key;
      auth_.reset();
      for (const auto& [name, value] : wanted_params_.entries()) {
        if (params.find(name)) params.set(name, value);
      }
      finish_login(params, "the pool's parameters");
      set_state(ClientState::Linked);
      wait_ = Wait::None;
      pump();
      return;
    }
  }
  if (!acquire(backend, role)) return;
  if (auto key = auth_->client_key(); key && waiting_pool_ && waiting_pool_->login().scram_secret) {
    waiting_pool_->login().client_key = key;
  }
  auth_.reset();
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
  route_state_.backend_mask = mask;
}

// Log in through the primary when there is one, else through any readable standby: its ParameterStatus set is
// what the client sees, as on a direct connection.
int ClientConn::login_backend(Role* role) const {
  const routing::BackendsView& view = worker_.view();
  const uint64_t mask = route_state_.backend_mask;
  *role = Role::Primary;
  if (view.primary >= 0 && (mask >> view.primary) & 1) return view.primary;
  for (size_t i = 0; i < view.backends.size() && i < 64; ++i) {
    if (((mask >> i) & 1) && view.backends[i].readable) {
      *role = Role::Standby;
      return static_cast<int>(i);
    }
  }
  // Nothing known to be up: before the first probe round, or everything is down. Try the first backend of the
  // database: a clear connection error beats waiting.
  for (size_t i = 0; i < worker_.config()->backends.size() && i < 64; ++i) {
    if ((mask >> i) & 1) return static_cast<int>(i);
  }
  return -1;
}

void ClientConn::on_config_changed(const conf::Config& config) {
  if (database_config_) update_backend_mask(config);
}

void ClientConn::on_pool_draining(Pool* pool) {
  if (!open()) return;
  if (waiting_pool_ == pool) {
    waiting_pool_ = nullptr;
    if (wait_ == Wait::Server) wait_ = Wait::None;
    if (!logged_in_) {
      Role role = Role::Primary;
      const int backend = login_backend(&role);
      acquire(backend, role);
      return;
    }
  }
  release_idle_servers();
  pump();
}

// Takes a server for `role` from the backend's pool; the pool calls on_server_ready (maybe right away).
bool ClientConn::acquire(int backend_index, Role role) {
  std::string error;
  Pool* pool = worker_.pool_for(database_, *database_config_, *user_config_, pool_mode_, backend_index, &error);
  if (!pool) {
    close_reason_ = "no pool";
    fail(sqlstate::kConnectionFailure, error);
    return false;
  }
  waiting_pool_ = pool;
  waiting_role_ = role;
  wait_ = Wait::Server;
  wait_started_ = worker_.now();
  wait_started_ns_ = uv_hrtime();
  pool->request(this);
  return open();
}

void ClientConn::on_server_ready(PoolServer* pooled) {
  auto* server = static_cast<ServerConn*>(pooled);  // a worker's pools hold ServerConns only
  waiting_pool_ = nullptr;
  if (!open()) {
    server->pool().release(server, server->reusable());
    return;
  }
  if (wait_started_ns_ != 0) {
    worker_.metrics().pool_wait_done(uv_hrtime() - wait_started_ns_, server->pool().stats);
    wait_started_ns_ = 0;
  }
  ServerConn*& slot = slot_for(waiting_role_);
  if (slot) drop_server(slot, slot->reusable());
  slot = server;
  if (!logged_in_) finish_login(server->params(), server->pool().backend().name.c_str());
  if (wait_ == Wait::Server) wait_ = Wait::None;
  set_state(ClientState::Linked);
  pump();
  release_idle_servers();  // a login-only checkout in transaction pooling goes straight back
}

// Also in session pooling: a server of a draining pool (its backend removed by a reload) goes back at the first
// transaction boundary, and the next statement is routed afresh.
void ClientConn::release_idle_servers() {
  // Not while a request is being dispatched or waits in the buffer: it is about to use the server.
  if (!open() || pumping_ || wait_ != Wait::None || in_.unparsed() > 0) return;
  drop_idle_servers();
}

bool ClientConn::in_transaction() const {
  if (!deferred_begin_.empty()) return true;  // BEGIN answered by pgmux: the transaction has begun for the client
  for (const ServerConn* server : {primary_, standby_}) {
    if (server && (server->has_outstanding() || server->tx_status() != 'I')) return true;
  }
  return false;
}

void ClientConn::drop_idle_servers() {
  for (ServerConn* server : {primary_, standby_}) {
    if (!server || server == prepared_for_ || server->state() != ServerState::Linked) continue;
    if (server->has_outstanding() || server->tx_status() != 'I' || (server == active_ && copy_in_)) continue;
    if (server->pool().draining()) {
      if (server == primary_ && (pin_reason_ || route_state_.pinned_primary)) {
        LOG_WARN("C-%llu user=%s db=%s: backend %s was removed by a reload; the session state only its server had "
                 "(%s) is lost", static_cast<unsigned long long>(id_), user_.c_str(), database_.c_str(),
                 server->pool().backend().name.c_str(), pin_reason_ ? pin_reason_ : "pinned to the primary");
      }
    } else if (!transaction_pooling() || pin_reason_) {
      continue;  // session pooling keeps its servers; a pinned client keeps the servers its state lives on
    }
    drop_server(server, server->reusable());
  }
}

void ClientConn::finish_login(const SessionParams& server_params, const char* via) {
  CancelRegistry::Key key = worker_.cancels().add(cancel_slot_);
  cancel_key_pid_ = key.process_id;
  ByteVector out;
  for (const auto& [name, value] : server_params.entries()) build_parameter_status(out, name, value);
  build_backend_key_data(out, key.process_id, key.secret_key);
  build_ready_for_query(out, 'I');
  send_owned(std::move(out));
  logged_in_ = true;
  worker_.metrics().client_logins.add();
  last_activity_ = worker_.now();
  LOG_INFO("C-%llu %s user=%s db=%s: login ok (parameters from %s, %s pooling)", static_cast<unsigned long long>(id_),
           peer_.c_str(), user_.c_str(), database_.c_str(), via, conf::to_string(pool_mode_));
}

void ClientConn::on_server_unavailable(const std::string& sqlstate, const std::string& message,
                                       const std::string& detail) {
  waiting_pool_ = nullptr;
  if (!logged_in_) {
    close_reason_ = "no server available";
    fail(sqlstate, message, detail);
    return;
  }
  // A request after login: it never reached a server, so the session goes on with an error for it.
  wait_ = Wait::None;
  answer_locally_with_error(sqlstate, message, detail);
  pump();
}

double ClientConn::monotonic_now() const { return monotonic_seconds(); }  // the prober's clock


void ClientConn::drop_server(ServerConn* server, bool reusable) {
  if (server == active_ && cancel_slot_) cancel_slot_->clear();  // a cancel must never reach its next client
  if (server == prepared_for_) prepared_for_ = nullptr;
  if (server == primary_) primary_ = nullptr;
  if (server == standby_) standby_ = nullptr;
  if (server == active_) active_ = nullptr;
  if (server == unnamed_statement_server_) unnamed_statement_server_ = nullptr;
  // A pinned client left state only a full reset removes (temp tables, locks, cursors, LISTEN, SQL PREPARE).
  const bool discard = transaction_pooling() && pin_reason_ != nullptr;
  server->pool().release(server, reusable, discard);
}

void ClientConn::on_forward_done() {
  in_.consume_to(in_.parsed());
  pump();
}

void ClientConn::fail(const std::string& state, const std::string& message, const std::string& detail) {
  if (!open()) return;
  if (!close_reason_) close_reason_ = "error";
  LOG_INFO("C-%llu %s user=%s db=%s: FATAL %s %s", static_cast<unsigned long long>(id_), peer_.c_str(), user_.c_str(),
           database_.c_str(), state.c_str(), message.c_str());
  ByteVector out;
  build_error_response(out, "FATAL", state, message, detail);
  worker_.metrics().count_error(state);
  if (!logged_in_) worker_.metrics().client_login_failures.add();
  send_owned(std::move(out));
  close();
}

void ClientConn::on_read_end(int status) {
  close_reason_ = status == UV_EOF ? "client closed the connection" : uv_strerror(status);
  close();
}

void ClientConn::on_write_error(int status) {
  close_reason_ = uv_strerror(status);
  close();
}

void ClientConn::on_closing() {
  const char* before = to_string(state_);
  set_state(ClientState::Closing);
  if (waiting_pool_) waiting_pool_->withdraw(this);
  waiting_pool_ = nullptr;
  worker_.stop_waiting_for_primary(this);
  worker_.stop_holding(this);
  for (ServerConn* server : {primary_, standby_}) {
    if (!server) continue;
    bool reusable = server->reusable() && !(server == active_ && copy_in_);
    if (!reusable) {
      LOG_INFO("C-%llu: server S-%llu was mid-request, closing it instead of reusing it",
               static_cast<unsigned long long>(id_), static_cast<unsigned long long>(server->id()));
    }
    drop_server(server, reusable);
  }
  if (cancel_key_pid_) worker_.cancels().remove(cancel_key_pid_);
  worker_.remove_client(this);
  LOG_INFO("C-%llu %s user=%s db=%s: disconnect (%s) in state %s", static_cast<unsigned long long>(id_),
           peer_.c_str(), user_.c_str(), database_.c_str(), close_reason_ ? close_reason_ : "closed", before);
}

}  // namespace pgmux::proxy
