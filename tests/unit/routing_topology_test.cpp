// Topology state machine with a fake clock: roles, retries, lag thresholds and hysteresis, split brain,
// fencing, system identifier checks.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "routing/topology.hpp"
#include "tests/unit/routing_probe_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

namespace {

const BackendStatus& at(const Topology& t, size_t i) { return t.view()->backends.at(i); }

Topology three(TopologySettings settings = {}) {
  return Topology({spec("a"), spec("b"), spec("c")}, settings);
}

}  // namespace

TEST_CASE("topology: everything is unknown before the first probe") {
  Topology t = three();
  auto v = t.view();
  REQUIRE(v->backends.size() == 3);
  CHECK(v->primary == -1);
  CHECK_FALSE(v->split_brain);
  CHECK(v->generation == 1);
  for (const auto& b : v->backends) {
    CHECK(b.role == Role::Unknown);
    CHECK_FALSE(b.reachable);
    CHECK_FALSE(b.readable);
    CHECK(b.excluded_reason == "not probed yet");
  }
  CHECK(std::string(to_string(Role::Fenced)) == "fenced");
}

TEST_CASE("topology: roles from pg_is_in_recovery, generation per publish") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_probe_ok(1, standby_probe(1000), 1.0);
  t.on_probe_ok(2, standby_probe(1000), 1.0);
  auto v = t.view();
  CHECK(v->generation == 4);
  CHECK(v->primary == 0);
  CHECK(v->backends[0].role == Role::Primary);
  CHECK_FALSE(v->backends[0].readable);
  CHECK(v->backends[1].role == Role::Standby);
  CHECK(v->backends[1].readable);
  CHECK(v->backends[1].excluded_reason.empty());
  CHECK(v->backends[2].readable);
  CHECK(v->backends[1].last_status_change == 1.0);
  CHECK(v->alarm.empty());
  // The old snapshot is immutable.
  t.on_probe_ok(1, standby_probe(900), 2.0);
  CHECK(v->backends[1].last.replay_lsn == 1000);
  CHECK(t.view()->backends[1].last.replay_lsn == 900);
}

TEST_CASE("topology: role standby override keeps a not-in-recovery target read-only") {
  BackendSpec sub = spec("subscriber");
  sub.standby_only = true;
  Topology t({spec("a"), sub}, {});
  t.on_probe_ok(0, primary_probe(1000), 1);
  t.on_probe_ok(1, primary_probe(5, 1, 99), 1);  // a logical subscriber: its own cluster
  auto v = t.view();
  CHECK(v->primary == 0);
  CHECK_FALSE(v->split_brain);
  CHECK(v->backends[1].role == Role::Standby);
  CHECK(v->backends[1].readable);
  CHECK(v->backends[1].lag_bytes == 0);
}

TEST_CASE("topology: max_retries failures are tolerated, one more marks the backend down") {
  TopologySettings s;
  s.health_check_max_retries = 2;
  Topology t = three(s);
  t.on_probe_ok(0, primary_probe(1000), 0);
  t.on_probe_ok(1, standby_probe(1000), 0);
  t.on_probe_failed(1, "connection refused", 1);
  t.on_probe_failed(1, "connection refused", 2);
  CHECK(at(t, 1).role == Role::Standby);
  CHECK(at(t, 1).reachable);
  CHECK(at(t, 1).readable);
  CHECK(at(t, 1).failed_probes == 2);
  t.on_probe_failed(1, "connection refused", 3);
  CHECK(at(t, 1).role == Role::Down);
  CHECK_FALSE(at(t, 1).reachable);
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason == "down: connection refused");
  CHECK(at(t, 1).last_status_change == 3);
  t.on_probe_ok(1, standby_probe(1000), 4);
  CHECK(at(t, 1).role == Role::Standby);
  CHECK(at(t, 1).readable);
  CHECK(at(t, 1).failed_probes == 0);

  // The primary going down leaves no primary; standbys keep serving reads.
  for (int k = 0; k < 3; ++k) t.on_probe_failed(0, "timeout", 5 + k);
  CHECK(at(t, 0).role == Role::Down);
  CHECK(t.view()->primary == -1);
  CHECK(at(t, 1).readable);

  // Never answered: unknown, then down.
  Topology u = three(s);
  u.on_probe_failed(2, "no route", 1);
  CHECK(at(u, 2).role == Role::Unknown);
  CHECK(at(u, 2).excluded_reason == "not reachable yet: no route");
  u.on_probe_failed(2, "no route", 2);
  u.on_probe_failed(2, "no route", 3);
  CHECK(at(u, 2).role == Role::Down);
}

TEST_CASE("topology: failover follow: a promoted standby becomes the primary") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000, 1), 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  for (int k = 0; k < 3; ++k) t.on_probe_failed(0, "refused", 1 + k);
  CHECK(t.view()->primary == -1);
  t.on_probe_ok(1, primary_probe(2000, 2), 5);
  CHECK(t.view()->primary == 1);
  CHECK(at(t, 1).role == Role::Primary);
  CHECK(at(t, 1).last_status_change == 5);
  CHECK(t.view()->alarm.empty());
}

TEST_CASE("topology: a standby left on the old timeline by a promotion leaves the read set, back once it follows") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000, 1), 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  t.on_probe_ok(2, standby_probe(1000, {}, 1), 0);
  CHECK(at(t, 2).readable);
  for (int k = 0; k < 3; ++k) t.on_probe_failed(0, "refused", 1 + k);
  t.on_probe_ok(2, standby_probe(1000, {}, 1), 4);
  CHECK(at(t, 2).readable);  // no primary: nothing to be behind, reads go on
  t.on_probe_ok(1, primary_probe(1100, 2), 5);  // standby 1 promoted
  REQUIRE(t.view()->primary == 1);
  CHECK_FALSE(at(t, 2).readable);  // at once, although its lag is small
  CHECK(at(t, 2).excluded_reason == "on timeline 1, the primary is on 2: not following the primary");
  t.on_probe_ok(2, standby_probe(1100, {}, 2), 6);  // repointed: receiving timeline 2
  CHECK(at(t, 2).readable);
}

TEST_CASE("topology: lag bytes against the primary, with hysteresis on the way back") {
  TopologySettings s;
  s.max_lag_bytes = 16 * kMiB;
  s.lag_hysteresis = 5;
  Topology t = three(s);
  const uint64_t p = 100 * kMiB;
  t.on_probe_ok(0, primary_probe(p), 0);
  t.on_probe_ok(1, standby_probe(p - 20 * kMiB, 0.5), 0.1);
  CHECK(at(t, 1).lag_bytes == int64_t(20 * kMiB));
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason == "lag 20.0 MiB > max_lag_bytes 16.0 MiB");
  CHECK(at(t, 1).last_status_change == 0.1);  // role changed from unknown

  // Caught up at t=10: still out for the hysteresis period.
  t.on_probe_ok(0, primary_probe(p), 10);
  t.on_probe_ok(1, standby_probe(p), 10);
  CHECK(at(t, 1).lag_bytes == 0);
  CHECK(at(t, 1).lag_seconds == 0);
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason == "hysteresis: lag under the limits for 0.0 s of 5.0 s");
  t.on_probe_ok(1, standby_probe(p), 12);
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason == "hysteresis: lag under the limits for 2.0 s of 5.0 s");
  // Going over again restarts the clock.
  t.on_probe_ok(1, standby_probe(p - 17 * kMiB), 13);
  CHECK_FALSE(at(t, 1).readable);
  t.on_probe_ok(1, standby_probe(p), 14);
  t.on_probe_ok(1, standby_probe(p), 18.9);
  CHECK_FALSE(at(t, 1).readable);
  t.on_probe_ok(1, standby_probe(p), 19);
  CHECK(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason.empty());
  CHECK(at(t, 1).last_status_change == 19);

  // A standby ahead of the primary's last sample is clamped to 0.
  t.on_probe_ok(2, standby_probe(p + 100), 20);
  CHECK(at(t, 2).lag_bytes == 0);
  CHECK(at(t, 2).readable);
}

TEST_CASE("topology: lag seconds: 0 when fully replayed, else the replay age, bounded by the history") {
  TopologySettings s;
  s.max_lag_seconds = 10;
  Topology t = three(s);
  t.on_probe_ok(0, primary_probe(5000), 0);
  // Idle primary: an hour since the last replayed transaction, but nothing left to replay.
  t.on_probe_ok(1, standby_probe(5000, 3600.0), 0.1);
  CHECK(at(t, 1).lag_seconds == 0);
  CHECK(at(t, 1).readable);
  // Behind, and no sample tells since when: the replay age counts.
  t.on_probe_ok(2, standby_probe(4000, 30.0), 0.2);
  CHECK(at(t, 2).lag_seconds == doctest::Approx(30.0));
  CHECK_FALSE(at(t, 2).readable);
  CHECK(at(t, 2).excluded_reason == "lag 30.0 s > max_lag_seconds 10.0 s");
  // The primary wrote a few bytes after an idle hour: the standby is behind by them for only 0.05 s.
  t.on_probe_ok(0, primary_probe(5100), 1.0);
  t.on_probe_ok(1, standby_probe(5000, 3600.0), 1.05);
  CHECK(at(t, 1).lag_bytes == 100);
  CHECK(at(t, 1).lag_seconds == doctest::Approx(0.05));
  CHECK(at(t, 1).readable);
  // Unknown age and no sample: 0 (bytes still count).
  t.on_probe_ok(2, standby_probe(100), 2);
  CHECK(at(t, 2).lag_seconds == 0);
  CHECK(at(t, 2).lag_bytes == 5000);
}

TEST_CASE("topology: per-backend lag overrides and weight 0") {
  BackendSpec strict = spec("strict");
  strict.max_lag_bytes = 1000;
  BackendSpec lax = spec("lax");
  lax.max_lag_seconds = 100;
  Topology t({spec("p"), strict, lax, spec("zero", 0)}, {});
  t.on_probe_ok(0, primary_probe(10000), 0);
  t.on_probe_ok(1, standby_probe(8000), 0);
  t.on_probe_ok(2, standby_probe(9000, 50.0), 0);
  t.on_probe_ok(3, standby_probe(10000), 0);
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 1).excluded_reason == "lag 2.0 KiB > max_lag_bytes 1000 bytes");
  CHECK(at(t, 2).readable);
  CHECK_FALSE(at(t, 3).readable);
  CHECK(at(t, 3).excluded_reason == "weight 0");
}

TEST_CASE("topology: lag is kept while there is no primary") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(3000), 0);
  t.on_probe_ok(1, standby_probe(1000), 0);
  CHECK(at(t, 1).lag_bytes == 2000);
  for (int k = 0; k < 3; ++k) t.on_probe_failed(0, "gone", 1 + k);
  t.on_probe_ok(1, standby_probe(1500), 5);
  CHECK(at(t, 1).lag_bytes == 2000);
  CHECK(at(t, 1).last.replay_lsn == 1500);
}

TEST_CASE("topology: two reachable primaries are a split brain; the older one is fenced once it was down") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000, 1), 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  t.on_probe_ok(2, standby_probe(1000, {}, 1), 0);
  // b promoted while a still answers.
  t.on_probe_ok(1, primary_probe(1100, 2), 1);
  auto v = t.view();
  CHECK(v->split_brain);
  CHECK(v->primary == -1);
  CHECK(v->alarm == "two primaries: b (timeline 2), a (timeline 1); writes refused until one is demoted");
  CHECK(v->backends[0].role == Role::Primary);
  CHECK(v->backends[0].excluded_reason == "primary (split brain)");
  CHECK(v->backends[2].readable);  // reads keep flowing

  // a stops answering: the higher timeline wins at once, before a is even declared down.
  t.on_probe_failed(0, "timeout", 2);
  v = t.view();
  CHECK_FALSE(v->split_brain);
  CHECK(v->primary == 1);
  CHECK(v->alarm.empty());
  t.on_probe_failed(0, "timeout", 3);
  t.on_probe_failed(0, "timeout", 4);
  CHECK(at(t, 0).role == Role::Down);

  // a comes back, still not in recovery, on the old timeline: fenced.
  t.on_probe_ok(0, primary_probe(1200, 1), 10);
  v = t.view();
  CHECK(v->primary == 1);
  CHECK_FALSE(v->split_brain);
  CHECK(v->backends[0].role == Role::Fenced);
  CHECK_FALSE(v->backends[0].readable);
  CHECK(v->backends[0].excluded_reason.find("fenced: not in recovery on timeline 1") == 0);
  CHECK(v->alarm.find("a is not in recovery on an older timeline (1)") != std::string::npos);
  // Still fenced on later probes, even if b is briefly failing.
  t.on_probe_failed(1, "timeout", 11);
  t.on_probe_ok(0, primary_probe(1200, 1), 11);
  CHECK(at(t, 0).role == Role::Fenced);
  CHECK(t.view()->primary == 1);
  // Rebuilt as a standby: back in the read set.
  t.on_probe_ok(1, primary_probe(1300, 2), 12);
  t.on_probe_ok(0, standby_probe(1300, {}, 2), 12);
  CHECK(at(t, 0).role == Role::Standby);
  CHECK(at(t, 0).readable);
  CHECK(t.view()->alarm.empty());
}

TEST_CASE("topology: equal timelines, both answering: split brain with no winner") {
  Topology t({spec("a"), spec("b")}, {});
  t.on_probe_ok(0, primary_probe(1000, 3), 0);
  t.on_probe_ok(1, primary_probe(1000, 3), 0);
  CHECK(t.view()->split_brain);
  CHECK(t.view()->primary == -1);
  CHECK(t.view()->alarm.rfind("two primaries: a (timeline 3), b (timeline 3)", 0) == 0);
  // A failing one on the same timeline does not settle it either.
  t.on_probe_failed(1, "timeout", 1);
  CHECK(t.view()->split_brain);
}

TEST_CASE("topology: a backend from another cluster is fenced, majority wins") {
  Topology t = three();
  t.on_probe_ok(2, standby_probe(1000, {}, 1, 99), 0);  // seen first, but alone
  CHECK(at(t, 2).role == Role::Standby);
  t.on_probe_ok(0, primary_probe(1000), 0);
  t.on_probe_ok(1, standby_probe(1000), 0);
  auto v = t.view();
  CHECK(v->primary == 0);
  CHECK(v->backends[1].readable);
  CHECK(v->backends[2].role == Role::Fenced);
  CHECK_FALSE(v->backends[2].readable);
  CHECK(v->alarm == "system identifier mismatch: c reports 99, the cluster is 7310000000000000042 (refused)");
  // A mismatching "primary" is never the primary.
  Topology u({spec("a"), spec("b")}, {});
  u.on_probe_ok(0, primary_probe(1000), 0);
  u.on_probe_ok(1, primary_probe(1000, 1, 99), 0);
  CHECK(u.view()->primary == 0);
  CHECK_FALSE(u.view()->split_brain);
  CHECK(at(u, 1).role == Role::Fenced);
}

TEST_CASE("topology: primary LSN history is sampled per primary probe, bounded, stamped with sent_at") {
  Topology t = three();
  for (int k = 0; k < 100; ++k) {
    ProbeResult r = primary_probe(1000 + k);
    r.sent_at = k - 0.5;
    t.on_probe_ok(0, r, k);
    t.on_probe_ok(1, standby_probe(1000), k);  // standbys add nothing
  }
  const auto& h = t.view()->primary_lsn_history;
  REQUIRE(h.size() == 64);
  CHECK(h.front().lsn == 1036);
  CHECK(h.back().lsn == 1099);
  CHECK(h.back().time == 98.5);
  // The insert position wins over the write position (async commit: the commit may not be written yet).
  ProbeResult r = primary_probe(2000);
  r.insert_lsn = 2100;
  t.on_probe_ok(0, r, 200);
  CHECK(t.view()->primary_lsn_history.back().lsn == 2100);
  CHECK(t.view()->primary_lsn_history.back().time == 200);
  // No primary (split brain): no samples.
  Topology u({spec("a"), spec("b")}, {});
  u.on_probe_ok(0, primary_probe(1000, 3), 0);
  u.on_probe_ok(1, primary_probe(1000, 3), 0);
  u.on_probe_ok(0, primary_probe(2000, 3), 1);
  CHECK(u.view()->primary_lsn_history.size() == 1);
}

TEST_CASE("topology: reconfigure keeps state by name") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000), 0);
  t.on_probe_ok(1, standby_probe(1000), 0);
  t.on_probe_ok(2, standby_probe(1000), 0);
  BackendSpec b = spec("b", 5);
  t.reconfigure({spec("new"), b, spec("a")}, {});
  auto v = t.view();
  REQUIRE(v->backends.size() == 3);
  CHECK(v->backends[0].role == Role::Unknown);
  CHECK(v->backends[1].role == Role::Standby);
  CHECK(v->backends[1].spec.weight == 5);
  CHECK(v->backends[2].role == Role::Primary);
  CHECK(v->primary == 2);
}

TEST_CASE("topology: reconfigure forgets a backend that kept its name but moved") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000), 0);
  t.on_probe_ok(1, standby_probe(1000), 0);
  t.on_probe_ok(2, standby_probe(1000), 0);
  BackendSpec moved = spec("b");
  moved.port = 6543;
  t.reconfigure({spec("a"), moved, spec("c")}, {});
  auto v = t.view();
  REQUIRE(v->backends.size() == 3);
  CHECK(v->backends[0].role == Role::Primary);
  CHECK(v->backends[1].role == Role::Unknown);
  CHECK_FALSE(v->backends[1].readable);
  CHECK(v->backends[2].role == Role::Standby);
}

TEST_CASE("topology: parse_lsn") {
  CHECK(parse_lsn("0/0") == 0u);
  CHECK(parse_lsn("16/B374D848") == 0x16B374D848ull);
  CHECK(parse_lsn("ffffffff/ffffffff") == 0xffffffffffffffffull);
  CHECK_FALSE(parse_lsn(""));
  CHECK_FALSE(parse_lsn("0"));
  CHECK_FALSE(parse_lsn("/1"));
  CHECK_FALSE(parse_lsn("1/"));
  CHECK_FALSE(parse_lsn("1/2/3"));
  CHECK_FALSE(parse_lsn("123456789/0"));
  CHECK_FALSE(parse_lsn("g/0"));
}

// The differential test's standby once waited for 0/5416018 while it had replayed everything, up to 0/5416000:
// the insert position past a page header is the page boundary to a standby.
TEST_CASE("topology: a primary's insert position past a WAL page header is the record end before it") {
  using pgmux::routing::insert_position_as_record_end;
  CHECK(insert_position_as_record_end(0x5416018) == 0x5416000);
  CHECK(insert_position_as_record_end(0x6000028) == 0x6000000);  // a segment's first page: the long header
  CHECK(insert_position_as_record_end(0x5416020) == 0x5416020);
  CHECK(insert_position_as_record_end(0x5416000) == 0x5416000);
  CHECK(insert_position_as_record_end(0x16B374D848) == 0x16B374D848);
}

TEST_CASE("topology: sync_state_in reads a primary's WAL sender list") {
  using pgmux::routing::sync_state_in;
  CHECK(sync_state_in("standby1:sync,standby2:async", "standby1") == "sync");
  CHECK(sync_state_in("standby1:sync,standby2:async", "standby2") == "async");
  CHECK(sync_state_in("standby1:sync,standby2:async", "standby") == "");
  CHECK(sync_state_in("a:b:potential", "a:b") == "potential");  // the last colon separates the state
  CHECK(sync_state_in("walreceiver:?", "walreceiver") == "?");
  CHECK(sync_state_in("", "standby1") == "");
}

TEST_CASE("topology: a refused connection to the primary lets a standby promoted on a later timeline win at once") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000, 1), 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  t.on_probe_ok(2, standby_probe(1000, {}, 1), 0);
  // a stopped; its probe is still in flight (a dying server may hold it until the timeout), but a pool's new
  // connection was refused.
  t.on_connection_refused(0, "a new connection was refused: connection refused", 0.2);
  CHECK(at(t, 0).failed_probes == 1);
  CHECK(at(t, 0).role == Role::Primary);  // not down: that is for the probes to say (max_retries)
  CHECK(t.view()->primary == 0);
  t.on_connection_refused(0, "again", 0.25);  // counted once: only the first since its last good probe
  CHECK(at(t, 0).failed_probes == 1);
  t.on_probe_ok(1, primary_probe(1100, 2), 0.4);  // b promoted
  auto v = t.view();
  CHECK_FALSE(v->split_brain);
  CHECK(v->primary == 1);

  // Without the refusal, the same promotion is a split brain until a's probe fails.
  Topology u = three();
  u.on_probe_ok(0, primary_probe(1000, 1), 0);
  u.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  u.on_probe_ok(1, primary_probe(1100, 2), 0.4);
  CHECK(u.view()->split_brain);
  // And a refusal from a backend never probed (or one already failing) changes nothing.
  Topology w = three();
  w.on_connection_refused(0, "refused", 0.1);
  CHECK(at(w, 0).failed_probes == 0);
}

TEST_CASE("topology: a standby that refuses a new connection serves no reads until a probe answers again") {
  Topology t = three();
  t.on_probe_ok(0, primary_probe(1000, 1), 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 0);
  t.on_probe_ok(2, standby_probe(1000, {}, 1), 0);
  REQUIRE(at(t, 1).readable);
  t.on_connection_refused(1, "a new connection was refused: the database system is shutting down", 0.2);
  CHECK(at(t, 1).role == Role::Down);  // at once, not after max_retries more probes
  CHECK_FALSE(at(t, 1).readable);
  CHECK(at(t, 2).readable);
  CHECK(t.view()->primary == 0);
  t.on_probe_ok(1, standby_probe(1000, {}, 1), 1.0);  // back: a probe answered
  CHECK(at(t, 1).role == Role::Standby);
  CHECK(at(t, 1).failed_probes == 0);
}
