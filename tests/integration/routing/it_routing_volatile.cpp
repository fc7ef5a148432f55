// Writes disguised as reads (issue 10, item 3): SQL and PL/pgSQL functions that write, called from the select
// list, FROM, WHERE, a CTE, VALUES, a subquery, a view and a multi-statement string, and sequences, all run
// through pgmux with the read/write split on, in session and in transaction pooling. Each gives exactly what a
// direct connection to the primary gives (inet_server_port() included: they ran there), never 25006. STABLE and
// IMMUTABLE functions are served by a standby. A function created (or made VOLATILE) through pgmux is called at
// once from another connection: the catalog reload after DDL sends it to the primary. PREPARE TRANSACTION at the
// end of a string of reads reaches the primary. read_your_writes is off, so only the classification routes.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_volatile";

// Fresh objects, straight on the primary (not through pgmux: pgmux is started afterwards and reads them).
void create_fixture(PGconn* primary) {
  exec(primary,
       "DROP SCHEMA IF EXISTS v CASCADE; CREATE SCHEMA v;"
       "CREATE TABLE v.log (id serial PRIMARY KEY, what text);"
       "CREATE SEQUENCE v.seq;"
       "CREATE FUNCTION v.sql_write(what text) RETURNS int LANGUAGE sql"
       "  AS $$ INSERT INTO v.log (what) VALUES (what) RETURNING id $$;"
       "CREATE FUNCTION v.plpgsql_write(what text) RETURNS int LANGUAGE plpgsql AS $$"
       "  DECLARE n int; BEGIN INSERT INTO v.log (what) VALUES (what) RETURNING id INTO n; RETURN n; END $$;"
       "CREATE FUNCTION v.srf_write(what text) RETURNS SETOF int LANGUAGE sql"
       "  AS $$ INSERT INTO v.log (what) VALUES (what), (what) RETURNING id $$;"
       "CREATE FUNCTION v.pass_write(what text) RETURNS boolean LANGUAGE plpgsql"
       "  AS $$ BEGIN INSERT INTO v.log (what) VALUES (what); RETURN true; END $$;"
       "CREATE FUNCTION v.stable_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM v.log $$;"
       "CREATE FUNCTION v.immutable_twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 * 2 $$;"
       "CREATE VIEW v.write_view AS SELECT v.sql_write('view') AS id;"
       "CREATE VIEW v.write_view_2 AS SELECT id FROM v.write_view;"
       "CREATE VIEW v.seq_view AS SELECT nextval('v.seq') AS n;"
       "CREATE VIEW v.stable_view AS SELECT v.stable_count() AS n;"
       // Declared STABLE, writing anyway (a STABLE function may call a VOLATILE one; nextval is no INSERT):
       // only the 25006 retry of item 3 can save these. listed_writer is in write_functions.
       "CREATE FUNCTION v.stable_nextval() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT nextval('v.seq') $$;"
       "CREATE FUNCTION v.stable_calls_writer(what text) RETURNS int LANGUAGE plpgsql STABLE"
       "  AS $$ BEGIN RETURN v.plpgsql_write(what); END $$;"
       "CREATE FUNCTION v.listed_writer() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT nextval('v.seq') $$");
}

// Every row of every result of sql (a multi-statement string gives several), as text; the error's SQLSTATE
// instead when one fails.
std::string outcome(PGconn* conn, const std::string& sql) {
  if (PQsendQuery(conn, sql.c_str()) != 1) return std::string("send failed: ") + PQerrorMessage(conn);
  std::string out;
  while (PGresult* r = PQgetResult(conn)) {
    PgResult res(r);
    if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
      out += "ERROR " + sqlstate(r) + " " + PQresultErrorMessage(r);
      continue;
    }
    for (int row = 0; row < PQntuples(r); ++row) {
      for (int col = 0; col < PQnfields(r); ++col) out += std::string(PQgetvalue(r, row, col)) + "|";
      out += "\n";
    }
    out += std::string(PQcmdStatus(r)) + ";";
  }
  return out;
}

// Writes from a read's position, each giving the same rows wherever it runs (no ids): inet_server_port() says
// where that was.
const std::vector<std::string> kDisguisedWrites = {
    "SELECT v.sql_write('select list') > 0, inet_server_port()",
    "SELECT v.plpgsql_write('plpgsql') > 0, inet_server_port()",
    "SELECT count(*), inet_server_port() FROM v.srf_write('from')",
    "SELECT count(*), inet_server_port() FROM generate_series(1, 3) g WHERE v.pass_write('where')",
    "WITH w AS (SELECT v.sql_write('cte') AS id) SELECT count(*), inet_server_port() FROM w",
    "SELECT count(*), inet_server_port() FROM v.write_view",
    "SELECT count(*), inet_server_port() FROM v.write_view_2",
    "VALUES (v.sql_write('values') > 0, inet_server_port())",
    "SELECT (SELECT v.sql_write('subquery')) > 0, inet_server_port()",
    "SELECT 1; SELECT v.plpgsql_write('multi') > 0, inet_server_port()",
    "SELECT 1; SELECT 2; SELECT count(*), inet_server_port() FROM v.write_view",
    "SELECT nextval('v.seq') > 0, inet_server_port()",
    "SELECT count(*), inet_server_port() FROM v.seq_view",
    "SELECT sql_write('search path') > 0, inet_server_port()",  // unqualified, through search_path
    "SELECT v.listed_writer() > 0, inet_server_port()",          // STABLE, but in write_functions
};

// The same statements through pgmux and directly: the same outcome, never an error.
void check_same_as_direct(PGconn* via, PGconn* direct, const std::vector<std::string>& statements) {
  for (const std::string& sql : statements) {
    CAPTURE(sql);
    const std::string expected = outcome(direct, sql);
    REQUIRE(expected.find("ERROR") == std::string::npos);
    CHECK(outcome(via, sql) == expected);
  }
}

// The port that served sql on a fresh connection, once the catalog is in (reads wait on the primary until it is).
int settled_read_port(const std::string& ci, const std::string& sql, const ClusterPorts& ports) {
  int port = -1;
  wait_until(
      [&] {
        PgConn conn = connect(ci);
        PgResult res(PQexec(conn.get(), sql.c_str()));
        if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return true;  // an error: reported below
        port = std::atoi(PQgetvalue(res.get(), 0, PQnfields(res.get()) - 1));
        return port == ports.standby1 || port == ports.standby2;
      },
      10);
  return port;
}

// The fixture on the primary, then pgmux with kDb pooled in `mode` and read_your_writes off, serving reads from
// both standbys. The functions exist before pgmux starts: it reads the catalog of a configured database at once
// (functions created behind its back are seen at the next timed reload).
struct Setup {
  Setup(const std::string& mode, const ClusterPorts& ports) : primary(admin(ports.primary, kDb)) {
    const int listen = pick_listen_port();
    nlohmann::json config = routing_config(listen, ports);
    config["databases"].push_back({{"name", kDb}, {"pool_mode", mode}, {"pool_size", 10}});
    config["routing"]["read_your_writes"] = false;
    config["routing"]["write_functions"] = nlohmann::json::array({"v.listed_writer"});
    create_fixture(primary.get());
    REQUIRE(wait_replayed(ports, 20));
    proxy = std::make_unique<ProxyUnderTest>(config.dump(), listen);
    ci = proxy->conninfo("postgres", "postgres", kDb);
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }

  PgConn primary;
  std::unique_ptr<ProxyUnderTest> proxy;
  std::string ci;
};

void check_mode(const std::string& mode, const ClusterPorts& ports) {
  CAPTURE(mode);
  Setup setup(mode, ports);
  PGconn* primary = setup.primary.get();
  const std::string& ci = setup.ci;

  // STABLE and IMMUTABLE functions (and a view over one) stay on the standbys.
  for (const char* sql : {"SELECT v.stable_count() >= 0, inet_server_port()",
                          "SELECT v.immutable_twice(21), inet_server_port()",
                          "SELECT n >= 0, inet_server_port() FROM v.stable_view",
                          "SELECT random() < 2, clock_timestamp() IS NOT NULL, inet_server_port()"}) {
    CAPTURE(sql);
    const int port = settled_read_port(ci, sql, ports);
    CHECK((port == ports.standby1 || port == ports.standby2));
  }

  PgConn via = connect(ci);
  exec(via.get(), "SET search_path TO v, public");
  exec(primary, "SET search_path TO v, public");
  const std::string before = scalar(primary, "SELECT count(*) FROM v.log");
  check_same_as_direct(via.get(), primary, kDisguisedWrites);
  CHECK(std::stoi(scalar(primary, "SELECT count(*) FROM v.log")) > std::stoi(before));

  // Extended protocol: the unnamed statement and a named one.
  const char* params[] = {"extended"};
  PgResult unnamed(PQexecParams(via.get(), "SELECT v.sql_write($1) > 0", 1, nullptr, params, nullptr, nullptr, 0));
  CHECK(PQresultStatus(unnamed.get()) == PGRES_TUPLES_OK);
  PgResult prepared(PQprepare(via.get(), "w", "SELECT v.plpgsql_write($1) > 0, inet_server_port()", 1, nullptr));
  REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
  for (int i = 0; i < 3; ++i) {
    PgResult run(PQexecPrepared(via.get(), "w", 1, params, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(run.get()) == PGRES_TUPLES_OK);
    CHECK(std::atoi(PQgetvalue(run.get(), 0, 1)) == ports.primary);
  }

  // Created through pgmux and called at once from another connection (no read-your-writes): the reload after
  // the DDL sends the call to the primary, not to a standby that may not even have the function yet.
  PgConn other = connect(ci);
  for (int i = 0; i < 5; ++i) {
    const std::string name = "v.fresh_" + std::to_string(i);
    exec(via.get(), "CREATE FUNCTION " + name +
                        "() RETURNS int LANGUAGE sql AS $$ INSERT INTO v.log (what) VALUES ('fresh') RETURNING 1 $$");
    CHECK(outcome(other.get(), "SELECT " + name + "(), inet_server_port()") ==
          "1|" + std::to_string(ports.primary) + "|\nSELECT 1;");
  }
  // A STABLE function made VOLATILE (and writing) through pgmux: the next call runs the new one on the primary.
  exec(via.get(), "CREATE FUNCTION v.flip() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 0 $$");
  REQUIRE(wait_replayed(ports, 20));
  const int stable_port = settled_read_port(ci, "SELECT v.flip(), inet_server_port()", ports);
  CHECK((stable_port == ports.standby1 || stable_port == ports.standby2));
  exec(via.get(), "CREATE OR REPLACE FUNCTION v.flip() RETURNS int LANGUAGE sql VOLATILE"
                  " AS $$ INSERT INTO v.log (what) VALUES ('flip') RETURNING 1 $$");
  CHECK(outcome(other.get(), "SELECT v.flip(), inet_server_port()") ==
        "1|" + std::to_string(ports.primary) + "|\nSELECT 1;");
  CHECK(scalar(primary, "SELECT count(*) FROM v.log WHERE what = 'flip'") == "1");

  // Two-phase commit behind reads: PREPARE TRANSACTION at the end of a string of reads, then COMMIT PREPARED.
  const std::string gid = "rt_volatile_" + mode;
  CHECK(outcome(via.get(), "BEGIN; SELECT count(*) > 0 FROM v.log; PREPARE TRANSACTION '" + gid + "'") ==
        "BEGIN;t|\nSELECT 1;PREPARE TRANSACTION;");
  CHECK(scalar(primary, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + gid + "'") == "1");
  CHECK(outcome(via.get(), "COMMIT PREPARED '" + gid + "'") == "COMMIT PREPARED;");
  CHECK(outcome(via.get(), "SELECT 1; COMMIT PREPARED '" + gid + "'") ==
        outcome(primary, "SELECT 1; COMMIT PREPARED '" + gid + "'"));  // 25001 both ways
  CHECK(scalar(primary, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + gid + "'") == "0");
}

}  // namespace

TEST_CASE("functions that write, called from a read, run on the primary in session and transaction pooling") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT: nothing to route");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb);
  for (const std::string mode : {"session", "transaction"}) check_mode(mode, ports);
  drop_database(ports, kDb);
}

// Functions declared STABLE that write anyway: the catalog cannot see them, so they reach a standby and fail
// there with 25006. The safety net runs such a statement again on the primary when the standby rejects it before
// any row reached the client, outside a transaction: the client sees what a direct connection gives, pgmux logs it
// once, and the statement's text goes to the primary from then on (no second attempt on a standby).
TEST_CASE("functions declared STABLE that write anyway: run again on the primary after 25006") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT: nothing to route");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb);
  const std::vector<std::string> statements = {
      "SELECT v.stable_nextval() > 0, inet_server_port()",
      "SELECT v.stable_calls_writer('stable') > 0, inet_server_port()",
      "SELECT count(*), inet_server_port() FROM generate_series(1, 2) WHERE v.stable_nextval() > 0",
      "SELECT 1; SELECT v.stable_calls_writer('multi') > 0, inet_server_port()"};
  const std::string retried = "rejected a read as a write (25006)";
  for (const std::string mode : {"session", "transaction"}) {
    CAPTURE(mode);
    Setup setup(mode, ports);
    PgConn via = connect(setup.ci);
    check_same_as_direct(via.get(), setup.primary.get(), statements);
    // The extended protocol too: a parameter, the unnamed statement parsed, bound and executed in one batch.
    const char* values[1] = {"0"};
    const std::string extended = "SELECT v.stable_nextval() > $1::int, inet_server_port()";
    PgResult direct_res(PQexecParams(setup.primary.get(), extended.c_str(), 1, nullptr, values, nullptr, nullptr, 0));
    PgResult via_res(PQexecParams(via.get(), extended.c_str(), 1, nullptr, values, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(direct_res.get()) == PGRES_TUPLES_OK);
    CHECK_MESSAGE(PQresultStatus(via_res.get()) == PGRES_TUPLES_OK, PQerrorMessage(via.get()));
    if (PQresultStatus(via_res.get()) == PGRES_TUPLES_OK) {
      CHECK(std::string(PQgetvalue(via_res.get(), 0, 1)) == std::string(PQgetvalue(direct_res.get(), 0, 1)));
    }
    const size_t first_round = count_occurrences(setup.proxy->process()->log(), retried);
    CHECK(first_round >= 1);
    // Learned: the same texts on a new connection go to the primary at once.
    PgConn again = connect(setup.ci);
    check_same_as_direct(again.get(), setup.primary.get(), statements);
    CHECK(count_occurrences(setup.proxy->process()->log(), retried) == first_round);
  }
  drop_database(ports, kDb);
}

// Inside a transaction the safety net cannot act (the standby's transaction is aborted, the client's BEGIN READ
// ONLY chose it): the client gets PostgreSQL's 25006, as a read-only transaction on the primary would give.
TEST_CASE("inside BEGIN READ ONLY a STABLE function that writes gets PostgreSQL's 25006") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT: nothing to route");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb);
  Setup setup("session", ports);
  PgConn via = connect(setup.ci);
  const std::string sql = "BEGIN READ ONLY; SELECT v.stable_nextval(); COMMIT";
  CHECK(outcome(via.get(), sql) == outcome(setup.primary.get(), sql));
  drop_database(ports, kDb);
}
