// Read-your-writes from the prober's primary LSN samples.
#include <doctest/doctest.h>

#include "routing/read_your_writes.hpp"

using namespace pgmux::routing;

TEST_CASE("ryw: required_lsn is the first sample taken after the commit") {
  BackendsView v;
  v.primary_lsn_history = {{1.0, 100}, {2.0, 200}, {3.0, 300}};
  CHECK(required_lsn(v, 0.5) == 100u);
  CHECK(required_lsn(v, 1.0) == 200u);  // a sample at the commit instant may predate it
  CHECK(required_lsn(v, 1.5) == 200u);
  CHECK(required_lsn(v, 2.999) == 300u);
  CHECK_FALSE(required_lsn(v, 3.0));    // nothing sampled after: reads stay on the primary
  CHECK_FALSE(required_lsn(v, 10.0));
  BackendsView empty;
  CHECK_FALSE(required_lsn(empty, 0));
}

TEST_CASE("ryw: standby_caught_up compares the replay LSN") {
  BackendsView v;
  v.backends.resize(2);
  v.backends[1].last.replay_lsn = 250;
  CHECK(standby_caught_up(v, 1, 200));
  CHECK(standby_caught_up(v, 1, 250));
  CHECK_FALSE(standby_caught_up(v, 1, 251));
  CHECK_FALSE(standby_caught_up(v, 0, 1));
  CHECK_FALSE(standby_caught_up(v, -1, 0));
  CHECK_FALSE(standby_caught_up(v, 2, 0));
}

TEST_CASE("ryw: with the topology: a write, then a sample, then the standby catching up") {
  std::vector<BackendSpec> specs(2);
  specs[0].name = "p";
  specs[1].name = "s";
  Topology t(specs, {});
  ProbeResult primary;
  primary.current_lsn = 1000;
  primary.sent_at = 0.9;
  t.on_probe_ok(0, primary, 1.0);
  const double commit_time = 1.2;
  CHECK_FALSE(required_lsn(*t.view(), commit_time));
  primary.current_lsn = 1500;
  primary.sent_at = 1.9;
  t.on_probe_ok(0, primary, 2.0);
  const auto lsn = required_lsn(*t.view(), commit_time);
  REQUIRE(lsn);
  CHECK(*lsn == 1500u);
  ProbeResult standby;
  standby.in_recovery = true;
  standby.replay_lsn = 1400;
  t.on_probe_ok(1, standby, 2.1);
  CHECK_FALSE(standby_caught_up(*t.view(), 1, *lsn));
  standby.replay_lsn = 1500;
  t.on_probe_ok(1, standby, 3.1);
  CHECK(standby_caught_up(*t.view(), 1, *lsn));
}
