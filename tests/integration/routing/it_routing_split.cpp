// Smooth weighted round robin end to end: weights 1:3 over standby1:standby2, 10 000 autocommit reads, each on a
// new connection (session mode keeps a client on the standby it got), split within ±5 %; none on the primary.
// The weights hold while the standbys' pools have room (standby_with_room sends a read that would wait to the other
// standby): it also catches a pool that opens more servers than its clients need. Before the pool let the next
// waiter take over a server still connecting for a client already served, four clients reconnecting for every
// read filled a 20-server budget with logins in progress and standby1 got up to 3,117 of the 10,000 reads.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

TEST_CASE("autocommit reads split 1:3 over the standbys") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: routing is pgmux's; nothing to check against a bare server");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["backends"][0]["weight"] = 5;  // the primary's weight must not matter for reads
  config["backends"][1]["weight"] = 1;
  config["backends"][2]["weight"] = 3;
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");

  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");

  constexpr int kThreads = 4;
  constexpr int kReads = 10000;
  std::atomic<int> next{0};
  std::mutex mu;
  std::map<int, int> counts;
  const double t0 = now_seconds();
  const double deadline = t0 + 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::map<int, int> local;
      while (next.fetch_add(1) < kReads && now_seconds() < deadline) ++local[fresh_read_port(ci)];
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [port, n] : local) counts[port] += n;
    });
  }
  for (std::thread& t : threads) t.join();
  const double elapsed = now_seconds() - t0;

  int total = 0;
  for (const auto& [port, n] : counts) total += n;
  MESSAGE(total << " reads in " << elapsed << " s: " << describe(counts, ports));
  REQUIRE(total == kReads);  // else the deadline cut the run short
  CHECK(counts[-1] == 0);    // no failed connection or read
  CHECK(counts[ports.primary] == 0);
  const double share1 = counts[ports.standby1] / double(kReads);
  const double share2 = counts[ports.standby2] / double(kReads);
  // ±5 % of each expected share (relative), stricter than ±5 points.
  CHECK(share1 >= 0.25 * 0.95);
  CHECK(share1 <= 0.25 * 1.05);
  CHECK(share2 >= 0.75 * 0.95);
  CHECK(share2 <= 0.75 * 1.05);
  CHECK(elapsed < 60);
}

// A standby whose pool has no idle server and no room for another (a long transaction holds its one server): reads
// go to the other standby rather than wait query_wait_timeout there (before, every other read waited and got 53300).
TEST_CASE("reads skip a standby whose pool is full while another standby has room") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["workers"] = 1;
  config["timeouts"]["query_wait_timeout"] = 3;
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "transaction";
    database["pool_size"] = 1;
  }
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");

  PgConn holder = connect(ci);
  exec(holder.get(), "BEGIN READ ONLY");
  const int held = std::stoi(scalar(holder.get(), "SELECT inet_server_port()"));
  REQUIRE((held == ports.standby1 || held == ports.standby2));
  PgConn reader = connect(ci);
  for (int i = 0; i < 6; ++i) {
    const double t0 = now_seconds();
    PgResult read(PQexec(reader.get(), "SELECT inet_server_port()"));
    REQUIRE_MESSAGE(PQresultStatus(read.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(read.get()));
    const int port = std::stoi(PQgetvalue(read.get(), 0, 0));
    CHECK(port != held);
    CHECK(port != ports.primary);
    CHECK(now_seconds() - t0 < 1.5);
  }
  exec(holder.get(), "COMMIT");
}

// A standby that refuses a role's logins while the primary takes them (its CONNECTION LIMIT used up on the
// standbys by direct sessions; the prober logs in as postgres and keeps them in the read set): the role's reads run
// on the primary, as they would directly. The binary before answered each read with the standby's 53300.
TEST_CASE("reads of a role the standbys refuse at login run on the primary, both pool modes") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  // Two connections allowed on each node (one spare on the primary, for a backend of the proxy before still
  // exiting); the limit goes when the test does, whatever happened.
  struct LimitedRole {
    int primary;
    explicit LimitedRole(int port) : primary(port) {
      PgConn p = admin(primary);
      exec(p.get(), "DO $$BEGIN CREATE ROLE rt_limited LOGIN PASSWORD 'limited'; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END$$");
      exec(p.get(), "ALTER ROLE rt_limited CONNECTION LIMIT 2");
    }
    ~LimitedRole() {
      PgConn p = admin(primary);
      exec(p.get(), "ALTER ROLE rt_limited CONNECTION LIMIT -1");
    }
  } role(ports.primary);
  REQUIRE(wait_replayed(ports, 10));
  // The connections the role may have on each standby, held directly.
  std::vector<PgConn> held;
  for (const int port : {ports.standby1, ports.standby2}) {
    for (int i = 0; i < 2; ++i) held.push_back(connect(conninfo(port, "rt_limited", "limited", "app")));
  }
  for (const char* mode : {"session", "transaction"}) {
    const std::string mode_name(mode);  // CAPTURE keeps a reference
    CAPTURE(mode_name);
    const int listen = pick_listen_port();
    nlohmann::json config = routing_config(listen, ports);
    config["users"].push_back({{"name", "rt_limited"}, {"password", "limited"}});
    for (auto& database : config["databases"]) database["pool_mode"] = mode;
    ProxyUnderTest proxy(config.dump(), listen);
    REQUIRE(wait_ports_serving(proxy.conninfo("app", "app", "app"), {ports.standby1, ports.standby2}, 20));
    PgConn client = connect(proxy.conninfo("rt_limited", "limited", "app"));
    for (int i = 0; i < 4; ++i) {
      PgResult read(PQexec(client.get(), "SELECT inet_server_port()"));
      REQUIRE_MESSAGE(PQresultStatus(read.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(read.get()));
      CHECK(std::stoi(PQgetvalue(read.get(), 0, 0)) == ports.primary);
    }
  }
}
