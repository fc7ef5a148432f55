// Reload that adds a backend, removes one and reorders the list, with clients (session and transaction pooling)
// connected throughout. The removed backend drains: a read-only transaction open on it finishes there (its reads
// and COMMIT succeed), the next statements go elsewhere, no client sees an error, and its server connections
// close. Backends kept under the same name keep serving after the list is reordered.
#include <doctest/doctest.h>

#include <array>

#include "tests/integration/reload/reload_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;
using namespace pgmux::test::reload;

namespace {

const char* const kDb = "rl_backends";
const char* const kTxDb = "rl_backends_tx";  // the same server database, pooled by transaction

// pgmux's server connections to kDb on one node.
int app_connections(int port) {
  PgConn conn = admin(port);
  return std::atoi(scalar(conn.get(), std::string("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                                                  "AND application_name <> 'pgmux-catalog' AND datname = '") +
                                          kDb + "'").c_str());
}

// What the steps of the add/remove/reorder test share: pgmux, its config (rewritten by each step) and the two
// clients connected throughout, session pooled and transaction pooled.
struct ReloadRun {
  const ClusterPorts& ports;
  nlohmann::json& config;
  PgmuxProcess& pgmux;
  const std::string& ci;
  PGconn* session;
  PGconn* pooled;

  std::array<PGconn*, 2> clients() const { return {session, pooled}; }
  void clients_read_from(int port) const {
    for (int i = 0; i < 4; ++i) {
      for (PGconn* c : clients()) CHECK(server_port(c) == port);
    }
  }
};

// Added: standby2 takes every read once the prober has seen it (standby1 weight 0).
void add_standby2(const ReloadRun& run) {
  run.config["backends"][1]["weight"] = 0;
  run.config["backends"].push_back(backend("standby2", run.ports.standby2, 1));
  const std::string log = reload_config(run.pgmux, run.config);
  CHECK_MESSAGE(contains(log, "backends +standby2, weight standby1 1->0"), log);
  REQUIRE(wait_until([&] { return fresh_read_port(run.ci) == run.ports.standby2; }, 10));
  run.clients_read_from(run.ports.standby2);
}

// Removed while each client has a read-only transaction open on it: standby2 drains.
void remove_standby2_under_transactions(const ReloadRun& run) {
  const ClusterPorts& ports = run.ports;
  // Session state that must follow the session-pooled client off the removed backend: a setting (replayed) and
  // a prepared statement (prepared again where it is next used).
  exec(run.session, "SET statement_timeout = '12345'");
  PgResult prepared(PQprepare(run.session, "where_am_i", "SELECT inet_server_port()", 0, nullptr));
  REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);

  // A read-only transaction open on standby2 in each client when standby2 is removed.
  for (PGconn* c : run.clients()) {
    exec(c, "BEGIN READ ONLY");
    CHECK(server_port(c) == ports.standby2);
  }
  run.config["backends"].erase(2);
  run.config["backends"][1]["weight"] = 1;
  const std::string log = reload_config(run.pgmux, run.config);
  CHECK_MESSAGE(contains(log, "backends -standby2, weight standby1 0->1"), log);
  CHECK_MESSAGE(contains(log, "draining"), log);
  for (PGconn* c : run.clients()) {
    CHECK(server_port(c) == ports.standby2);  // the transaction finishes where it started
    CHECK(scalar(c, "SELECT count(*) FROM pg_class WHERE relname = 'pg_class'") == "1");
    exec(c, "COMMIT");
  }
  run.clients_read_from(ports.standby1);  // then the next statements go elsewhere
  CHECK(scalar(run.session, "SELECT current_setting('statement_timeout')") == "12345ms");
  PgResult moved(PQexecPrepared(run.session, "where_am_i", 0, nullptr, nullptr, nullptr, 0));
  REQUIRE(PQresultStatus(moved.get()) == PGRES_TUPLES_OK);
  CHECK(std::atoi(PQgetvalue(moved.get(), 0, 0)) == ports.standby1);
  std::map<int, int> split = read_split(run.ci, 10);
  CHECK(split[ports.standby1] == 10);
  // The drained pools' servers are gone from standby2, and the pools with them.
  CHECK(wait_until([&] { return app_connections(ports.standby2) == 0; }, 10));
  CHECK(wait_until([&] { return contains(run.pgmux.log(), "drained after its backend was removed, removed"); }, 5));
}

// Re-added in front of standby1: the list order changes, the backends keep their names and weights.
void readd_standby2_in_front(const ReloadRun& run) {
  const ClusterPorts& ports = run.ports;
  run.config["backends"] = nlohmann::json::array({backend("primary", ports.primary, 1),
                                                  backend("standby2", ports.standby2, 1),
                                                  backend("standby1", ports.standby1, 0)});
  reload_config(run.pgmux, run.config);
  REQUIRE(wait_until([&] { return fresh_read_port(run.ci) == ports.standby2; }, 10));
  run.clients_read_from(ports.standby2);
  run.config["backends"][1]["weight"] = 0;
  run.config["backends"][2]["weight"] = 1;
  reload_config(run.pgmux, run.config);
  run.clients_read_from(ports.standby1);
  std::map<int, int> split = read_split(run.ci, 10);
  CHECK(split[ports.standby1] == 10);
}

// Writes still reach the primary, and no client was ever refused or dropped.
void check_clients_still_write(const ReloadRun& run) {
  for (PGconn* c : run.clients()) {
    CHECK(PQstatus(c) == CONNECTION_OK);
    CHECK(scalar(c, "INSERT INTO t VALUES (1) RETURNING inet_server_port()") == std::to_string(run.ports.primary));
  }
  const std::string all = run.pgmux.log();
  CHECK_MESSAGE(!contains(all, "FATAL"), all);
  CHECK_MESSAGE(!contains(all, "request not sent"), all);
}

}  // namespace

TEST_CASE("reload: backends added, removed (drained) and reordered under connected clients") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  const ClusterPorts ports = cluster_ports();
  fresh_database_with_table(ports, kDb);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["backends"] = nlohmann::json::array({backend("primary", ports.primary, 1),
                                              backend("standby1", ports.standby1, 1)});
  config["databases"].push_back({{"name", kTxDb}, {"server_database", kDb}, {"pool_mode", "transaction"}});
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", kDb);
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1}, 20), "standby1 never served reads");

  PgConn session = connect(ci);
  PgConn pooled = connect(proxy.conninfo("app", "app", kTxDb));
  const ReloadRun run{ports, config, *proxy.process(), ci, session.get(), pooled.get()};
  run.clients_read_from(ports.standby1);
  add_standby2(run);
  remove_standby2_under_transactions(run);
  readd_standby2_in_front(run);
  check_clients_still_write(run);
  session.reset();
  pooled.reset();
  drop_database(ports, kDb);
}

TEST_CASE("reload: a client waiting for a server of a removed backend is routed elsewhere; a moved backend drains") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  const ClusterPorts ports = cluster_ports();
  fresh_database_with_table(ports, kDb);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["backends"][1]["weight"] = 0;  // reads on standby2
  // One server connection per backend, pooled by transaction: a second reader must wait for the first.
  config["databases"] = nlohmann::json::array({{{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 1}}});
  config["timeouts"]["query_wait_timeout"] = 30;
  ProxyUnderTest proxy(config.dump(), listen);
  PgmuxProcess& pgmux = *proxy.process();
  const std::string ci = proxy.conninfo("app", "app", kDb);
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby2}, 20), "standby2 never served reads");

  PgConn holder = connect(ci);
  PgConn waiter = connect(ci);
  exec(holder.get(), "BEGIN READ ONLY");
  CHECK(server_port(holder.get()) == ports.standby2);  // holds standby2's only server connection
  REQUIRE(PQsendQuery(waiter.get(), "SELECT inet_server_port()") == 1);
  REQUIRE_FALSE(wait_readable(waiter.get(), 0.5));  // waiting for that server connection

  config["backends"].erase(2);
  config["backends"][1]["weight"] = 1;
  reload_config(pgmux, config);
  // The waiting read went to standby1 at once; the transaction on standby2 goes on and commits.
  REQUIRE(wait_readable(waiter.get(), 5));
  PgResult res(PQgetResult(waiter.get()));
  REQUIRE(PQresultStatus(res.get()) == PGRES_TUPLES_OK);
  CHECK(std::atoi(PQgetvalue(res.get(), 0, 0)) == ports.standby1);
  while (PGresult* rest = PQgetResult(waiter.get())) PQclear(rest);
  CHECK(server_port(holder.get()) == ports.standby2);
  exec(holder.get(), "COMMIT");
  CHECK(server_port(holder.get()) == ports.standby1);
  CHECK(wait_until([&] { return app_connections(ports.standby2) == 0; }, 10));

  // Same name, another address: "standby1" now points at standby2's server. The old server connections drain
  // and reads reach the new address once the prober has seen it.
  config["backends"][1]["port"] = ports.standby2;
  const std::string log = reload_config(pgmux, config);
  CHECK_MESSAGE(contains(log, "backends ~standby1"), log);
  REQUIRE(wait_until([&] { return fresh_read_port(ci) == ports.standby2; }, 10));
  for (PGconn* c : {holder.get(), waiter.get()}) CHECK(server_port(c) == ports.standby2);
  CHECK(wait_until([&] { return app_connections(ports.standby1) == 0; }, 10));
  CHECK_MESSAGE(!contains(pgmux.log(), "FATAL"), pgmux.log());
  holder.reset();
  waiter.reset();
  drop_database(ports, kDb);
}
