#include "proxy/client_conn.hpp"

#include <arpa/inet.h>

#include <cctype>

#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/forward_batch.hpp"
#include "routing/read_your_writes.hpp"
#include "proxy/log.hpp"
#include "proxy/pool.hpp"
#include "proxy/probe_connection.hpp"
#include "proxy/server_conn.hpp"
#include "proxy/worker.hpp"

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

namespace {
// True when sql's first keyword (after leading whitespace) is `keyword`, any case.
bool starts_with_keyword(std::string_view sql, std::string_view keyword) {
  size_t i = 0;
  while (i < sql.size() && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r')) ++i;
  if (sql.size() - i < keyword.size()) return false;
  for (size_t k = 0; k < keyword.size(); ++k) {
    if (std::toupper(static_cast<unsigned char>(sql[i + k])) != keyword[k]) return false;
  }
  return sql.size() == i + keyword.size() || !std::isalnum(static_cast<unsigned char>(sql[i + keyword.size()]));
}
// Transaction pooling shares prepared statements between clients by content: the server-side name is a hash of
// the Parse message after the statement name (query text and parameter types).
std::string server_statement_name(protocol::ByteView parse_message) {
  size_t name_end = 5;
  while (name_end < parse_message.size() && parse_message[name_end] != std::byte{0}) ++name_end;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (size_t i = name_end + 1; i < parse_message.size(); ++i) {
    hash ^= static_cast<uint8_t>(parse_message[i]);
    hash *= 1099511628211ull;
  }
  char name[32];
  snprintf(name, sizeof name, "pgmux_%016llx", static_cast<unsigned long long>(hash));
  return name;
}

// RESET ALL or DISCARD ALL: undoes every earlier session command.
bool resets_all_settings(std::string_view sql) {
  if (!starts_with_keyword(sql, "RESET") && !starts_with_keyword(sql, "DISCARD")) return false;
  size_t i = sql.find_first_of(" \t\r\n");
  if (i == std::string_view::npos) return false;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  return starts_with_keyword(sql.substr(i), "ALL");
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

ClientConn::ClientConn(Worker& worker, uint64_t id) : StreamConn(worker.loop()), worker_(worker), id_(id) {}

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
    if (frame.status == FrameStatus::NeedMore) return;
    if (frame.status == FrameStatus::Error || frame.tag != frontend::kPassword) {
      close_reason_ = "protocol violation during authentication";
      fail(sqlstate::kProtocolViolation,
           frame.status == FrameStatus::Error
               ? std::string("invalid authentication message: ") + to_string(frame.error)
               : std::string("expected password response, got message type \"") + frame.tag + "\"");
      return;
    }
    if (in_.unparsed() < frame.total()) {
      in_.consume_to(in_.parsed());
      in_.reserve_message(frame.total());
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

  database_config_ = config_->find_database(database_);
  if (!database_config_) {
    close_reason_ = "unknown database";
    fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
    return;
  }
  // The database's backends, as a mask over the config's backend list (the view uses the same order).
  uint64_t mask = 0;
  for (size_t i = 0; i < config_->backends.size() && i < 64; ++i) {
    const auto& names = database_config_->backends;
    if (names.empty() || std::find(names.begin(), names.end(), config_->backends[i].name) != names.end()) {
      mask |= uint64_t{1} << i;
    }
  }
  route_state_.backend_mask = mask;
  pool_mode_ = conf::Config::effective_pool_mode(user_config_, *database_config_);
  cancel_slot_ = std::make_shared<CancelSlot>();
  set_state(ClientState::WaitingServer);
  wait_started_ = worker_.now();

  // Log in through the primary when there is one, else through any readable standby: its ParameterStatus set
  // is what the client sees, as on a direct connection.
  const routing::BackendsView& view = worker_.view();
  int login_backend = -1;
  Role role = Role::Primary;
  if (view.primary >= 0 && (mask >> view.primary) & 1) {
    login_backend = view.primary;
  } else {
    for (size_t i = 0; i < view.backends.size(); ++i) {
      if (((mask >> i) & 1) && view.backends[i].readable) {
        login_backend = static_cast<int>(i);
        role = Role::Standby;
        break;
      }
    }
  }
  if (login_backend < 0) {
    // Nothing known to be up: before the first probe round, or everything is down. Try the first backend of the
    // database: a clear connection error beats waiting.
    for (size_t i = 0; i < config_->backends.size(); ++i) {
      if ((mask >> i) & 1) {
        login_backend = static_cast<int>(i);
        break;
      }
    }
  }
  // Transaction pooling needs no server to log a client in once the pool knows what a server reports: that set,
  // with the client's own startup values applied, as PostgreSQL would report them.
  if (transaction_pooling()) {
    std::string error;
    Pool* pool = worker_.pool_for(config_, *database_config_, *user_config_, database_, login_backend, &error);
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
  if (!acquire(login_backend, role)) return;
  if (auto key = auth_->client_key(); key && waiting_pool_ && waiting_pool_->login().scram_secret) {
    waiting_pool_->login().client_key = key;
  }
  auth_.reset();
}

// Takes a server for `role` from the backend's pool; the pool calls on_server_ready (maybe right away).
bool ClientConn::acquire(int backend_index, Role role) {
  std::string error;
  Pool* pool = worker_.pool_for(config_, *database_config_, *user_config_, database_, backend_index, &error);
  if (!pool) {
    close_reason_ = "no pool";
    fail(sqlstate::kConnectionFailure, error);
    return false;
  }
  waiting_pool_ = pool;
  waiting_role_ = role;
  wait_ = Wait::Server;
  wait_started_ = worker_.now();
  pool->request(this);
  return open();
}

void ClientConn::on_server_ready(ServerConn* server) {
  waiting_pool_ = nullptr;
  if (!open()) {
    server->pool().release(server, server->reusable());
    return;
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

void ClientConn::release_idle_servers() {
  // Not while a request is being dispatched or waits in the buffer: it is about to use the server.
  if (!transaction_pooling() || !open() || pumping_ || wait_ != Wait::None || in_.unparsed() > 0) return;
  for (ServerConn* server : {primary_, standby_}) {
    if (!server || server == prepared_for_ || server->state() != ServerState::Linked) continue;
    if (server->has_outstanding() || server->tx_status() != 'I' || (server == active_ && copy_in_)) continue;
    if (pin_reason_ && server == primary_) continue;
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

// ---- request path ----------------------------------------------------------------------------------------

void ClientConn::pump() {
  if (pumping_) {
    repump_ = true;
    return;
  }
  pumping_ = true;
  do {
    repump_ = false;
    pump_requests();
  } while (repump_ && open());
  pumping_ = false;
}

void ClientConn::pump_requests() {
  const uint32_t max_size = worker_.max_message_size();
  while (open() && state_ == ClientState::Linked && wait_ == Wait::None && !pinned()) {
    if (copy_in_) {
      if (!relay_copy()) break;  // no complete progress: wait for more bytes (or for the pinned write)
      continue;
    }
    if (in_.unparsed() == 0) break;
    ScanResult scan = scan_request(in_.unparsed_bytes(), max_size, size_t{4} * max_size, request_);
    if (scan.status == ScanStatus::NeedMore) {
      if (scan.bytes_needed > in_.capacity() - in_.parsed()) {
        in_.consume_to(in_.parsed());
        in_.reserve_message(scan.bytes_needed);
      }
      break;
    }
    if (scan.status == ScanStatus::Error) {
      close_reason_ = "invalid message";
      fail(sqlstate::kProtocolViolation, scan.error);
      return;
    }
    if (!dispatch()) break;
  }
  if (!open() || pinned()) return;
  if (wait_ == Wait::None) {
    in_.compact();
    in_.shrink_if_empty();
  }
  start_reading();
}

// Streams COPY FROM STDIN data to the server that asked for it, until CopyDone or CopyFail.
bool ClientConn::relay_copy() {
  ServerConn* server = active_;
  if (!server) {
    copy_in_ = false;
    return true;
  }
  ForwardBatch batch;
  size_t pos = in_.parsed();
  while (!batch.full() && copy_in_) {
    size_t available = in_.end() - pos;
    if (copy_pass_remaining_ > 0) {
      if (available == 0) break;
      size_t n = std::min(copy_pass_remaining_, available);
      batch.add(in_.data() + pos, n);
      pos += n;
      copy_pass_remaining_ -= n;
      continue;
    }
    Frame frame = next_frame(ByteView(in_.data() + pos, available), worker_.max_message_size());
    if (frame.status == FrameStatus::NeedMore) break;
    if (frame.status == FrameStatus::Error) {
      close_reason_ = "invalid message";
      fail(sqlstate::kProtocolViolation, std::string("invalid frontend message: ") + to_string(frame.error));
      return false;
    }
    // Anything but CopyData ends COPY mode on the server (CopyDone, CopyFail, or a message it will reject).
    if (frame.tag != frontend::kCopyData) copy_in_ = false;
    size_t n = std::min(frame.total(), available);
    batch.add(in_.data() + pos, n);
    pos += n;
    copy_pass_remaining_ = frame.total() - n;
    if (!copy_in_ && copy_pass_remaining_ > 0) copy_in_ = true;  // finish streaming the ending message first
  }
  in_.advance_parsed(pos - in_.parsed());
  if (batch.empty()) return false;
  if (!server->forward_from(*this, batch.bufs(), batch.count())) return false;
  in_.consume_to(in_.parsed());
  // Go on when more may be buffered: a full batch, or COPY just ended (a Sync or the next query may follow).
  return open() && (batch.full() || !copy_in_);
}

routing::Classification ClientConn::classify_request() {
  routing::Classifier& classifier = worker_.classifier();
  routing::Classification result;
  switch (request_.kind) {
    case RequestKind::Query:
      return classifier.classify(request_.sql);
    case RequestKind::FunctionCall:
      result.kind = routing::StatementKind::Write;
      result.reason = "function call";
      return result;
    default:
      break;
  }
  // An extended batch: the strictest class of every statement it parses or uses.
  bool any = false;
  auto merge = [&](const routing::Classification& c) {
    if (!any || (routing::is_read_only_statement(result, route_state_) &&
                 !routing::is_read_only_statement(c, route_state_))) {
      bool hint = result.primary_hint || c.primary_hint;
      bool pins = result.pins_primary || c.pins_primary;
      result = c;
      result.primary_hint = hint;
      result.pins_primary = pins;
    } else {
      result.primary_hint |= c.primary_hint;
      result.pins_primary |= c.pins_primary;
    }
    any = true;
  };
  for (const auto& parse : request_.parses) merge(classifier.classify(parse.sql));
  for (auto name : request_.used) {
    auto it = prepared_.find(std::string(name));
    if (it != prepared_.end()) merge(it->second.classification);
  }
  if (!any) {
    result.kind = routing::StatementKind::Empty;  // Sync, Flush, portal ops: where the client's state is
    result.reason = "no statement";
  }
  return result;
}

bool ClientConn::dispatch() {
  switch (request_.kind) {
    case RequestKind::Terminate:
      close_reason_ = "client terminated";
      close();
      return false;
    case RequestKind::CopyMessage: {
      // COPY data sent right behind the COPY command, before CopyInResponse came back: it belongs to the server
      // running that command. With nothing in flight PostgreSQL would ignore it; so does pgmux.
      if (active_ && active_->has_outstanding()) {
        uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(in_.data() + in_.parsed()),
                                   static_cast<unsigned>(request_.size));
        in_.advance_parsed(request_.size);
        if (active_->forward_from(*this, &buf, 1)) in_.consume_to(in_.parsed());
        return open() && !pinned();
      }
      in_.advance_parsed(request_.size);
      in_.consume_to(in_.parsed());
      return true;
    }
    default:
      break;
  }
  if (discard_until_sync_ && request_.kind == RequestKind::Extended) {
    // After an error pgmux reported itself, PostgreSQL would skip to Sync; so does pgmux.
    bool sync = request_.ends_with_sync;
    in_.advance_parsed(request_.size);
    in_.consume_to(in_.parsed());
    if (sync) {
      discard_until_sync_ = false;
      ByteVector out;
      build_ready_for_query(out, 'I');
      send_owned(std::move(out));
    }
    return true;
  }
  if (outstanding_count_ == std::size(outstanding_)) {
    wait_ = Wait::Drain;  // a very deep pipeline: let replies catch up
    return false;
  }

  if (prepared_for_) {
    ServerConn* server = prepared_for_;
    prepared_for_ = nullptr;
    if (!prepare_error_.empty()) {
      // A statement this request uses could not be prepared there: the request gets that error, as it would
      // have from PostgreSQL at Parse.
      answer_locally_with_error(prepare_error_state_, prepare_error_, {});
      prepare_error_.clear();
      release_idle_servers();
      return open();
    }
    forward(server, prepared_class_);
    return open() && !pinned();
  }

  routing::Classification c = classify_request();

  // Statement pooling hands the server back after every statement, so a transaction cannot span statements.
  if (pool_mode_ == conf::PoolMode::Statement && c.kind == routing::StatementKind::TxBegin && !c.multi_statement) {
    answer_locally_with_error(sqlstate::kFeatureNotSupported,
                              "pgmux: transactions spanning several statements are not allowed in statement "
                              "pooling mode (pool_mode \"statement\")",
                              "Send the whole transaction in one query string, or use transaction pooling.");
    return open();
  }

  // A plain BEGIN is answered here and sent with the next statement, so that statement (SET TRANSACTION READ
  // ONLY, or the first write) decides where the whole transaction runs.
  const bool idle = !active_ || (!active_->has_outstanding() && active_->tx_status() == 'I');
  if (request_.kind == RequestKind::Query && c.kind == routing::StatementKind::TxBegin && !c.multi_statement &&
      !c.read_only && !route_state_.session_read_only && idle && deferred_begin_.empty() &&
      config_->routing.read_write_split) {
    deferred_begin_.assign(request_.sql);
    in_.advance_parsed(request_.size);
    in_.consume_to(in_.parsed());
    ByteVector out;
    build_command_complete(out, "BEGIN");
    build_ready_for_query(out, 'T');
    send_owned(std::move(out));
    return true;
  }
  if (!deferred_begin_.empty()) {
    if (c.kind == routing::StatementKind::Session && c.read_only) {
      c.kind = routing::StatementKind::TxBegin;  // BEGIN; SET TRANSACTION READ ONLY: a read-only transaction
    } else if (routing::is_read_only_statement(c, route_state_)) {
      c.kind = routing::StatementKind::Write;  // anything else after a plain BEGIN: a read-write transaction
      c.reason = "read-write transaction";
    }
  }

  // An extended sequence closed by Flush (no Sync) may go on with anything, writes included, on the same server:
  // start such a sequence on the primary.
  if (request_.kind == RequestKind::Extended && !request_.ends_with_sync &&
      !(active_ && active_->has_outstanding()) && routing::is_read_only_statement(c, route_state_)) {
    c.kind = routing::StatementKind::Write;
    c.reason = "extended sequence without Sync";
  }

  if (answer_parse_locally()) return true;
  ServerConn* server = choose_server(c);
  if (!server) return wait_ == Wait::None && open();  // answered here (an error): go on with the next request
  if (!prepare(server, c)) return false;
  forward(server, c);
  return open() && !pinned();
}

// Picks (or waits for) the server this request goes to. Returns null when the request must wait; the wait
// reason is in wait_ and whatever ends it pumps again.
ServerConn* ClientConn::choose_server(const routing::Classification& c) {
  const routing::BackendsView& view = worker_.view();
  const bool read_only = routing::is_read_only_statement(c, route_state_) && !c.primary_hint;

  // Requests follow the server that still owes replies or holds an open transaction.
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) {
    if (active_->tx_status() != 'I') return active_;
    const bool on_primary = active_ == primary_;
    if (on_primary || read_only) return active_;
    wait_ = Wait::Drain;  // a write behind reads pipelined to a standby: let the standby finish first
    return nullptr;
  }
  if (request_.kind == RequestKind::Extended && request_.parses.empty() && request_.used.empty() &&
      unnamed_statement_server_ && c.kind == routing::StatementKind::Empty) {
    return unnamed_statement_server_;  // Bind/Execute of the unnamed statement parsed earlier
  }
  if (c.kind == routing::StatementKind::Empty && active_) return active_;

  route_state_.held_standby = standby_ ? standby_->backend_index() : -1;
  routing::Route route = routing::route_statement(c, route_state_, view, route_settings(), worker_.balancer());
  switch (route.target) {
    case routing::RouteTarget::Primary: {
      worker_.stop_waiting_for_primary(this);
      primary_wait_deadline_ = 0;
      if (primary_ && primary_->backend_index() == route.backend) return primary_;
      if (primary_) drop_server(primary_, false);  // a former primary: its session must not carry on
      acquire(route.backend, Role::Primary);
      return nullptr;
    }
    case routing::RouteTarget::Standby: {
      if (standby_ && standby_->backend_index() == route.backend) return standby_;
      if (standby_) drop_server(standby_, standby_->reusable());
      acquire(route.backend, Role::Standby);
      return nullptr;
    }
    case routing::RouteTarget::WaitForPrimary: {
      bool any_up = false;
      for (size_t i = 0; i < view.backends.size(); ++i) {
        // Not probed yet (pgmux just started): possibly up, so wait for the prober rather than fail.
        any_up |= ((route_state_.backend_mask >> i) & 1) && (view.backends[i].reachable ||
                                                           (!view.backends[i].ever_probed && view.backends[i].failed_probes == 0));
      }
      const double now = monotonic_now();
      if (primary_wait_deadline_ == 0) primary_wait_deadline_ = now + config_->routing.failover_timeout;
      if (!any_up || now >= primary_wait_deadline_) {
        primary_wait_deadline_ = 0;
        worker_.stop_waiting_for_primary(this);
        answer_locally_with_error(
            sqlstate::kCannotConnectNow,
            any_up ? "pgmux: no primary became available within failover_timeout (" +
                         std::to_string(static_cast<int>(config_->routing.failover_timeout)) + " s)"
                   : std::string("pgmux: no backend of database \"") + database_ + "\" is reachable",
            view.alarm);
        return nullptr;
      }
      wait_ = Wait::Primary;
      worker_.wait_for_primary(this);
      return nullptr;
    }
    case routing::RouteTarget::NoBackend:
      answer_locally_with_error(sqlstate::kCannotConnectNow,
                                std::string("pgmux: no standby can serve this read (") + route.reason +
                                    ") and fallback_to_primary is off",
                                {});
      return nullptr;
  }
  return nullptr;
}

routing::RouteSettings ClientConn::route_settings() const {
  routing::RouteSettings settings;
  settings.read_write_split = config_->routing.read_write_split;
  settings.fallback_to_primary = config_->routing.fallback_to_primary;
  settings.read_your_writes = config_->routing.read_your_writes;
  return settings;
}

void ClientConn::on_view_changed() {
  if (wait_ != Wait::Primary) {
    worker_.stop_waiting_for_primary(this);
    return;
  }
  wait_ = Wait::None;
  worker_.stop_waiting_for_primary(this);
  pump();
}

// Brings the server up to date with the client's session before its request: replays session commands it has
// not run, closes statements that changed elsewhere, prepares the statements the request uses, and sends a
// deferred BEGIN. Returns false while that runs (the request goes out afterwards).
bool ClientConn::prepare(ServerConn* server, const routing::Classification& c) {
  ByteVector messages;
  int readies = 0;
  // One Query each: DISCARD ALL and friends refuse to run inside a multi-statement string.
  for (size_t i = server->applied_log; i < session_log_.size(); ++i) {
    build_query(messages, session_log_[i]);
    ++readies;
  }
  bool extended = false;
  add_statement_prep(server, messages, extended);
  if (extended) {
    build_sync(messages);
    ++readies;
  }
  if (!deferred_begin_.empty()) {
    build_query(messages, deferred_begin_);
    ++readies;
  }
  if (readies == 0) return true;
  if (server->has_outstanding()) {
    wait_ = Wait::Drain;  // its own replies first: pgmux's messages must not interleave with them
    LOG_DEBUG("C-%llu: waiting for S-%llu to finish before preparing it", static_cast<unsigned long long>(id_),
              static_cast<unsigned long long>(server->id()));
    return false;
  }
  LOG_DEBUG("C-%llu: preparing S-%llu (%d replies)", static_cast<unsigned long long>(id_),
            static_cast<unsigned long long>(server->id()), readies);

  std::vector<std::string> used;
  for (auto name : request_.used) used.emplace_back(name);
  const size_t log_size = session_log_.size();
  const bool prepares_statements = extended;
  wait_ = Wait::Prepare;
  preparing_ = server;
  prepared_class_ = c;
  server->run_internal_messages(
      std::move(messages), readies,
      [this, used = std::move(used), log_size, prepares_statements](ServerConn& s, bool ok, const std::string& state,
                                                                    const std::string& error) {
        if (!s.open()) return;  // on_server_lost told the client
        if (s.client() != this) {
          // The client left meanwhile (compared, not dereferenced): the server goes back to its pool.
          s.pool().set_state(&s, ServerState::Linked);
          s.pool().release(&s, ok && s.reusable());
          return;
        }
        if (!ok) {
          LOG_WARN("C-%llu: bringing server S-%llu up to date with the session failed: %s",
                   static_cast<unsigned long long>(id_), static_cast<unsigned long long>(s.id()), error.c_str());
          if (prepares_statements) {
            prepare_error_state_ = state;
            prepare_error_ = error;
            for (const auto& name : used) {  // not there after all
              auto it = prepared_.find(name);
              if (it != prepared_.end() && transaction_pooling()) s.server_statements.erase(it->second.server_name);
            }
          }
        }
        s.pool().set_state(&s, ServerState::Linked);
        preparing_ = nullptr;
        s.applied_log = log_size;
        s.pending_closes.clear();
        for (const auto& name : used) {
          if (prepared_.count(name) && (ok || !prepares_statements)) s.prepared.insert(name);
        }
        if (!deferred_begin_.empty()) deferred_begin_.clear();
        prepared_for_ = &s;
        wait_ = Wait::None;
        pump();
      });
  return false;
}

// Close and Parse messages that must reach the server before this request: statements the request uses that
// the server lacks, and (session pooling) client statements replaced elsewhere or (transaction pooling)
// pgmux statements evicted from the server's LRU or about to be parsed again by this request.
void ClientConn::add_statement_prep(ServerConn* server, ByteVector& messages, bool& extended) {
  if (!transaction_pooling()) {
    for (const auto& name : server->pending_closes) {
      build_close(messages, 'S', name);
      extended = true;
    }
    for (auto name : request_.used) {
      std::string key(name);
      if (server->prepared.count(key)) continue;
      auto it = prepared_.find(key);
      if (it == prepared_.end()) continue;
      messages.insert(messages.end(), it->second.parse.begin(), it->second.parse.end());
      extended = true;
    }
    return;
  }
  for (const auto& name : server->server_closes) {
    build_close(messages, 'S', name);
    extended = true;
  }
  server->server_closes.clear();
  for (const auto& parse : request_.parses) {
    if (parse.name.empty()) continue;
    std::string name = server_statement_name(parse.message);
    if (server->server_statements.erase(name)) {  // the request's own Parse creates it again
      build_close(messages, 'S', name);
      extended = true;
    }
  }
  for (auto used : request_.used) {
    bool parsed_here = false;
    for (const auto& parse : request_.parses) parsed_here |= parse.name == used;
    auto it = prepared_.find(std::string(used));
    if (parsed_here || it == prepared_.end()) continue;
    const std::string& name = it->second.server_name;
    if (server->server_statements.get(name)) continue;
    const bool ok = rewrite_statement_names(
        it->second.parse, [&](std::string_view) { return std::optional<std::string_view>(name); }, messages);
    if (!ok) continue;
    if (auto evicted = server->server_statements.put(name, true)) {
      build_close(messages, 'S', *evicted);
    }
    extended = true;
  }
}

void ClientConn::remember_statement(const ParsedStatement& parse) {
  auto& stored = prepared_[std::string(parse.name)];
  stored.classification = worker_.classifier().classify(parse.sql);
  stored.parse.assign(parse.message.begin(), parse.message.end());  // parameter types included
  if (transaction_pooling()) stored.server_name = server_statement_name(parse.message);
}

// Transaction pooling: a batch of only named Parses and a Sync (libpq's PQprepare) from a client that holds no
// server is answered here; the statement is prepared on whichever server first needs it. Clients that prepare
// synchronously (pgbench -M prepared) would otherwise wait for a server that their own thread's other
// connections hold. Limit: an invalid statement is reported at its first use instead of at Parse.
bool ClientConn::answer_parse_locally() {
  if (!transaction_pooling() || request_.kind != RequestKind::Extended || !request_.ends_with_sync ||
      request_.parses.empty() || request_.messages != request_.parses.size() + 1 || !deferred_begin_.empty()) {
    return false;
  }
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) return false;
  for (const auto& parse : request_.parses) {
    if (parse.name.empty()) return false;  // the unnamed statement lives on one server only
  }
  ByteVector out;
  for (const auto& parse : request_.parses) {
    remember_statement(parse);
    out.insert(out.end(), {std::byte{'1'}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}});  // ParseComplete
  }
  build_ready_for_query(out, 'I');
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  send_owned(std::move(out));
  return true;
}

// Transaction pooling: the request goes out with client statement names replaced by the shared server names.
bool ClientConn::forward_renamed(ServerConn* server) {
  ByteVector out;
  out.reserve(request_.size + 64);
  const bool ok = rewrite_statement_names(
      ByteView(in_.data() + in_.parsed(), request_.size),
      [&](std::string_view client_name) -> std::optional<std::string_view> {
        auto it = prepared_.find(std::string(client_name));
        if (it == prepared_.end()) return std::nullopt;
        return std::string_view(it->second.server_name);
      },
      out);
  if (!ok) return false;
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  if (!retry_statements_.empty()) retry_request_ = out;  // armed: keep what was sent
  server->send_owned(std::move(out));
  return true;
}

void ClientConn::forward(ServerConn* server, const routing::Classification& c) {
  const bool is_primary = server == primary_;
  last_activity_ = worker_.now();
  LOG_DEBUG("C-%llu: %s (%s) -> S-%llu backend %s", static_cast<unsigned long long>(id_), routing::to_string(c.kind),
            c.reason, static_cast<unsigned long long>(server->id()), server->pool().backend().name.c_str());
  // Bookkeeping for what this request leaves behind.
  Outstanding& slot = outstanding_[(outstanding_head_ + outstanding_count_) % std::size(outstanding_)];
  // Session commands change no data: they do not start read-your-writes.
  slot.write = is_primary && !routing::is_read_only_statement(c, route_state_) &&
               c.kind != routing::StatementKind::Session;
  slot.session = false;
  const bool ends_with_ready = request_.kind != RequestKind::Extended || request_.ends_with_sync;
  if (ends_with_ready) ++outstanding_count_;
  slot.extended = request_.kind == RequestKind::Extended;
  // Session commands run outside a transaction are replayed on the client's other servers (SET inside a
  // transaction may be rolled back; SHOW changes nothing).
  if (request_.kind == RequestKind::Query && c.kind == routing::StatementKind::Session && !c.multi_statement &&
      ends_with_ready && server->tx_status() == 'I' && deferred_begin_.empty() &&
      !starts_with_keyword(request_.sql, "SHOW")) {
    slot.session = true;
    pending_session_sql_.emplace_back(request_.sql);
  }
  if (slot.write) server->wrote = true;
  if (c.pins_primary && is_primary) {
    route_state_.pinned_primary = true;
    if (!pin_reason_) {
      pin_reason_ = std::string_view(c.reason) == "write function" ? "session advisory lock" : c.reason;
    }
  }
  if (transaction_pooling() && !pin_reason_ && request_.kind == RequestKind::Query &&
      c.kind == routing::StatementKind::Session && starts_with_keyword(request_.sql, "PREPARE")) {
    // An SQL-level prepared statement lives on this server only: keep it for the session.
    route_state_.pinned_primary = true;
    pin_reason_ = "SQL PREPARE";
  }
  if (pin_reason_ && transaction_pooling() && !pin_logged_) {
    pin_logged_ = true;
    worker_.pins().add(pin_reason_of(pin_reason_));
    LOG_INFO("C-%llu user=%s db=%s: pinned to its server (%s)", static_cast<unsigned long long>(id_), user_.c_str(),
             database_.c_str(), pin_reason_);
  }

  for (const auto& parse : request_.parses) {
    if (parse.name.empty()) {
      unnamed_statement_server_ = server;
      continue;
    }
    std::string name(parse.name);
    remember_statement(parse);  // a copy, to prepare the statement elsewhere later
    server->prepared.insert(name);
    if (transaction_pooling()) {
      const PreparedStatement& stored = prepared_[name];
      if (auto evicted = server->server_statements.put(stored.server_name, true)) {
        server->server_closes.push_back(std::move(*evicted));
      }
    }
    for (ServerConn* other : {primary_, standby_}) {
      if (other && other != server && other->prepared.erase(name)) other->pending_closes.push_back(name);
    }
  }
  // A request that binds named statements without parsing them, alone and outside a transaction, can be sent again
  // if PostgreSQL rejects a plan whose result shape changed after DDL.
  retry_statements_.clear();
  retry_request_.clear();
  if (request_.kind == RequestKind::Extended && request_.ends_with_sync && request_.parses.empty() &&
      !request_.used.empty() && request_.closed.empty() && !server->has_outstanding() &&
      server->tx_status() == 'I' && deferred_begin_.empty()) {
    for (auto name : request_.used) {
      if (prepared_.count(std::string(name))) retry_statements_.emplace_back(name);
    }
    if (retry_statements_.size() == request_.used.size()) {
      server->arm_plan_retry();
    } else {
      retry_statements_.clear();
    }
  }
  const bool renamed = transaction_pooling() &&
                       (!request_.parses.empty() || !request_.used.empty() || !request_.closed.empty());
  bool renamed_ok = true;
  if (renamed) {
    // Rename before the closed names leave the map; a Close removes the shared statement from this server.
    for (auto closed : request_.closed) {
      auto it = prepared_.find(std::string(closed));
      if (it != prepared_.end()) server->server_statements.erase(it->second.server_name);
    }
    server->note_request(ends_with_ready, request_.kind == RequestKind::Extended && !request_.ends_with_sync);
    renamed_ok = forward_renamed(server);
  }
  for (auto closed : request_.closed) {
    std::string name(closed);
    prepared_.erase(name);
    for (ServerConn* other : {primary_, standby_}) {
      if (!other) continue;
      if (other == server) {
        other->prepared.erase(name);
      } else if (other->prepared.erase(name)) {
        other->pending_closes.push_back(name);
      }
    }
  }
  if (!renamed) {
    server->note_request(ends_with_ready, request_.kind == RequestKind::Extended && !request_.ends_with_sync);
  }
  if (active_ != server) {
    active_ = server;
    CancelTarget target;
    target.address = server->pool().backend().address;
    target.process_id = server->key().process_id;
    target.secret_key = server->key().secret_key;
    cancel_slot_->set(target);
  }

  if (renamed) {
    if (!renamed_ok) {
      close_reason_ = "invalid message";
      fail(sqlstate::kProtocolViolation, "malformed extended-protocol message");
      return;
    }
  } else {
    uv_buf_t buf =
        uv_buf_init(reinterpret_cast<char*>(in_.data() + in_.parsed()), static_cast<unsigned>(request_.size));
    if (!retry_statements_.empty()) retry_request_.assign(in_.data() + in_.parsed(), in_.data() + in_.parsed() + request_.size);
    in_.advance_parsed(request_.size);
    if (server->forward_from(*this, &buf, 1)) in_.consume_to(in_.parsed());
  }
  server->relay();  // replies that arrived while it was not this client's active server
}

void ClientConn::answer_locally_with_error(const std::string& state, const std::string& message,
                                           const std::string& detail) {
  ByteVector out;
  build_error_response(out, "ERROR", state, message, detail);
  const bool ends_with_ready = request_.kind != RequestKind::Extended || request_.ends_with_sync;
  if (ends_with_ready) {
    build_ready_for_query(out, deferred_begin_.empty() ? 'I' : 'E');
  } else {
    discard_until_sync_ = true;
  }
  send_owned(std::move(out));
  LOG_INFO("C-%llu user=%s db=%s: request not sent: %s %s", static_cast<unsigned long long>(id_), user_.c_str(),
           database_.c_str(), state.c_str(), message.c_str());
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
}

void ClientConn::check_idle(double now, const conf::Timeouts& timeouts) {
  if (wait_ != Wait::None || in_.unparsed() > 0 || copy_in_) return;
  if (active_ && active_->has_outstanding()) return;
  const bool in_transaction = !deferred_begin_.empty() || (active_ && active_->tx_status() != 'I');
  const double idle = now - last_activity_;
  if (in_transaction && timeouts.idle_transaction_timeout > 0 && idle > timeouts.idle_transaction_timeout) {
    close_reason_ = "idle_transaction_timeout";
    fail("25P03", "terminating connection due to idle-in-transaction timeout (pgmux idle_transaction_timeout is " +
                      std::to_string(static_cast<int>(timeouts.idle_transaction_timeout)) + " s)");
  } else if (!in_transaction && timeouts.client_idle_timeout > 0 && idle > timeouts.client_idle_timeout) {
    close_reason_ = "client_idle_timeout";
    fail("57P05", "terminating connection due to idle-session timeout (pgmux client_idle_timeout is " +
                      std::to_string(static_cast<int>(timeouts.client_idle_timeout)) + " s)");
  }
}

void ClientConn::on_ready_for_query(ServerConn* server, char tx_status, bool had_error) {
  last_activity_ = worker_.now();
  if (outstanding_count_ > 0) {
    Outstanding& done = outstanding_[outstanding_head_];
    outstanding_head_ = (outstanding_head_ + 1) % std::size(outstanding_);
    --outstanding_count_;
    if (done.session) {
      std::string sql = std::move(pending_session_sql_.front());
      pending_session_sql_.erase(pending_session_sql_.begin());
      if (!had_error && tx_status == 'I') record_session_command(server, std::move(sql));
    }
  }
  if (server == active_ && copy_in_) copy_in_ = false;  // COPY ended (an error ends it without CopyDone)
  if (tx_status == 'I' && server->wrote) {
    route_state_.last_write_commit = monotonic_now();
    server->wrote = false;
  }
  route_state_.session_read_only = server->default_read_only();
  if (wait_ == Wait::Drain && !server->has_outstanding()) wait_ = Wait::None;
  pump();
  release_idle_servers();
}

void ClientConn::on_plan_retry(ServerConn* server) {
  if (retry_request_.empty() || retry_statements_.empty()) return;
  LOG_INFO("C-%llu user=%s db=%s: a prepared statement's result type changed (DDL); re-preparing it on S-%llu and "
           "sending the request again",
           static_cast<unsigned long long>(id_), user_.c_str(), database_.c_str(),
           static_cast<unsigned long long>(server->id()));
  ByteVector messages;
  for (const auto& name : retry_statements_) {
    const PreparedStatement& statement = prepared_[name];
    if (transaction_pooling()) {
      build_close(messages, 'S', statement.server_name);
      rewrite_statement_names(
          statement.parse, [&](std::string_view) { return std::optional<std::string_view>(statement.server_name); },
          messages);
    } else {
      build_close(messages, 'S', name);
      messages.insert(messages.end(), statement.parse.begin(), statement.parse.end());
    }
  }
  build_sync(messages);
  retry_statements_.clear();
  wait_ = Wait::Prepare;
  preparing_ = server;
  server->run_internal_messages(
      std::move(messages), 1, [this](ServerConn& s, bool, const std::string&, const std::string&) {
        if (!s.open()) return;
        if (s.client() != this) {
          s.pool().set_state(&s, ServerState::Linked);
          s.pool().release(&s, s.reusable());
          return;
        }
        s.pool().set_state(&s, ServerState::Linked);
        preparing_ = nullptr;
        wait_ = Wait::None;
        s.note_request(true, false);
        s.send_owned(std::move(retry_request_));
        retry_request_.clear();
        pump();
      });
}

void ClientConn::record_session_command(ServerConn* server, std::string sql) {
  if (transaction_pooling()) {
    // Servers are shared, so their session defaults are not this client's: RESET of a startup parameter must
    // land on the client's startup value, here and wherever the log is replayed.
    const bool reset_all = resets_all_settings(sql);
    const std::string target = reset_all ? std::string() : reset_target(sql);
    if (reset_all || (!target.empty() && wanted_params_.find(target))) {
      if (reset_all) {
        session_log_.clear();
        session_log_.push_back(std::move(sql));
        for (const auto& [name, value] : wanted_params_.entries()) session_log_.push_back(set_statement(name, value));
        for (ServerConn* other : {primary_, standby_}) {
          if (other) other->applied_log = 0;
        }
        server->applied_log = 1;  // it ran the reset; the startup values follow before its next request
      } else {
        session_log_.push_back(set_statement(target, *wanted_params_.find(target)));
        server->applied_log = session_log_.size() - 1;
      }
      return;
    }
  }
  // RESET ALL and DISCARD ALL undo everything before them: the log restarts with them, so it stays short and
  // a server that already ran older entries runs the reset too.
  if (resets_all_settings(sql)) {
    session_log_.clear();
    for (ServerConn* other : {primary_, standby_}) {
      if (other) other->applied_log = 0;
    }
  }
  session_log_.push_back(std::move(sql));
  server->applied_log = session_log_.size();
}

void ClientConn::on_copy_in(ServerConn* server) {
  if (server != active_) return;
  // COPY FROM STDIN started by an extended batch: PostgreSQL ignores that batch's Sync during COPY (the client
  // sends another after CopyDone), so no ReadyForQuery will answer it.
  if (outstanding_count_ > 0 && outstanding_[outstanding_head_].extended) {
    if (outstanding_[outstanding_head_].session) pending_session_sql_.erase(pending_session_sql_.begin());
    outstanding_head_ = (outstanding_head_ + 1) % std::size(outstanding_);
    --outstanding_count_;
    server->forget_one_sync();
  }
  copy_in_ = true;
  copy_pass_remaining_ = 0;
  pump();
}

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

void ClientConn::on_server_lost(ServerConn* server, bool fatal_forwarded, bool mid_message) {
  if (server != primary_ && server != standby_ && wait_ == Wait::Server && open()) {
    // It died while being readied for this client (parameter sync): ask the pool again.
    acquire(server->pool().backend_index(), waiting_role_);
    return;
  }
  const bool was_active = server == active_;
  const bool was_primary = server == primary_;
  const bool in_flight = was_active && (server->has_outstanding() || server->tx_status() != 'I' || copy_in_);
  const bool was_preparing = server == preparing_;
  if (was_preparing) preparing_ = nullptr;
  if (server == prepared_for_) prepared_for_ = nullptr;
  if (server == primary_) primary_ = nullptr;
  if (server == standby_) standby_ = nullptr;
  if (server == active_) active_ = nullptr;
  if (server == unnamed_statement_server_) unnamed_statement_server_ = nullptr;
  if (!open()) return;
  close_reason_ = "server connection lost";
  const std::string backend = server->pool().backend().name;
  if (mid_message) {
    close();  // half a message went out: nothing else can be framed after it
    return;
  }
  if (fatal_forwarded) {
    close(true);  // PostgreSQL ended the session and said so, as it would on a direct connection
    return;
  }
  if ((was_primary && route_state_.pinned_primary) || (in_flight && server->tx_status() != 'I')) {
    fail(sqlstate::kConnectionFailure, "server connection lost (backend \"" + backend + "\"); session state is gone");
    return;
  }
  close_reason_ = nullptr;
  if (in_flight) {
    // The requests may or may not have run; the client hears so, once for each, and the session goes on.
    const unsigned answers = outstanding_count_;
    outstanding_count_ = 0;
    pending_session_sql_.clear();
    copy_in_ = false;
    ByteVector out;
    const std::string message =
        "server connection lost (backend \"" + backend + "\"); the statement may or may not have been executed";
    for (unsigned i = 0; i < answers; ++i) {
      build_error_response(out, "ERROR", sqlstate::kConnectionFailure, message);
      build_ready_for_query(out, 'I');
    }
    if (answers == 0) {
      build_error_response(out, "ERROR", sqlstate::kConnectionFailure, message);
      discard_until_sync_ = true;  // an extended sequence without Sync: answer its Sync with ReadyForQuery
    }
    send_owned(std::move(out));
  }
  if (wait_ == Wait::Drain || (wait_ == Wait::Prepare && was_preparing)) wait_ = Wait::None;
  pump();
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
  send_owned(std::move(out));
  close(true);
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
