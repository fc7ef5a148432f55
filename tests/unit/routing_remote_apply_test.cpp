// Standbys that apply every commit before it returns (synchronous_commit remote_apply, every listed standby
// required): which ones the topology marks, and reads after a commit going there at once.
#include <doctest/doctest.h>

#include <map>

#include "routing/read_your_writes.hpp"
#include "routing/router.hpp"
#include "tests/unit/routing_probe_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

namespace {

// Primary p (sampled at LSN 1000, sent at 0.9, then at 1.4 when rounds=2), standbys s1 and s2 replayed to 1000,
// probed at t=1 (and 1.5). A standby that applies every commit is first seen to at t=1.
Topology cluster(const std::string& synchronous_commit, const std::string& names, const std::string& replication,
                 int rounds = 2) {
  Topology t({spec("p"), spec("s1"), spec("s2")}, {});
  ProbeResult primary = primary_probe(1000);
  primary.insert_lsn = 1000;
  primary.synchronous_commit = synchronous_commit;
  primary.synchronous_standby_names = names;
  primary.replication = replication;
  for (int round = 0; round < rounds; ++round) {
    const double at = 1.0 + 0.5 * round;
    primary.sent_at = at - 0.1;
    t.on_probe_ok(0, primary, at);
    t.on_probe_ok(1, standby_probe(1000, 0.0), at);
    t.on_probe_ok(2, standby_probe(1000, 0.0), at);
  }
  return t;
}

RouteSettings remote_apply_on(Consistency consistency) {
  RouteSettings settings;
  settings.consistency = consistency;
  settings.remote_apply_reads = true;
  return settings;
}

bool applies(const std::string& synchronous_commit, const std::string& names, const std::string& replication,
             size_t standby) {
  return cluster(synchronous_commit, names, replication).view()->backends[standby].applies_commits;
}

// Where 20 reads go (-1: the primary).
std::map<int, int> reads(const ClientRouteState& s, const BackendsView& v, Consistency consistency) {
  const RouteSettings settings = remote_apply_on(consistency);
  Balancer b;
  Classification read;
  read.kind = StatementKind::Read;
  std::map<int, int> out;
  for (int i = 0; i < 20; ++i) {
    const Route r = route_statement(read, s, v, settings, b);
    ++out[r.target == RouteTarget::Standby ? r.backend : -1];
  }
  return out;
}

}  // namespace

TEST_CASE("remote_apply: the standbys every commit waits for are marked") {
  const std::string both_connected = "s1:sync,s2:async";
  CHECK(applies("remote_apply", "FIRST 1 (s1)", both_connected, 1));
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1)", both_connected, 2));  // async
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1)", both_connected, 0));  // the primary
  CHECK(applies("remote_apply", "ANY 2 (s1, s2)", "s1:quorum,s2:quorum", 1));
  CHECK(applies("remote_apply", "ANY 2 (s1, s2)", "s1:quorum,s2:quorum", 2));
  // Not every listed standby required: a commit may have waited for the other one.
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1, s2)", "s1:sync,s2:potential", 1));
  CHECK_FALSE(applies("remote_apply", "ANY 1 (s1, s2)", "s1:quorum,s2:quorum", 1));
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (*)", both_connected, 1));
  // Commits that do not wait for the apply, or a role or database with its own setting ("").
  CHECK_FALSE(applies("on", "FIRST 1 (s1)", both_connected, 1));
  CHECK_FALSE(applies("", "FIRST 1 (s1)", both_connected, 1));
  // Not (yet) replicating from this primary as a synchronous standby, or the prober may not see how.
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1)", "s2:async", 1));
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1)", "s1:?,s2:?", 1));
}

TEST_CASE("remote_apply: a read after a commit goes at once to the standby that applied it, not to the others") {
  Topology t = cluster("remote_apply", "FIRST 1 (s1)", "s1:sync,s2:async");
  const auto v = t.view();
  ClientRouteState s;
  s.cluster_commit = 2.0;  // acknowledged after the last primary sample (0.9): no position proves it anywhere yet
  auto where = reads(s, *v, Consistency::Causal);
  CHECK(where[1] == 20);

  // A commit of a session that may have committed otherwise binds s1 too: nothing can serve it yet.
  s.cluster_unapplied_commit = 2.0;
  where = reads(s, *v, Consistency::Causal);
  CHECK(where[-1] == 20);

  // The client's own commits under read-your-writes, likewise.
  ClientRouteState own;
  own.last_write_commit = 2.0;
  CHECK(reads(own, *v, Consistency::Session)[1] == 20);
  own.last_write_unapplied = true;
  CHECK(reads(own, *v, Consistency::Session)[-1] == 20);

  // With the primary's setting at "on", the same read waits for a replayed position as before.
  Topology on = cluster("on", "FIRST 1 (s1)", "s1:sync,s2:async");
  ClientRouteState plain;
  plain.cluster_commit = 2.0;
  CHECK(reads(plain, *on.view(), Consistency::Causal)[-1] == 20);
}

TEST_CASE("remote_apply: an older unapplied commit the standby replayed no longer keeps reads off it") {
  Topology t = cluster("remote_apply", "FIRST 1 (s1)", "s1:sync,s2:async");
  const auto v = t.view();
  ClientRouteState s;
  s.cluster_unapplied_commit = 0.5;  // before the primary's sample at 0.9 (LSN 1000), which both replayed
  s.cluster_commit = 2.0;            // a later commit that waited for s1's apply
  auto where = reads(s, *v, Consistency::Causal);
  CHECK(where[1] == 20);  // s2 has not been shown to hold the 2.0 commit
}

TEST_CASE("remote_apply: routing.remote_apply_reads off: reads after a commit wait for a replay position") {
  Topology t = cluster("remote_apply", "FIRST 1 (s1)", "s1:sync,s2:async");
  ClientRouteState s;
  s.cluster_commit = 2.0;
  RouteSettings settings;  // remote_apply_reads is off by default
  Balancer b;
  Classification read;
  read.kind = StatementKind::Read;
  const Route r = route_statement(read, s, *t.view(), settings, b);
  CHECK(r.target == RouteTarget::Primary);
  CHECK(r.reason == RouteReason::Causal);
}

TEST_CASE("remote_apply: the WAL sender is matched ignoring case, and must be the only one of its name") {
  CHECK(applies("remote_apply", "FIRST 1 (s1)", "S1:sync,s2:async", 1));
  CHECK_FALSE(applies("remote_apply", "FIRST 1 (s1)", "s1:sync,S1:potential,s2:async", 1));
}

TEST_CASE("remote_apply: commits before the standby was seen to apply every commit bind it until a later sample") {
  // Seen at t=1 only: the commits pgmux acknowledged before (under other settings, perhaps) may be missing there,
  // and no position sampled after t=1 proves otherwise yet.
  Topology first = cluster("remote_apply", "FIRST 1 (s1)", "s1:sync,s2:async", 1);
  ClientRouteState s;
  s.cluster_commit = 2.0;
  CHECK(reads(s, *first.view(), Consistency::Causal)[-1] == 20);
  ClientRouteState older;
  older.cluster_commit = 0.5;  // before the sample at 0.9, which s1 replayed
  CHECK(reads(older, *first.view(), Consistency::Causal)[1] + reads(older, *first.view(), Consistency::Causal)[2] ==
        20);
  // The next round's sample (sent at 1.4, after t=1) covers them: from then on, reads after a commit go at once.
  Topology second = cluster("remote_apply", "FIRST 1 (s1)", "s1:sync,s2:async", 2);
  CHECK(second.view()->backends[1].applies_since == 1.0);
  CHECK(reads(s, *second.view(), Consistency::Causal)[1] == 20);
}
