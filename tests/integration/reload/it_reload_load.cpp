// Reloads under load: clients in session and transaction pooling run reads, read-only transactions, writes and
// prepared statements without pause while the config is reloaded 24 times, cycling through removing a standby,
// re-adding it in another position, re-weighting, and resizing the pools. No statement may fail and no client
// may be disconnected; every write must be there at the end.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;
using namespace pgmux::test::reload;

namespace {

const char* const kDb = "rl_load";
const char* const kTxDb = "rl_load_tx";  // the same server database, pooled by transaction

// The configs a reload cycles through: every standby, one removed, the other removed and the list reordered.
nlohmann::json variant(nlohmann::json config, const ClusterPorts& ports, int step) {
  const nlohmann::json primary = backend("primary", ports.primary, 1);
  switch (step % 4) {
    case 0:
      config["backends"] = {primary, backend("standby1", ports.standby1, 1), backend("standby2", ports.standby2, 1)};
      break;
    case 1:
      config["backends"] = {primary, backend("standby1", ports.standby1, 2)};
      break;
    case 2:
      config["backends"] = {backend("standby2", ports.standby2, 1), primary};
      break;
    default:
      config["backends"] = {backend("standby2", ports.standby2, 3), backend("standby1", ports.standby1, 1), primary};
      break;
  }
  for (nlohmann::json& db : config["databases"]) db["pool_size"] = 2 + step % 3;
  return config;
}

}  // namespace

TEST_CASE("reload: 24 reloads under load drop no client and fail no statement") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  const ClusterPorts ports = cluster_ports();
  fresh_database_with_table(ports, kDb);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["databases"] = nlohmann::json::array({{{"name", kDb}}, {{"name", kTxDb}, {"server_database", kDb},
                                                                  {"pool_mode", "transaction"}}});
  config = variant(config, ports, 0);
  ProxyUnderTest proxy(config.dump(), listen);
  PgmuxProcess& pgmux = *proxy.process();
  REQUIRE_MESSAGE(wait_ports_serving(proxy.conninfo("app", "app", kDb), {ports.standby1, ports.standby2}, 20),
                  "standbys never served reads");

  constexpr int kClients = 8;
  std::atomic<bool> stop{false};
  std::atomic<long> writes{0};
  std::atomic<long> statements{0};
  std::string failure;
  std::thread load([&] {
    failure = txpool::run_threads(kClients, [&](int i) {
      PgConn conn = connect(proxy.conninfo("app", "app", i % 2 == 0 ? kDb : kTxDb));
      PgResult prepared(PQprepare(conn.get(), "port", "SELECT inet_server_port()", 0, nullptr));
      if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) throw std::runtime_error("PQprepare failed");
      while (!stop) {
        scalar(conn.get(), "SELECT inet_server_port()");
        exec(conn.get(), "BEGIN READ ONLY");
        scalar(conn.get(), "SELECT count(*) FROM pg_class");
        exec(conn.get(), "COMMIT");
        exec(conn.get(), "INSERT INTO t VALUES (" + std::to_string(i) + ")");
        ++writes;
        PgResult res(PQexecPrepared(conn.get(), "port", 0, nullptr, nullptr, nullptr, 0));
        if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
          throw std::runtime_error(std::string("prepared statement failed: ") + PQerrorMessage(conn.get()));
        }
        statements += 6;
      }
    });
  });

  for (int step = 1; step <= 24; ++step) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    reload_config(pgmux, variant(config, ports, step));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  load.join();
  MESSAGE(statements.load() << " statements, " << writes.load() << " writes during 24 reloads");
  CHECK_MESSAGE(failure.empty(), failure);
  CHECK(statements.load() > 100);
  PgConn p = admin(ports.primary, kDb);
  CHECK(scalar(p.get(), "SELECT count(*) FROM t") == std::to_string(writes.load()));
  const std::string log = pgmux.log();
  CHECK(count_lines(log, "config reloaded from") == 24);
  CHECK_MESSAGE(!contains(log, "FATAL"), log);
  drop_database(ports, kDb);
}
