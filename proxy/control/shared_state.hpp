// What every worker and the control loop share: the current config snapshot (swapped atomically), the cancel
// registry, connection id counters, the function catalogs and the last acknowledged commit. Everything here is
// thread-safe by construction.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "proxy/client/cancel.hpp"
#include "proxy/net/wall_clock.hpp"
#include "proxy/control/auth_cache.hpp"
#include "proxy/control/commit_clock.hpp"
#include "proxy/control/function_catalogs.hpp"
#include "proxy/control/pause_state.hpp"
#include "proxy/client/pin_counters.hpp"
#include "proxy/net/tls_context.hpp"
#include "proxy/server/session_params.hpp"
#include "routing/learned_writes.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

class Control;
class Worker;

// The server-connection budget of one pool key (database, user, backend) across all workers: pool_size is a
// limit for the whole process, not per worker, so an uneven spread of clients over workers cannot starve one.
struct PoolBudget {
  explicit PoolBudget(int max) : limit(max) {}
  // extra: slots beyond the limit this caller may use (the reserve pool).
  bool try_acquire(int extra = 0) {
    int current = used.load(std::memory_order_relaxed);
    while (current < limit.load(std::memory_order_relaxed) + extra) {
      if (used.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  void release() { used.fetch_sub(1, std::memory_order_acq_rel); }
  std::atomic<int> used{0};
  std::atomic<int> limit;
  std::atomic<int> reserve{0};  // reserve_pool_size as last configured for a pool key (Worker::pool_limits)
  // A worker's pool of this key is starving and asked the others for a slot (Pool::shed_for): the first pool to
  // give one clears it, so one request costs one server, however many workers heard it.
  std::atomic<bool> slot_wanted{false};
};

// What the newest server of a pool key reported at login, for transaction pooling to log clients in without a
// server on any worker: a role's or database's defaults changed since (ALTER ROLE ... SET TimeZone) reach the
// clients that log in after a server that read them. Empty: the next client logs in through a server.
class SharedLoginParams {
 public:
  SessionParams get() const {
    std::lock_guard lock(mutex_);
    return params_;
  }
  void record(const SessionParams& params) {
    std::lock_guard lock(mutex_);
    params_ = params;
  }
  // RECONNECT: what the old servers read at login may be stale.
  void forget() {
    std::lock_guard lock(mutex_);
    params_ = SessionParams{};
  }

 private:
  mutable std::mutex mutex_;
  SessionParams params_;
};

struct SharedState {
  SharedState(std::shared_ptr<const conf::Config> initial, std::shared_ptr<const routing::BackendsView> first_view)
      : config(std::move(initial)), view(std::move(first_view)) {}
  // Ends the keys of pools, and of database budgets, made for clients that logged in through "*".
  static constexpr std::string_view kWildcardKeySuffix{"\0*", 2};
  // The max_db_connections budget of `database`'s pools made through its own entry, or through "*".
  static std::string database_budget_key(const std::string& database, bool through_wildcard) {
    std::string key = std::string("database") + '\0' + database;
    if (through_wildcard) key += kWildcardKeySuffix;
    return key;
  }

  std::atomic<std::shared_ptr<const conf::Config>> config;
  std::atomic<std::shared_ptr<const routing::BackendsView>> view;  // the prober's latest snapshot
  CancelRegistry cancels;
  const double started_unix = wall_clock_seconds();  // SHOW STATS' per-second averages
  std::atomic<uint64_t> next_client_id{0};
  std::atomic<uint64_t> next_server_id{0};
  Control* control = nullptr;    // set before any worker starts; call only its thread-safe post()
  std::vector<Worker*> workers;  // set before any worker starts, read-only afterwards
  std::atomic<int> clients{0};   // connected clients over all workers (max_client_conn)
  PinCounters pins;
  PauseState paused;  // the console's PAUSE
  FunctionCatalogs catalogs;  // per server database: volatile functions and views, loaded by the control loop
  // Statement texts a standby rejected as writes (25006), for every worker's classifier; kept across reloads.
  std::shared_ptr<routing::LearnedWrites> learned_writes = std::make_shared<routing::LearnedWrites>();
  CommitClock commits;        // the last write commit acknowledged to any client (causal reads)
  AuthCache auth_cache;       // auth_query: what the database said about users the config does not list
  // tls.client's OpenSSL context as last loaded (startup, reload); null while the mode is disable. A connection
  // takes it at its SSLRequest and keeps it, so a reload changes only the connections that come after it.
  std::atomic<std::shared_ptr<const TlsServerContext>> client_tls;
  // Each backend's TLS client context (sslmode other than disable), loaded with client_tls; always set.
  std::atomic<std::shared_ptr<const BackendTlsContexts>> backend_tls{std::make_shared<const BackendTlsContexts>()};

  // Databases a client named through the "*" entry, each with the number of pools (over all workers) open for
  // it. A client chooses the name, so their number is bounded (max_auto_databases) and what is kept per name goes
  // with its last pool. False when `name` is not open yet and `limit` names are.
  bool open_auto_database(const std::string& name, int limit) {
    std::lock_guard lock(budgets_mutex);
    auto it = auto_databases.find(name);
    if (it == auto_databases.end()) {
      if (static_cast<int>(auto_databases.size()) >= limit) return false;
      it = auto_databases.emplace(name, 0).first;
    }
    ++it->second;
    return true;
  }
  // One pool of `name` is gone; the last one takes the name's budgets and login parameters along. True then.
  bool close_auto_database(const std::string& name) {
    std::lock_guard lock(budgets_mutex);
    auto it = auto_databases.find(name);
    if (it == auto_databases.end() || --it->second > 0) return false;
    auto_databases.erase(it);
    // Pool keys start with the database and end with kWildcardKeySuffix when made through "*" (pool_key in
    // worker_pools.cpp): a pool of the database's own entry, added by a reload, keeps its budget.
    const std::string prefix = name + '\0';
    const auto wildcard_pool = [&](const std::string& key) {
      return key.starts_with(prefix) && key.ends_with(kWildcardKeySuffix);
    };
    std::erase_if(budgets, [&](const auto& entry) {
      return wildcard_pool(entry.first) || entry.first == database_budget_key(name, true);
    });
    std::erase_if(login_params, [&](const auto& entry) { return wildcard_pool(entry.first); });
    return true;
  }
  std::vector<std::string> open_auto_databases() const {
    std::lock_guard lock(budgets_mutex);
    std::vector<std::string> names;
    for (const auto& [name, pools] : auto_databases) names.push_back(name);
    return names;
  }

  std::shared_ptr<SharedLoginParams> login_params_for(const std::string& key) {
    std::lock_guard lock(budgets_mutex);
    auto& params = login_params[key];
    if (!params) params = std::make_shared<SharedLoginParams>();
    return params;
  }

  // The budget of `key`, created on first use; `limit` is the current config's, so a reload that changes it
  // takes effect for every worker's pools of that key.
  std::shared_ptr<PoolBudget> budget_for(const std::string& key, int limit) {
    std::lock_guard lock(budgets_mutex);
    auto& budget = budgets[key];
    if (!budget) budget = std::make_shared<PoolBudget>(limit);
    budget->limit.store(limit, std::memory_order_relaxed);
    return budget;
  }
  // The budget of `key` with the limit (and reserve) it has: the last config that had its entry set them. `limit` and
  // `reserve` only for a budget not kept any more.
  std::shared_ptr<PoolBudget> kept_budget_for(const std::string& key, int limit, int reserve = 0) {
    std::lock_guard lock(budgets_mutex);
    auto& budget = budgets[key];
    if (!budget) {
      budget = std::make_shared<PoolBudget>(limit);
      budget->reserve.store(reserve, std::memory_order_relaxed);
    }
    return budget;
  }

 private:
  mutable std::mutex budgets_mutex;
  std::map<std::string, std::shared_ptr<PoolBudget>> budgets;
  std::map<std::string, int> auto_databases;
  std::map<std::string, std::shared_ptr<SharedLoginParams>> login_params;
};

}  // namespace pgmux::proxy
