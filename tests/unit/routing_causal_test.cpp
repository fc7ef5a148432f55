// Causal reads (routing.consistency): which commit a read must see in each mode, the router's decisions and
// reasons for it, and the replay poller's positions in the topology and in required_lsn.
#include <doctest/doctest.h>

#include <map>

#include "routing/read_your_writes.hpp"
#include "routing/router.hpp"
#include "tests/unit/routing_probe_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

namespace {

// Primary p, standbys s1 and s2, all probed once at t=1 (primary sampled at LSN 1000, sent at 0.9), both standbys
// replayed to 1000.
Topology probed_cluster() {
  Topology t({spec("p"), spec("s1"), spec("s2")}, {});
  ProbeResult primary = primary_probe(1000);
  primary.insert_lsn = 1000;
  primary.sent_at = 0.9;
  t.on_probe_ok(0, primary, 1.0);
  t.on_probe_ok(1, standby_probe(1000, 0.0), 1.0);
  t.on_probe_ok(2, standby_probe(1000, 0.0), 1.0);
  return t;
}

Classification read_stmt() {
  Classification c;
  c.kind = StatementKind::Read;
  return c;
}

Route route(const ClientRouteState& s, const BackendsView& v, Consistency consistency) {
  RouteSettings settings;
  settings.consistency = consistency;
  Balancer b;
  return route_statement(read_stmt(), s, v, settings, b);
}

// Which backends 20 reads go to (-1: the primary).
std::map<int, int> reads_by_backend(const ClientRouteState& s, const BackendsView& v, Consistency consistency) {
  RouteSettings settings;
  settings.consistency = consistency;
  Balancer b;
  std::map<int, int> out;
  for (int i = 0; i < 20; ++i) {
    const Route r = route_statement(read_stmt(), s, v, settings, b);
    ++out[r.target == RouteTarget::Standby ? r.backend : -1];
  }
  return out;
}

}  // namespace

TEST_CASE("causal: the commit a read must see in each mode") {
  ClientRouteState s;
  CHECK_FALSE(commit_to_see(s, Consistency::Causal));
  s.cluster_commit = 5.0;
  const auto causal = commit_to_see(s, Consistency::Causal);
  REQUIRE(causal);
  CHECK(causal->time == 5.0);
  CHECK_FALSE(causal->own);
  CHECK_FALSE(commit_to_see(s, Consistency::Session));  // another client's commit does not bind a session read
  CHECK_FALSE(commit_to_see(s, Consistency::Eventual));

  s.last_write_commit = 4.0;  // the client's own, older than the cluster's last
  CHECK(commit_to_see(s, Consistency::Causal)->time == 5.0);
  CHECK(commit_to_see(s, Consistency::Session)->time == 4.0);
  CHECK(commit_to_see(s, Consistency::Session)->own);
  s.last_write_commit = 6.0;  // its own is the latest
  CHECK(commit_to_see(s, Consistency::Causal)->own);
  CHECK(commit_to_see(s, Consistency::Causal)->time == 6.0);
  CHECK_FALSE(commit_to_see(s, Consistency::Eventual));
}

TEST_CASE("causal: another client's commit keeps reads off standbys that have not replayed it") {
  Topology t = probed_cluster();
  ClientRouteState s;  // this client never wrote
  s.cluster_commit = 1.2;  // another client's commit, after the only sample

  SUBCASE("no sample after the commit: the primary, for causal only") {
    const Route r = route(s, *t.view(), Consistency::Causal);
    CHECK(r.target == RouteTarget::Primary);
    CHECK(r.reason == RouteReason::Causal);
    CHECK(held_for_replay(r));
    CHECK(std::string(to_string(r.reason)) == "causal");
    CHECK(route(s, *t.view(), Consistency::Session).target == RouteTarget::Standby);
    CHECK(route(s, *t.view(), Consistency::Eventual).target == RouteTarget::Standby);
  }
  SUBCASE("a poller sample after the commit, a standby past it: that standby only") {
    CHECK(t.on_primary_position(0, 1500, 1.3));
    CHECK(route(s, *t.view(), Consistency::Causal).reason == RouteReason::Causal);  // nobody replayed 1500 yet
    CHECK(t.on_replay_position(2, 1500));
    const auto reads = reads_by_backend(s, *t.view(), Consistency::Causal);
    CHECK(reads.size() == 1);
    CHECK(reads.count(2) == 1);
    CHECK(t.on_replay_position(1, 1600));
    const auto both = reads_by_backend(s, *t.view(), Consistency::Causal);
    CHECK(both.at(1) == 10);
    CHECK(both.at(2) == 10);
  }
  SUBCASE("the own commit binds with its own reason when it is the latest") {
    s.last_write_commit = 1.25;
    const Route r = route(s, *t.view(), Consistency::Causal);
    CHECK(r.reason == RouteReason::ReadYourWrites);
    CHECK(held_for_replay(r));
  }
  SUBCASE("without fallback a held read gets no backend, with the reason") {
    CHECK(t.on_primary_position(0, 1500, 1.3));
    RouteSettings settings;
    settings.fallback_to_primary = false;
    Balancer b;
    const Route r = route_statement(read_stmt(), s, *t.view(), settings, b);
    CHECK(r.target == RouteTarget::NoBackend);
    CHECK(r.reason == RouteReason::Causal);
  }
  SUBCASE("reads held for other reasons do not wait for replay") {
    Route r;
    r.reason = RouteReason::LagExcluded;
    CHECK_FALSE(held_for_replay(r));
    r.reason = RouteReason::Read;
    CHECK_FALSE(held_for_replay(r));
  }
}

TEST_CASE("causal: required_lsn takes the earliest sample after the commit from rounds and poller") {
  BackendsView v;
  v.primary_lsn_history = {{1.0, 100}, {2.0, 200}};
  v.recent_primary_lsn = {{1.2, 120}, {1.4, 140}, {2.5, 250}};
  CHECK(required_lsn(v, 0.5) == 100u);  // a round sample first
  CHECK(required_lsn(v, 1.0) == 120u);  // then the poller's
  CHECK(required_lsn(v, 1.3) == 140u);
  CHECK(required_lsn(v, 1.5) == 200u);
  CHECK(required_lsn(v, 2.0) == 250u);
  CHECK_FALSE(required_lsn(v, 2.5));
  CHECK(latest_primary_sample(v)->lsn == 250u);
  v.recent_primary_lsn.clear();
  CHECK(required_lsn(v, 1.5) == 200u);
  CHECK(latest_primary_sample(v)->lsn == 200u);
  CHECK_FALSE(latest_primary_sample(BackendsView{}));
}

TEST_CASE("causal: the topology takes the poller's positions only where they belong") {
  Topology t = probed_cluster();
  const uint64_t generation = t.view()->generation;
  CHECK_FALSE(t.on_primary_position(1, 2000, 1.5));  // a standby is not the primary
  CHECK_FALSE(t.on_primary_position(0, 0, 1.5));     // no position
  CHECK_FALSE(t.on_replay_position(0, 2000));         // the primary replays nothing
  CHECK_FALSE(t.on_replay_position(1, 900));          // replay only moves forward
  CHECK_FALSE(t.on_replay_position(1, 1000));
  CHECK_FALSE(t.on_replay_position(7, 2000));         // no such backend
  CHECK(t.view()->generation == generation);          // nothing published
  CHECK(t.on_replay_position(1, 1100));
  CHECK(t.view()->backends[1].last.replay_lsn == 1100u);
  CHECK(t.on_primary_position(0, 1200, 1.5));
  CHECK(t.on_primary_position(0, 1150, 1.4));  // answers may arrive out of order: kept in time order
  const auto& recent = t.view()->recent_primary_lsn;
  REQUIRE(recent.size() == 2);
  CHECK(recent[0].lsn == 1150u);
  CHECK(recent[1].lsn == 1200u);
  CHECK(t.view()->primary_lsn_history.size() == 1);  // the rounds' history (lag) is left alone
  for (int i = 0; i < 40; ++i) t.on_primary_position(0, 2000 + static_cast<uint64_t>(i), 2.0 + i);
  CHECK(t.view()->recent_primary_lsn.size() == 32);
  CHECK(t.view()->recent_primary_lsn.back().lsn == 2039u);
}

namespace {
// No primary: backend 0 (the old one) in `old_role`, then standbys that replayed 900, 950, ...; the last primary
// sample says 1000 at t = 1.
BackendsView without_primary(size_t standbys, Role old_role) {
  BackendsView v;
  v.backends.resize(standbys + 1);
  v.backends[0].role = old_role;
  for (size_t i = 1; i <= standbys; ++i) {
    v.backends[i].role = Role::Standby;
    v.backends[i].readable = true;
    v.backends[i].spec.weight = 1;
    v.backends[i].last.replay_lsn = 850 + 50 * i;
  }
  v.primary = -1;
  v.primary_lsn_history = {{1.0, 1000}};
  return v;
}
}  // namespace

TEST_CASE("causal: with no primary, reads go to the standby that replayed the most") {
  BackendsView v = without_primary(3, Role::Down);
  v.backends[3].last.replay_lsn = 990;
  v.backends[3].readable = false;  // ahead, but out of the read set
  CHECK(furthest_replay(v, ~uint64_t{0}) == 950u);
  CHECK(furthest_replay(v, uint64_t{1} << 1) == 900u);
  CHECK_FALSE(furthest_replay(v, uint64_t{1} << 3));

  ClientRouteState s;
  s.cluster_commit = 0.5;  // sampled (1000), but no standby got that far before the primary went
  const auto reads = reads_by_backend(s, v, Consistency::Causal);
  CHECK(reads.size() == 1);
  CHECK(reads.count(2) == 1);
  s.cluster_commit = 2.0;  // never sampled: the same
  CHECK(route(s, v, Consistency::Causal).backend == 2);
  v.primary = 0;  // with a primary the bar stays where the samples put it
  v.backends[0].role = Role::Primary;
  s.cluster_commit = 0.5;
  CHECK(route(s, v, Consistency::Causal).target == RouteTarget::Primary);
}

TEST_CASE("causal: during a switchover with no primary yet, a read waits for a standby that replayed its commit") {
  BackendsView v = without_primary(2, Role::Fenced);  // the old primary, stopped cleanly: the target will have all
  v.backends[0].fence = BackendStatus::SwitchoverFence{1, "switchover", BackendStatus::FenceStage::Closed};
  ClientRouteState s;
  s.cluster_commit = 0.5;  // sampled at 1000: neither standby shows it yet
  CHECK(route(s, v, Consistency::Causal).target == RouteTarget::WaitForPrimary);
  v.backends[2].last.replay_lsn = 1000;  // the target replayed the old primary's last WAL
  CHECK(route(s, v, Consistency::Causal).backend == 2);
  s.cluster_commit = 2.0;  // after the last sample: only the new primary can show it
  CHECK(route(s, v, Consistency::Causal).target == RouteTarget::WaitForPrimary);
}
