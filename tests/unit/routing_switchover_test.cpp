// SWITCHOVER's and pgmux-mode failover's pure parts: the fence a switchover puts on the old primary
// (routing::Topology::fence) and the choice of the standby to promote (plan_switchover, plan_failover).
#include <doctest/doctest.h>

#include <string>

#include "routing/switchover_plan.hpp"
#include "routing/topology.hpp"
#include "tests/unit/routing_probe_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

namespace {
using FenceStage = BackendStatus::FenceStage;

const BackendStatus& at(const Topology& t, size_t i) { return t.view()->backends.at(i); }

// a: primary on timeline 1 with WAL senders to b (async) and c (sync); b and c replaying.
Topology cluster(uint64_t b_replay = 90 * kMiB, uint64_t c_replay = 80 * kMiB, double now = 1) {
  BackendSpec standby_only = spec("d");
  standby_only.standby_only = true;
  Topology t({spec("a"), spec("b"), spec("c"), standby_only}, TopologySettings{});
  ProbeResult primary = primary_probe(100 * kMiB);
  primary.replication = "b:async,c:sync,d:async";
  t.on_probe_ok(0, primary, now);
  t.on_probe_ok(1, standby_probe(b_replay), now);
  t.on_probe_ok(2, standby_probe(c_replay), now);
  t.on_probe_ok(3, standby_probe(c_replay), now);
  return t;
}

}  // namespace

TEST_CASE("switchover fence: no primary while held, fenced until a standby on a newer timeline") {
  Topology t = cluster();
  REQUIRE(t.view()->primary == 0);
  t.fence(0, 1, "switchover to b in progress: writes held", FenceStage::Draining, 2);
  CHECK(t.view()->primary == -1);  // writes wait (RouteTarget::WaitForPrimary), reads go on
  CHECK(at(t, 0).role == Role::Fenced);
  CHECK(at(t, 0).excluded_reason == "fenced: switchover to b in progress: writes held");
  CHECK(at(t, 1).readable);
  // Still answering as a primary: still fenced.
  t.on_probe_ok(0, primary_probe(101 * kMiB), 3);
  CHECK(at(t, 0).role == Role::Fenced);
  CHECK(t.view()->primary == -1);
  REQUIRE(at(t, 0).fence.has_value());
  CHECK(at(t, 0).fence->stage == FenceStage::Draining);  // workers keep the transactions running there
  // b is promoted (timeline 2); the fence's reason changes but not its timeline.
  t.fence(0, 1, "switched over to b", FenceStage::Closed, 4);
  t.on_probe_ok(1, primary_probe(102 * kMiB, 2), 4);
  CHECK(t.view()->primary == 1);
  CHECK(at(t, 0).role == Role::Fenced);
  REQUIRE(at(t, 0).fence.has_value());
  CHECK(at(t, 0).fence->timeline == 1);
  CHECK(at(t, 0).fence->stage == FenceStage::Closed);
  // Down for a while: the fence stays through it.
  t.on_probe_failed(0, "connection refused", 5);
  t.on_probe_failed(0, "connection refused", 5.1);
  t.on_probe_failed(0, "connection refused", 5.2);
  CHECK(at(t, 0).role == Role::Down);
  // Back in recovery, but still on the old timeline: not the new primary's history yet.
  t.on_probe_ok(0, standby_probe(101 * kMiB, std::nullopt, 1), 6);
  CHECK(at(t, 0).role == Role::Fenced);
  CHECK_FALSE(at(t, 0).readable);
  // Following the new primary's timeline: an ordinary standby again.
  t.on_probe_ok(0, standby_probe(102 * kMiB, std::nullopt, 2), 7);
  CHECK(at(t, 0).role == Role::Standby);
  CHECK_FALSE(at(t, 0).fence.has_value());
  CHECK(at(t, 0).readable);
  CHECK(t.view()->primary == 1);
}

TEST_CASE("switchover fence: an old primary that already rejoined the new timeline is not fenced again") {
  Topology t = cluster();
  t.fence(0, 1, "held", FenceStage::Draining, 2);
  t.on_probe_ok(1, primary_probe(102 * kMiB, 2), 3);
  // The demote command was quick: the old primary follows b on timeline 2 before the switchover re-fences it.
  t.on_probe_ok(0, standby_probe(102 * kMiB, std::nullopt, 2), 3.5);
  CHECK_FALSE(at(t, 0).fence.has_value());
  t.fence(0, 1, "switched over to b", FenceStage::Closed, 4);
  CHECK_FALSE(at(t, 0).fence.has_value());
  CHECK(at(t, 0).role == Role::Standby);
  CHECK(at(t, 0).readable);
}

TEST_CASE("switchover fence: unfence (a canceled switchover) gives the primary back at once") {
  Topology t = cluster();
  const uint64_t generation = t.view()->generation;
  t.fence(0, 1, "held", FenceStage::Closed, 2);
  CHECK(t.view()->generation > generation);
  t.unfence(0, 3);
  CHECK(t.view()->primary == 0);
  CHECK(at(t, 0).role == Role::Primary);
  t.unfence(0, 4);  // nothing to undo: nothing published
  t.fence(9, 1, "out of range", FenceStage::Closed, 5);  // ignored
  CHECK(t.view()->primary == 0);
}

TEST_CASE("switchover plan: without a name, a synchronous standby first, then the most replayed") {
  Topology t = cluster(95 * kMiB, 88 * kMiB);
  SwitchoverPlan plan = plan_switchover(*t.view(), "");
  REQUIRE(plan.ok());
  CHECK(plan.old_primary == 0);
  CHECK(plan.target == 2);  // c is sync, though b replayed more
  ProbeResult primary = primary_probe(100 * kMiB);
  primary.replication = "b:async,c:async,d:async";
  t.on_probe_ok(0, primary, 2);
  plan = plan_switchover(*t.view(), "");
  REQUIRE(plan.ok());
  CHECK(plan.target == 1);  // both async: b replayed more
}

TEST_CASE("switchover plan: a named target must be a streaming standby on the primary's timeline") {
  Topology t = cluster();
  SwitchoverPlan plan = plan_switchover(*t.view(), "b");
  REQUIRE(plan.ok());
  CHECK(plan.target == 1);

  plan = plan_switchover(*t.view(), "zz");
  CHECK(plan.sqlstate == "42704");
  CHECK(plan.error == "backend \"zz\" is not configured");

  plan = plan_switchover(*t.view(), "a");
  CHECK(plan.sqlstate == "55000");
  CHECK(plan.error == "backend \"a\" is already the primary");

  plan = plan_switchover(*t.view(), "d");
  CHECK(plan.error.find("\"role\": \"standby\"") != std::string::npos);

  ProbeResult primary = primary_probe(100 * kMiB);
  primary.replication = "c:sync";  // b's WAL sender is gone
  t.on_probe_ok(0, primary, 2);
  plan = plan_switchover(*t.view(), "b");
  CHECK(plan.error.find("has no WAL sender named \"b\"") != std::string::npos);

  t.on_probe_ok(2, standby_probe(80 * kMiB, std::nullopt, 3), 2);  // c on another timeline
  plan = plan_switchover(*t.view(), "c");
  CHECK(plan.error.find("on timeline 3, the primary on 1") != std::string::npos);
  plan = plan_switchover(*t.view(), "");
  CHECK_FALSE(plan.ok());
  CHECK(plan.error.find("no standby can become the primary: b: ") == 0);
}

TEST_CASE("switchover plan: lagging standbys and a missing primary are refused") {
  Topology lagging = cluster(10 * kMiB, 80 * kMiB);  // b is 90 MiB behind: over max_lag_bytes
  SwitchoverPlan plan = plan_switchover(*lagging.view(), "b");
  CHECK(plan.error.find("it lags (lag") != std::string::npos);

  Topology t = cluster();
  t.fence(0, 1, "held", FenceStage::Closed, 2);
  plan = plan_switchover(*t.view(), "b");
  CHECK(plan.sqlstate == "55000");
  CHECK(plan.error.find("there is no primary to switch over from") == 0);
}

namespace {
ReceiverReport receiver(size_t backend, std::string status, uint64_t received_lsn) {
  ReceiverReport r;
  r.backend = backend;
  r.answered = true;
  r.status = std::move(status);
  r.received_lsn = received_lsn;
  return r;
}
}  // namespace

TEST_CASE("failover plan: promote only once no standby streams, the one that received the most WAL") {
  Topology t = cluster();
  // b still streams: a may be alive and only unreachable from pgmux.
  FailoverPlan plan = plan_failover(*t.view(), 0,
                                    {receiver(1, "streaming", 95 * kMiB), receiver(2, "none", 99 * kMiB)});
  CHECK_FALSE(plan.ok());
  CHECK(plan.waiting.find("b still streams WAL from its upstream: a may be alive") == 0);

  // Both lost their WAL sender: c received more (replay order does not matter here); d is standby_only.
  plan = plan_failover(*t.view(), 0,
                       {receiver(1, "waiting", 95 * kMiB), receiver(2, "none", 99 * kMiB),
                        receiver(3, "none", 120 * kMiB)});
  REQUIRE(plan.ok());
  CHECK(plan.target == 2);
  // A tie goes to config order (the reports come in it).
  plan = plan_failover(*t.view(), 0, {receiver(1, "none", 99 * kMiB), receiver(2, "none", 99 * kMiB)});
  CHECK(plan.target == 1);

  // A standby that does not answer cannot be a candidate, but does not block the others.
  ReceiverReport silent;
  silent.backend = 1;
  silent.error = "timeout";
  plan = plan_failover(*t.view(), 0, {silent, receiver(2, "none", 99 * kMiB)});
  CHECK(plan.target == 2);
}

TEST_CASE("failover plan: no promotion without confirmation or without a candidate") {
  Topology t = cluster();
  FailoverPlan plan = plan_failover(*t.view(), 0, {receiver(1, "hidden", 0), receiver(2, "none", 99 * kMiB)});
  CHECK_FALSE(plan.ok());
  CHECK(plan.waiting.find("pg_read_all_stats") != std::string::npos);

  plan = plan_failover(*t.view(), 0, {receiver(3, "none", 99 * kMiB)});
  CHECK_FALSE(plan.ok());
  CHECK(plan.waiting == "no standby can take over from a: d: it is configured with \"role\": \"standby\"");

  t.on_probe_ok(1, standby_probe(90 * kMiB, std::nullopt, 2), 2);  // b on another timeline
  plan = plan_failover(*t.view(), 0, {receiver(1, "none", 99 * kMiB), receiver(2, "not in recovery", 0)});
  CHECK_FALSE(plan.ok());
  CHECK(plan.waiting.find("b: it is on timeline 2, a was on 1") != std::string::npos);
  CHECK(plan.waiting.find("c: it is not in recovery") != std::string::npos);
  CHECK(plan_failover(*t.view(), 7, {}).waiting == "the old primary is not in the config any more");
}
