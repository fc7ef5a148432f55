#include "proxy/pool.hpp"

#include "protocol/sqlstate.hpp"
#include "proxy/log.hpp"
#include "proxy/worker.hpp"

namespace pgmux::proxy {

Pool::Pool(Worker& worker, std::string name, BackendAddress backend, ServerLogin login, int size)
    : worker_(worker), name_(std::move(name)), backend_(std::move(backend)), login_(std::move(login)), size_(size) {}

Pool::~Pool() { close_all(); }

void Pool::request(ClientConn* client) {
  waiting_.push_back(client);
  serve_waiters();
}

void Pool::withdraw(ClientConn* client) { waiting_.remove(client); }

void Pool::set_state(ServerConn* server, ServerState state) {
  const ServerState old = server->state();
  if (old == state) return;
  if (old == ServerState::Connecting || old == ServerState::Login) {
    if (state != ServerState::Login) --connecting_;
  }
  if (state == ServerState::Connecting) ++connecting_;
  if (old == ServerState::Idle) idle_.remove(server);
  if (old != ServerState::Idle && old != ServerState::Closing) busy_.remove(server);
  server->set_state_internal(state);
  switch (state) {
    case ServerState::Idle:
      server->mark_idle(worker_.now());
      idle_.push_front(server);  // LIFO: the most recently used connection is the warmest
      break;
    case ServerState::Closing:
      break;
    default:
      busy_.push_back(server);
      break;
  }
}

void Pool::serve_waiters() {
  while (!waiting_.empty() && !idle_.empty()) {
    ServerConn* server = idle_.front();
    ClientConn* client = waiting_.pop_front();
    assign(server, client);
  }
  // One new connection per waiting client not already covered by one in progress, up to the pool size.
  while (waiting_.size() > static_cast<size_t>(connecting_) && server_count() < static_cast<size_t>(size_)) {
    open_server();
  }
}

void Pool::open_server() {
  auto* server = new ServerConn(*this, worker_.next_server_id());
  server->set_state_internal(ServerState::Closing);  // not in a list yet; set_state below links it
  set_state(server, ServerState::Connecting);
  LOG_DEBUG("S-%llu pool %s: connecting to backend %s (%s)", static_cast<unsigned long long>(server->id()),
            name_.c_str(), backend_.name.c_str(), backend_.text().c_str());
  server->connect(reinterpret_cast<const sockaddr*>(&backend_.address));
}

void Pool::assign(ServerConn* server, ClientConn* client) {
  server->link(client);
  std::string sync_sql = build_sync_sql(client->wanted_params(), server->params());
  if (sync_sql.empty()) {
    set_state(server, ServerState::Linked);
    client->on_server_ready(server);
    return;
  }
  server->run_internal(std::move(sync_sql), [](ServerConn& s, bool ok, const std::string& state,
                                               const std::string& error) {
    Pool& pool = s.pool();
    ClientConn* owner = s.client();
    if (!s.open()) return;  // closing: on_server_lost told the client
    if (!owner) {
      pool.release(&s, ok && s.reusable());
      return;
    }
    if (!ok) {
      // The client's own startup parameter was refused (bad value): its error, the server is fine.
      s.unlink();
      pool.release(&s, s.reusable());
      owner->fail(state, error);
      return;
    }
    pool.set_state(&s, ServerState::Linked);
    owner->on_server_ready(&s);
  });
}

void Pool::release(ServerConn* server, bool reusable) {
  server->unlink();
  if (!server->open()) return;
  if (server->state() == ServerState::Internal) return;  // its completion callback decides
  if (!reusable || worker_.shutting_down()) {
    LOG_DEBUG("S-%llu pool %s: closing server connection (not reusable)", static_cast<unsigned long long>(server->id()),
              name_.c_str());
    server->close();
    return;
  }
  reset_and_idle(server);
}

void Pool::reset_and_idle(ServerConn* server) {
  server->run_internal("DISCARD ALL", [](ServerConn& s, bool ok, const std::string&, const std::string& error) {
    if (!s.open()) return;
    Pool& pool = s.pool();
    if (!ok || !s.reusable()) {
      LOG_WARN("S-%llu pool %s: reset failed (%s), closing", static_cast<unsigned long long>(s.id()),
               pool.name().c_str(), error.c_str());
      s.close();
      return;
    }
    pool.set_state(&s, ServerState::Idle);
    pool.serve_waiters();
  });
}

void Pool::on_login_done(ServerConn* server) {
  LOG_DEBUG("S-%llu pool %s: logged in to backend %s, server pid %d", static_cast<unsigned long long>(server->id()),
            name_.c_str(), backend_.name.c_str(), server->key().process_id);
  set_state(server, ServerState::Idle);
  serve_waiters();
}

void Pool::on_server_failed(ServerConn*, const std::string& sqlstate, const std::string& message) {
  // Nothing else can serve the waiting clients soon: tell them now rather than at query_wait_timeout.
  if (server_count() > 0) {
    serve_waiters();
    return;
  }
  std::string detail = "pgmux pool \"" + name_ + "\", backend \"" + backend_.name + "\" at " + backend_.text();
  while (ClientConn* client = waiting_.pop_front()) client->on_server_unavailable(sqlstate, message, detail);
}

void Pool::on_server_closing(ServerConn* server) {
  set_state(server, ServerState::Closing);
}

void Pool::tick(double now, const conf::Timeouts& timeouts) {
  // Waiting clients past query_wait_timeout.
  while (ClientConn* client = waiting_.front()) {
    if (now - client->wait_started() < timeouts.query_wait_timeout) break;
    waiting_.pop_front();
    client->on_server_unavailable(protocol::sqlstate::kTooManyConnections,
                                  "pgmux: query_wait_timeout: no server connection became free in pool \"" + name_ +
                                      "\" within " + std::to_string(static_cast<int>(timeouts.query_wait_timeout)) +
                                      " s",
                                  "");
  }
  // Idle servers past server_idle_timeout (oldest are at the back).
  if (timeouts.server_idle_timeout > 0) {
    while (ServerConn* server = idle_.back()) {
      if (now - server->idle_since() < timeouts.server_idle_timeout) break;
      LOG_DEBUG("S-%llu pool %s: closing idle server connection", static_cast<unsigned long long>(server->id()),
                name_.c_str());
      server->close();
    }
  }
  // Connections stuck in connect or login.
  busy_.for_each([&](ServerConn* server) {
    if ((server->state() == ServerState::Connecting || server->state() == ServerState::Login) &&
        now - server->connect_started() > timeouts.server_connect_timeout) {
      server->fail_timeout();
    }
  });
}

void Pool::close_all() {
  while (ClientConn* client = waiting_.pop_front()) {
    client->on_server_unavailable(protocol::sqlstate::kAdminShutdown, "pgmux is shutting down", "");
  }
  while (ServerConn* server = idle_.front()) server->close();
  busy_.for_each([](ServerConn* server) { server->close(); });
}

}  // namespace pgmux::proxy
