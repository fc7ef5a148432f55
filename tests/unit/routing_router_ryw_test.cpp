// route_statement's read-your-writes: which standbys a read may go to after the client's own commit, on hand-built
// views and on views a real Topology publishes (causal reads and remote_apply: routing_causal_test.cpp and
// routing_remote_apply_test.cpp).
#include <doctest/doctest.h>

#include "routing/router.hpp"
#include "tests/unit/routing_router_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

TEST_CASE("router: read-your-writes") {
  // Standby 1 replayed 250, standby 2 replayed 150; the primary was sampled at LSN 100, 200, 300.
  BackendsView v = view_of({standby_status("ahead", 1, 250), standby_status("behind", 1, 150)});
  v.primary_lsn_history = {{1.0, 100}, {2.0, 200}, {3.0, 300}};
  ClientRouteState s;

  SUBCASE("a commit after every sample: the primary") {
    s.last_write_commit = 3.5;
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    check_route(route(begin_stmt(true), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    s.held_standby = 1;  // even a held standby that is ahead of everything sampled
    v.backends[1].last.replay_lsn = 1000;
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    s.last_write_commit = 3.0;  // a sample at the commit instant may predate it
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
  }
  SUBCASE("only the standby past the required LSN is eligible") {
    s.last_write_commit = 1.5;  // needs 200
    const auto counts = distribution(read_stmt(), s, v, 40);
    CHECK(counts.size() == 1);
    CHECK(counts.count(1) == 1);
    s.held_standby = 2;  // the held standby is behind: not kept
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
    s.held_standby = 1;
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
  }
  SUBCASE("a standby exactly at the required LSN is eligible") {
    s.last_write_commit = 0.5;  // needs 100: both replayed past it
    const auto counts = distribution(read_stmt(), s, v, 40);
    CHECK(counts.at(1) == 20);
    CHECK(counts.at(2) == 20);
    v.backends[2].last.replay_lsn = 200;
    s.last_write_commit = 1.5;  // needs 200
    const auto both = distribution(read_stmt(), s, v, 40);
    CHECK(both.at(1) == 20);
    CHECK(both.at(2) == 20);
  }
  SUBCASE("no readable standby caught up: the primary, because of read-your-writes") {
    s.last_write_commit = 2.5;  // needs 300
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    RouteSettings no_fallback;
    no_fallback.fallback_to_primary = false;
    check_route(route(read_stmt(), s, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::ReadYourWrites);
  }
  SUBCASE("caught up but unreadable standbys give the usual fallback reasons") {
    s.last_write_commit = 0.5;
    BackendsView w = view_of({lagging_standby("lag")});
    w.primary_lsn_history = v.primary_lsn_history;
    w.backends[1].last.replay_lsn = 250;
    check_route(route(read_stmt(), s, w), RouteTarget::Primary, 0, RouteReason::LagExcluded);
    w.backends[1] = down_standby("down");
    check_route(route(read_stmt(), s, w), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  }
  SUBCASE("writes are not affected") {
    s.last_write_commit = 3.5;
    check_route(route(write_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::Write);
  }
  SUBCASE("no write yet: any standby") {
    const auto counts = distribution(read_stmt(), s, v, 40);
    CHECK(counts.at(1) == 20);
    CHECK(counts.at(2) == 20);
  }
  SUBCASE("eventual consistency ignores the last commit") {
    RouteSettings off;
    off.consistency = Consistency::Eventual;
    s.last_write_commit = 3.5;
    const auto counts = distribution(read_stmt(), s, v, 40, off);
    CHECK(counts.at(1) == 20);
    CHECK(counts.at(2) == 20);
    s.last_write_commit = 1.5;
    s.held_standby = 2;
    check_route(route(read_stmt(), s, v, off), RouteTarget::Standby, 2, RouteReason::Read);
  }
}

TEST_CASE("router: read-your-writes with a real topology") {
  Topology t({spec("p"), spec("s1"), spec("s2")}, {});
  t.on_probe_ok(0, timed_primary_probe(1000, 0.9), 1.0);
  t.on_probe_ok(1, caught_up_standby(1000), 1.0);
  t.on_probe_ok(2, caught_up_standby(1000), 1.0);
  ClientRouteState s;
  s.last_write_commit = 1.2;  // committed after the only sample was sent
  check_route(route(read_stmt(), s, *t.view()), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);

  t.on_probe_ok(0, timed_primary_probe(1500, 1.9), 2.0);  // the first sample after the commit: 1500
  check_route(route(read_stmt(), s, *t.view()), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);

  t.on_probe_ok(2, caught_up_standby(1500), 2.1);
  const auto counts = distribution(read_stmt(), s, *t.view(), 20);
  CHECK(counts.size() == 1);
  CHECK(counts.count(2) == 1);

  t.on_probe_ok(1, caught_up_standby(1600), 2.2);
  const auto both = distribution(read_stmt(), s, *t.view(), 20);
  CHECK(both.at(1) == 10);
  CHECK(both.at(2) == 10);
}
