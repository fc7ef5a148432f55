// Causal reads' shared pieces in proxy/: the commit clock every worker publishes to, and the replay poller's
// answer parsing.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "proxy/control/commit_clock.hpp"
#include "proxy/control/replay_poller.hpp"

using pgmux::proxy::CommitClock;
using pgmux::proxy::parse_wal_position;
using pgmux::proxy::WalPosition;

TEST_CASE("commit clock: nothing before the first commit, then the latest, never moved back") {
  CommitClock clock;
  CHECK_FALSE(clock.latest());
  clock.acknowledge(2'000'000'000);
  REQUIRE(clock.latest());
  CHECK(*clock.latest() == doctest::Approx(2.0));
  clock.acknowledge(1'500'000'000);  // a worker that read the time a moment earlier
  CHECK(*clock.latest() == doctest::Approx(2.0));
  clock.acknowledge(2'250'000'000);
  CHECK(*clock.latest() == doctest::Approx(2.25));
}

TEST_CASE("commit clock: workers racing leave the largest time") {
  CommitClock clock;
  std::vector<std::thread> workers;
  for (uint64_t w = 0; w < 4; ++w) {
    workers.emplace_back([&clock, w] {
      for (uint64_t i = 1; i <= 10000; ++i) clock.acknowledge(i * 4 + w);
    });
  }
  for (std::thread& t : workers) t.join();
  CHECK(*clock.latest() == doctest::Approx(40003 / 1e9));
}

TEST_CASE("replay poller: answers parsed") {
  WalPosition p;
  REQUIRE(parse_wal_position("t", "0/3000148", p));
  CHECK(p.in_recovery);
  CHECK(p.lsn == 0x3000148u);
  REQUIRE(parse_wal_position("f", "16/B374D848", p));
  CHECK_FALSE(p.in_recovery);
  CHECK(p.lsn == 0x16B374D848u);
  CHECK_FALSE(parse_wal_position(nullptr, "0/1", p));
  CHECK_FALSE(parse_wal_position("t", nullptr, p));  // a standby that has replayed nothing yet
  CHECK_FALSE(parse_wal_position("yes", "0/1", p));
  CHECK_FALSE(parse_wal_position("t", "not an lsn", p));
}

TEST_CASE("commit clock: commits applied everywhere move only the first stamp") {
  pgmux::proxy::CommitClock clock;
  clock.acknowledge(1'000'000'000);
  clock.acknowledge(2'000'000'000, /*applied=*/true);
  REQUIRE(clock.latest());
  REQUIRE(clock.latest_unapplied());
  CHECK(*clock.latest() == doctest::Approx(2.0));
  CHECK(*clock.latest_unapplied() == doctest::Approx(1.0));
  clock.acknowledge(3'000'000'000, /*applied=*/false);
  CHECK(*clock.latest_unapplied() == doctest::Approx(3.0));
  pgmux::proxy::CommitClock only_applied;
  only_applied.acknowledge(1'000'000'000, true);
  CHECK(only_applied.latest());
  CHECK_FALSE(only_applied.latest_unapplied());
}
