// Reload of pool limits under load, in transaction pooling on the primary, observed from its pg_stat_activity:
// pool_size 2 -> 4 gives the clients waiting for a server one at once; 4 -> 1 closes the surplus and caps
// concurrency at 1; min_pool_size opens connections; max_client_conn refuses new clients and keeps the old ones.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::reload;
using namespace pgmux::test::txpool;
using routing::wait_until;

namespace {

const char* const kDb = "rl_pool";

// Server connections of kDb running `SELECT pg_sleep(...)` right now.
int sleeping() {
  PgConn p = routing::admin(cluster_ports().primary);
  return std::atoi(scalar(p.get(), std::string("SELECT count(*) FROM pg_stat_activity WHERE datname = '") + kDb +
                                       "' AND state = 'active' AND query LIKE 'SELECT pg_sleep%'")
                       .c_str());
}

// Sends `sql` on every connection without waiting.
void send_all(std::vector<PgConn>& conns, const std::string& sql) {
  for (PgConn& c : conns) REQUIRE(PQsendQuery(c.get(), sql.c_str()) == 1);
}

// Collects every connection's result: all must succeed.
void finish_all(std::vector<PgConn>& conns) {
  for (PgConn& c : conns) {
    bool ok = true;
    while (PGresult* raw = PQgetResult(c.get())) {
      PgResult res(raw);
      if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
        ok = false;
        MESSAGE(error_text(c.get(), res.get()));
      }
    }
    CHECK(ok);
  }
}

// Runs `sql` (a pg_sleep) on every connection at once: the most statements seen sleeping together, once all ended.
int peak_sleeping(std::vector<PgConn>& conns, const std::string& sql) {
  int peak = 0;
  send_all(conns, sql);
  wait_until(
      [&] {
        peak = std::max(peak, sleeping());
        for (PgConn& c : conns) {
          PQconsumeInput(c.get());
          if (PQisBusy(c.get())) return false;
        }
        return true;
      },
      10, 0.02);
  finish_all(conns);
  return peak;
}

// `column` of kDb's row in the console's `command` (SHOW POOLS, SHOW STATS_TOTALS); -1 without one.
long long console_value(int port, const char* command, const char* column) {
  PgConn console = connect(conninfo(port, "postgres", "postgres", "pgmux"));
  PgResult r = exec(console.get(), command);
  const int database = PQfnumber(r.get(), "database"), value = PQfnumber(r.get(), column);
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    if (kDb == std::string(PQgetvalue(r.get(), row, database))) return std::atoll(PQgetvalue(r.get(), row, value));
  }
  return -1LL;
}

// Their clients gone, the pools of kDb are deleted: SHOW STATS_TOTALS keeps counting their transactions
// (PgBouncer's exporters read them as counters, which must not go backwards).
void check_totals_kept(int port, std::vector<PgConn>& conns) {
  const long long before = console_value(port, "SHOW STATS_TOTALS", "xact_count");
  CHECK(before > 0);
  conns.clear();
  // every pool of kDb is gone
  CHECK(wait_until([&] { return console_value(port, "SHOW POOLS", "cl_active") == -1; }, 10));
  CHECK(console_value(port, "SHOW STATS_TOTALS", "xact_count") == before);
}

// Clients of kDb through "*" (pool_size 10), then a reload gives kDb an entry of its own (pool_size 2): those
// clients keep "*"'s pool; new ones share the entry's 2 servers.
void check_entry_added_for_wildcard_clients(PgmuxProcess& pgmux, nlohmann::json& config, int listen,
                                            const std::string& ci) {
  std::vector<PgConn> old, all;
  for (int i = 0; i < 4; ++i) old.push_back(connect(ci));
  nlohmann::json own = txpool_config(listen, kDb, 2);
  config["databases"].push_back(database_entry(own));
  reload_config(pgmux, config);
  for (int i = 0; i < 4; ++i) all.push_back(connect(ci));
  CHECK(peak_sleeping(all, "SELECT pg_sleep(0.5)") == 2);
  CHECK(peak_sleeping(old, "SELECT pg_sleep(0.5)") == 4);
  for (PgConn& c : old) all.push_back(std::move(c));
  CHECK(peak_sleeping(all, "SELECT pg_sleep(0.8)") == 6);
}

}  // namespace

TEST_CASE("reload: pool_size, min_pool_size and max_client_conn change live") {
  if (direct_mode()) return;  // PGMUX_TEST_DIRECT=1: reload and pooling are pgmux's, a bare server has neither
  fresh_database(kDb);
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, kDb, 2);
  config["timeouts"]["query_wait_timeout"] = 30;
  config["admin_users"] = nlohmann::json::array({"postgres"});
  ProxyUnderTest proxy(config.dump(), listen);
  PgmuxProcess& pgmux = *proxy.process();
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);

  std::vector<PgConn> conns;
  for (int i = 0; i < 4; ++i) conns.push_back(connect(ci));

  // pool_size 2: two of the four run, two wait for a server.
  send_all(conns, "SELECT pg_sleep(3)");
  CHECK(wait_until([] { return sleeping() == 2; }, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(sleeping() == 2);
  // pool_size 4: the waiting two get a server at once, while the first two still sleep.
  database_entry(config)["pool_size"] = 4;
  std::string log = reload_config(pgmux, config);
  CHECK_MESSAGE(log.find(std::string("databases ~") + kDb) != std::string::npos, log);
  CHECK(wait_until([] { return sleeping() == 4; }, 1.5));
  finish_all(conns);
  CHECK(server_connections(kDb) == 4);

  // pool_size 1: idle servers beyond it close now, and only one statement runs at a time.
  database_entry(config)["pool_size"] = 1;
  reload_config(pgmux, config);
  CHECK(wait_until([] { return server_connections(kDb) <= 1; }, 3));
  CHECK(peak_sleeping(conns, "SELECT pg_sleep(0.3)") == 1);
  CHECK(server_connections(kDb) <= 1);

  // min_pool_size: opened without any client asking.
  database_entry(config)["pool_size"] = 3;
  database_entry(config)["min_pool_size"] = 3;
  reload_config(pgmux, config);
  CHECK(wait_until([] { return server_connections(kDb) == 3; }, 5));

  // max_client_conn: the four connected clients stay, a fifth is refused; raised again, it gets in.
  config["max_client_conn"] = 4;
  reload_config(pgmux, config);
  PgConn fifth = try_connect(app_conninfo(proxy.port(), kDb));
  CHECK(PQstatus(fifth.get()) != CONNECTION_OK);
  CHECK_MESSAGE(std::string(PQerrorMessage(fifth.get())).find("too many clients") != std::string::npos,
                std::string(PQerrorMessage(fifth.get())));
  for (PgConn& c : conns) CHECK(scalar(c.get(), "SELECT 1") == "1");
  config["max_client_conn"] = 100;
  reload_config(pgmux, config);
  fifth = connect(ci);
  CHECK(scalar(fifth.get(), "SELECT 1") == "1");

  // The database's entry removed while "*" (pool_size 10) matches its name: its connected clients keep the limits
  // they had (pool_size 3), as docs/OPERATIONS-reload.md says, rather than taking "*"'s.
  config["databases"] = nlohmann::json::array({{{"name", "*"}, {"pool_mode", "transaction"}, {"pool_size", 10}}});
  config["timeouts"]["server_idle_timeout"] = 1;  // so that the pools empty, below
  config["timeouts"]["auto_database_idle_timeout"] = 4;  // so that "*"'s pools go too, once their clients are gone
  reload_config(pgmux, config);
  CHECK(peak_sleeping(conns, "SELECT pg_sleep(0.5)") == 3);
  // Their servers closed (server_idle_timeout), the pool is deleted; their next statements open it again with the
  // size it had (3), not the one these four logged in with (2, before the reloads above).
  CHECK(wait_until([&] { return console_value(proxy.port(), "SHOW POOLS", "cl_active") == -1; }, 5));
  CHECK(peak_sleeping(conns, "SELECT pg_sleep(0.5)") == 3);
  conns.push_back(std::move(fifth));
  // Clients logging in now go through "*": a pool of their own with its pool_size, beside the old one (not the old
  // pool, capped at 3 for its clients and them together).
  std::vector<PgConn> all;
  for (int i = 0; i < 6; ++i) all.push_back(connect(ci));
  CHECK(peak_sleeping(all, "SELECT pg_sleep(0.5)") == 6);
  for (PgConn& c : conns) all.push_back(std::move(c));
  CHECK(peak_sleeping(all, "SELECT pg_sleep(0.8)") == 9);
  all.erase(all.begin(), all.begin() + 6);
  conns = std::move(all);  // the five that logged in before the reload

  check_totals_kept(proxy.port(), conns);
  check_entry_added_for_wildcard_clients(pgmux, config, listen, ci);
  drop_database_quietly(kDb);
}
