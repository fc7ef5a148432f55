// WITH HOLD cursors declared inside a read-only block that already runs on a standby (its first statement was a
// read, or SET TRANSACTION READ ONLY: psycopg's read_only connections with a withhold server-side cursor) live on
// that standby after COMMIT. The FETCH, MOVE and CLOSE that name them, outside a block or opening a read-only one,
// must reach them there: before, they went to the primary and got 34000 "cursor does not exist". Session and
// transaction pooling with the split; each step's answer compared with a direct connection to the primary. CLOSE ALL
// and DISCARD ALL close them there too.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_hold_cursors";

// Rows as text, or the SQLSTATE of the error; by the simple or (extended = true) the extended protocol.
std::string run(PGconn* conn, const std::string& sql, bool extended = false) {
  PgResult r(extended ? PQexecParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)
                      : PQexec(conn, sql.c_str()));
  if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR) return "ERROR " + sqlstate(r.get());
  std::string out;
  for (int row = 0; row < PQntuples(r.get()); ++row) out += std::string(PQgetvalue(r.get(), row, 0)) + ",";
  return out + PQcmdStatus(r.get());
}

// Each result's first value (or command tag, or SQLSTATE) of statements sent in pipeline mode, by the extended
// protocol: a Sync after each one (`sync_each`, one request each) or one Sync after all (one batch).
std::string run_pipeline(PGconn* conn, const std::vector<std::string>& sqls, bool sync_each) {
  REQUIRE(PQenterPipelineMode(conn) == 1);
  for (const std::string& sql : sqls) {
    REQUIRE(PQsendQueryParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    if (sync_each) REQUIRE(PQpipelineSync(conn) == 1);
  }
  if (!sync_each) REQUIRE(PQpipelineSync(conn) == 1);
  std::string out;
  for (size_t i = 0; i < sqls.size(); ++i) {
    PgResult r(PQgetResult(conn));
    const ExecStatusType status = PQresultStatus(r.get());
    out += status == PGRES_FATAL_ERROR         ? "ERROR " + sqlstate(r.get())
           : status == PGRES_PIPELINE_ABORTED ? std::string("skipped")
           : PQntuples(r.get()) > 0           ? std::string(PQgetvalue(r.get(), 0, 0))
                                               : std::string(PQcmdStatus(r.get()));
    out += ";";
    CHECK(PQgetResult(conn) == nullptr);  // the statement's results end
    if (sync_each || i + 1 == sqls.size()) {
      CHECK(PQresultStatus(PgResult(PQgetResult(conn)).get()) == PGRES_PIPELINE_SYNC);
    }
  }
  REQUIRE(PQexitPipelineMode(conn) == 1);
  return out;
}

struct Step {
  std::string sql;
  bool extended = false;
  std::vector<std::string> batch = {};  // else: these in one extended batch (run_pipeline), `sql` unused
};

std::string run(PGconn* conn, const Step& step) {
  return step.batch.empty() ? run(conn, step.sql, step.extended) : run_pipeline(conn, step.batch, false);
}

const std::vector<std::vector<Step>> kScenarios = {
    {{"BEGIN"}, {"SET TRANSACTION READ ONLY"},
     {"DECLARE h CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 6) g ORDER BY g"}, {"COMMIT"},
     {"FETCH 2 FROM h"}, {"BEGIN READ ONLY"}, {"FETCH 1 FROM h"}, {"COMMIT"}, {"MOVE 1 IN h"},
     {"INSERT INTO t VALUES (1)"}, {"FETCH ALL FROM h", true}, {"CLOSE h"}, {"FETCH h"}},
    // psycopg's withhold cursor on a read_only connection: BEGIN READ ONLY, a read, the DECLARE, then the fetches
    // each in a read-only block of their own, by the extended protocol.
    {{"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"},
     {"DECLARE \"Hc\" CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 3) g ORDER BY g", true}, {"COMMIT"},
     {"BEGIN READ ONLY"}, {"FETCH FORWARD 2 FROM \"Hc\"", true}, {"COMMIT"}, {"FETCH NEXT FROM \"Hc\"", true},
     {"CLOSE ALL"}, {"FETCH NEXT FROM \"Hc\""}},
    // CLOSE ALL and DISCARD ALL close the standby's cursors too: the name can be declared there again (42P03
    // "cursor already exists" before, on the same standby connection).
    {{"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"}, {"DECLARE a CURSOR WITH HOLD FOR SELECT 1"}, {"COMMIT"},
     {"CLOSE ALL"}, {"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"}, {"DECLARE a CURSOR WITH HOLD FOR SELECT 2"},
     {"COMMIT"}, {"FETCH a"}, {"DISCARD ALL"}, {"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"},
     {"DECLARE a CURSOR WITH HOLD FOR SELECT 3"}, {"COMMIT"}, {"FETCH a"}},
    // ... only when they succeed: a DISCARD ALL refused in a block (25001) leaves them open; and in a batch run on
    // the standby, a cursor declared after its CLOSE ALL stays.
    {{"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"}, {"DECLARE b CURSOR WITH HOLD FOR SELECT 4"}, {"COMMIT"},
     {"BEGIN"}, {"INSERT INTO t VALUES (1)"}, {"DISCARD ALL"}, {"ROLLBACK"}, {"FETCH b"},
     {"BEGIN READ ONLY"}, {"SELECT count(*) FROM t"},
     {"", false, {"CLOSE ALL", "DECLARE c CURSOR WITH HOLD FOR SELECT 5"}}, {"COMMIT"}, {"FETCH c"}, {"FETCH b"}},
};

void check_mode(const std::string& mode, const ClusterPorts& ports) {
  CAPTURE(mode);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["databases"].push_back({{"name", kDb}, {"pool_mode", mode}, {"pool_size", 4}});
  config["routing"]["read_your_writes"] = false;  // the DECLARE's block must find a standby after the INSERTs
  config["admin_users"] = nlohmann::json::array({"postgres"});
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("postgres", "postgres", kDb);
  if (!direct_mode()) {
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }
  for (const std::vector<Step>& steps : kScenarios) {
    PgConn via = connect(ci);
    PgConn direct = admin(ports.primary, kDb);
    for (const Step& step : steps) {
      CAPTURE(step.sql);
      CHECK(run(via.get(), step) == run(direct.get(), step));
    }
    exec(direct.get(), "DELETE FROM t");
    // A commit made directly, not through pgmux: no consistency rule makes a standby's read wait for it.
    REQUIRE(wait_replayed(ports, 20));
  }
  // The case itself: the block with the DECLARE ran on a standby (else the above tests nothing).
  if (direct_mode()) return;
  PgConn via = connect(ci);
  exec(via.get(), "BEGIN READ ONLY");
  const int port = server_port(via.get());
  exec(via.get(), "DECLARE p CURSOR WITH HOLD FOR SELECT inet_server_port() FROM generate_series(1, 3)");
  exec(via.get(), "COMMIT");
  CHECK((port == ports.standby1 || port == ports.standby2));
  CHECK(run(via.get(), "FETCH p") == std::to_string(port) + ",FETCH 1");
  // Pipelined behind a request still running on the primary, the FETCH waits for its reply and goes to the
  // standby (before, it followed that request to the primary: 34000).
  CHECK(run_pipeline(via.get(), {"SELECT 1 FROM pg_sleep(0.3) /* pgmux:primary */", "FETCH p"}, true) ==
        "1;" + std::to_string(port) + ";");
  // One batch (one Sync) that writes too runs on the primary as a whole: the write succeeds there (it got the
  // standby's 25006 before), and the FETCH gets the primary's 34000 (README: a batch is not split).
  CHECK(run_pipeline(via.get(), {"INSERT INTO t SELECT 1 WHERE false", "FETCH p"}, false) == "INSERT 0 0;ERROR 34000;");
  // Reads routed elsewhere meanwhile (its standby disabled: they go to the other one) must not give back the
  // standby connection that holds the cursor: they run on the primary, and the cursor is still there.
  PgConn console = connect(proxy.conninfo("postgres", "postgres", "pgmux"));
  const std::string node = port == ports.standby1 ? "1" : "2";
  exec(console.get(), "DISABLE BACKEND " + node);
  for (int i = 0; i < 3; ++i) CHECK(run(via.get(), "SELECT count(*) FROM t") == "0,SELECT 1");
  exec(via.get(), "BEGIN READ ONLY");
  CHECK(server_port(via.get()) == ports.primary);
  exec(via.get(), "COMMIT");
  CHECK(run(via.get(), "FETCH p") == std::to_string(port) + ",FETCH 1");  // its third row
  exec(console.get(), "ENABLE BACKEND " + node);
}

}  // namespace

TEST_CASE("a WITH HOLD cursor declared in a read-only block on a standby is fetched from and closed there") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb, {"CREATE TABLE t (v int)"});
  REQUIRE(wait_replayed(ports, 20));
  check_mode("session", ports);
  check_mode("transaction", ports);
  drop_database(ports, kDb);
}
