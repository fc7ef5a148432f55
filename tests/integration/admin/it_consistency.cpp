// CHECK CONSISTENCY end to end (issue 12, item 6): the primary and both standbys summed at one WAL position while
// pgbench writes through pgmux (no failed transaction, every row matching); named tables and what is refused; a
// standby whose replay is paused reported as not matching, and the metrics that record it.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/metrics/http_get.hpp"
#include "tests/integration/routing/routing_support.hpp"

namespace pgmux::test {
namespace {

using nlohmann::json;

const char* const kDb = "consistency_it";
const std::string kBin = "/usr/lib/postgresql/15/bin/";

struct Check {
  std::vector<std::map<std::string, std::string>> rows;
  std::vector<std::string> notices;
  std::string sqlstate;
  std::string message;
};

void collect_notice(void* arg, const PGresult* res) {
  static_cast<std::vector<std::string>*>(arg)->push_back(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

Check run_check(PGconn* console, const std::string& sql) {
  Check c;
  PQsetNoticeReceiver(console, collect_notice, &c.notices);
  PgResult res(PQexec(console, sql.c_str()));
  PQsetNoticeReceiver(console, [](void*, const PGresult*) {}, nullptr);
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    const char* message = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY);
    c.sqlstate = state ? state : "?";
    c.message = message ? message : PQerrorMessage(console);
    return c;
  }
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    std::map<std::string, std::string> row;
    for (int f = 0; f < PQnfields(res.get()); ++f) row[PQfname(res.get(), f)] = PQgetvalue(res.get(), r, f);
    c.rows.push_back(std::move(row));
  }
  return c;
}

class Fixture {
 public:
  Fixture() : ports(cluster_ports()), listen_port(pick_listen_port()) {
    routing::recreate_database(ports, kDb);
    json config = routing::routing_config(listen_port, ports);
    config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
    config["admin_users"] = json::array({"admin"});
    config["databases"].push_back({{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 8}});
    config["databases"].push_back({{"name", "shop"}, {"server_database", kDb}, {"pool_size", 2}});
    config["switchover"] = {{"catchup_timeout", 2}};
    metrics_port = free_port_from(listen_port + 1);
    config["metrics_listen"] = "127.0.0.1:" + std::to_string(metrics_port);
    proxy = std::make_unique<ProxyUnderTest>(config.dump(2), listen_port);
    const std::string direct = "-h 127.0.0.1 -p " + std::to_string(ports.primary) + " -U postgres";
    REQUIRE(std::system(("PGPASSWORD=postgres " + kBin + "pgbench -q -i -s 1 " + direct + " " + kDb +
                         " >/dev/null 2>&1").c_str()) == 0);
    PgConn grant = routing::admin(ports.primary, kDb);
    exec(grant.get(), "GRANT ALL ON ALL TABLES IN SCHEMA public TO app");
    exec(grant.get(), "CREATE UNLOGGED TABLE scratch (x int)");
    exec(grant.get(), "CREATE VIEW branch_view AS SELECT * FROM pgbench_branches");
    REQUIRE(routing::wait_replayed(ports, 15));
  }
  ~Fixture() { routing::drop_database(ports, kDb); }

  std::string console() const { return conninfo(listen_port, "admin", "admin-secret", "pgmux"); }

  ClusterPorts ports;
  int listen_port;
  int metrics_port = 0;
  std::unique_ptr<ProxyUnderTest> proxy;
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "CHECK CONSISTENCY under pgbench: every table matches on both standbys, none fails") {
  const std::string tmp = std::getenv("PGMUX_TEST_TMPDIR") ? std::getenv("PGMUX_TEST_TMPDIR") : "/tmp";
  const std::string log = tmp + "/consistency_pgbench_" + std::to_string(getpid()) + ".log";
  const std::string run = "PGPASSWORD=app timeout 60 " + kBin + "pgbench -n -c 8 -T 6 -h 127.0.0.1 -p " +
                          std::to_string(listen_port) + " -U app " + kDb + " > " + log + " 2>&1";
  int status = -1;
  std::thread pgbench([&] { status = std::system(run.c_str()); });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  PgConn conn = connect(console());
  for (int round = 0; round < 2; ++round) {
    const Check c = run_check(conn.get(), std::string("CHECK CONSISTENCY ON ") + kDb);
    REQUIRE_MESSAGE(c.sqlstate.empty(), c.message);
    // pgbench's 4 tables (the unlogged one is not replicated, the view is no table) on 3 backends.
    CHECK(c.rows.size() == 12);
    std::map<std::string, std::string> primary_sums;
    for (const auto& row : c.rows) {
      INFO(row.at("table") << " on " << row.at("backend") << ": " << row.at("error"));
      CHECK(row.at("matches") == "t");
      CHECK(row.at("table") != "scratch");
      const std::string sum = row.at("rows") + "/" + row.at("checksum");
      if (row.at("role") == "primary") primary_sums[row.at("table")] = sum;
      CHECK(sum == primary_sums[row.at("table")]);  // the primary's row comes first for each table
    }
    REQUIRE(c.notices.size() == 2);
    CHECK(c.notices[0].find("writes were held for") != std::string::npos);
    CHECK(c.notices[1] == "4 table(s) on 2 standby(s): 0 difference(s)");
    MESSAGE(c.notices[0]);
  }
  pgbench.join();
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(log.c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_MESSAGE(output.find("number of failed transactions: 0 (0.000%)") != std::string::npos, output);
  const std::string metrics = metrics::http_get(metrics_port, "/metrics").body;
  CHECK(metrics::sample(metrics, "pgmux_consistency_checks_total{result=\"consistent\"}") == 2);
  CHECK(metrics::sample(metrics, "pgmux_consistency_differences") == 0);
  CHECK(metrics::sample(metrics, "pgmux_consistency_last_run_timestamp_seconds") > 1.7e9);
}

TEST_CASE_FIXTURE(Fixture, "CHECK CONSISTENCY of named tables, and what it refuses") {
  PgConn conn = connect(console());
  const Check named = run_check(conn.get(), std::string("CHECK CONSISTENCY ON ") + kDb +
                                                " pgbench_branches, public.pgbench_tellers");
  REQUIRE_MESSAGE(named.sqlstate.empty(), named.message);
  CHECK(named.rows.size() == 6);
  CHECK(named.rows[0].at("table") == "pgbench_branches");
  CHECK(named.rows[0].at("rows") == "1");
  CHECK(named.rows[3].at("table") == "pgbench_tellers");
  CHECK(named.rows[3].at("rows") == "10");

  const Check missing = run_check(conn.get(), std::string("CHECK CONSISTENCY ON ") + kDb + " nosuch");
  CHECK(missing.sqlstate == "42P01");
  CHECK(missing.message == std::string("consistency check failed: relation \"nosuch\" does not exist in database \"") +
                               kDb + "\"");
  for (const char* table : {"scratch", "branch_view"}) {
    const Check refused = run_check(conn.get(), std::string("CHECK CONSISTENCY ON ") + kDb + " " + table);
    CHECK(refused.sqlstate == "55000");
    CHECK(refused.message.find("is not a permanent table") != std::string::npos);
  }
  CHECK(run_check(conn.get(), "CHECK CONSISTENCY ON").sqlstate == "42601");
  // ON takes the name clients connect with, as PAUSE does: an entry's server_database is read ("shop" failed with
  // the server's 3D000 before, as a database of that name).
  const Check alias = run_check(conn.get(), "CHECK CONSISTENCY ON \"shop\" pgbench_branches");
  REQUIRE_MESSAGE(alias.sqlstate.empty(), alias.message);
  CHECK(alias.rows.size() == 3);
  // A database that does not exist: the primary refuses the connection; the console session goes on.
  CHECK(run_check(conn.get(), "CHECK CONSISTENCY ON nosuchdb").sqlstate == "55000");
}

TEST_CASE_FIXTURE(Fixture, "a standby that does not replay is reported as not matching; writes were not held long") {
  PgConn standby2 = routing::admin(ports.standby2, "postgres");
  exec(standby2.get(), "SELECT pg_wal_replay_pause()");
  PgConn primary = routing::admin(ports.primary, kDb);
  exec(primary.get(), "UPDATE pgbench_branches SET bbalance = bbalance + 1");
  PgConn conn = connect(console());
  const Check c = run_check(conn.get(), std::string("CHECK CONSISTENCY ON ") + kDb + " pgbench_branches");
  exec(standby2.get(), "SELECT pg_wal_replay_resume()");
  REQUIRE_MESSAGE(c.sqlstate.empty(), c.message);
  REQUIRE(c.rows.size() == 3);
  for (const auto& row : c.rows) {
    if (row.at("backend") == "standby2") {
      CHECK(row.at("matches") == "f");
      CHECK(row.at("error").find("no snapshot at") != std::string::npos);
    } else {
      CHECK(row.at("matches") == "t");
    }
  }
  CHECK(c.notices.back() == "1 table(s) on 2 standby(s): 1 difference(s)");
  // A write through pgmux right after it: the hold ended with the snapshots (catchup_timeout 2 s at most).
  PgConn app = connect(conninfo(listen_port, "app", "app", kDb));
  const double started = routing::now_seconds();
  exec(app.get(), "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1");
  CHECK(routing::now_seconds() - started < 1);
  const std::string metrics = metrics::http_get(metrics_port, "/metrics").body;
  CHECK(metrics::sample(metrics, "pgmux_consistency_checks_total{result=\"differences\"}") == 1);
  CHECK(metrics::sample(metrics, "pgmux_consistency_differences") == 1);

  // consistency_check.interval (by RELOAD): pgmux runs it by itself, and the metrics follow.
  json config = json::parse(std::ifstream(proxy->process()->config_path()));
  config["consistency_check"] = {{"interval", 0.5}, {"database", kDb}, {"tables", {"pgbench_tellers"}}};
  proxy->process()->write_config(config.dump(2));
  exec(conn.get(), "RELOAD");
  CHECK(routing::wait_until(
      [&] {
        const std::string text = metrics::http_get(metrics_port, "/metrics").body;
        return metrics::sample(text, "pgmux_consistency_checks_total{result=\"consistent\"}") >= 2 &&
               metrics::sample(text, "pgmux_consistency_differences") == 0;
      },
      10));
}

}  // namespace pgmux::test
