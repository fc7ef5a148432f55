// ServerLease (proxy/server/server_lease.hpp) over a real Pool with fake servers (tests/unit/pool_fakes.hpp):
// whatever way a lease ends, the pool gets its server back exactly once and decides reuse, reset or close.
#include "proxy/server/server_lease.hpp"

#include <doctest/doctest.h>

#include "pool_fakes.hpp"

using namespace pool_fakes;

namespace {

using FakeLease = Lease<FakeServer>;

// A client's checkout: the server the pool handed to `name`, held as a lease.
FakeLease checkout(PoolFixture& f, const std::string& name) {
  FakeClient& c = f.client_holding_server(name);
  FakeServer* server = static_cast<FakeServer*>(c.server);
  c.server = nullptr;
  return FakeLease(server);
}

}  // namespace

TEST_CASE_FIXTURE(PoolFixture, "lease: going out of scope hands a clean server back for reuse") {
  make_pool(1, PoolMode::Transaction);
  {
    FakeLease lease = checkout(*this, "c1");
    CHECK(pool->idle_count() == 0);
    CHECK(server(1).linked_client() != nullptr);
  }
  CHECK(pool->idle_count() == 1);
  CHECK(server(1).linked_client() == nullptr);
  CHECK(server(1).queries.empty());  // clean, transaction pooling: no reset
  CHECK(server(1).open());
}

TEST_CASE_FIXTURE(PoolFixture, "lease: a server whose session changed is reset before anyone else gets it") {
  make_pool(1, PoolMode::Transaction);
  FakeLease lease = checkout(*this, "c1");
  lease->changed_session = true;
  lease.give_back();
  CHECK(lease.get() == nullptr);
  CHECK(server(1).queries == std::vector<std::string>{"DISCARD ALL"});
  CHECK(pool->idle_count() == 0);  // idle only once the reset answered
  server(1).answer(true);
  CHECK(pool->idle_count() == 1);
}

TEST_CASE_FIXTURE(PoolFixture, "lease: the facts only the client knows are passed on") {
  make_pool(1, PoolMode::Transaction);
  FakeLease lease = checkout(*this, "c1");
  ServerFacts facts;
  facts.session_state = true;  // pinned: the client left state there
  lease.give_back(facts);
  CHECK(server(1).queries == std::vector<std::string>{"DISCARD ALL"});

  server(1).answer(true);
  FakeLease second = checkout(*this, "c2");
  CHECK(second.get() == &server(1));
  ServerFacts copying;
  copying.copy_in = true;  // COPY FROM STDIN was streaming: it cannot be reused
  second.give_back(copying);
  CHECK_FALSE(server(1).open());
}

TEST_CASE_FIXTURE(PoolFixture, "lease: a mid-request server or a failure that says so closes it") {
  make_pool(2, PoolMode::Transaction);
  FakeLease busy = checkout(*this, "c1");
  busy->usable = false;  // replies still owed, or a transaction open
  busy.give_back();
  CHECK_FALSE(server(1).open());

  FakeLease broken = checkout(*this, "c2");
  FakeServer* s = broken.get();
  broken.give_back({}, Failure::ServerInvalidMessage);
  CHECK_FALSE(s->open());
  CHECK(pool->idle_count() == 0);
}

TEST_CASE_FIXTURE(PoolFixture, "lease: moving keeps one owner; assigning over a lease gives the old server back") {
  make_pool(2, PoolMode::Transaction);
  FakeLease first = checkout(*this, "c1");
  FakeLease moved(std::move(first));
  CHECK(first.get() == nullptr);
  first.give_back();  // empty: nothing happens
  CHECK(pool->idle_count() == 0);
  CHECK(moved.get() == &server(1));

  moved = checkout(*this, "c2");
  CHECK(moved.get() == &server(2));
  CHECK(pool->idle_count() == 1);  // server 1 went back when it was replaced
  CHECK(server(1).linked_client() == nullptr);
}

TEST_CASE_FIXTURE(PoolFixture, "lease: forget() lets go of a closing server without telling the pool again") {
  make_pool(1, PoolMode::Transaction);
  FakeLease lease = checkout(*this, "c1");
  server(1).close();  // as a lost connection: the pool has taken it off its lists
  lease.forget();
  CHECK(lease.get() == nullptr);
  CHECK(pool->idle_count() == 0);
  CHECK_FALSE(server(1).open());
}
