// A worker's pools: found or made for a client (pool_for), and kept in step with the config at a reload.
#include <string>

#include "protocol/auth_scram.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {
// What a pool's servers are: whose session (database, user), where (backend name and address), on which server
// database and pooled how, and whether its clients logged in through the database's own entry or through "*" (a
// reload that removes the entry while "*" matches leaves the old clients their pool and limits; new ones get
// another). A reload that changes any of these needs another pool; sizes and the password are updated in place.
std::string pool_key(const std::string& database, const std::string& user, const conf::Backend& backend,
                     const std::string& server_database, conf::PoolMode mode, bool through_wildcard) {
  std::string key = database;
  for (const std::string& part : {user, backend.name, backend.host + ":" + std::to_string(backend.port),
                                  server_database, std::string(conf::to_string(mode))}) {
    key += '\0';
    key += part;
  }
  if (through_wildcard) key += SharedState::kWildcardKeySuffix;
  return key;
}

}  // namespace

std::vector<Pool*> Worker::reconfigure_pools() {
  std::vector<std::string> moved;
  std::vector<Pool*> kept;
  for (auto& [key, pool] : pools_) {
    if (pool->draining()) continue;
    const conf::Backend* backend = config_->find_backend(pool->backend().name);
    if (!backend || backend->host != pool->backend().host || backend->port != pool->backend().port) {
      moved.push_back(key);
      pool->set_backend_index(-1);  // at once: its old position may be another backend's now
      continue;
    }
    pool->set_backend_index(static_cast<int>(backend - config_->backends.data()));
    kept.push_back(pool.get());
  }
  // Draining pools leave the lookup (a new pool of the same identity may start) but stay until their servers
  // are gone; remove_empty_pools() deletes them.
  std::vector<Pool*> draining;
  if (!moved.empty()) forget_pool_lookups();
  for (const std::string& key : moved) {
    auto node = pools_.extract(key);
    draining.push_back(node.mapped().get());
    node.key() = key + '\0' + "draining " + std::to_string(++drained_pools_);
    pools_.insert(std::move(node));
  }
  // Resizing may serve waiting clients, which may open pools: work on the list taken above.
  for (Pool* pool : kept) {
    const std::string database_name = pool->database_name();
    const conf::Database* database = config_->find_database(database_name);
    const conf::User* user = config_->find_user(pool->login().user);
    // A user auth_query found keeps its pool while auth_query is on (with the secret it was found with).
    conf::User looked_up;
    if (!user && config_->auth_query.enabled()) {
      looked_up.name = pool->login().user;
      looked_up.password = pool->login().password;
      user = &looked_up;
    }
    // A pool made through the database's own entry is stale once "*" is what matches its name, and one made through
    // "*" once the name has an entry of its own: its clients go on with the limits they logged in with, not the
    // other entry's (docs/OPERATIONS-reload.md), and new clients get a pool of the other entry.
    const bool other_entry = database && database->is_wildcard() != pool->auto_database();
    if (!database || !user || other_entry) {
      pool->set_stale(true);  // its clients go on with what they logged in with
      if (other_entry && user) pool->set_password(user->password);  // the user's own entry is still current
      continue;
    }
    const conf::Backend& backend = config_->backends[static_cast<size_t>(pool->backend_index())];
    pool->set_stale(current_pool_key(database_name, user->name, backend) != pool->key());
    pool->reconfigure(pool_limits(pool->key(), database_name, *database, *user, false, false), user->password);
  }
  return draining;
}

// Drained pools, pools the config no longer describes, and pools of "*" databases that never logged a server
// in (a database that does not exist leaves nothing behind), once no server and no client refers to them.
void Worker::remove_empty_pools() {
  for (auto it = pools_.begin(); it != pools_.end();) {
    Pool& pool = *it->second;
    const bool never_served = pool.auto_database() && !pool.ever_logged_in();
    if ((pool.draining() || pool.stale() || never_served) && pool.empty()) {
      LOG_INFO("pool %s: %s, removed", pool.name().c_str(),
               pool.draining()  ? "drained after its backend was removed"
               : never_served   ? "no server of it ever logged in"
                                : "no longer in the config and unused");
      if (pool.auto_database()) shared_.close_auto_database(pool.database_name());
      keep_totals_of(pool);
      forget_pool_lookups();
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

// A pool of a "*" database unused for auto_database_idle_timeout closes its idle servers; remove_empty_pools
// takes it once they are closed. A client naming the database again opens a new one.
void Worker::retire_unused_auto_pools(double now) {
  const double limit = config_->timeouts.auto_database_idle_timeout;
  for (auto& [key, pool] : pools_) {
    if (!pool->auto_database() || pool->stale() || pool->draining() || now - pool->unused_since() < limit) continue;
    LOG_INFO("pool %s: unused for %.0f s (auto_database_idle_timeout), dropped", pool->name().c_str(), limit);
    pool->set_stale(true);
    pool->close_idle_servers();
  }
}

// Empty when the current config lacks the database or the user.
std::string Worker::current_pool_key(const std::string& database, const std::string& user,
                                     const conf::Backend& backend) const {
  const conf::Database* d = config_->find_database(database);
  const conf::User* u = config_->find_user(user);
  if (!d || (!u && !config_->auth_query.enabled())) return {};  // auth_query users are in no list
  return pool_key(database, user, backend, d->server_database_for(database), conf::Config::effective_pool_mode(u, *d),
                  d->is_wildcard());
}

// `database_kept` / `user_kept`: a reload removed that entry (or "*" took over its name) and a client that logged in
// through it opens a pool again: its budgets keep the sizes the last config with the entry gave them
// (docs/OPERATIONS-reload.md), not those of the client's login, which reloads may have changed since.
Pool::Limits Worker::pool_limits(const std::string& key, const std::string& database_name,
                                 const conf::Database& database, const conf::User& user, bool database_kept,
                                 bool user_kept) {
  const auto budget = [&](const std::string& budget_key, int limit, bool kept) {
    return kept ? shared_.kept_budget_for(budget_key, limit) : shared_.budget_for(budget_key, limit);
  };
  Pool::Limits limits;
  limits.pool = database_kept ? shared_.kept_budget_for(key, database.pool_size, database.reserve_pool_size)
                              : shared_.budget_for(key, database.pool_size);
  if (database.max_db_connections > 0) {
    // Apart from the budget of an entry of its own, added later (or removed since).
    limits.database = budget(SharedState::database_budget_key(database_name, database.is_wildcard()),
                             database.max_db_connections, database_kept);
  }
  if (user.max_user_connections > 0) {
    limits.user = budget(std::string("user") + '\0' + user.name, user.max_user_connections, user_kept);
  }
  limits.reserve = database_kept ? limits.pool->reserve.load(std::memory_order_relaxed) : database.reserve_pool_size;
  limits.pool->reserve.store(limits.reserve, std::memory_order_relaxed);
  limits.min_size = database.min_pool_size;
  return limits;
}

Pool* Worker::pool_for(const std::string& requested_database, const conf::Database& login_database,
                       const conf::User& login_user, conf::PoolMode mode, int backend_index,
                       std::optional<FailureReport>* failure) {
  if (backend_index < 0 || static_cast<size_t>(backend_index) >= config_->backends.size()) {
    *failure = FailureReport(Failure::NoUsableBackend, {requested_database});
    return nullptr;
  }
  const conf::Backend* backend = &config_->backends[static_cast<size_t>(backend_index)];
  const std::string& server_database = login_database.server_database_for(requested_database);
  const bool through_wildcard = login_database.is_wildcard();
  PoolLookup& lookup = pool_lookups_[static_cast<size_t>(backend_index) % pool_lookups_.size()];
  if (lookup.pool != nullptr && lookup.backend == backend_index && lookup.mode == mode &&
      lookup.database == requested_database && lookup.user == login_user.name &&
      lookup.server_database == server_database && lookup.through_wildcard == through_wildcard) {
    return lookup.pool;  // what pools_.find(pool_key(...)) below would find
  }
  const auto remember = [&](Pool* pool) {
    lookup = PoolLookup{requested_database, login_user.name, server_database, mode, through_wildcard, backend_index,
                        pool};
    return pool;
  };
  const std::string key =
      pool_key(requested_database, login_user.name, *backend, server_database, mode, through_wildcard);
  if (auto it = pools_.find(key); it != pools_.end()) return remember(it->second.get());

  // Sizes and the password come from the current config while it has the entry the client logged in through
  // (the database's own, or "*") and the user; a client whose entry a reload removed goes on with that one.
  const conf::Database* current_database = config_->find_database(requested_database);
  if (current_database && current_database->name != login_database.name) current_database = nullptr;
  const conf::User* current_user = config_->find_user(login_user.name);
  const conf::Database& database = current_database ? *current_database : login_database;
  const conf::User& user = current_user ? *current_user : login_user;
  BackendAddress address;
  address.name = backend->name;
  address.host = backend->host;
  address.port = backend->port;
  if (std::string error; !backend_address(static_cast<size_t>(backend_index), &address, &error)) {
    *failure = FailureReport(Failure::BackendUnresolvable, {backend->name, error});
    return nullptr;
  }
  ServerLogin login;
  login.user = user.name;
  login.password = user.password;
  login.database = server_database;
  if (protocol::is_scram_secret(user.password)) login.scram_secret = protocol::parse_scram_secret(user.password);

  // A name a client chose through "*": bounded, since each one keeps pools, budgets and login parameters.
  const bool auto_database = database.is_wildcard();
  if (auto_database && !shared_.open_auto_database(requested_database, config_->max_auto_databases)) {
    *failure = FailureReport(Failure::TooManyAutoDatabases,
                             {std::to_string(config_->max_auto_databases), requested_database});
    return nullptr;
  }
  Pool::Limits limits = pool_limits(key, requested_database, database, user, !current_database, !current_user);
  limits.login_params = shared_.login_params_for(key);
  // The name goes into log lines and messages: the database may be any name a client chose (the "*" entry).
  auto pool = std::make_unique<Pool>(
      *this, key, escape_for_log(requested_database, 64) + "/" + escape_for_log(user.name, 64) + "@" + backend->name,
      backend_index, std::move(address), std::move(login), limits, mode);
  pool->set_stale(current_pool_key(requested_database, user.name, *backend) != key);
  if (auto_database) pool->mark_auto_database();
  Pool* raw = pool.get();
  pools_.emplace(key, std::move(pool));
  return remember(raw);
}

}  // namespace pgmux::proxy
