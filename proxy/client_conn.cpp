#include "proxy/client_conn.hpp"

#include <arpa/inet.h>

#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "proxy/forward_batch.hpp"
#include "proxy/log.hpp"
#include "proxy/pool.hpp"
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
    case ClientState::Linked: relay(); break;
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

  const conf::Database* db = config_->find_database(database_);
  if (!db) {
    close_reason_ = "unknown database";
    fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
    return;
  }
  std::string error;
  pool_ = worker_.pool_for(config_, *db, *user_config_, database_, &error);
  if (!pool_) {
    close_reason_ = "no pool";
    fail(sqlstate::kConnectionFailure, error);
    return;
  }
  if (auto key = auth_->client_key(); key && pool_->login().scram_secret) pool_->login().client_key = key;
  auth_.reset();

  cancel_slot_ = std::make_shared<CancelSlot>();
  set_state(ClientState::WaitingServer);
  wait_started_ = worker_.now();
  pool_->request(this);
}

void ClientConn::on_server_ready(ServerConn* server) {
  if (!open()) {
    pool_->release(server, server->reusable());
    return;
  }
  server_ = server;
  CancelTarget target;
  target.address = pool_->backend().address;
  target.process_id = server->key().process_id;
  target.secret_key = server->key().secret_key;
  cancel_slot_->set(target);
  if (!logged_in_) finish_login(server);
  set_state(ClientState::Linked);
  relay();
  start_reading();
}

void ClientConn::finish_login(ServerConn* server) {
  CancelRegistry::Key key = worker_.cancels().add(cancel_slot_);
  cancel_key_pid_ = key.process_id;
  ByteVector out;
  for (const auto& [name, value] : server->params().entries()) build_parameter_status(out, name, value);
  build_backend_key_data(out, key.process_id, key.secret_key);
  build_ready_for_query(out, 'I');
  send_owned(std::move(out));
  logged_in_ = true;
  LOG_INFO("C-%llu %s user=%s db=%s: login ok, server S-%llu (backend %s, pid %d)",
           static_cast<unsigned long long>(id_), peer_.c_str(), user_.c_str(), database_.c_str(),
           static_cast<unsigned long long>(server->id()), pool_->backend().name.c_str(), server->key().process_id);
}

void ClientConn::on_server_unavailable(const std::string& sqlstate, const std::string& message,
                                       const std::string& detail) {
  close_reason_ = "no server available";
  fail(sqlstate, message, detail);
}

void ClientConn::on_server_lost(bool error_already_sent) {
  server_ = nullptr;
  if (!open()) return;
  close_reason_ = "server connection lost";
  if (error_already_sent) {
    close(true);
    return;
  }
  fail(sqlstate::kConnectionFailure,
       "server connection lost (backend \"" + (pool_ ? pool_->backend().name : std::string("?")) + "\")");
}

void ClientConn::relay() {
  if (state_ != ClientState::Linked || !server_ || pinned() || !open()) return;
  const uint32_t max_size = worker_.max_message_size();
  while (open() && !pinned() && server_) {
    ForwardBatch batch;
    size_t pos = in_.parsed();
    bool terminate = false;
    while (!batch.full()) {
      size_t available = in_.end() - pos;
      if (pass_remaining_ > 0) {
        if (available == 0) break;
        size_t n = std::min(pass_remaining_, available);
        batch.add(in_.data() + pos, n);
        pos += n;
        pass_remaining_ -= n;
        continue;
      }
      Frame frame = next_frame(ByteView(in_.data() + pos, available), max_size);
      if (frame.status == FrameStatus::NeedMore) break;
      if (frame.status == FrameStatus::Error) {
        close_reason_ = "invalid message";
        fail(sqlstate::kProtocolViolation,
             std::string("invalid frontend message: ") + to_string(frame.error) +
                 (frame.error == FrameError::LengthTooLarge
                      ? " (max_message_size is " + std::to_string(max_size) + " bytes)"
                      : std::string()));
        return;
      }
      if (frame.tag == frontend::kTerminate) {
        terminate = true;
        break;
      }
      server_->note_frontend_message(frame.tag);
      size_t n = std::min(frame.total(), available);
      batch.add(in_.data() + pos, n);
      pos += n;
      pass_remaining_ = frame.total() - n;
    }
    in_.advance_parsed(pos - in_.parsed());
    if (!batch.empty()) {
      ServerConn* server = server_;
      if (!server->forward_from(*this, batch.bufs(), batch.count())) {
        if (terminate) {
          close_reason_ = "client terminated";
          close();
        }
        return;
      }
      if (!open() || server_ != server) return;
    }
    in_.consume_to(in_.parsed());
    if (terminate) {
      close_reason_ = "client terminated";
      close();
      return;
    }
    if (in_.unparsed() == 0 || !batch.full()) break;
  }
  if (!open() || pinned()) return;
  in_.compact();
  in_.shrink_if_empty();
  start_reading();
}

void ClientConn::on_forward_done() {
  in_.consume_to(in_.parsed());
  relay();
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
  if (pool_) pool_->withdraw(this);
  if (server_) {
    ServerConn* server = server_;
    server_ = nullptr;
    bool reusable = server->reusable();
    if (!reusable) {
      LOG_INFO("C-%llu: server S-%llu was mid-request, closing it instead of reusing it",
               static_cast<unsigned long long>(id_), static_cast<unsigned long long>(server->id()));
    }
    pool_->release(server, reusable);
  }
  if (cancel_key_pid_) worker_.cancels().remove(cancel_key_pid_);
  worker_.remove_client(this);
  LOG_INFO("C-%llu %s user=%s db=%s: disconnect (%s) in state %s", static_cast<unsigned long long>(id_),
           peer_.c_str(), user_.c_str(), database_.c_str(), close_reason_ ? close_reason_ : "closed", before);
}

}  // namespace pgmux::proxy
