#include "proxy/control/worker.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cmath>


#include "protocol/auth_scram.hpp"
#include "proxy/control/control.hpp"
#include "proxy/net/address.hpp"
#include "proxy/ops/admin/console.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

namespace {
constexpr uint64_t kTickMs = 250;
constexpr double kCrowdedStartupWait = 1.0;  // seconds a connection may take to send its first packet when crowded
constexpr uint64_t kCatalogPollMs = 2;  // a first catalog load takes a few milliseconds to a few hundred
constexpr size_t kClassifierCache = 10000;  // distinct statement texts whose parse is kept, per worker

bool same_backend_names(const conf::Config& a, const conf::Config& b) {
  if (a.backends.size() != b.backends.size()) return false;
  for (size_t i = 0; i < a.backends.size(); ++i) {
    if (a.backends[i].name != b.backends[i].name) return false;
  }
  return true;
}
}  // namespace

Worker::Worker(int index, SharedState& shared, std::vector<int> listen_fds, std::function<void()> on_exit)
    : index_(index), shared_(shared), listen_fds_(std::move(listen_fds)), on_exit_(std::move(on_exit)) {
  uv_loop_init(&loop_);
  async_.init(&loop_, on_async);
  tick_timer_.init(&loop_);
  shutdown_timer_.init(&loop_);
  replay_timer_.init(&loop_);
  catalog_timer_.init(&loop_);
  config_ = shared_.config.load();
  view_ = shared_.view.load();
  classifier_ = std::make_unique<routing::Classifier>(config_->routing.write_functions, kClassifierCache,
                                                       shared_.learned_writes);
}

Worker::~Worker() {
  pools_.clear();
  uv_loop_close(&loop_);
}

void Worker::start() { thread_ = std::thread([this] { run(); }); }

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

bool Worker::post(std::function<void(Worker&)> fn) {
  std::lock_guard lock(inbox_mutex_);
  if (inbox_closed_) return false;  // the loop is ending; nothing would run it
  inbox_.push_back(std::move(fn));
  uv_async_send(async_.get());
  return true;
}

void Worker::apply_config(std::shared_ptr<const conf::Config> config,
                          std::shared_ptr<const routing::BackendsView> view) {
  post([config = std::move(config), view = std::move(view)](Worker& w) mutable {
    w.on_config(std::move(config), std::move(view));
  });
}

// Clients keep the snapshot they logged in under (their user and database entries stay valid); what they look up
// per request (routing settings, timeouts, pools) comes from the worker's current config.
// Order matters: every client's backend mask follows the new backend list before anything can route a request
// (a pool growing serves its waiters, a draining pool sends its waiters elsewhere).
void Worker::on_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const routing::BackendsView> view) {
  if (config->routing.write_functions != config_->routing.write_functions) {
    classifier_ = std::make_unique<routing::Classifier>(config->routing.write_functions, kClassifierCache,
                                                         shared_.learned_writes);
  }
  if (!same_backend_names(*config_, *config)) balancer_ = routing::Balancer();  // its credits are by index
  config_ = std::move(config);
  forget_pool_lookups();  // backend indices and pool keys may mean other things now
  serializable_defaults_.clear();  // the operator's word that things changed: learned again if still so
  view_ = std::move(view);
  std::vector<ClientConn*> clients;
  clients_.for_each([&](ClientConn* client) { clients.push_back(client); });
  for (ClientConn* client : clients) client->on_config_changed(*config_);
  for (Pool* pool : reconfigure_pools()) pool->drain();
  on_view(view_);
}

void Worker::close_idle_servers_to(int backend_index, uint64_t lost_server) {
  if (backend_index < 0) return;  // a pool a reload moved aside: no backend of the config any more
  size_t closed = 0;
  const char* backend = "?";
  for (auto& [key, pool] : pools_) {
    if (pool->backend_index() != backend_index || pool->idle_count() == 0) continue;
    backend = pool->backend().name.c_str();
    closed += pool->idle_count();
    pool->close_idle_servers();
  }
  if (closed == 0) return;
  LOG_INFO("backend %s: S-%llu ended as the whole server does (a crash, an immediate shutdown, or a close without a "
           "word): closing this worker's %zu idle connections to it, which cannot be alive either",
           backend, static_cast<unsigned long long>(lost_server), closed);
}

void Worker::shutdown(bool graceful) {
  post([graceful](Worker& w) { w.begin_shutdown(graceful); });
}

void Worker::run() {
  open_listeners();
  uv_timer_start(tick_timer_.get(), on_tick, kTickMs, kTickMs);
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Servers and clients are deleted in their close callbacks, which have all run once uv_run returns.
  forget_pool_lookups();
  pools_.clear();
  if (on_exit_) on_exit_();
}

void Worker::open_listeners() {
  for (int fd : listen_fds_) {
    auto tcp = std::make_unique<UvTcp<Worker>>(this);
    tcp->init(&loop_);
    int rc = uv_tcp_open(tcp->get(), fd);
    if (rc == 0) rc = uv_listen(tcp->stream(), 511, on_connection);
    if (rc != 0) LOG_ERROR("worker %d: cannot listen: %s", index_, uv_strerror(rc));
    listeners_.push_back(std::move(tcp));
  }
  listen_fds_.clear();
}

void Worker::on_connection(uv_stream_t* server, int status) {
  auto* self = UvTcp<Worker>::owner_of(server);
  if (status < 0) {
    LOG_WARN("worker %d: accept failed: %s", self->index_, uv_strerror(status));
    return;
  }
  if (self->shutting_down_) return;
  auto* client = new ClientConn(*self, ++self->shared_.next_client_id);
  if (!client->accept(server)) return;
  LOG_DEBUG("C-%llu %s: accepted on worker %d", static_cast<unsigned long long>(client->id()), client->peer().c_str(),
            self->index_);
  // max_client_conn is checked once the startup packet is read (ClientConn::handle_startup_message), as
  // PostgreSQL checks max_connections: an SSLRequest first gets its answer, and a CancelRequest goes through.
  // Connections that never send a packet must not hold every file descriptor until client_login_timeout: past
  // twice the limit the tick closes those still without a startup packet after kCrowdedStartupWait, and past four
  // times it the connection is refused at once (its SSLRequest, if any, then reads the FATAL).
  if (self->shared_.clients.load() > int64_t{4} * self->config_->max_client_conn) {
    client->fail({Failure::TooManyClients, {std::to_string(self->config_->max_client_conn)}});
  }
}

void Worker::on_async(uv_async_t* handle) {
  auto* self = UvAsync<Worker>::owner_of(handle);
  std::vector<std::function<void(Worker&)>> work;
  {
    std::lock_guard lock(self->inbox_mutex_);
    work.swap(self->inbox_);
  }
  for (auto& fn : work) fn(*self);
}

void Worker::on_tick(uv_timer_t* handle) { UvTimer<Worker>::owner_of(handle)->tick(); }

bool Worker::evict_idle_server(const Pool& starving) {
  const auto evict_here = [](Worker& w, const Pool* except, const Pool::Limits& budgets) {
    for (auto& [key, pool] : w.pools_) {
      if (pool.get() != except && pool->evict_idle_for(budgets)) return true;
    }
    return false;
  };
  if (evict_here(*this, &starving, starving.limits())) return true;
  // One other worker per ask, in turns (the starving pool asks again while its clients wait): one server closes for
  // one slot, not one on every worker.
  const size_t workers = shared_.workers.size();
  for (size_t tried = 0; tried < workers; ++tried) {
    Worker* other = shared_.workers[next_evict_worker_++ % workers];
    if (other == this) continue;
    other->post([budgets = starving.limits(), evict_here](Worker& w) { evict_here(w, nullptr, budgets); });
    break;
  }
  return false;
}

void Worker::request_shed(const std::string& key, const ShedRequest& request) {
  for (Worker* other : shared_.workers) {
    if (other == this) continue;
    other->post([key, request, starving = index_](Worker& w) {
      if (auto it = w.pools_.find(key); it != w.pools_.end()) it->second->shed_for(request, starving);
    });
  }
}

void Worker::give_slot(const Pool& from, int to_worker) {
  const Pool::Limits budgets = from.limits();
  for (Worker* other : shared_.workers) {
    if (other->index() != to_worker) continue;
    const bool posted = other->post([key = from.key(), budgets](Worker& w) {
      auto it = w.pools_.find(key);
      if (it != w.pools_.end()) {
        it->second->accept_slot(budgets);
      } else {
        Pool::release_budgets(budgets);  // that pool is gone (a reload, or it went unused)
      }
    });
    if (!posted) Pool::release_budgets(budgets);  // that worker is stopping
    return;
  }
  Pool::release_budgets(budgets);
}

void Worker::report_refused(const std::string& backend, const std::string& error) {
  shared_.control->report_refused_connection(backend, error);
}

PoolServer* Worker::create_server(Pool& pool) { return new ServerConn(*this, pool, next_server_id()); }

void Worker::publish_view(std::shared_ptr<const routing::BackendsView> view) {
  post([view = std::move(view)](Worker& w) mutable { w.on_view(std::move(view)); });
}

// A backend's socket address. A host name is never looked up here: getaddrinfo would stop this worker's loop, and
// every client on it, for as long as DNS takes. The prober resolves it on the control thread at each connect and
// the view carries what its last successful probe connected to.
bool Worker::backend_address(size_t index, BackendAddress* out, std::string* error) const {
  const conf::Backend& backend = config_->backends[index];
  if (numeric_address(backend.host, backend.port, &out->address)) return true;
  const routing::BackendStatus* status = index < view_->backends.size() ? &view_->backends[index] : nullptr;
  const bool same = status != nullptr && status->spec.name == backend.name && status->spec.host == backend.host;
  if (same && numeric_address(status->last.address, backend.port, &out->address)) {
    out->resolved = status->last.address;
    return true;
  }
  *error = "host name \"" + backend.host + "\" is not resolved yet (pgmux resolves it when probing the backend";
  if (same && !status->last_error.empty()) *error += "; last probe: " + status->last_error;
  *error += ")";
  return false;
}

// A backend named by host name that the prober now finds at another address: new connections go there.
void Worker::follow_resolved_address(Pool& pool, const routing::BackendStatus& status) {
  const BackendAddress& current = pool.backend();
  if (current.resolved.empty() || pool.draining()) return;  // an address, not a name
  if (status.spec.name != current.name || status.spec.host != current.host) return;
  const std::string& resolved = status.last.address;
  if (resolved.empty() || resolved == current.resolved) return;
  sockaddr_storage address{};
  if (!numeric_address(resolved, current.port, &address)) return;
  LOG_INFO("pool %s: backend %s (%s) is now at %s", pool.name().c_str(), current.name.c_str(), current.host.c_str(),
           resolved.c_str());
  pool.set_address(address, resolved);
}

void Worker::on_view(std::shared_ptr<const routing::BackendsView> view) {
  view_ = std::move(view);
  // Each pool follows its backend's status: a host name found at another address, and fencing. Servers on fenced
  // backends (an old primary back on an older timeline, a stranger system) must not serve, except while a
  // switchover drains its primary: the transactions running there finish first.
  for (auto& [key, pool] : pools_) {
    const size_t index = static_cast<size_t>(pool->backend_index());
    if (index >= view_->backends.size()) continue;
    const routing::BackendStatus& backend = view_->backends[index];
    follow_resolved_address(*pool, backend);
    const bool draining = backend.fence && backend.fence->stage == routing::BackendStatus::FenceStage::Draining;
    if (backend.role == routing::Role::Fenced && !draining) pool->close_all(Failure::BackendFenced);
  }
  wake_primary_waiters();
  wake_replay_waiters();
}

void Worker::wait_for_replay(ClientConn* client, double seconds_left) {
  if (!client->state_wait_node.linked()) replay_waiters_.push_back(client);
  // uv_now() may lag the clock the deadline was set with: one more millisecond, so the wake is not too early.
  const uint64_t delay_ms = static_cast<uint64_t>(std::ceil(std::max(0.0, seconds_left) * 1000)) + 1;
  const uint64_t due = uv_now(&loop_) + delay_ms;
  if (uv_is_active(replay_timer_.handle()) && replay_timer_due_ <= due) return;
  replay_timer_due_ = due;
  uv_timer_start(replay_timer_.get(), on_replay_timer, delay_ms, 0);
}

void Worker::on_replay_timer(uv_timer_t* handle) { UvTimer<Worker>::owner_of(handle)->wake_replay_waiters(); }

// Woken reads are routed again: to a standby that caught up, the primary past their deadline, or back to waiting
// (which re-arms the timer).
void Worker::wake_replay_waiters() {
  if (replay_waiters_.empty()) return;
  uv_timer_stop(replay_timer_.get());
  std::vector<ClientConn*> waiters;
  while (ClientConn* client = replay_waiters_.pop_front()) waiters.push_back(client);
  for (ClientConn* client : waiters) client->on_view_changed();
}

void Worker::wait_for_catalog(ClientConn* client) {
  if (!client->state_wait_node.linked()) catalog_waiters_.push_back(client);
  if (!uv_is_active(catalog_timer_.handle())) {
    uv_timer_start(catalog_timer_.get(), on_catalog_timer, kCatalogPollMs, kCatalogPollMs);
  }
}

void Worker::on_catalog_timer(uv_timer_t* handle) { UvTimer<Worker>::owner_of(handle)->poll_catalog_waiters(); }

void Worker::poll_catalog_waiters() {
  std::vector<std::pair<ClientConn*, bool>> over;  // and whether the catalog loaded
  const double t = now();
  catalog_waiters_.for_each([&](ClientConn* client) {
    if (!client->first_catalog_pending()) {
      over.emplace_back(client, true);
    } else if (t - client->wait_started() >= kFirstCatalogWait) {
      over.emplace_back(client, false);
    }
  });
  for (const auto& [client, loaded] : over) client->on_catalog_wait_over(loaded);  // off the list as it goes on
  if (catalog_waiters_.empty()) uv_timer_stop(catalog_timer_.get());
}

// Each woken client may wait again (and re-join the list), so wake a snapshot, not the live list.
void Worker::wake_primary_waiters() {
  if (primary_waiters_.empty()) return;
  std::vector<ClientConn*> waiters;
  while (ClientConn* client = primary_waiters_.pop_front()) waiters.push_back(client);
  for (ClientConn* client : waiters) client->on_view_changed();
}

// Clients held by PAUSE whose database is no longer paused go on (checked each tick: RESUME needs no broadcast);
// those held for query_wait_timeout fail their request.
void Worker::release_resumed() {
  if (paused_.empty()) return;
  std::vector<ClientConn*> resumed;
  std::vector<ClientConn*> timed_out;
  const double query_wait_timeout = config_->timeouts.query_wait_timeout;
  paused_.for_each([&](ClientConn* client) {
    if (!shared_.paused.is_paused(client->database())) {
      resumed.push_back(client);
    } else if (now() - client->wait_started() >= query_wait_timeout) {
      timed_out.push_back(client);
    }
  });
  for (ClientConn* client : resumed) client->on_resume();  // off the list as it leaves Paused
  for (ClientConn* client : timed_out) client->on_paused_too_long(query_wait_timeout);
}

void Worker::tick() {
  const double t = now();
  const conf::Timeouts& timeouts = config_->timeouts;
  for (auto& [name, pool] : pools_) pool->tick(t, timeouts);
  retire_unused_auto_pools(t);
  remove_empty_pools();
  wake_primary_waiters();
  release_resumed();
  // A snapshot: failing one client can, through its pool, close another one of this list.
  std::vector<ClientConn*> clients;
  clients_.for_each([&](ClientConn* client) { clients.push_back(client); });
  const bool crowded = shared_.clients.load() > int64_t{2} * config_->max_client_conn;
  for (ClientConn* client : clients) {
    if (!client->open()) continue;
    bool logging_in = client->state() == ClientState::Startup || client->state() == ClientState::AuthLookup ||
                      client->state() == ClientState::Auth;
    const double age = t - client->created_at();
    if (logging_in && (age > timeouts.client_login_timeout ||
                       (crowded && client->state() == ClientState::Startup && age > kCrowdedStartupWait))) {
      client->fail(Failure::LoginTimeout);
    } else if (is_logged_in(client->state())) {
      if (AdminConsole* admin = client->admin_console()) admin->on_tick();
      client->check_idle(t, timeouts);
    }
  }
}

bool Worker::serializable_default_of(const std::string& database, const std::string& user) const {
  if (serializable_defaults_.empty()) return false;
  const auto it = serializable_defaults_.find({database, user});
  return it != serializable_defaults_.end() && now() - it->second < config_->routing.function_catalog_refresh;
}

const protocol::ScramSecret* Worker::scram_secret_for(const conf::User& user) {
  auto it = scram_cache_.find(user.name);
  if (it != scram_cache_.end() && it->second.first == user.password) return &it->second.second;
  protocol::ScramSecret secret;
  if (conf::password_kind(user.password) == conf::PasswordKind::Md5Hash) {
    return nullptr;  // as PostgreSQL: an md5 hash cannot verify SCRAM (the exchange is a mock, bound to fail)
  }
  if (protocol::is_scram_secret(user.password)) {
    auto parsed = protocol::parse_scram_secret(user.password);
    if (!parsed) return nullptr;
    secret = *parsed;
  } else {
    // A plaintext password: derive a secret once (PBKDF2 is deliberately slow) with a random salt.
    std::string salt(16, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size()));
    secret = protocol::make_scram_secret(user.password, salt, 4096);
  }
  auto& slot = scram_cache_[user.name];
  slot = {user.password, std::move(secret)};
  return &slot.second;
}

void Worker::add_client(ClientConn* client) {
  clients_.push_back(client);
  shared_.clients.fetch_add(1);
}

void Worker::remove_client(ClientConn* client) {
  if (client->worker_node.linked()) shared_.clients.fetch_sub(1);
  clients_.remove(client);
  if (shutting_down_ && clients_.empty()) finish();
}

void Worker::begin_shutdown(bool graceful) {
  if (!shutting_down_) {
    shutting_down_ = true;
    for (auto& listener : listeners_) listener->close();
  }
  if (!graceful) {
    finish();
    return;
  }
  // Clients not yet in a session have nothing to finish.
  clients_.for_each([](ClientConn* client) {
    if (!is_logged_in(client->state())) client->fail(Failure::ShuttingDown);  // FATAL: not logged in yet
  });
  if (clients_.empty()) {
    finish();
    return;
  }
  LOG_INFO("worker %d: waiting up to %.0f s for %zu sessions to finish", index_, config_->timeouts.shutdown_timeout,
           clients_.size());
  uv_timer_start(shutdown_timer_.get(), on_shutdown_timer,
                 static_cast<uint64_t>(config_->timeouts.shutdown_timeout * 1000), 0);
}

void Worker::on_shutdown_timer(uv_timer_t* handle) { UvTimer<Worker>::owner_of(handle)->finish(); }

void Worker::finish() {
  if (finished_) return;
  finished_ = true;
  clients_.for_each([](ClientConn* client) { client->fail(Failure::AdminShutdown); });
  for (auto& [name, pool] : pools_) pool->close_all(Failure::ShuttingDown);
  // Work posted before the inbox closed still runs (snapshot requests, admin answers): a gatherer on another
  // worker must not wait forever for this one.
  std::vector<std::function<void(Worker&)>> left;
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_closed_ = true;
    left.swap(inbox_);
  }
  for (auto& fn : left) fn(*this);
  async_.close();
  tick_timer_.close();
  shutdown_timer_.close();
  replay_timer_.close();
  catalog_timer_.close();
}

}  // namespace pgmux::proxy
