// Reload (SIGHUP) of standby weights and routing settings: fresh connections see the new read split at once
// (1:1, then 1:0, then 0:1), and clients connected all along (session and transaction pooling) stay connected,
// follow the new weights and settings with their next statement, and still write.
#include <doctest/doctest.h>

#include "tests/integration/reload/reload_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;
using namespace pgmux::test::reload;

namespace {

const char* const kDb = "rl_weights";
const char* const kTxDb = "rl_weights_tx";  // the same server database, pooled by transaction

// The two clients connected all along, session and transaction pooled, and the server pids they logged in with.
struct KeptClients {
  PgConn session;
  PgConn pooled;
  int session_pid;
  int pooled_pid;
  KeptClients(const std::string& ci, const std::string& tx_ci)
      : session(connect(ci)),
        pooled(connect(tx_ci)),
        session_pid(PQbackendPID(session.get())),
        pooled_pid(PQbackendPID(pooled.get())) {}
  // Both connected clients read from `port` (their next statements, several in a row).
  void read_from(int port) const {
    for (int i = 0; i < 6; ++i) {
      CHECK(server_port(session.get()) == port);
      CHECK(server_port(pooled.get()) == port);
    }
  }
};

// Weights 1:1, then 1:0, then 0:1: fresh connections and the kept clients follow each reload at once.
void check_weight_changes(PgmuxProcess& pgmux, nlohmann::json& config, const ClusterPorts& ports,
                          const std::string& ci, const KeptClients& kept) {
  std::map<int, int> split = read_split(ci, 40);
  MESSAGE("1:1 -> " << describe(split, ports));
  CHECK(split[ports.standby1] >= 10);
  CHECK(split[ports.standby2] >= 10);
  CHECK(split[ports.primary] == 0);
  CHECK(split[-1] == 0);

  config["backends"][2]["weight"] = 0;
  std::string log = reload_config(pgmux, config);
  CHECK_MESSAGE(log.find("backends weight standby2 1->0") != std::string::npos, log);
  split = read_split(ci, 30);
  MESSAGE("1:0 -> " << describe(split, ports));
  CHECK(split[ports.standby1] == 30);
  kept.read_from(ports.standby1);

  config["backends"][1]["weight"] = 0;
  config["backends"][2]["weight"] = 1;
  log = reload_config(pgmux, config);
  CHECK_MESSAGE(log.find("weight standby1 1->0, weight standby2 0->1") != std::string::npos, log);
  split = read_split(ci, 30);
  MESSAGE("0:1 -> " << describe(split, ports));
  CHECK(split[ports.standby2] == 30);
  kept.read_from(ports.standby2);

  // The reload summary goes to the log once per reload, and nothing was refused.
  CHECK(count_lines(pgmux.full_log(), "SIGHUP: config reloaded from") == 2);
  CHECK(count_lines(pgmux.full_log(), "config reload failed") == 0);
}

// routing.read_write_split off sends the kept clients' reads to the primary, on again to the standbys.
void check_routing_settings_follow(PgmuxProcess& pgmux, nlohmann::json& config, const ClusterPorts& ports,
                                   const std::string& ci, const KeptClients& kept) {
  config["routing"]["read_write_split"] = false;
  reload_config(pgmux, config);
  kept.read_from(ports.primary);
  CHECK(fresh_read_port(ci) == ports.primary);

  config["routing"]["read_write_split"] = true;
  config["backends"][1]["weight"] = 0;  // and back to standby2 only
  reload_config(pgmux, config);
  kept.read_from(ports.standby2);
}

// The same sessions all along, and they still write (and read their writes).
void check_kept_clients_still_write(const PgmuxProcess& pgmux, const KeptClients& kept) {
  CHECK(PQstatus(kept.session.get()) == CONNECTION_OK);
  CHECK(PQbackendPID(kept.session.get()) == kept.session_pid);
  CHECK(PQbackendPID(kept.pooled.get()) == kept.pooled_pid);
  exec(kept.session.get(), "INSERT INTO t VALUES (1)");
  exec(kept.pooled.get(), "INSERT INTO t VALUES (2)");
  CHECK(scalar(kept.session.get(), "/* pgmux:primary */ SELECT count(*) FROM t") == "2");
  CHECK(scalar(kept.pooled.get(), "/* pgmux:primary */ SELECT count(*) FROM t") == "2");
  CHECK(pgmux.full_log().find("FATAL") == std::string::npos);
}

}  // namespace

TEST_CASE("reload: weights change the read split; connected clients stay and follow") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  const ClusterPorts ports = cluster_ports();
  fresh_database_with_table(ports, kDb);

  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["databases"].push_back({{"name", kTxDb}, {"server_database", kDb}, {"pool_mode", "transaction"}});
  ProxyUnderTest proxy(config.dump(), listen);
  PgmuxProcess& pgmux = *proxy.process();
  const std::string ci = proxy.conninfo("app", "app", kDb);
  const std::string tx_ci = proxy.conninfo("app", "app", kTxDb);
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  KeptClients kept(ci, tx_ci);

  SUBCASE("weights 1:1, 1:0, 0:1") { check_weight_changes(pgmux, config, ports, ci, kept); }
  SUBCASE("routing settings apply to connected clients") {
    check_routing_settings_follow(pgmux, config, ports, ci, kept);
  }

  check_kept_clients_still_write(pgmux, kept);
  kept.session.reset();
  kept.pooled.reset();
  drop_database(ports, kDb);
}
