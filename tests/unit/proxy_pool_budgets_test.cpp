// Pools of different keys drawing on one database or user budget (max_db_connections, max_user_connections): a
// pool whose clients wait with that budget spent by other pools' idle servers gets a slot by closing one of them,
// as PgBouncer evicts; busy servers are never closed for it.
#include <doctest/doctest.h>

#include "pool_fakes.hpp"

using namespace pool_fakes;

namespace {

// The fixture's pool (user app) and pool `other` (user other) on one worker, each with a pool_size of 2, both
// drawing on a database budget of `database_limit` servers.
struct SharedDatabaseBudget : PoolFixture {
  std::shared_ptr<PoolBudget> database;
  std::shared_ptr<PoolBudget> other_budget = std::make_shared<PoolBudget>(2);
  std::unique_ptr<Pool> other;

  explicit SharedDatabaseBudget(int database_limit) : database(std::make_shared<PoolBudget>(database_limit)) {
    make_pool(2, PoolMode::Transaction);
    Pool::Limits limits = pool->limits();
    limits.database = database;
    pool->reconfigure(limits, "");
    Pool::Limits other_limits = limits;
    other_limits.pool = other_budget;
    other = std::make_unique<Pool>(host, std::string("app\0other", 9), "app/other@b1", 0, BackendAddress{},
                                   ServerLogin{}, other_limits, PoolMode::Transaction);
    host.pools = {pool.get(), other.get()};
  }
  ~SharedDatabaseBudget() {
    host.pools.clear();
    other.reset();
  }
};

}  // namespace

TEST_CASE("pool budgets: another pool's idle server closes for a client waiting on the database budget") {
  SharedDatabaseBudget f(1);
  FakeClient& a = f.client("a");
  a.ask(*f.other, f.host.clock);
  f.server(1).log_in();
  REQUIRE(a.server == &f.server(1));
  a.give_back(*f.other);  // idle in `other`, holding the database's one slot
  REQUIRE(f.other->idle_count() == 1);

  FakeClient& b = f.client("b");
  b.ask(*f.pool, f.host.clock);
  CHECK_FALSE(f.server(1).open());  // evicted
  REQUIRE(f.host.servers.size() == 2);
  f.server(2).log_in();
  CHECK(b.server == &f.server(2));
  CHECK(f.database->used.load() == 1);
  CHECK(f.host.evictions_elsewhere == 0);
}

TEST_CASE("pool budgets: a busy server is never closed for another pool; the client waits, then asks elsewhere") {
  SharedDatabaseBudget f(1);
  FakeClient& a = f.client("a");
  a.ask(*f.other, f.host.clock);
  f.server(1).log_in();
  REQUIRE(a.server == &f.server(1));  // busy: its client holds it

  FakeClient& b = f.client("b");
  b.ask(*f.pool, f.host.clock);
  CHECK(f.server(1).open());
  CHECK(f.host.servers.size() == 1);
  CHECK(b.server == nullptr);
  CHECK(f.host.evictions_elsewhere == 1);  // other workers were asked
  f.tick();                                // within kAskEvery: not asked again
  CHECK(f.host.evictions_elsewhere == 1);
  a.give_back(*f.other);  // now idle: the next round of the waiting pool evicts it
  f.host.clock += 0.2;
  f.tick();
  CHECK_FALSE(f.server(1).open());
  REQUIRE(f.host.servers.size() == 2);
  f.server(2).log_in();
  CHECK(b.server == &f.server(2));
}

TEST_CASE("pool budgets: the pool's own budget spent is no reason to close another pool's server") {
  SharedDatabaseBudget f(4);
  FakeClient& a = f.client("a");
  a.ask(*f.other, f.host.clock);
  f.server(1).log_in();
  a.give_back(*f.other);
  f.client_holding_server("b1");
  f.client_holding_server("b2");
  FakeClient& b3 = f.client("b3");
  b3.ask(*f.pool, f.host.clock);  // pool_size 2 reached; the database budget has room
  CHECK(f.server(1).open());
  CHECK(f.host.evictions_elsewhere == 0);
  CHECK(b3.server == nullptr);
}

TEST_CASE("pool budgets: with both caps set, only a pool under the spent cap gives up an idle server") {
  SharedDatabaseBudget f(1);
  // The fixture's pool also draws on the user's budget (3), which a pool of another database shares.
  auto user = std::make_shared<PoolBudget>(3);
  Pool::Limits limits = f.pool->limits();
  limits.user = user;
  f.pool->reconfigure(limits, "");
  Pool::Limits elsewhere_limits = limits;
  elsewhere_limits.pool = std::make_shared<PoolBudget>(2);
  elsewhere_limits.database = std::make_shared<PoolBudget>(5);  // another database
  Pool elsewhere(f.host, std::string("db2\0app", 7), "db2/app@b1", 0, BackendAddress{}, ServerLogin{},
                 elsewhere_limits, PoolMode::Transaction);
  f.host.pools.push_back(&elsewhere);
  FakeClient& e = f.client("e");
  e.ask(elsewhere, f.host.clock);
  f.server(1).log_in();
  e.give_back(elsewhere);  // idle, under the user's cap only
  FakeClient& o = f.client("o");
  o.ask(*f.other, f.host.clock);
  f.server(2).log_in();
  REQUIRE(o.server == &f.server(2));  // busy: it holds the database's one slot

  FakeClient& b = f.client("b");
  b.ask(*f.pool, f.host.clock);
  CHECK(f.server(1).open());  // closing it would free a slot of the user's cap, which is not spent
  CHECK(f.host.servers.size() == 2);
  CHECK(b.server == nullptr);
  f.host.pools.pop_back();
}
