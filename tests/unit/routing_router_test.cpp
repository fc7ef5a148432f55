// route_statement: every branch (split off, primary-only statements, reads, held standby, weights, database
// mask, fallback reasons; read-your-writes in routing_router_ryw_test.cpp), on hand-built views and on views a
// real Topology publishes.
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "routing/router.hpp"
#include "tests/unit/routing_router_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

// ---- split off, no primary --------------------------------------------------------------------------------

TEST_CASE("router: read_write_split off sends everything to the primary") {
  const BackendsView v = view_of({standby_status("s1"), standby_status("s2")});
  RouteSettings st;
  st.read_write_split = false;
  for (StatementKind k : {StatementKind::Read, StatementKind::Write, StatementKind::Session, StatementKind::TxBegin,
                          StatementKind::TxEnd, StatementKind::Empty}) {
    CAPTURE(to_string(k));
    check_route(route(of_kind(k), {}, v, st), RouteTarget::Primary, 0, RouteReason::SplitOff);
  }
  check_route(route(begin_stmt(true), {}, v, st), RouteTarget::Primary, 0, RouteReason::SplitOff);
  ClientRouteState holding;
  holding.held_standby = 1;
  check_route(route(read_stmt(), holding, v, st), RouteTarget::Primary, 0, RouteReason::SplitOff);
}

TEST_CASE("router: no primary: primary-bound statements wait for one") {
  const BackendsView v = view_of({standby_status("s1")}, /*with_primary=*/false);
  REQUIRE(v.primary == -1);
  RouteSettings off;
  off.read_write_split = false;
  check_route(route(read_stmt(), {}, v, off), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  check_route(route(write_stmt(), {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  check_route(route(of_kind(StatementKind::Session), {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  check_route(route(begin_stmt(false), {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  check_route(route(of_kind(StatementKind::TxEnd), {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  Classification hinted = read_stmt();
  hinted.primary_hint = true;
  check_route(route(hinted, {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  ClientRouteState pinned;
  pinned.pinned_primary = true;
  check_route(route(read_stmt(), pinned, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  // Reads keep flowing to the standby meanwhile.
  check_route(route(read_stmt(), {}, v), RouteTarget::Standby, 1, RouteReason::Read);
}

// ---- statements that belong on the primary ----------------------------------------------------------------

TEST_CASE("router: primary-only statements and their reasons") {
  // The primary is not backend 0 here, so a router that assumed index 0 would fail.
  BackendsView v;
  v.backends = {standby_status("s0"), primary_status("p"), standby_status("s2")};
  v.primary = 1;

  check_route(route(write_stmt(), {}, v), RouteTarget::Primary, 1, RouteReason::Write);
  check_route(route(of_kind(StatementKind::Session), {}, v), RouteTarget::Primary, 1, RouteReason::SessionCommand);
  check_route(route(begin_stmt(false), {}, v), RouteTarget::Primary, 1, RouteReason::ReadWriteTransaction);
  check_route(route(of_kind(StatementKind::TxEnd), {}, v), RouteTarget::Primary, 1, RouteReason::TransactionEnd);

  SUBCASE("a primary hint wins over a read, and over the other reasons") {
    Classification hinted = read_stmt();
    hinted.primary_hint = true;
    check_route(route(hinted, {}, v), RouteTarget::Primary, 1, RouteReason::PrimaryHint);
    hinted.kind = StatementKind::Write;
    check_route(route(hinted, {}, v), RouteTarget::Primary, 1, RouteReason::PrimaryHint);
    Classification ro_begin = begin_stmt(true);
    ro_begin.primary_hint = true;
    check_route(route(ro_begin, {}, v), RouteTarget::Primary, 1, RouteReason::PrimaryHint);
  }
  SUBCASE("a read of an unlogged relation goes to the primary; a write keeps its reason") {
    Classification unlogged = read_stmt();
    unlogged.reads_unlogged = true;
    check_route(route(unlogged, {}, v), RouteTarget::Primary, 1, RouteReason::Unlogged);
    unlogged.kind = StatementKind::Write;
    check_route(route(unlogged, {}, v), RouteTarget::Primary, 1, RouteReason::Write);
    Classification ro_begin = begin_stmt(true);
    ro_begin.reads_unlogged = true;  // BEGIN READ ONLY; SELECT ... FROM unlogged: the block runs on the primary
    check_route(route(ro_begin, {}, v), RouteTarget::Primary, 1, RouteReason::Unlogged);
  }
  SUBCASE("a read opening an extended sequence, or run again after a recovery conflict: the primary, as a read") {
    Classification opens = read_stmt();
    opens.opens_sequence = true;
    CHECK(is_read_only_statement(opens, {}));  // it starts no read-your-writes (ClientConn::note_outstanding)
    check_route(route(opens, {}, v), RouteTarget::Primary, 1, RouteReason::OpenSequence);
    ClientRouteState rerun;
    rerun.rerun_after_recovery_conflict = true;
    rerun.held_standby = 2;
    check_route(route(read_stmt(), rerun, v), RouteTarget::Primary, 1, RouteReason::RecoveryConflict);
    check_route(route(write_stmt(), rerun, v), RouteTarget::Primary, 1, RouteReason::Write);
  }
  SUBCASE("a pinned session sends reads (and read-only transactions) to the primary") {
    ClientRouteState pinned;
    pinned.pinned_primary = true;
    check_route(route(read_stmt(), pinned, v), RouteTarget::Primary, 1, RouteReason::Pinned);
    check_route(route(begin_stmt(true), pinned, v), RouteTarget::Primary, 1, RouteReason::Pinned);
    check_route(route(write_stmt(), pinned, v), RouteTarget::Primary, 1, RouteReason::Pinned);
    pinned.held_standby = 2;  // a standby connection it still holds does not matter
    check_route(route(read_stmt(), pinned, v), RouteTarget::Primary, 1, RouteReason::Pinned);
  }
  SUBCASE("a session whose settings pgmux cannot reproduce sends its reads to the primary") {
    ClientRouteState unknown;
    unknown.session_unknown = true;
    unknown.held_standby = 2;
    check_route(route(read_stmt(), unknown, v), RouteTarget::Primary, 1, RouteReason::SessionUnknown);
    check_route(route(begin_stmt(true), unknown, v), RouteTarget::Primary, 1, RouteReason::SessionUnknown);
    CHECK(std::strcmp(to_string(RouteReason::SessionUnknown), "session-state-unknown") == 0);
  }
  SUBCASE("a read-only session does not make writes, session commands or COMMIT read-only") {
    ClientRouteState ro;
    ro.session_read_only = true;
    check_route(route(write_stmt(), ro, v), RouteTarget::Primary, 1, RouteReason::Write);
    check_route(route(of_kind(StatementKind::Session), ro, v), RouteTarget::Primary, 1, RouteReason::SessionCommand);
    check_route(route(of_kind(StatementKind::TxEnd), ro, v), RouteTarget::Primary, 1, RouteReason::TransactionEnd);
    Classification read_write = begin_stmt(false);  // BEGIN READ WRITE overrides the session's default
    read_write.read_write = true;
    check_route(route(read_write, ro, v), RouteTarget::Primary, 1, RouteReason::ReadWriteTransaction);
    CHECK_FALSE(is_read_only_statement(read_write, ro));
  }
  SUBCASE("the read-only flag only matters on BEGIN") {
    Classification w = write_stmt();
    w.read_only = true;
    check_route(route(w, {}, v), RouteTarget::Primary, 1, RouteReason::Write);
    Classification s = of_kind(StatementKind::Session);  // SET TRANSACTION READ ONLY: still a session command
    s.read_only = true;
    check_route(route(s, {}, v), RouteTarget::Primary, 1, RouteReason::SessionCommand);
  }
}

TEST_CASE("router: read-only transactions and reads go to a standby") {
  const BackendsView v = view_of({standby_status("s1")});
  check_route(route(read_stmt(), {}, v), RouteTarget::Standby, 1, RouteReason::Read);
  check_route(route(of_kind(StatementKind::Empty), {}, v), RouteTarget::Standby, 1, RouteReason::Read);
  check_route(route(begin_stmt(true), {}, v), RouteTarget::Standby, 1, RouteReason::Read);
  ClientRouteState ro;
  ro.session_read_only = true;
  check_route(route(begin_stmt(false), ro, v), RouteTarget::Standby, 1, RouteReason::Read);

  CHECK(is_read_only_statement(read_stmt(), {}));
  CHECK(is_read_only_statement(of_kind(StatementKind::Empty), {}));
  CHECK(is_read_only_statement(begin_stmt(true), {}));
  CHECK_FALSE(is_read_only_statement(begin_stmt(false), {}));
  CHECK(is_read_only_statement(begin_stmt(false), ro));
  CHECK_FALSE(is_read_only_statement(write_stmt(), ro));
  CHECK_FALSE(is_read_only_statement(of_kind(StatementKind::Session), ro));
  CHECK_FALSE(is_read_only_statement(of_kind(StatementKind::TxEnd), ro));
}

TEST_CASE("router: SERIALIZABLE transactions and sessions whose default is run on the primary") {
  const BackendsView v = view_of({standby_status("s1")});
  Classification serializable_begin = begin_stmt(true);
  serializable_begin.isolation = Isolation::Serializable;
  check_route(route(serializable_begin, {}, v), RouteTarget::Primary, 0, RouteReason::Serializable);
  Classification other_begin = begin_stmt(true);
  other_begin.isolation = Isolation::Other;
  check_route(route(other_begin, {}, v), RouteTarget::Standby, 1, RouteReason::Read);

  ClientRouteState serializable;
  serializable.serializable_default = true;
  check_route(route(read_stmt(), serializable, v), RouteTarget::Primary, 0, RouteReason::Serializable);
  check_route(route(begin_stmt(true), serializable, v), RouteTarget::Primary, 0, RouteReason::Serializable);
  check_route(route(write_stmt(), serializable, v), RouteTarget::Primary, 0, RouteReason::Write);
  CHECK(std::strcmp(to_string(RouteReason::Serializable), "serializable") == 0);
}

// ---- standby choice ---------------------------------------------------------------------------------------

TEST_CASE("router: the held standby is kept while it is allowed") {
  BackendsView v = view_of({standby_status("s1"), standby_status("s2"), standby_status("s3")});
  ClientRouteState s;
  s.held_standby = 2;
  Balancer b;
  for (int k = 0; k < 20; ++k) {
    check_route(route_statement(read_stmt(), s, v, {}, b), RouteTarget::Standby, 2, RouteReason::Read);
  }
  // The balancer was not consulted: its rotation starts from the beginning (equal weights: first index wins).
  check_route(route_statement(read_stmt(), {}, v, {}, b), RouteTarget::Standby, 1, RouteReason::Read);

  SUBCASE("not readable any more: another standby") {
    v.backends[2].readable = false;
    for (int k = 0; k < 10; ++k) CHECK(route(read_stmt(), s, v).backend != 2);
  }
  SUBCASE("weight 0: another standby") {
    v.backends[2].spec.weight = 0;
    for (int k = 0; k < 10; ++k) CHECK(route(read_stmt(), s, v).backend != 2);
  }
  SUBCASE("outside the database mask: another standby") {
    s.backend_mask = mask_of({0, 1, 3});
    Balancer bb;
    for (int k = 0; k < 10; ++k) {
      const Route r = route_statement(read_stmt(), s, v, {}, bb);
      CHECK(r.target == RouteTarget::Standby);
      CHECK((r.backend == 1 || r.backend == 3));
    }
  }
  SUBCASE("an index past the view (the backend was removed): balanced pick") {
    s.held_standby = 9;
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
  }
  SUBCASE("holding the primary's index never makes a read go there as a standby") {
    s.held_standby = 0;
    const Route r = route(read_stmt(), s, v);
    CHECK(r.target == RouteTarget::Standby);
    CHECK(r.backend != 0);
  }
}

TEST_CASE("router: a held standby with WITH HOLD cursors keeps reads it cannot take off other standbys") {
  BackendsView v = view_of({standby_status("s1"), standby_status("s2")});
  ClientRouteState s;
  s.held_standby = 2;
  s.held_standby_keeps_cursors = true;
  check_route(route(read_stmt(), s, v), RouteTarget::Standby, 2, RouteReason::Read);  // allowed: kept
  v.backends[2].readable = false;
  check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::StandbyCursors);
  check_route(route(begin_stmt(true), s, v), RouteTarget::Primary, 0, RouteReason::StandbyCursors);
  CHECK(std::strcmp(to_string(RouteReason::StandbyCursors), "standby-cursors") == 0);
  SUBCASE("without cursors: another standby") {
    s.held_standby_keeps_cursors = false;
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
  }
  SUBCASE("the primary outside the database's backends: another standby (the cursors go)") {
    s.backend_mask = mask_of({1, 2});
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
  }
  SUBCASE("no primary: another standby") {
    v.primary = -1;
    check_route(route(read_stmt(), s, v), RouteTarget::Standby, 1, RouteReason::Read);
  }
  SUBCASE("no standby could take it anyway: the usual fallback and its reason") {
    v.backends[1].readable = false;
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  }
}

TEST_CASE("router: weight 0 and unreadable standbys are never chosen (hand-built view)") {
  const BackendsView v = view_of({standby_status("zero", 0), down_standby("down"), lagging_standby("lag"),
                                  disabled_standby("off"), standby_status("ok", 1), standby_status("ok2", 2)});
  const auto counts = distribution(read_stmt(), {}, v, 300);
  CHECK(counts.size() == 2);
  CHECK(counts.count(5) == 1);
  CHECK(counts.count(6) == 1);
  CHECK(counts.at(5) == 100);
  CHECK(counts.at(6) == 200);
  // Held, they are not kept either.
  for (int held = 1; held <= 4; ++held) {
    ClientRouteState s;
    s.held_standby = held;
    const Route r = route(read_stmt(), s, v);
    CHECK(r.target == RouteTarget::Standby);
    CHECK((r.backend == 5 || r.backend == 6));
  }
}

TEST_CASE("router: down, lag-excluded, disabled and weight-0 standbys from a real topology") {
  TopologySettings ts;
  ts.max_lag_bytes = 16 * kMiB;
  BackendSpec off = spec("off");
  off.disabled = true;
  Topology t({spec("p"), spec("ok"), spec("zero", 0), spec("down"), spec("lag"), off}, ts);
  t.on_probe_ok(0, timed_primary_probe(100 * kMiB), 1.0);
  t.on_probe_ok(1, caught_up_standby(100 * kMiB), 1.0);
  t.on_probe_ok(2, caught_up_standby(100 * kMiB), 1.0);
  t.on_probe_ok(3, caught_up_standby(100 * kMiB), 1.0);
  for (int k = 0; k < 3; ++k) t.on_probe_failed(3, "connection refused", 1.5 + k);
  t.on_probe_ok(4, caught_up_standby(10 * kMiB), 1.0);  // 90 MiB behind
  t.on_probe_ok(5, caught_up_standby(100 * kMiB), 1.0);
  const auto v = t.view();
  REQUIRE(v->primary == 0);
  REQUIRE(v->backends[1].readable);
  REQUIRE(v->backends[3].role == Role::Down);
  REQUIRE(v->backends[4].lag_excluded);

  const auto counts = distribution(read_stmt(), {}, *v, 100);
  CHECK(counts.size() == 1);
  CHECK(counts.count(1) == 1);

  // With "ok" down too, nothing is readable: the read falls back to the primary.
  for (int k = 0; k < 3; ++k) t.on_probe_failed(1, "connection refused", 5.0 + k);
  const Route r = route(read_stmt(), {}, *t.view());
  CHECK(r.target == RouteTarget::Primary);
  CHECK(r.backend == 0);
}

TEST_CASE("router: balancer distribution follows the weights") {
  SUBCASE("1:3 exactly over 400 picks") {
    const BackendsView v = view_of({standby_status("a", 1), standby_status("b", 3)});
    const auto counts = distribution(read_stmt(), {}, v, 400);
    CHECK(counts.size() == 2);
    CHECK(counts.at(1) == 100);
    CHECK(counts.at(2) == 300);
  }
  SUBCASE("2:1:1 exactly over 400 picks, in every window of 4") {
    const BackendsView v = view_of({standby_status("a", 2), standby_status("b", 1), standby_status("c", 1)});
    Balancer b;
    std::map<int, int> counts;
    for (int window = 0; window < 100; ++window) {
      std::map<int, int> in_window;
      for (int k = 0; k < 4; ++k) {
        const Route r = route_statement(read_stmt(), {}, v, {}, b);
        REQUIRE(r.target == RouteTarget::Standby);
        ++in_window[r.backend];
        ++counts[r.backend];
      }
      CHECK(in_window[1] == 2);
      CHECK(in_window[2] == 1);
      CHECK(in_window[3] == 1);
    }
    CHECK(counts.at(1) == 200);
    CHECK(counts.at(2) == 100);
    CHECK(counts.at(3) == 100);
  }
  SUBCASE("read-only transactions are balanced the same way") {
    const BackendsView v = view_of({standby_status("a", 1), standby_status("b", 3)});
    const auto counts = distribution(begin_stmt(true), {}, v, 400);
    CHECK(counts.at(1) == 100);
    CHECK(counts.at(2) == 300);
  }
}

// ---- database mask ----------------------------------------------------------------------------------------

TEST_CASE("router: backend_mask excludes backends not serving the client's database") {
  const BackendsView v = view_of({standby_status("s1"), standby_status("s2"), standby_status("s3")});
  ClientRouteState s;
  s.backend_mask = mask_of({0, 2});
  const auto counts = distribution(read_stmt(), s, v, 50);
  CHECK(counts.size() == 1);
  CHECK(counts.count(2) == 1);

  SUBCASE("no standby in the mask: the read falls back to the primary") {
    s.backend_mask = mask_of({0});
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  }
  SUBCASE("a lag-excluded standby outside the mask does not make the fallback reason lag") {
    BackendsView w = view_of({lagging_standby("lag"), down_standby("down")});
    s.backend_mask = mask_of({0, 2});
    check_route(route(read_stmt(), s, w), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    s.backend_mask = mask_of({0, 1});
    check_route(route(read_stmt(), s, w), RouteTarget::Primary, 0, RouteReason::LagExcluded);
  }
  SUBCASE("the primary outside the mask: writes wait, reads still go to a standby in the mask") {
    s.backend_mask = mask_of({1, 3});
    check_route(route(write_stmt(), s, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
    check_route(route(of_kind(StatementKind::Session), s, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
    RouteSettings off;
    off.read_write_split = false;
    check_route(route(read_stmt(), s, v, off), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
    const Route r = route(read_stmt(), s, v);
    CHECK(r.target == RouteTarget::Standby);
    CHECK((r.backend == 1 || r.backend == 3));
  }
  SUBCASE("the primary outside the mask and no standby in it: the fallback waits") {
    s.backend_mask = mask_of({2});
    BackendsView w = v;
    w.backends[2].readable = false;
    check_route(route(read_stmt(), s, w), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  }
  SUBCASE("an empty mask: nothing at all") {
    s.backend_mask = 0;
    check_route(route(write_stmt(), s, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
    check_route(route(read_stmt(), s, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
  }
}

// ---- fallback ---------------------------------------------------------------------------------------------

TEST_CASE("router: fallback when no standby can serve a read") {
  RouteSettings no_fallback;
  no_fallback.fallback_to_primary = false;

  SUBCASE("every standby lag-excluded") {
    const BackendsView v = view_of({lagging_standby("s1"), lagging_standby("s2")});
    check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::LagExcluded);
    check_route(route(begin_stmt(true), {}, v), RouteTarget::Primary, 0, RouteReason::LagExcluded);
    check_route(route(read_stmt(), {}, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::LagExcluded);
  }
  SUBCASE("down standbys") {
    const BackendsView v = view_of({down_standby("s1"), down_standby("s2")});
    check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    check_route(route(read_stmt(), {}, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::NoEligibleStandby);
  }
  SUBCASE("a lag-excluded standby that is also down is down") {
    BackendStatus b = lagging_standby("s1");
    b.role = Role::Down;
    b.reachable = false;
    const BackendsView v = view_of({b});
    check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  }
  SUBCASE("disabled and weight-0 standbys") {
    const BackendsView v = view_of({disabled_standby("s1"), standby_status("s2", 0)});
    check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    check_route(route(read_stmt(), {}, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::NoEligibleStandby);
  }
  SUBCASE("no standby configured at all") {
    const BackendsView v = view_of({});
    check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    check_route(route(read_stmt(), {}, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::NoEligibleStandby);
  }
  SUBCASE("a read set of the primary alone: the primary, whatever commit there is to see") {
    const BackendsView v = view_of({standby_status("s1")});
    ClientRouteState s;
    s.backend_mask = mask_of({0});
    s.last_write_commit = 5.0;  // nothing sampled after it: with a standby in the mask, read-your-writes
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    s.backend_mask = mask_of({0, 1});
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    s.backend_mask = mask_of({0});
    check_route(route(read_stmt(), s, v, no_fallback), RouteTarget::Primary, 0, RouteReason::ReadYourWrites);
    s.last_write_commit.reset();
    check_route(route(read_stmt(), s, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::NoEligibleStandby);
    // Another client's commit (causal) and a read-only transaction alike; such a read is not held for a replay
    // (causal_wait) that no standby of its read set could ever show.
    s.cluster_commit = 6.0;
    const Route after_commit = route(read_stmt(), s, v);
    check_route(after_commit, RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    CHECK_FALSE(held_for_replay(after_commit));
    check_route(route(begin_stmt(true), s, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
    s.backend_mask = mask_of({0, 1});
    CHECK(held_for_replay(route(read_stmt(), s, v)));
    s.backend_mask = mask_of({0, 5});  // a bit past the view names no backend
    check_route(route(read_stmt(), s, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  }
  SUBCASE("fallback with no primary waits for one") {
    const BackendsView v = view_of({lagging_standby("s1")}, /*with_primary=*/false);
    check_route(route(read_stmt(), {}, v), RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary);
    check_route(route(read_stmt(), {}, v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::LagExcluded);
  }
  SUBCASE("fallback_to_primary off does not affect statements that belong on the primary") {
    const BackendsView v = view_of({down_standby("s1")});
    check_route(route(write_stmt(), {}, v, no_fallback), RouteTarget::Primary, 0, RouteReason::Write);
  }
}

TEST_CASE("router: lag exclusion and hysteresis from a real topology fall back with LagExcluded") {
  TopologySettings ts;
  ts.max_lag_bytes = 16 * kMiB;
  ts.lag_hysteresis = 5;
  Topology t({spec("p"), spec("s1"), spec("s2")}, ts);
  t.on_probe_ok(0, timed_primary_probe(100 * kMiB), 1.0);
  t.on_probe_ok(1, caught_up_standby(100 * kMiB), 1.0);
  t.on_probe_ok(2, caught_up_standby(100 * kMiB), 1.0);
  check_route(route(read_stmt(), {}, *t.view()), RouteTarget::Standby, 1, RouteReason::Read);

  t.on_probe_ok(1, caught_up_standby(10 * kMiB), 2.0);
  t.on_probe_ok(2, caught_up_standby(20 * kMiB), 2.0);
  check_route(route(read_stmt(), {}, *t.view()), RouteTarget::Primary, 0, RouteReason::LagExcluded);

  // Caught up, but still inside the hysteresis period: still excluded for lag.
  t.on_probe_ok(1, caught_up_standby(100 * kMiB), 3.0);
  REQUIRE_FALSE(t.view()->backends[1].readable);
  check_route(route(read_stmt(), {}, *t.view()), RouteTarget::Primary, 0, RouteReason::LagExcluded);

  t.on_probe_ok(1, caught_up_standby(100 * kMiB), 9.0);
  REQUIRE(t.view()->backends[1].readable);
  check_route(route(read_stmt(), {}, *t.view()), RouteTarget::Standby, 1, RouteReason::Read);
}

TEST_CASE("router: a lag-excluded standby promoted to primary does not make the fallback reason lag") {
  // s1 is excluded for lag, then the primary dies and s1 is promoted; s2 is down. No standby is lag-excluded
  // any more: a read falls back because no standby is eligible, not because of lag.
  TopologySettings ts;
  ts.max_lag_bytes = 16 * kMiB;
  Topology t({spec("p"), spec("s1"), spec("s2")}, ts);
  t.on_probe_ok(0, timed_primary_probe(100 * kMiB), 1.0);
  t.on_probe_ok(1, caught_up_standby(10 * kMiB), 1.0);
  t.on_probe_ok(2, caught_up_standby(100 * kMiB), 1.0);
  REQUIRE(t.view()->backends[1].lag_excluded);
  for (int k = 0; k < 3; ++k) {
    t.on_probe_failed(0, "connection refused", 2.0 + k);
    t.on_probe_failed(2, "connection refused", 2.0 + k);
  }
  t.on_probe_ok(1, timed_primary_probe(101 * kMiB, -1, 2), 6.0);
  const auto v = t.view();
  REQUIRE(v->primary == 1);
  check_route(route(read_stmt(), {}, *v), RouteTarget::Primary, 1, RouteReason::NoEligibleStandby);
  RouteSettings no_fallback;
  no_fallback.fallback_to_primary = false;
  check_route(route(read_stmt(), {}, *v, no_fallback), RouteTarget::NoBackend, -1, RouteReason::NoEligibleStandby);
}

TEST_CASE("router: a stale lag_excluded flag on a non-standby is not lag (hand-built)") {
  BackendsView v = view_of({down_standby("s1")});
  v.backends[0].lag_excluded = true;  // the primary, excluded for lag back when it was a standby
  check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  BackendStatus fenced = lagging_standby("fenced");
  fenced.role = Role::Fenced;
  v.backends.push_back(fenced);
  check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::NoEligibleStandby);
  v.backends.push_back(lagging_standby("lag"));  // a real lagging standby still counts
  check_route(route(read_stmt(), {}, v), RouteTarget::Primary, 0, RouteReason::LagExcluded);
}

TEST_CASE("router: reason and target names") {
  CHECK(std::strcmp(to_string(RouteTarget::Primary), "primary") == 0);
  CHECK(std::strcmp(to_string(RouteTarget::Standby), "standby") == 0);
  CHECK(std::strcmp(to_string(RouteTarget::WaitForPrimary), "wait-for-primary") == 0);
  CHECK(std::strcmp(to_string(RouteTarget::NoBackend), "no-backend") == 0);
  CHECK(std::strcmp(to_string(RouteReason::LagExcluded), "lag-excluded") == 0);
  CHECK(std::strcmp(to_string(RouteReason::NoEligibleStandby), "fallback-to-primary") == 0);
  CHECK(std::strcmp(to_string(RouteReason::ReadYourWrites), "read-your-writes") == 0);
  CHECK(std::strcmp(to_string(RouteReason::NoPrimary), "no-primary") == 0);
  for (int r = 0; r < static_cast<int>(RouteReason::Count); ++r) {
    CHECK(std::strcmp(to_string(static_cast<RouteReason>(r)), "?") != 0);
  }
}
