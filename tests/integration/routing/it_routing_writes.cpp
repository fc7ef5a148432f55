// Every write-class statement of the classifier table (tests/unit/routing_classifier_table_test.cpp, read at run
// time so the two cannot drift apart) runs through pgmux with standbys in the read set. A write sent to a standby
// fails there ("cannot execute ... in a read-only transaction" / "during recovery", SQLSTATE 25006), so success
// — or exactly the error the primary itself gives — shows it reached the primary.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_writes";

// Decodes the C++ string literal starting at s[i] (s[i] == '"'); i ends past the closing quote.
std::string decode_literal(const std::string& s, size_t& i) {
  std::string out;
  for (++i; i < s.size() && s[i] != '"'; ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    const char e = s[++i];
    out += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;  // \\ \" \' stay themselves
  }
  ++i;
  return out;
}

// The table's statements whose kind is W: lines `{"<sql>", W...}`.
std::vector<std::string> table_writes() {
  std::ifstream in(std::string(PGMUX_SOURCE_DIR) + "/tests/unit/routing_classifier_table_test.cpp");
  REQUIRE_MESSAGE(in.good(), "cannot read the classifier table");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    size_t i = line.find_first_not_of(' ');
    if (i == std::string::npos || line.compare(i, 2, "{\"") != 0) continue;
    ++i;
    std::string sql = decode_literal(line, i);
    if (line.compare(i, 3, ", W") == 0) out.push_back(sql);
  }
  return out;
}

// How one statement is run. `before`/`after` go through the same pgmux session; `setup` straight to the primary
// after the fixture is reset. `expect` is the SQLSTATE the primary gives ("" = success).
struct Spec {
  std::vector<std::string> before;
  std::vector<std::string> after;
  std::string setup;
  std::string expect;
};

const std::vector<std::string> kTx = {"BEGIN"};
const std::vector<std::string> kCommit = {"COMMIT"};

const std::map<std::string, Spec>& specs() {
  static const std::map<std::string, Spec> m = {
      // void from pg_advisory_lock cannot go into an int column: the primary rejects it too.
      {"INSERT INTO t SELECT pg_advisory_lock(1)", {{}, {}, "", "42804"}},
      {"CREATE TABLE t (a int)", {{}, {}, "DROP TABLE t CASCADE", ""}},
      {"CREATE INDEX CONCURRENTLY i ON t (a)", {{}, {}, "DROP INDEX i", ""}},
      {"ALTER TABLE t ADD COLUMN b int", {{}, {}, "ALTER TABLE t DROP COLUMN b", ""}},
      {"CREATE VIEW v AS SELECT 1", {{}, {}, "DROP TABLE v", ""}},
      {"CREATE MATERIALIZED VIEW mv AS SELECT 1", {{}, {}, "DROP MATERIALIZED VIEW mv", ""}},
      {"CREATE SEQUENCE s", {{}, {}, "DROP SEQUENCE s", ""}},
      {"IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
       {{},
        {},
        "CREATE EXTENSION postgres_fdw; CREATE SCHEMA s; CREATE SCHEMA y; "
        "CREATE SERVER x FOREIGN DATA WRAPPER postgres_fdw "
        "OPTIONS (host '127.0.0.1', port '@PORT@', dbname 'rt_writes'); "
        "CREATE USER MAPPING FOR postgres SERVER x OPTIONS (user 'postgres', password 'postgres')",
        ""}},
      // No label provider is loaded on any server; a standby would refuse with 25006 before looking.
      {"SECURITY LABEL ON TABLE t IS 'x'", {{}, {}, "", "22023"}},
      // Server-side file: absent unless someone made /tmp/x; either way not a read-only error (checked below).
      {"copy t from '/tmp/x'", {{}, {}, "", "*"}},
      {"SELECT lo_import('/tmp/x')", {{}, {}, "", "*"}},
      {"SELECT lo_put(1, 0, 'x')", {{}, {}, "SELECT lo_create(1)", ""}},
      {"SELECT currval('s')", {{"SELECT nextval('s')"}, {}, "", ""}},
      {"SELECT lastval()", {{"SELECT nextval('s')"}, {}, "", ""}},
      // Two-phase commands behind reads (the cluster allows prepared transactions).
      {"BEGIN; SELECT 1; PREPARE TRANSACTION 'gid1'", {{}, {"ROLLBACK PREPARED 'gid1'"}, "", ""}},
      {"SELECT 1; COMMIT PREPARED 'gid1'", {{}, {}, "", "25001"}},  // not in a multi-statement string
      {"SELECT 1; ROLLBACK PREPARED 'gid1'", {{}, {}, "", "25001"}},
      {"SELECT lo_unlink(123)", {{}, {}, "SELECT lo_create(123)", ""}},
      {"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", {kTx, kCommit, "", ""}},
      {"EXECUTE stmt1(1)", {{"PREPARE stmt1 (int) AS INSERT INTO t VALUES ($1)"}, {}, "", ""}},
      {"EXECUTE stmt1", {{"PREPARE stmt1 AS INSERT INTO t VALUES (7)"}, {}, "", ""}},
      {"SAVEPOINT a", {kTx, kCommit, "", ""}},
      {"RELEASE SAVEPOINT a", {{"BEGIN", "SAVEPOINT a"}, kCommit, "", ""}},
      {"RELEASE a", {{"BEGIN", "SAVEPOINT a"}, kCommit, "", ""}},
      {"ROLLBACK TO SAVEPOINT a", {{"BEGIN", "SAVEPOINT a"}, kCommit, "", ""}},
      {"ROLLBACK TO a", {{"BEGIN", "SAVEPOINT a"}, kCommit, "", ""}},
      {"ROLLBACK WORK TO SAVEPOINT a", {{"BEGIN", "SAVEPOINT a"}, kCommit, "", ""}},
      {"DECLARE c CURSOR FOR SELECT 1", {kTx, kCommit, "", ""}},
      {"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", {kTx, kCommit, "", ""}},
      {"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", {kTx, kCommit, "", ""}},
      // Cursors outside a transaction: WITH HOLD ones (they pin the session to the primary).
      {"FETCH NEXT FROM c", {{"DECLARE c CURSOR WITH HOLD FOR SELECT 1"}, {"CLOSE c"}, "", ""}},
      {"FETCH 10 c", {{"DECLARE c CURSOR WITH HOLD FOR SELECT 1"}, {"CLOSE c"}, "", ""}},
      {"MOVE NEXT IN c", {{"DECLARE c CURSOR WITH HOLD FOR SELECT 1"}, {"CLOSE c"}, "", ""}},
      {"CLOSE c", {{"DECLARE c CURSOR WITH HOLD FOR SELECT 1"}, {}, "", ""}},
      {"SET a = 1; SELECT 1", {{}, {}, "", "42704"}},  // "a" is no parameter
      {"FOO BAR", {{}, {}, "", "42601"}},
      {"SELECT 'unterminated", {{}, {}, "", "42601"}},
      {"SELECT 1 /* unterminated", {{}, {}, "", "42601"}},
      {"SELECT \"unterminated", {{}, {}, "", "42601"}},
      {"SELECT $$ unterminated", {{}, {}, "", "42601"}},
      {"SELECT FROM WHERE (", {{}, {}, "", "42601"}},
      {"SELECT (1; DELETE FROM t)", {{}, {}, "", "42601"}},
      {"SELECT 1); DELETE FROM t", {{}, {}, "", "42601"}},
  };
  return m;
}

// Fresh objects for every statement, straight on the primary.
void reset_fixture(PGconn* primary) {
  exec(primary,
       "DROP SCHEMA IF EXISTS w, s, y CASCADE; DROP SERVER IF EXISTS x CASCADE;"
       "DROP EXTENSION IF EXISTS postgres_fdw CASCADE;"
       "SELECT lo_unlink(oid) FROM pg_largeobject_metadata;"
       "CREATE SCHEMA w; SET search_path TO w;"
       "CREATE TABLE t (id int PRIMARY KEY, a int, b int); CREATE TABLE u (id int, b int);"
       "CREATE TABLE v (a int); CREATE SEQUENCE s; CREATE INDEX i ON t (a);"
       "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;"
       "CREATE PROCEDURE p(int) LANGUAGE sql AS $$ SELECT 1 $$;"
       "RESET search_path");
}

// Runs sql, finishing COPY IN (no rows) and draining COPY OUT; the SQLSTATE of the first error, "" on success.
std::string run(PGconn* conn, const std::string& sql, std::string* message) {
  std::string state;
  if (PQsendQuery(conn, sql.c_str()) != 1) {
    *message = PQerrorMessage(conn);
    return "send";
  }
  while (PGresult* r = PQgetResult(conn)) {
    PgResult res(r);
    switch (PQresultStatus(r)) {
      case PGRES_COPY_IN:
        PQputCopyEnd(conn, nullptr);
        break;
      case PGRES_COPY_OUT: {
        char* buf = nullptr;
        while (PQgetCopyData(conn, &buf, 0) > 0) PQfreemem(buf);
        break;
      }
      case PGRES_FATAL_ERROR:
        if (state.empty()) {
          state = sqlstate(r);
          if (state.empty()) state = "?????";
          *message = PQresultErrorMessage(r);
        }
        break;
      default:
        break;
    }
  }
  return state;
}

bool read_only_error(const std::string& state, const std::string& message) {
  return state == "25006" || message.find("read-only transaction") != std::string::npos ||
         message.find("during recovery") != std::string::npos;
}

}  // namespace

TEST_CASE("every write of the classifier table reaches the primary") {
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(routing_config(listen, ports).dump(), listen);
  const std::string ci = proxy.conninfo("postgres", "postgres", kDb);

  recreate_database(ports, kDb);
  PgConn primary = admin(ports.primary, kDb);
  // GRANT ... TO u / REVOKE ... FROM u name a role "u": it exists for the duration of the test.
  exec(primary.get(), "DROP ROLE IF EXISTS u; CREATE ROLE u");
  if (!direct_mode()) {
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }

  const std::vector<std::string> writes = table_writes();
  MESSAGE(writes.size() << " write statements in the classifier table");
  REQUIRE(writes.size() >= 100);
  int passed = 0;
  for (const std::string& sql : writes) {
    CAPTURE(sql);
    reset_fixture(primary.get());
    auto it = specs().find(sql);
    const Spec spec = it != specs().end() ? it->second : Spec{};
    if (!spec.setup.empty()) {
      std::string setup = spec.setup;
      if (size_t at = setup.find("@PORT@"); at != std::string::npos) {
        setup.replace(at, 6, std::to_string(ports.primary));
      }
      exec(primary.get(), "SET search_path TO w; " + setup + "; RESET search_path");
    }

    // A new session per statement: temp tables, advisory locks and WITH HOLD cursors pin a session.
    PgConn conn = connect(ci);
    exec(conn.get(), "SET search_path TO w, public");
    for (const std::string& b : spec.before) exec(conn.get(), b);
    std::string message;
    const std::string state = run(conn.get(), sql, &message);
    CAPTURE(message);
    CHECK_FALSE(read_only_error(state, message));
    if (spec.expect == "*") {
      MESSAGE("ran with outcome '" << state << "' " << message);
    } else {
      CHECK(state == spec.expect);
    }
    for (const std::string& a : spec.after) exec(conn.get(), a);
    // The session is still usable and its reads still work.
    CHECK(scalar(conn.get(), "SELECT 1") == "1");
    if (state == spec.expect || (spec.expect == "*" && !read_only_error(state, message))) ++passed;
  }
  MESSAGE(passed << " of " << writes.size() << " ran as on the primary");

  // Side effects are on the primary: the last INSERT-bearing statements left rows only there (checked once).
  reset_fixture(primary.get());
  {
    PgConn conn = connect(ci);
    exec(conn.get(), "INSERT INTO w.t VALUES (42)");
  }
  CHECK(scalar(primary.get(), "SELECT count(*) FROM w.t WHERE id = 42") == "1");

  exec(primary.get(), "DROP SCHEMA IF EXISTS w, s, y CASCADE; DROP SERVER IF EXISTS x CASCADE");
  primary.reset();
  drop_database(ports, kDb);
  PgConn p = admin(ports.primary);
  exec(p.get(), "DROP ROLE IF EXISTS u");
}

// Text whose string ends elsewhere under the session's settings than under the defaults pgmux's lexer reads by
// (standard_conforming_strings off, an SJIS client encoding, where 0x95 0x5C is one character): what hides there
// runs as on the primary. The default reading (one SELECT of a string) would send it to a standby: a hidden write
// would fail there (and be run again on the primary), a hidden SET would be lost with the standby session.
TEST_CASE("statements hidden in text the session's settings read otherwise run as on the primary") {
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(routing_config(listen, ports).dump(), listen);
  recreate_database(ports, kDb, {"CREATE TABLE hidden (v int)", "GRANT ALL ON hidden TO app"});
  const std::string ci = proxy.conninfo("app", "app", kDb);
  if (!direct_mode()) {
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }
  // Options, and the start of a string the server ends after its second byte: the rest is what hides.
  const std::pair<std::string, std::string> cases[] = {
      {" options='-c standard_conforming_strings=off'", "select 'a\\''"},
      {" client_encoding=SJIS", "select E'\x95\\'"}};
  int value = 0;
  for (const auto& entry : cases) {
    const std::string& start = entry.second;  // a named reference: clang 14 cannot capture a structured binding
    CAPTURE(start);
    PgConn conn = connect(ci + entry.first);  // fresh: no write of its own keeps its reads on the primary yet
    std::string message;
    CHECK(run(conn.get(), start + "; set search_path = hidden_path, public; --'", &message) == "");
    CHECK(scalar(conn.get(), "SHOW search_path") == "hidden_path, public");  // a read: a standby with the split
    const std::string on_primary = "INSERT INTO hidden VALUES (0) RETURNING current_setting('search_path')";
    CHECK(scalar(conn.get(), on_primary) == "hidden_path, public");
    const std::string insert = start + "; insert into hidden values (" + std::to_string(++value) + "); --'";
    const std::string state = run(conn.get(), insert, &message);
    CAPTURE(message);
    CHECK(state == "");
  }
  PgConn primary = admin(ports.primary, kDb);
  CHECK(scalar(primary.get(), "SELECT string_agg(v::text, ',' ORDER BY v) FROM hidden") == "0,0,1,2");
  primary.reset();
  drop_database(ports, kDb);
}
