// Reloads that must not apply: a file that is not JSON, a file with invalid values (every problem logged with its
// JSON pointer), and a valid file that changes a restart-only setting (listeners) along with live ones. Each
// time pgmux keeps serving with the old config: the connected client and new clients work, and the old read
// split (standby1 only) stays. A valid reload afterwards applies.
#include <doctest/doctest.h>

#include "tests/integration/reload/reload_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;
using namespace pgmux::test::reload;

namespace {

const char* const kDb = "rl_invalid";

}  // namespace

TEST_CASE("reload: invalid and restart-only configs are refused; the old config keeps serving") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  const ClusterPorts ports = cluster_ports();
  fresh_database_with_table(ports, kDb);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["backends"][2]["weight"] = 0;  // the old setting to keep: reads on standby1 only
  ProxyUnderTest proxy(config.dump(), listen);
  PgmuxProcess& pgmux = *proxy.process();
  const std::string ci = proxy.conninfo("app", "app", kDb);
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1}, 20), "standby1 never served reads");
  PgConn kept = connect(ci);
  CHECK(server_port(kept.get()) == ports.standby1);

  // What every refused file below would change: the read split to standby2 only.
  nlohmann::json flipped = config;
  flipped["backends"][1]["weight"] = 0;
  flipped["backends"][2]["weight"] = 1;
  std::string log;

  SUBCASE("not JSON") {
    log = reload_config_text(pgmux, "{ \"listeners\": [ {\"host\": ", Outcome::Failed);
    CHECK_MESSAGE(contains(log, "SIGHUP: reload of "), log);
    CHECK_MESSAGE(contains(log, "parse error at line 1"), log);
    CHECK_MESSAGE(contains(log, "SIGHUP: config reload failed: 1 error(s) in "), log);
  }

  SUBCASE("invalid values: every error with its JSON pointer") {
    nlohmann::json bad = flipped;
    bad["backends"][2]["port"] = 70000;
    bad["databases"][0]["pool_size"] = 0;
    bad["timeouts"]["query_wait_timeout"] = "soon";
    log = reload_config(pgmux, bad, Outcome::Failed);
    CHECK_MESSAGE(contains(log, "/backends/2/port: must be 1..65535"), log);
    CHECK_MESSAGE(contains(log, "/databases/0/pool_size: must be 1..10000"), log);
    CHECK_MESSAGE(contains(log, "/timeouts/query_wait_timeout: "), log);
    CHECK(count_lines(log, "SIGHUP: reload of ") == 3);
    CHECK_MESSAGE(contains(log, "SIGHUP: config reload failed: 3 error(s) in "), log);
  }

  SUBCASE("a listener change is refused, and the live changes with it are not applied") {
    const int other = free_port_from(listen + 1);
    nlohmann::json moved = flipped;
    moved["listeners"][0]["port"] = other;
    log = reload_config(pgmux, moved, Outcome::Failed);
    CHECK_MESSAGE(contains(log, "SIGHUP: config reload refused: /listeners: changed from 127.0.0.1:" +
                                    std::to_string(listen) + " to 127.0.0.1:" + std::to_string(other) +
                                    "; listeners change only with a restart"),
                  log);
    CHECK_MESSAGE(contains(log, "config reload failed: settings that need a restart changed; the old config stays"),
                  log);
    PgConn elsewhere = try_connect(conninfo(other, "app", "app", kDb));
    CHECK(PQstatus(elsewhere.get()) != CONNECTION_OK);
  }

  CHECK_FALSE(contains(log, "config reloaded"));
  // The old config is in effect: the kept client and new clients work and read from standby1 only.
  CHECK(PQstatus(kept.get()) == CONNECTION_OK);
  for (int i = 0; i < 5; ++i) CHECK(server_port(kept.get()) == ports.standby1);
  std::map<int, int> split = read_split(ci, 20);
  MESSAGE("after the refused reload: " << describe(split, ports));
  CHECK(split[ports.standby1] == 20);
  PgConn fresh = connect(ci);
  CHECK(scalar(fresh.get(), "SELECT 40 + 2") == "42");

  // A valid file afterwards applies, to the same client too.
  reload_config(pgmux, flipped);
  split = read_split(ci, 20);
  MESSAGE("after a valid reload: " << describe(split, ports));
  CHECK(split[ports.standby2] == 20);
  for (int i = 0; i < 5; ++i) CHECK(server_port(kept.get()) == ports.standby2);
  kept.reset();
  fresh.reset();
  drop_database(ports, kDb);
}
