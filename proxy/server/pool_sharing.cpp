// One pool key's budget shared by the pools of several workers (pool_size holds for the whole process). A worker
// whose clients wait with the budget spent asks the others for a slot (PoolHost::request_shed); one of them closes
// a server and passes its slot on (PoolHost::give_slot). Moving a server costs a new server connection and a
// backend start, so a server moves only when that makes the split clearly fairer: by servers per unit of demand,
// with demand measured as the most clients that wanted a server at once over the last second or two. Measured
// at one instant, demand swings with every transaction (a worker with more servers has fewer clients waiting),
// and servers moved back and forth many times a second under overload.
#include <algorithm>

#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"

namespace pgmux::proxy {

namespace {
// How often a starving pool asks, and for how long a request holds.
constexpr double kAskEvery = 0.1;
constexpr double kRequestHolds = 0.5;
// A budget too small to split (a pool_size of 1 over two workers' clients) goes in turns: to the other worker once
// its oldest client has waited this much longer than the first one here.
constexpr double kTurnMargin = 0.5;
// How long one window of the demand measure lasts; demand is the peak over this window and the one before it.
constexpr double kDemandWindow = 1.0;

// A budget that is set (max_db_connections, max_user_connections may be off) and has no slot left.
bool budget_spent(const std::shared_ptr<PoolBudget>& budget) {
  return budget && budget->used.load(std::memory_order_relaxed) >= budget->limit.load(std::memory_order_relaxed);
}
}  // namespace

void Pool::note_demand(int taking) {
  demand_peak_ = std::max(demand_peak_, static_cast<int>(busy_.size() + waiting_.size()) + taking);
}

int Pool::demand() const {
  return std::max({demand_peak_, demand_peak_before_, static_cast<int>(busy_.size() + waiting_.size())});
}

void Pool::roll_demand_window(double now) {
  if (now - demand_window_start_ < kDemandWindow) return;
  demand_peak_before_ = demand_peak_;
  demand_peak_ = static_cast<int>(busy_.size() + waiting_.size());
  demand_window_start_ = now;
}

// The budget is spent and nothing here is idle: idle servers of this key on other workers are the only slack.
void Pool::ask_for_slot(double now) {
  if (now - last_shed_request_ < kAskEvery) return;
  last_shed_request_ = now;
  limits_.pool->slot_wanted.store(true, std::memory_order_relaxed);
  host_.request_shed(key_, shed_request());
}

// Served after all (a server of its own came back): a slot this worker asked for lately is no longer wanted, and
// other workers must not close a server to give it one. (Another worker's request, if one was pending too, is
// renewed within kAskEvery.)
void Pool::forget_slot_request(double now) {
  if (now - last_shed_request_ < kRequestHolds) limits_.pool->slot_wanted.store(false, std::memory_order_relaxed);
}

ShedRequest Pool::shed_request() const {
  ShedRequest request;
  request.oldest_wait = waiting_.empty() ? host_.now() : waiting_.front()->wait_started();
  request.servers = static_cast<int>(server_count());
  request.demand = demand();
  return request;
}

// Whether one of this pool's servers should go to the starving pool that sent `there`. A pool with no server gets
// one from a pool with two or more; a lone server goes in turns (kTurnMargin). Otherwise the starving pool's
// servers per unit of demand, raised by a quarter, must stay below this pool's after the move: a split that is
// about even stays, and the move is never undone by the next swing of demand.
bool Pool::fair_to_give(const ShedRequest& there) const {
  const int servers = static_cast<int>(server_count());
  if (there.servers == 0 && servers >= 2) return true;
  if (there.servers == 0) {
    return waiting_.empty() || waiting_.front()->wait_started() - there.oldest_wait >= kTurnMargin;
  }
  const int64_t here_demand = demand();
  if (here_demand == 0) return true;  // nobody here wanted a server lately
  return int64_t{there.servers} * here_demand * 5 < int64_t{servers - 1} * there.demand * 4;
}

void Pool::shed_for(const ShedRequest& request, int starving_worker) {
  if (draining() || !fair_to_give(request)) return;  // a draining pool's servers close anyway, each freeing a slot
  // Idle servers of the reserve pool (beyond pool_size) close first: their slots are not handed over
  // (claim_wanted_slot), and while they stay the budget never has room for the starving worker (a hunt saw its
  // clients get 53300 for good with two idle servers here, pool_size 1 and reserve_pool_size 1).
  while (idle_.back() && budget_over_pool_size()) idle_.back()->close();
  if (PoolServer* oldest = idle_.back()) {
    if (claim_wanted_slot()) shed(oldest, starving_worker);
  } else if (!busy_.empty()) {
    owed_shed_ = OwedShed{request, host_.now(), starving_worker};
  }
}

// Called with a server about to go idle, while a starving worker's request is fresh (it asks every kAskEvery while
// starving): the server closes and its slot goes there if that is fair (fair_to_give, asked again: demand here
// may have changed since the request came).
bool Pool::give_to_starving_worker(PoolServer* server) {
  if (!owed_shed_) return false;
  const OwedShed owed = *owed_shed_;
  if (host_.now() - owed.asked_at > kRequestHolds || !limits_.pool->slot_wanted.load(std::memory_order_relaxed)) {
    owed_shed_.reset();  // too old, or another worker gave one already
    return false;
  }
  if (retire_reason(*server)) return false;  // it closes anyway, freeing its slot for anyone
  if (!fair_to_give(owed.request)) return false;
  owed_shed_.reset();
  if (!claim_wanted_slot()) return false;
  shed(server, owed.worker);
  return true;
}

// The slot another worker asked for, if nobody gave it yet; never a reserve-pool slot (beyond pool_size), which
// only a client that waited reserve_pool_timeout may use.
bool Pool::claim_wanted_slot() {
  if (budget_over_pool_size()) return false;
  return limits_.pool->slot_wanted.exchange(false, std::memory_order_relaxed);
}

bool Pool::budget_over_pool_size() const {
  const PoolBudget& budget = *limits_.pool;
  return budget.used.load(std::memory_order_relaxed) > budget.limit.load(std::memory_order_relaxed);
}

// Its slot is not released to the budget, where this pool's own next open could take it back first: it goes to
// the starving worker's pool.
void Pool::shed(PoolServer* server, int to_worker) {
  LOG_DEBUG("S-%llu pool %s: closing server for a starving worker", static_cast<unsigned long long>(server->id()),
            name_.c_str());
  last_shed_ = host_.now();
  set_state(server, ServerState::Closing);  // so on_server_closing keeps the slot
  server->close();
  host_.give_slot(*this, to_worker);
}

// The database's or the user's budget is spent while this pool's own has room: a slot can only come from a pool of
// another key drawing from the same budget, as PgBouncer evicts an idle server for max_db_connections.
bool Pool::shared_budget_spent() const {
  return !budget_spent(limits_.pool) && (budget_spent(limits_.database) || budget_spent(limits_.user));
}

// Clients still wait with a shared budget spent: an idle server of another pool closes for them. True when one
// closed on this worker (its slot is free now); another worker's is asked for at most every kAskEvery.
bool Pool::evict_for_waiters(double now) {
  if (waiting_.empty() || !shared_budget_spent()) return false;
  if (now - last_evict_request_ < kAskEvery) return false;
  if (host_.evict_idle_server(*this)) return true;
  last_evict_request_ = now;  // asked of the other workers: the slot comes back at a later tick
  return false;
}

// Only a pool that draws from every spent budget of the starving one frees a slot it can use: with both caps set,
// closing a server of the user's other database frees nothing of a spent database cap.
bool Pool::evict_idle_for(const Limits& starving) {
  const bool database_spent = budget_spent(starving.database);
  const bool user_spent = budget_spent(starving.user);
  if (!database_spent && !user_spent) return false;
  if ((database_spent && limits_.database != starving.database) || (user_spent && limits_.user != starving.user)) {
    return false;
  }
  PoolServer* oldest = idle_.back();
  if (!oldest) return false;
  LOG_INFO("S-%llu pool %s: closing an idle server: another pool's clients wait on the %s it draws from",
           static_cast<unsigned long long>(oldest->id()), name_.c_str(),
           database_spent ? (user_spent ? "max_db_connections and max_user_connections" : "max_db_connections")
                          : "max_user_connections");
  oldest->close();
  return true;
}

void Pool::accept_slot(const Limits& budgets) {
  if (draining() || budgets.pool != limits_.pool || budgets.database != limits_.database ||
      budgets.user != limits_.user) {
    release_budgets(budgets);
    if (!waiting_.empty()) serve_waiters();
    return;
  }
  // A server opens with it for the first waiting client that has none on the way (an idle server would have
  // served it already). Unused: back to the budget at once, or it would be a slot nobody can open a server with.
  for (PoolClient* client = waiting_.front(); client; client = waiting_.next_of(client)) {
    if (has_server_on_the_way(client)) continue;
    open_server(client);
    return;
  }
  release_slot();
}

void Pool::release_budgets(const Limits& limits) {
  for (const auto& budget : {limits.pool, limits.database, limits.user}) {
    if (budget) budget->release();
  }
}

}  // namespace pgmux::proxy
