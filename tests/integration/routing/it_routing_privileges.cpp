// Session state follows the session everywhere it runs (issue 10, item 1). Two roles with different GRANTs, a
// row-level-security policy and two schemas with a same-named table; the session logs in as a superuser and
// takes on a role (SET ROLE, SET SESSION AUTHORIZATION, set_config('role', ...), row_security, search_path) by
// every path: simple Query, extended protocol (unnamed and named statements), a multi-statement string, inside a
// committed and a rolled-back transaction, with savepoints, set_config with computed arguments, a DO block and
// user functions and procedures that change the session from inside (the catalog names them).
// Then every read, through pgmux in session and transaction pooling, each with the read/write split on and off, is
// denied or filtered exactly as on a direct connection to the primary.
// Without the session's role on the standby, a read there would run as the superuser: see everything.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_privileges";

void create_fixture(PGconn* primary) {
  exec(primary,
       "DO $$ BEGIN CREATE ROLE rt_alice NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
       "DO $$ BEGIN CREATE ROLE rt_bob NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
       "DROP SCHEMA IF EXISTS p, s_a, s_b CASCADE; CREATE SCHEMA p; CREATE SCHEMA s_a; CREATE SCHEMA s_b;"
       "GRANT USAGE ON SCHEMA p, s_a, s_b TO rt_alice, rt_bob;"
       "CREATE TABLE p.secret (id int); INSERT INTO p.secret VALUES (1), (2), (3);"
       "GRANT SELECT ON p.secret TO rt_alice;"  // not to rt_bob
       "CREATE TABLE p.docs (id int, owner name); INSERT INTO p.docs VALUES (1, 'rt_alice'), (2, 'rt_alice'),"
       " (3, 'rt_bob');"
       "ALTER TABLE p.docs ENABLE ROW LEVEL SECURITY;"
       "CREATE POLICY own ON p.docs USING (owner = current_user);"
       "GRANT SELECT ON p.docs TO rt_alice, rt_bob;"
       "CREATE TABLE s_a.t (v text); INSERT INTO s_a.t VALUES ('a');"
       "CREATE TABLE s_b.t (v text); INSERT INTO s_b.t VALUES ('b');"
       "GRANT SELECT ON s_a.t, s_b.t TO rt_alice, rt_bob;"
       "DROP SCHEMA IF EXISTS hidden CASCADE; CREATE SCHEMA hidden; CREATE TABLE hidden.t (v int);"
       "INSERT INTO hidden.t VALUES (7); GRANT SELECT ON hidden.t TO rt_bob");  // no USAGE on the schema
  // Functions that change the session from inside, each found a different way by the catalog (a set_config
  // call, SET as a statement, EXECUTE of a SET text, a SQL-standard body, a call of another such function).
  exec(primary,
       "CREATE FUNCTION p.become_bob() RETURNS void LANGUAGE plpgsql"
       " AS $$ BEGIN PERFORM set_config('role', 'rt_bob', false); END $$;"
       "CREATE FUNCTION p.use_schema_b() RETURNS text STABLE LANGUAGE plpgsql"
       " AS $$ BEGIN RETURN set_config('search_path', 's_b', false); END $$;"
       "CREATE FUNCTION p.take_role(r text) RETURNS void LANGUAGE plpgsql"
       " AS $$ BEGIN EXECUTE 'SET ROLE ' || quote_ident(r); END $$;"
       "CREATE FUNCTION p.log_in_as_alice() RETURNS int LANGUAGE plpgsql"
       " AS $$ BEGIN PERFORM p.Take_Role('rt_alice'); RETURN 1; END $$;"
       "CREATE PROCEDURE p.switch_to_bob() LANGUAGE sql AS $$ SET ROLE rt_bob $$;"
       "CREATE FUNCTION p.standard_bob() RETURNS text BEGIN ATOMIC"
       " SELECT set_config('role', 'rt_bob', false); END;"
       "CREATE FUNCTION p.touch(n int) RETURNS int LANGUAGE plpgsql"
       " AS $$ BEGIN UPDATE p.docs SET id = id WHERE false; RETURN n; END $$");
}

// Rows as text, or the SQLSTATE of the error.
std::string outcome(PGresult* r) {
  if (PQresultStatus(r) == PGRES_FATAL_ERROR) return "ERROR " + sqlstate(r);
  std::string out;
  for (int row = 0; row < PQntuples(r); ++row) {
    for (int col = 0; col < PQnfields(r); ++col) out += std::string(PQgetvalue(r, row, col)) + "|";
  }
  return out + PQcmdStatus(r);
}

// One statement sent by the simple or the extended protocol (a named statement: prepared, then executed; once
// per connection).
enum class Via { Simple, Unnamed, Named };
struct Step {
  Via via;
  std::string sql;
};

std::string run(PGconn* conn, const Step& step) {
  switch (step.via) {
    case Via::Simple: return outcome(PgResult(PQexec(conn, step.sql.c_str())).get());
    case Via::Unnamed:
      return outcome(PgResult(PQexecParams(conn, step.sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)).get());
    case Via::Named: {
      PgResult prepared(PQprepare(conn, "step", step.sql.c_str(), 0, nullptr));
      if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) return outcome(prepared.get());
      return outcome(PgResult(PQexecPrepared(conn, "step", 0, nullptr, nullptr, nullptr, 0)).get());
    }
  }
  return "";
}

// What a session may read: who it is, which rows the policy lets through, a table it may not read, the table its
// search_path finds.
const std::vector<std::string> kReads = {
    "SELECT current_user, session_user",
    "SELECT string_agg(id::text, ',' ORDER BY id) FROM p.docs",
    "SELECT count(*) FROM p.secret",
    "SELECT v FROM t",
    "SELECT current_setting('row_security'), current_setting('search_path')",
};

struct Scenario {
  const char* name;
  std::vector<Step> steps;
};

const std::vector<Scenario> kScenarios = {
    {"SET ROLE, simple", {{Via::Simple, "SET ROLE rt_bob"}}},
    {"SET ROLE, extended unnamed", {{Via::Unnamed, "SET ROLE rt_bob"}}},
    {"SET search_path, extended named", {{Via::Named, "SET search_path = s_b, public"}}},
    {"SET SESSION AUTHORIZATION", {{Via::Unnamed, "SET SESSION AUTHORIZATION rt_alice"}}},
    {"multi-statement string", {{Via::Simple, "SET ROLE rt_alice; SET search_path = s_b, public"}}},
    {"set_config, constant", {{Via::Simple, "SELECT set_config('role', 'rt_bob', false)"}}},
    {"set_config, extended", {{Via::Unnamed, "SELECT set_config('search_path', 's_b', false)"}}},
    {"set_config, computed", {{Via::Simple, "SELECT set_config('role', 'rt_' || 'bob', false)"}}},
    {"DO block", {{Via::Simple, "DO $$ BEGIN PERFORM set_config('role', 'rt_bob', false); END $$"}}},
    {"function running set_config", {{Via::Simple, "SELECT p.become_bob()"}}},
    {"stable function, extended", {{Via::Unnamed, "SELECT p.use_schema_b()"}}},
    {"function calling one", {{Via::Named, "SELECT * FROM p.log_in_as_alice()"}}},
    {"procedure running SET", {{Via::Simple, "CALL p.switch_to_bob()"}}},
    {"SQL-standard body", {{Via::Simple, "SELECT p.standard_bob()"}}},
    {"function in a write", {{Via::Simple, "INSERT INTO p.secret SELECT 10 WHERE p.log_in_as_alice() = 0"}}},
    {"row_security off", {{Via::Simple, "SET ROLE rt_alice"}, {Via::Unnamed, "SET row_security = off"}}},
    {"committed transaction",
     {{Via::Simple, "BEGIN"}, {Via::Simple, "SET ROLE rt_bob"}, {Via::Unnamed, "SET search_path = s_b"},
      {Via::Simple, "COMMIT"}}},
    {"committed transaction, extended",
     {{Via::Unnamed, "BEGIN"}, {Via::Unnamed, "SET ROLE rt_bob"}, {Via::Unnamed, "COMMIT"}}},
    {"rolled-back transaction",
     {{Via::Simple, "SET ROLE rt_alice"}, {Via::Simple, "BEGIN"}, {Via::Simple, "SET ROLE rt_bob"},
      {Via::Unnamed, "SELECT set_config('search_path', 's_b', false)"}, {Via::Simple, "ROLLBACK"}}},
    {"failed transaction committed",
     {{Via::Simple, "BEGIN"}, {Via::Simple, "SET ROLE rt_bob"}, {Via::Simple, "SELECT 1/0"}, {Via::Simple, "COMMIT"}}},
    {"savepoints in one string",
     {{Via::Simple, "BEGIN; SET ROLE rt_alice; SAVEPOINT a; SET ROLE rt_bob; ROLLBACK TO a; COMMIT"}}},
    {"savepoint released",
     {{Via::Simple, "BEGIN; SAVEPOINT a; SET ROLE rt_bob; RELEASE a; COMMIT"}}},
    {"SET LOCAL", {{Via::Simple, "BEGIN; SET LOCAL ROLE rt_bob; COMMIT"}}},
    {"RESET ROLE", {{Via::Simple, "SET ROLE rt_bob"}, {Via::Unnamed, "RESET ROLE"}}},
    // RESET ALL leaves the role and the session authorization (DISCARD ALL does not): the reads run as rt_alice.
    {"RESET ALL after SET ROLE", {{Via::Simple, "SET ROLE rt_alice"}, {Via::Simple, "RESET ALL"}}},
    {"RESET ALL after SET SESSION AUTHORIZATION",
     {{Via::Simple, "SET SESSION AUTHORIZATION rt_alice"}, {Via::Unnamed, "RESET ALL"}}},
    {"RESET ALL in a string", {{Via::Simple, "SELECT set_config('role', 'rt_bob', false); SET search_path = s_b; "
                                             "RESET ALL; SET ROLE rt_alice; RESET ALL"}}},
    {"DISCARD ALL after SET ROLE", {{Via::Simple, "SET ROLE rt_alice"}, {Via::Simple, "DISCARD ALL"}}},
    // rt_alice may not SET ROLE rt_bob: replayed after RESET ALL on a server already rt_alice's, it failed.
    {"RESET ALL after SET ROLE, SET SESSION AUTHORIZATION",
     {{Via::Simple, "SET ROLE rt_bob"}, {Via::Simple, "SET SESSION AUTHORIZATION rt_alice"},
      {Via::Simple, "SELECT current_user"}, {Via::Simple, "RESET ALL"}}},
    {"RESET ALL after a role set beside another setting",
     {{Via::Simple, "SELECT set_config('search_path', 's_b', false), set_config('role', 'rt_alice', false)"},
      {Via::Simple, "SELECT current_user"}, {Via::Simple, "RESET ALL"}}},
    // Schema USAGE is checked when the statement is analyzed, at its PREPARE (as the superuser), not at EXECUTE:
    // prepared again elsewhere, it must be analyzed as the role stood then, not as rt_bob.
    {"SQL PREPARE, then SET ROLE",
     {{Via::Simple, "PREPARE early AS SELECT v FROM hidden.t"}, {Via::Simple, "SET ROLE rt_bob"},
      {Via::Simple, "EXECUTE early"}, {Via::Simple, "BEGIN"}, {Via::Simple, "EXECUTE early"},
      {Via::Simple, "COMMIT"}}},
    // A prepared statement that changes the session each time it runs.
    {"SQL PREPARE of set_config",
     {{Via::Simple, "PREPARE become AS SELECT set_config('role', 'rt_bob', false)"}, {Via::Simple, "EXECUTE become"}}},
    // The same PREPARE where a standby runs it (a read-only block with the split): the EXECUTE, in a transaction of
    // its own, changes the role of whichever server runs it, and the session's reads must see that role after it.
    {"SQL PREPARE of set_config in a read-only block",
     {{Via::Simple, "BEGIN READ ONLY"}, {Via::Simple, "SELECT 1"},  // a read first: the block goes to a standby
      {Via::Simple, "PREPARE become AS SELECT set_config('role', 'rt_bob', false)"},
      {Via::Simple, "COMMIT"}, {Via::Simple, "EXECUTE become"}}},
};

// The reads, each a few times by both protocols (a standby serves some of them when the session may use one).
void check_reads(PGconn* via, PGconn* direct, const std::string& scenario) {
  for (const std::string& sql : kReads) {
    CAPTURE(scenario);
    CAPTURE(sql);
    const std::string expected = run(direct, {Via::Simple, sql});
    for (int i = 0; i < 3; ++i) {
      CHECK(run(via, {Via::Simple, sql}) == expected);
      CHECK(run(via, {Via::Unnamed, sql}) == expected);
    }
  }
}

void check_scenario(const std::string& ci, const ClusterPorts& ports, const Scenario& scenario) {
  PgConn via = connect(ci);
  PgConn direct = admin(ports.primary, kDb);
  for (const Step& step : scenario.steps) {
    CAPTURE(scenario.name);
    CAPTURE(step.sql);
    CHECK(run(via.get(), step) == run(direct.get(), step));
  }
  check_reads(via.get(), direct.get(), scenario.name);
}

void check_config(const std::string& mode, bool split, const ClusterPorts& ports) {
  CAPTURE(mode);
  CAPTURE(split);
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["databases"].push_back({{"name", kDb}, {"pool_mode", mode}, {"pool_size", 10}});
  config["routing"]["read_your_writes"] = false;
  config["routing"]["read_write_split"] = split;
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("postgres", "postgres", kDb);
  if (split) {
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }
  for (const Scenario& scenario : kScenarios) check_scenario(ci, ports, scenario);
  // A list given at login (libpq's options) is read as PostgreSQL reads it, each element a schema: before, pgmux
  // gave a shared or standby server SET search_path = 's_b,public', one schema named "s_b,public".
  for (const char* option : {" options='-c search_path=s_b,public'", " options='-c search_path=\"$user\",s_b'"}) {
    PgConn via = connect(ci + option);
    PgConn direct = connect(conninfo(ports.primary, "postgres", "postgres", kDb) + option);
    check_reads(via.get(), direct.get(), option);
  }

  if (!split) return;
  // Where pgmux cannot reproduce the session's settings, its reads stay on the primary.
  PgConn unknown = connect(ci);
  exec(unknown.get(), "SELECT set_config('role', 'rt_' || 'alice', false)");
  for (int i = 0; i < 4; ++i) CHECK(server_port(unknown.get()) == ports.primary);
  // So do they after a call of a function that may change the session; a function whose UPDATE ... SET only
  // looks like one is no such function (only a volatile one: that call goes to the primary, the reads do not).
  PgConn opaque = connect(ci);
  exec(opaque.get(), "SELECT p.become_bob()");
  for (int i = 0; i < 4; ++i) CHECK(server_port(opaque.get()) == ports.primary);
  PgConn plain = connect(ci);
  exec(plain.get(), "SELECT p.touch(1)");
  bool plain_on_standby = false;
  for (int i = 0; i < 4; ++i) plain_on_standby = plain_on_standby || server_port(plain.get()) != ports.primary;
  CHECK(plain_on_standby);
  // Elsewhere a standby serves them, with the session's role.
  PgConn known = connect(ci);
  exec(known.get(), "SET ROLE rt_alice");
  bool standby_served = false;
  for (int i = 0; i < 4; ++i) {
    PgResult res = exec(known.get(), "SELECT inet_server_port(), current_user");
    standby_served = standby_served || std::atoi(PQgetvalue(res.get(), 0, 0)) != ports.primary;
    CHECK(std::string(PQgetvalue(res.get(), 0, 1)) == "rt_alice");
  }
  CHECK(standby_served);
}

}  // namespace

TEST_CASE("reads are denied or filtered as directly, whichever way the session took on its role") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT: nothing to route");
    return;
  }
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb);
  {
    PgConn primary = admin(ports.primary, kDb);
    create_fixture(primary.get());
  }
  REQUIRE(wait_replayed(ports, 20));
  check_config("session", true, ports);
  check_config("transaction", true, ports);
  check_config("session", false, ports);
  check_config("transaction", false, ports);
  drop_database(ports, kDb);
}
