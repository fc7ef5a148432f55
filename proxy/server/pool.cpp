#include "proxy/server/pool.hpp"

#include <utility>
#include <vector>

#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {
// A connection still logging in after this long is not taken over by another waiting client (orphan_on_the_way): a
// login takes milliseconds; one this slow may be hanging.
constexpr double kAdoptWithin = 0.5;  // seconds
}  // namespace

Pool::Pool(PoolHost& host, std::string key, std::string name, int backend_index, BackendAddress backend,
           ServerLogin login, Limits limits, conf::PoolMode mode)
    : host_(host),
      key_(std::move(key)),
      name_(std::move(name)),
      backend_index_(backend_index),
      backend_(std::move(backend)),
      login_(std::move(login)),
      limits_(std::move(limits)),
      mode_(mode),
      // Another worker's server of this key already logged in: the database exists.
      ever_logged_in_(!limits_.login_params->get().entries().empty()),
      unused_since_(host.now()) {
  WorkerMetrics& metrics = host.metrics();
  byte_counters_ = {&metrics.server_bytes_received, &metrics.server_bytes_sent, &stats.bytes_received,
                    &stats.bytes_sent};
}

bool Pool::can_open_more() const {
  auto below = [](const std::shared_ptr<PoolBudget>& b) {
    return !b || b->used.load(std::memory_order_relaxed) < b->limit.load(std::memory_order_relaxed);
  };
  return below(limits_.pool) && below(limits_.database) && below(limits_.user);
}

bool Pool::acquire_slot(bool reserve) {
  if (!limits_.pool->try_acquire(reserve ? limits_.reserve : 0)) return false;
  if (limits_.database && !limits_.database->try_acquire()) {
    limits_.pool->release();
    return false;
  }
  if (limits_.user && !limits_.user->try_acquire()) {
    if (limits_.database) limits_.database->release();
    limits_.pool->release();
    return false;
  }
  return true;
}

void Pool::release_slot() {
  limits_.pool->release();
  if (limits_.database) limits_.database->release();
  if (limits_.user) limits_.user->release();
}

// More servers than pool_size + reserve_pool_size: a reload made the pool smaller.
bool Pool::over_limit() const {
  return limits_.pool->used.load(std::memory_order_relaxed) >
         limits_.pool->limit.load(std::memory_order_relaxed) + limits_.reserve;
}

void Pool::reconfigure(Limits limits, const std::string& password) {
  // A budget this pool starts or stops drawing from (max_db_connections or max_user_connections turned on or
  // off) takes over the slots its servers already hold, so release_slot() stays balanced.
  const int held = static_cast<int>(server_count());
  auto move_slots = [held](std::shared_ptr<PoolBudget>& current, std::shared_ptr<PoolBudget> next) {
    if (current == next) return;
    if (current) current->used.fetch_sub(held, std::memory_order_acq_rel);
    if (next) next->used.fetch_add(held, std::memory_order_acq_rel);
    current = std::move(next);
  };
  move_slots(limits_.pool, std::move(limits.pool));
  move_slots(limits_.database, std::move(limits.database));
  move_slots(limits_.user, std::move(limits.user));
  limits_.reserve = limits.reserve;
  limits_.min_size = stale() ? 0 : limits.min_size;
  set_password(password);
  // Smaller: idle servers beyond the new size go now, busy ones when released.
  while (over_limit() && !idle_.empty()) idle_.back()->close();
  if (!waiting_.empty()) serve_waiters();  // larger: clients waiting for a slot get one now
}

void Pool::set_password(const std::string& password) {
  if (password == login_.password) return;
  login_.password = password;
  login_.scram_secret.reset();
  login_.client_key.reset();  // recovered from a client's login with the old secret
  if (protocol::is_scram_secret(password)) login_.scram_secret = protocol::parse_scram_secret(password);
}

void Pool::drain() {
  if (draining()) return;
  standing_ = Standing::Draining;
  backend_index_ = -1;
  limits_.min_size = 0;
  LOG_INFO("pool %s: backend %s (%s) removed or moved by a reload: draining (%zu idle, %zu busy servers)",
           name_.c_str(), backend_.name.c_str(), backend_.text().c_str(), idle_.size(), busy_.size());
  std::vector<PoolClient*> waiters;
  while (PoolClient* client = pop_waiter()) waiters.push_back(client);
  std::vector<PoolServer*> closing;
  busy_.for_each([&](PoolServer* server) {
    if (server->logging_in()) closing.push_back(server);
  });
  close_idle_servers();
  for (PoolServer* server : closing) server->close();
  // Linked servers: their clients give them back at their next transaction boundary (now, when idle). A client
  // closed meanwhile (by an earlier one's callback) ignores the call.
  std::vector<PoolClient*> linked;
  busy_.for_each([&](PoolServer* server) {
    if (server->state() == ServerState::Linked && server->linked_client()) linked.push_back(server->linked_client());
  });
  for (PoolClient* client : waiters) client->on_pool_draining(this);
  for (PoolClient* client : linked) client->on_pool_draining(this);
}

Pool::~Pool() { close_all(Failure::ShuttingDown); }

void Pool::request(PoolClient* client) {
  // Transaction pooling's every check-out, when nobody is ahead in line and a server is idle: straight to it, with
  // no trip through the waiting list (serve_waiters would take the same server for the same client).
  if (transaction_pooling() && !draining() && waiting_.empty() && !idle_.empty()) {
    // Only after this worker starved (rare): then the clock is read, as serve_waiters does.
    if (last_shed_request_ > 0 && limits_.pool->slot_wanted.load(std::memory_order_relaxed)) {
      forget_slot_request(host_.now());
    }
    note_demand(1);  // the server it takes
    assign(idle_.front(), client);
    return;
  }
  waiting_.push_back(client);
  note_demand(0);
  serve_waiters();
}

void Pool::withdraw(PoolClient* client) {
  const bool was_waiting = client->wait_node.linked();
  stop_waiting(client);
  // The last waiter left (gone, cancelled, or answered without a server): a slot asked of other workers for it
  // is not wanted any more, as when a waiter is served.
  if (was_waiting && waiting_.empty() && last_shed_request_ > 0) forget_slot_request(host_.now());
  busy_.for_each([client](PoolServer* server) {
    // A server being synced for this client (assign) must not call back into it: its callback releases it.
    if (server->linked_client() == client && server->state() == ServerState::Internal) server->unlink();
  });
}

void Pool::stop_waiting(PoolClient* client) {
  waiting_.remove(client);
  forget_client(client);
}

PoolClient* Pool::pop_waiter() {
  PoolClient* client = waiting_.pop_front();
  if (client) forget_client(client);
  return client;
}

// Only a connecting or logging-in server was opened for a client (on_login_done forgets it): with none, the walk
// over the busy servers (each a cache miss, on every check-out that waits) is skipped.
void Pool::forget_client(PoolClient* client) {
  if (connecting_ == 0) return;
  busy_.for_each([client](PoolServer* server) {
    if (server->opened_for() == client) server->forget_opened_for();
  });
}

void Pool::set_state(PoolServer* server, ServerState state) {
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
      server->mark_idle(host_.now());
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
  if (draining()) return;  // nobody waits on a draining pool (drain() sent them elsewhere)
  if (waiting_.empty()) {  // nobody waits (every transaction-pooling release): a slot asked of others is not wanted
    if (last_shed_request_ > 0 && limits_.pool->slot_wanted.load(std::memory_order_relaxed)) {
      forget_slot_request(host_.now());
    }
    return;
  }
  for (PoolClient* client = waiting_.front(); client && !idle_.empty();) {
    PoolServer* server = take_idle_for(client);
    if (!server) {
      client = waiting_.next_of(client);
      continue;
    }
    stop_waiting(client);
    assign(server, client);
    client = waiting_.front();  // assign may have changed the list: start over from the head
  }
  // Opening a server can fail at once and fail waiting clients, so pick the clients before opening anything. Each
  // round after the first opens with slots that other pools' idle servers freed (evict_for_waiters).
  const double now = host_.now();
  bool starving = true;
  for (int round = 0; starving && round < 64 && (round == 0 || evict_for_waiters(now)); ++round) {
    starving = false;
    for (PoolClient* client : pick_clients_to_open_for(now, &starving)) {
      if (client->wait_node.linked()) {
        open_server(client);
      } else {
        release_slot();  // that client is gone already
      }
    }
  }
  if (waiting_.empty()) forget_slot_request(now);
  if (starving && idle_.empty()) ask_for_slot(now);  // pool_sharing.cpp
}

// One new connection per waiting client not already covered by one in progress, up to the pool size (a budget
// slot is taken for each); each is opened with the startup parameters of the client it is for. *starving: the
// budget ran out first.
std::vector<PoolClient*> Pool::pick_clients_to_open_for(double now, bool* starving) {
  std::vector<PoolClient*> uncovered;
  const double reserve_after = host_.timeouts().reserve_pool_timeout;
  for (PoolClient* client = waiting_.front(); client; client = waiting_.next_of(client)) {
    if (has_server_on_the_way(client)) continue;
    if (PoolServer* orphan = orphan_on_the_way(client, now)) {
      orphan->adopt(client);
      continue;
    }
    // The reserve pool opens for clients that have waited reserve_pool_timeout (0 = never).
    const bool reserve = limits_.reserve > 0 && reserve_after > 0 && now - client->wait_started() >= reserve_after;
    if (!acquire_slot(reserve)) {
      *starving = true;
      break;
    }
    if (reserve && !can_open_more()) {
      LOG_INFO("pool %s: using the reserve pool for a client waiting %.1f s", name_.c_str(),
               now - client->wait_started());
    }
    uncovered.push_back(client);
  }
  return uncovered;
}

bool Pool::has_server_on_the_way(const PoolClient* client) {
  if (connecting_ == 0) return false;  // as in forget_client
  bool covered = false;
  busy_.for_each([&](PoolServer* server) { covered |= server->opened_for() == client; });
  return covered;
}

// A connection still being opened for no one (its client was served by a server given back meanwhile, or left;
// or one opened for min_pool_size) that this client could use. The next waiter takes it over rather than open one
// more: else, while clients come faster than a login takes, every one of them opened a server it did not need,
// and the pool filled with connections still logging in (a read then went to another standby for want of room).
// Not one that its login will close (the backend moved, or RECONNECT came after it started), nor one that has
// taken kAdoptWithin already (a login that slow may hang until server_connect_timeout, while a connection of the
// client's own would log in at once: Pool::tick lets go of such a one taken over). The newest such connection
// (busy_ is in order of state change): the one with the most of server_connect_timeout left.
PoolServer* Pool::orphan_on_the_way(const PoolClient* client, double now) {
  if (connecting_ == 0) return nullptr;
  PoolServer* found = nullptr;
  busy_.for_each([&](PoolServer* server) {
    if (!server->logging_in() || server->opened_for() || now - server->connect_started() >= kAdoptWithin ||
        at_old_address(*server) || replaced_by_reconnect(*server)) {
      return;
    }
    // Session pooling opens a server with its client's startup parameters (take_idle_for matches them).
    if (transaction_pooling() || server->startup_params().entries() == client->wanted_params().entries()) {
      found = server;
    }
  });
  return found;
}

// Transaction pooling: any idle server (parameters are synced with SET on every checkout). Session pooling: only
// a server opened with this client's own startup parameters, so RESET behaves as on a direct connection; when
// the budget is spent, the oldest idle server opened for other parameters is closed to make room for one.
PoolServer* Pool::take_idle_for(PoolClient* client) {
  if (transaction_pooling()) return idle_.front();
  for (PoolServer* server = idle_.front(); server; server = idle_.next_of(server)) {
    if (server->startup_params().entries() == client->wanted_params().entries()) return server;
  }
  if (!can_open_more()) {
    if (PoolServer* oldest = idle_.back()) oldest->close();  // frees a budget slot for serve_waiters
  }
  return nullptr;
}

// for_client is null for connections opened to keep min_pool_size.
void Pool::open_server(PoolClient* for_client) {
  PoolServer* server = host_.create_server(*this);
  server->set_state_internal(ServerState::Closing);  // not in a list yet; set_state below links it
  set_state(server, ServerState::Connecting);
  LOG_DEBUG("S-%llu pool %s: connecting to backend %s (%s)", static_cast<unsigned long long>(server->id()),
            name_.c_str(), backend_.name.c_str(), backend_.text().c_str());
  // Session pooling starts the server with the client's parameters (they become its session defaults);
  // transaction pooling starts it plain and SETs each client's parameters on checkout.
  server->connect(transaction_pooling() || !for_client ? SessionParams{} : for_client->wanted_params(), for_client,
                  host_.now(), backend_.address);
}

void Pool::set_address(const sockaddr_storage& address, std::string resolved) {
  backend_.address = address;
  backend_.resolved = std::move(resolved);
  close_idle_servers();  // whatever answers at the old address is no longer this backend
  if (!waiting_.empty()) serve_waiters();  // the slots they held open servers at the new address
}

void Pool::assign(PoolServer* server, PoolClient* client) {
  server->link(client);
  std::string sync_sql = build_sync_sql(client->wanted_params(), server->params(), server->applied_unreported);
  // A connection idle for server_check_delay may have died quietly (firewall, restart): an empty query proves it
  // alive before a client's request depends on it. If it fails, the client asks the pool again.
  const double check_delay = host_.timeouts().server_check_delay;
  if (sync_sql.empty() && server->idle_since() > 0 && host_.now() - server->idle_since() >= check_delay) {
    sync_sql = ";";
  }
  if (sync_sql.empty()) {
    set_state(server, ServerState::Linked);
    client->on_server_ready(server);
    return;
  }
  server->run_pool_query(std::move(sync_sql), [this, server](bool ok, const std::string& sqlstate,
                                                             const std::string& error) {
    on_assign_synced(server, ok, sqlstate, error);
  });
}

void Pool::on_assign_synced(PoolServer* server, bool ok, const std::string& sqlstate_ref,
                            const std::string& error_ref) {
  if (!server->open()) return;  // closing: the client heard of it from the server
  PoolClient* owner = server->linked_client();
  const std::string sqlstate = sqlstate_ref;  // the references die with the next internal run (the reset)
  const std::string error = error_ref;
  set_state(server, ServerState::Linked);  // out of Internal, so release() can take it back
  if (!ok) {
    // The client's own startup parameter was refused (bad value): the failure table closes the server.
    release(server, {}, Failure::ParameterRejected);
    if (owner) owner->fail(FailureReport::relayed(Failure::ParameterRejected, sqlstate, error));
    return;
  }
  if (!owner) {  // the client left meanwhile
    release(server);
    return;
  }
  owner->on_server_ready(server);
}

void Pool::release(PoolServer* server, ServerFacts facts, std::optional<Failure> why) {
  server->unlink();
  if (!server->open()) return;
  if (server->state() == ServerState::Internal) return;  // its completion callback decides
  facts.clean = server->reusable();
  facts.session_pooling = !transaction_pooling();
  // Session commands a client ran (or may have run, in a multi-statement string) there.
  facts.session_state = facts.session_state || server->session_changed();
  facts.retiring = retire_reason(*server);
  const ServerVerdict verdict = server_fate(facts, why);
  switch (verdict.fate) {
    case ServerFate::Close:
      PGMUX_LOG(verdict.why == facts.retiring ? conf::LogLevel::Debug : conf::LogLevel::Info,
                "S-%llu pool %s: closing server connection (%s)", static_cast<unsigned long long>(server->id()),
                name_.c_str(), verdict.why);
      server->close();
      return;
    case ServerFate::Reset:
      // DISCARD ALL, not RESET ALL: RESET ALL leaves SET ROLE and SET SESSION AUTHORIZATION in place. It drops the
      // settings pgmux applied and the pgmux statements too.
      server->forget_session();
      reset_and_idle(server, "DISCARD ALL");
      return;
    case ServerFate::Reuse:
      if (give_to_starving_worker(server)) return;
      // Transaction pooling: idle as it is (parameters are compared and SET on the next checkout).
      set_state(server, ServerState::Idle);
      serve_waiters();
      return;
  }
}

// A healthy server the pool does not keep: why, or null.
const char* Pool::retire_reason(const PoolServer& server) const {
  const double lifetime = host_.timeouts().server_lifetime;
  if (host_.shutting_down()) return "pgmux is shutting down";
  if (lifetime > 0 && host_.now() - server.connect_started() > lifetime) return "server_lifetime reached";
  if (draining()) return "backend removed by a reload";
  if (at_old_address(server)) return "the backend's host name resolves to another address";
  if (over_limit()) return "pool_size reduced by a reload";
  if (replaced_by_reconnect(server)) return "replaced by RECONNECT or closed by PAUSE";
  return nullptr;
}

void Pool::reconnect() {
  limits_.login_params->forget();  // the next client logs in through a server that read the defaults anew
  retire_servers("RECONNECT");
}

// PAUSE keeps what the pool knows of a login: clients logging in meanwhile are answered from it (transaction
// pooling) instead of opening a server to the paused database.
void Pool::close_for_pause() { retire_servers("PAUSE"); }

void Pool::retire_servers(const char* why) {
  reconnect_before_ = host_.now();
  if (idle_.empty() && busy_.empty()) return;
  LOG_INFO("pool %s: %s: %zu idle server connections closed, %zu busy ones close when released", name_.c_str(),
           why, idle_.size(), busy_.size());
  close_idle_servers();
}

void Pool::reset_and_idle(PoolServer* server, const char* reset_sql) {
  server->run_pool_query(reset_sql, [this, server](bool ok, const std::string&, const std::string& error) {
    if (!server->open()) return;
    if (draining()) {
      server->close();
      return;
    }
    if (at_old_address(*server) || replaced_by_reconnect(*server)) {  // the backend moved, or RECONNECT came
      server->close();
      serve_waiters();
      return;
    }
    if (!ok || !server->reusable()) {
      LOG_WARN("S-%llu pool %s: reset failed (%s), closing", static_cast<unsigned long long>(server->id()),
               name_.c_str(), ok ? "the server cannot be reused after it" : escape_for_log(error, 1000).c_str());
      server->close();
      return;
    }
    if (give_to_starving_worker(server)) return;
    set_state(server, ServerState::Idle);
    serve_waiters();
  });
}

void Pool::on_login_done(PoolServer* server) {
  host_.metrics().server_connects.add();
  server->forget_opened_for();
  ever_logged_in_ = true;
  if (draining()) {
    server->close();  // opened before the reload removed the backend
    return;
  }
  // Opened at the backend's old address, or before a RECONNECT (its login may have read the old defaults): its
  // slot opens another. Or one too many since a reload made the pool smaller, with nobody waiting (its slot goes with
  // it); a waiting client gets it, and it closes when released, as the busy servers beyond the new size do.
  if (at_old_address(*server) || replaced_by_reconnect(*server) || (over_limit() && waiting_.empty())) {
    server->close();
    serve_waiters();
    return;
  }
  limits_.login_params->record(server->params());
  set_state(server, ServerState::Idle);
  serve_waiters();
}

void Pool::on_server_failed(PoolServer* server, FailureReport failure) {
  host_.metrics().server_connect_failures.add();
  // Nothing listens, or the server is shutting down or starting up (57P03 at login): the prober hears at once.
  if (failure.failure() == Failure::ServerConnectRefused || failure.sqlstate() == "57P03") {
    host_.report_refused(backend_.name, failure.message());
  }
  failure.add_words({name_, backend_.name, backend_.text()});  // the detail names the pool and backend
  // The client this connection was opened for hears why (it may be its own bad startup parameter). One that took
  // it over does not: it might have waited for a server given back (the budget spent), and waits on; if nothing is
  // left on the way, serve_waiters opens one of its own for it below.
  if (PoolClient* client = server->opened_for()) {
    const bool adopted = server->adopted();
    server->forget_opened_for();
    if (!adopted) {
      stop_waiting(client);
      client->on_server_unavailable(failure);
    }
  }
  // A backend that refuses connections cannot serve the others soon either: tell them now, not at
  // query_wait_timeout. Other failures (a bad parameter value) concern only that one client.
  const std::string_view sqlstate = failure.sqlstate();
  const bool backend_unusable = sqlstate.starts_with("08") || sqlstate.starts_with("57") ||
                                sqlstate.starts_with("28") || sqlstate.starts_with("3D");
  if (backend_unusable && server_count() == 0) {
    while (PoolClient* client = pop_waiter()) client->on_server_unavailable(failure);
    return;
  }
  serve_waiters();
}

void Pool::on_server_closing(PoolServer* server) {
  if (server->state() != ServerState::Closing) release_slot();
  set_state(server, ServerState::Closing);
}

void Pool::tick(double now, const conf::Timeouts& timeouts) {
  if (!waiting_.empty()) serve_waiters();  // a slot may have been freed by another worker
  roll_demand_window(now);
  // Waiting clients past query_wait_timeout.
  while (PoolClient* client = waiting_.front()) {
    if (now - client->wait_started() < timeouts.query_wait_timeout) break;
    pop_waiter();
    client->on_server_unavailable({Failure::QueryWaitTimeout, {name_, format_seconds(timeouts.query_wait_timeout)}});
  }
  close_expired_idle(now, timeouts);
  if (!busy_.empty() || !waiting_.empty()) unused_since_ = now;
  // Keep min_pool_size connections open (counting those still connecting) over all workers: the budget is shared,
  // so a per-worker minimum would let one worker hold every slot. Not right after giving an idle server to a
  // starving worker either, or this tick would take the freed slot back before that worker's own tick uses it.
  while (limits_.pool->used.load(std::memory_order_relaxed) < limits_.min_size && now - last_shed_ >= 1.0 &&
         !host_.paused(database_name()) && acquire_slot(false)) {
    open_server(nullptr);
  }
  // Connections stuck in connect or login; one taken over that is slow: its client gets one of its own.
  bool let_go = false;
  busy_.for_each([&](PoolServer* server) {
    if (!server->logging_in()) return;
    const double taken = now - server->connect_started();
    if (taken > timeouts.server_connect_timeout) {
      server->fail_timeout();
    } else if (server->adopted() && taken >= kAdoptWithin) {
      server->forget_opened_for();
      let_go = true;
    }
  });
  if (let_go) serve_waiters();
}

// Idle servers past server_idle_timeout (the oldest are at the back), but not below min_pool_size over all
// workers; and idle servers past server_lifetime.
void Pool::close_expired_idle(double now, const conf::Timeouts& timeouts) {
  if (timeouts.server_idle_timeout > 0) {
    while (PoolServer* server = idle_.back()) {
      if (now - server->idle_since() < timeouts.server_idle_timeout) break;
      if (limits_.pool->used.load(std::memory_order_relaxed) <= limits_.min_size) break;
      LOG_DEBUG("S-%llu pool %s: closing idle server connection", static_cast<unsigned long long>(server->id()),
                name_.c_str());
      server->close();
    }
  }
  if (timeouts.server_lifetime > 0) {
    for (PoolServer* server = idle_.front(); server;) {
      PoolServer* next = idle_.next_of(server);
      if (now - server->connect_started() > timeouts.server_lifetime) server->close();
      server = next;
    }
  }
}

void Pool::close_idle_servers() {
  while (PoolServer* server = idle_.front()) server->close();
}

void Pool::close_all(Failure why) {
  while (PoolClient* client = pop_waiter()) client->on_server_unavailable(why);
  close_idle_servers();
  busy_.for_each([](PoolServer* server) { server->close(); });
}

}  // namespace pgmux::proxy
