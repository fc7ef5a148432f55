// Lag exclusion end to end: replay paused on standby1 and the primary pushed a few MB ahead (max_lag_bytes 1 MB)
// takes standby1 out of the read set; after pg_wal_replay_resume() it comes back only once caught up and after
// lag_hysteresis. Reads are counted on new connections (a session keeps its standby).
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_lag";
constexpr double kHysteresis = 2.0;

// Resumes replay on the standby whatever happens to the test.
struct ResumeReplay {
  int port;
  ~ResumeReplay() {
    try {
      PgConn s = admin(port);
      exec(s.get(), "SELECT pg_wal_replay_resume()");
    } catch (...) {
    }
  }
};

std::map<int, int> sample(const std::string& ci, int n) {
  std::map<int, int> counts;
  for (int i = 0; i < n; ++i) ++counts[fresh_read_port(ci)];
  return counts;
}

// standby2 replays the fill at once, but a probe may have caught it mid-way (over 1 MB behind): then it is out for
// the hysteresis too. Counting starts once it has replayed the fill, two probe rounds have seen that (a round that
// measured it mid-way lands before), and it serves reads again: sampled earlier, a probe still under way could
// exclude it in the middle of the count (a suite run: 37 of 200 reads on the primary).
void wait_standby2_serving_again(const ClusterPorts& ports, const std::string& ci) {
  REQUIRE_MESSAGE(wait_until([&] { return replay_lag_bytes(ports.primary, ports.standby2) < 64 * 1024; }, 20),
                  "standby2 did not replay the fill");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  REQUIRE_MESSAGE(wait_until([&] { return fresh_read_port(ci) == ports.standby2; }, kHysteresis + 10, 0.02),
                  "standby2 never served reads after the fill");
}

}  // namespace

TEST_CASE("a standby too far behind gets no reads until it has caught up") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: routing is pgmux's; nothing to check against a bare server");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["routing"] = {{"max_lag_bytes", 1 << 20}, {"max_lag_seconds", 600}, {"lag_hysteresis", kHysteresis}};
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");

  recreate_database(ports, kDb);
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");

  ResumeReplay guard{ports.standby1};
  PgConn s1 = admin(ports.standby1);
  exec(s1.get(), "SELECT pg_wal_replay_pause()");
  REQUIRE(wait_until([&] { return scalar(s1.get(), "SELECT pg_get_wal_replay_pause_state()") == "paused"; }, 10));

  // About 4 MB of WAL on the primary.
  PgConn p = admin(ports.primary, kDb);
  exec(p.get(), "CREATE TABLE fill (id int, pad text)");
  exec(p.get(), "INSERT INTO fill SELECT g, repeat('x', 1000) FROM generate_series(1, 4000) g");
  const long long lag = replay_lag_bytes(ports.primary, ports.standby1);
  MESSAGE("standby1 replay lag: " << lag << " bytes");
  REQUIRE(lag > 2 * (1 << 20));

  // The prober (every 0.2 s) must notice: wait until 20 reads in a row avoid standby1, then count 200 more.
  int streak = 0;
  const double t_fill = now_seconds();
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        streak = fresh_read_port(ci) == ports.standby1 ? 0 : streak + 1;
                        return streak >= 20;
                      },
                      10, 0.0),
                  "standby1 kept getting reads while far behind");
  MESSAGE("standby1 excluded within " << now_seconds() - t_fill << " s");
  wait_standby2_serving_again(ports, ci);
  std::map<int, int> during = sample(ci, 200);
  MESSAGE("while paused: " << describe(during, ports));
  CHECK(during[ports.standby1] == 0);
  CHECK(during[ports.standby2] == 200);  // the other standby takes every read (it is up to date)

  // Still excluded a little later (the exclusion is not a one-round blip).
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  std::map<int, int> later = sample(ci, 50);
  CHECK(later[ports.standby1] == 0);

  exec(s1.get(), "SELECT pg_wal_replay_resume()");
  REQUIRE_MESSAGE(wait_replayed(ports, 20), "standby1 did not catch up after resume");
  const double t_caught_up = now_seconds();
  double back_after = -1;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        if (fresh_read_port(ci) != ports.standby1) return false;
                        back_after = now_seconds() - t_caught_up;
                        return true;
                      },
                      kHysteresis + 10, 0.02),
                  "standby1 never got reads again after catching up");
  MESSAGE("standby1 back in the read set " << back_after << " s after catching up (hysteresis " << kHysteresis
                                           << " s)");
  // Replay of 4 MB takes milliseconds, so catching up and re-entry are separated by about the hysteresis.
  CHECK(back_after >= kHysteresis - 0.5);
  std::map<int, int> after = sample(ci, 100);
  MESSAGE("after catch-up: " << describe(after, ports));
  CHECK(after[ports.standby1] >= 40);
  CHECK(after[ports.standby2] >= 40);

  p.reset();
  drop_database(ports, kDb);
}
