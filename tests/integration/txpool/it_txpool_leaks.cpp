// Session state set in ways pgmux does not replay (extended-protocol SET, SET inside a multi-statement string,
// set_config) must still never reach the next client of the same server in transaction pooling.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {
PgmuxProcess start_single_server_pool(int port, double query_wait_timeout = 0) {
  auto config = default_config(port);
  config["workers"] = 1;
  if (query_wait_timeout > 0) config["timeouts"]["query_wait_timeout"] = query_wait_timeout;
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "transaction";
    database["pool_size"] = 1;  // every client gets the same server
  }
  return PgmuxProcess(config.dump(), port);
}
// A client whose unnamed statement (one column, other_clients_column) stays on the pool's one server.
PgConn connect_leaving_unnamed_statement(const std::string& info) {
  PgConn a = connect(info);
  PgResult parsed(PQprepare(a.get(), "", "SELECT 'leaked'::text AS other_clients_column", 0, nullptr));
  REQUIRE(PQresultStatus(parsed.get()) == PGRES_COMMAND_OK);
  return a;
}

// A Describe of the unnamed statement through `conn` answers as on a fresh direct connection to the primary (the
// oracle: 26000), with no columns, never the other client's.
void check_describe_unnamed_as_postgresql(PGconn* conn) {
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
  PgResult expected(PQdescribePrepared(direct.get(), ""));
  REQUIRE(sqlstate(expected.get()) == "26000");
  PgResult described(PQdescribePrepared(conn, ""));
  CHECK(sqlstate(described.get()) == sqlstate(expected.get()));
  CHECK(PQnfields(described.get()) == 0);
}

// What a fresh client of `info` is shown for `setting`.
std::string fresh_setting(const std::string& info, const std::string& setting) {
  PgConn probe = connect(info);
  return scalar(probe.get(), "SHOW " + setting);
}
}  // namespace

TEST_CASE("SET via the extended protocol or a multi-statement string does not leak to the next client") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_path = fresh_setting(info, "search_path");

  {
    PgConn a = connect(info);
    PgResult set(PQexecParams(a.get(), "SET search_path TO leaked_extended", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(set.get()) == PGRES_COMMAND_OK);
  }
  {
    PgConn b = connect(info);
    CHECK(scalar(b.get(), "SHOW search_path") == default_path);
  }
  {
    PgConn c = connect(info);
    exec(c.get(), "SELECT 1; SET statement_timeout = '4242ms'");
  }
  {
    PgConn d = connect(info);
    CHECK(scalar(d.get(), "SHOW statement_timeout") != "4242ms");
  }
}

// Text pgmux cannot read as the server will: SJIS "表" is 0x95 0x5C, no backslash once PostgreSQL converted the
// text, but one to a byte-wise reading, which took the SET below for part of a string; with
// standard_conforming_strings off, \' escapes a quote. The SET reaches the client's own session, never the next
// client's (the server was given back without a reset).
TEST_CASE("SET in text pgmux cannot read alike (SJIS bytes, standard_conforming_strings off) does not leak") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_path = fresh_setting(info, "search_path");
  const std::pair<std::string, std::string> hidden[] = {
      {" client_encoding=SJIS", "select E'\x95\\'; set search_path = leaked_sjis; --'"},
      {" options='-c standard_conforming_strings=off'", "select 'a\\''; set search_path = leaked_scs; --'"}};
  for (const auto& entry : hidden) {
    const std::string& options = entry.first;
    const std::string& sql = entry.second;  // a named reference: clang 14 cannot capture a structured binding
    CAPTURE(sql);
    {
      PgConn a = connect(info + options);
      exec(a.get(), sql);
      CHECK(scalar(a.get(), "SHOW search_path").starts_with("leaked_"));  // as on a direct connection
    }
    PgConn b = connect(info);
    CHECK(scalar(b.get(), "SHOW search_path") == default_path);
  }
}

// The same where the setting is no startup parameter but the database's default, which the server reports at login
// (ParameterStatus): the hidden SET is the client's own, and its server is reset before the next client.
TEST_CASE("a hidden SET in text a database's defaults make the server read otherwise stays with its client") {
  if (direct_mode()) return;
  const char* const db = "txpool_scs_off";
  const ClusterPorts ports = cluster_ports();
  pgmux::test::routing::recreate_database(ports, db, {std::string("ALTER DATABASE ") + db +
                                                      " SET standard_conforming_strings = off"});
  const int port = pick_listen_port();
  auto config = default_config(port);
  config["workers"] = 1;
  config["databases"].push_back({{"name", db}, {"pool_mode", "transaction"}, {"pool_size", 1}});
  PgmuxProcess pgmux(config.dump(), port);
  const std::string info = conninfo(port, "app", "app", db);
  const std::string default_path = fresh_setting(info, "search_path");
  {
    PgConn a = connect(info);
    REQUIRE(scalar(a.get(), "SHOW standard_conforming_strings") == "off");
    exec(a.get(), "select 'a\\''; set search_path = leaked_db_default; --'");
    CHECK(scalar(a.get(), "SHOW search_path") == "leaked_db_default");  // as on a direct connection
    PgConn b = connect(info);  // a keeps the server (its session is unknown): b waits for it
    a.reset();
    CHECK(scalar(b.get(), "SHOW search_path") == default_path);
  }
  pgmux::test::routing::drop_database(ports, db);
}

// The same where the setting changes inside a transaction block (SET LOCAL): the server reads the block's next
// text otherwise, and the SET hidden in it lasts once the block commits, for the client alone.
TEST_CASE("a hidden SET after a SET LOCAL of standard_conforming_strings lasts for its client alone") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_path = fresh_setting(info, "search_path");
  PgConn a = connect(info);
  exec(a.get(), "BEGIN");
  exec(a.get(), "SET LOCAL standard_conforming_strings = off");
  exec(a.get(), "select 'a\\''; set search_path = leaked_in_block; --'");
  exec(a.get(), "COMMIT");
  CHECK(scalar(a.get(), "SHOW search_path") == "leaked_in_block");  // as on a direct connection
  CHECK(scalar(a.get(), "SHOW standard_conforming_strings") == "on");
  a.reset();
  PgConn b = connect(info);
  CHECK(scalar(b.get(), "SHOW search_path") == default_path);
}

// The other side of the case above: text the lexer cannot read every way is read as the server reads it in a
// session whose settings are the defaults (standard_conforming_strings on, UTF8): its statements are followed like
// any other, a SET logged, a temp table pinned, a read not keeping the server. And where the server reads it
// otherwise, a write in it runs once: it is no session command to replay on the client's next server.
TEST_CASE("ambiguous text is followed as a default session reads it, and never replayed where read otherwise") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port, 3);  // a client kept on the one server fails the test fast
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_path = fresh_setting(info, "search_path");
  PgConn a = connect(info);
  CHECK(scalar(a.get(), "SELECT replace('C:\\tmp', '\\', '/')") == "C:/tmp");
  PgConn b = connect(info);  // the one server is free again
  CHECK(scalar(b.get(), "SELECT 2") == "2");
  exec(a.get(), "SET search_path = own_path, public; SELECT 'C:\\'");
  CHECK(scalar(b.get(), "SHOW search_path") == default_path);  // B's turn on the server: reset
  CHECK(scalar(a.get(), "SHOW search_path") == "own_path, public");  // A's session: replayed
  exec(a.get(), "CREATE TEMP TABLE own_root AS SELECT 'C:\\' AS root");
  CHECK(scalar(a.get(), "SELECT root FROM own_root") == "C:\\");  // A keeps its server and its table
  a.reset();
  CHECK(scalar(b.get(), "SELECT to_regclass('pg_temp.own_root') IS NULL") == "t");
  exec(b.get(), "DROP TABLE IF EXISTS leaks_once; CREATE TABLE leaks_once (v text)");
  PgConn off = connect(info + " options='-c standard_conforming_strings=off'");
  exec(off.get(), "INSERT INTO leaks_once VALUES ('O\\'Brien')");
  for (int i = 0; i < 3; ++i) CHECK(scalar(off.get(), "SELECT count(*) FROM leaks_once") == "1");
  CHECK(scalar(off.get(), "SELECT v FROM leaks_once") == "O'Brien");
  off.reset();
  CHECK(scalar(b.get(), "SELECT count(*) FROM leaks_once") == "1");
  exec(b.get(), "DROP TABLE leaks_once");
}

TEST_CASE("set_config(..., false) in a query does not leak to the next client") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  {
    PgConn a = connect(info);
    CHECK(scalar(a.get(), "/* c */ SELECT set_config('statement_timeout', '4343ms', false)") == "4343ms");
  }
  {
    PgConn b = connect(info);
    CHECK(scalar(b.get(), "SHOW statement_timeout") != "4343ms");
  }
}

// pg_settings' update rule runs set_config(name, setting, false) for each row: a session change like the call.
TEST_CASE("an UPDATE of pg_settings lasts for its client and does not leak to the next one") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_work_mem = fresh_setting(info, "work_mem");
  REQUIRE(default_work_mem != "7MB");
  {
    PgConn a = connect(info);
    exec(a.get(), "UPDATE pg_settings SET setting = '7MB' WHERE name = 'work_mem'");
    CHECK(scalar(a.get(), "SHOW work_mem") == "7MB");  // as on a direct connection
  }
  CHECK(fresh_setting(info, "work_mem") == default_work_mem);
}

// The database's function catalog is first loaded when its first client has logged in: a call at once of a function
// that changes the session from inside must still keep the client on its server (before, it was judged without
// the catalog and its setting reached the next client of the server).
TEST_CASE("a session-changing function called at once after pgmux starts keeps its client on its server") {
  if (direct_mode()) return;
  {
    PgConn owner = pgmux::test::routing::admin(cluster_ports().primary, "app");
    exec(owner.get(), "CREATE OR REPLACE FUNCTION public.txpool_first_call_setting() RETURNS text LANGUAGE plpgsql"
                      " AS $$ BEGIN RETURN set_config('work_mem', '11MB', false); END $$");
  }
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  {
    PgConn a = connect(info);
    CHECK(scalar(a.get(), "SELECT txpool_first_call_setting()") == "11MB");
    CHECK(scalar(a.get(), "SHOW work_mem") == "11MB");  // as on a direct connection
  }
  CHECK(fresh_setting(info, "work_mem") != "11MB");
}

// The unnamed statement outlives its request on the server that parsed it. Another client handed that server
// must not describe or run it: PostgreSQL answers 26000 to a client that parsed no unnamed statement, also when
// the Bind that uses it comes before the batch's own Parse of one (libpq's pipeline mode sends them together).
TEST_CASE("the unnamed statement another client parsed is never described or run for the next client") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  PgConn a = connect_leaving_unnamed_statement(info);

  PgConn b = connect(info);
  check_describe_unnamed_as_postgresql(b.get());

  REQUIRE(PQenterPipelineMode(b.get()) == 1);
  REQUIRE(PQsendQueryPrepared(b.get(), "", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendPrepare(b.get(), "", "SELECT 'own'::text", 0, nullptr) == 1);
  REQUIRE(PQpipelineSync(b.get()) == 1);
  PgResult bound(PQgetResult(b.get()));
  CHECK(sqlstate(bound.get()) == "26000");
  CHECK(PQntuples(bound.get()) == 0);
  // Then the skipped Parse and the Sync's end, each result followed by a null.
  bool synced = false;
  for (int i = 0; i < 8 && !synced; ++i) {
    PgResult rest(PQgetResult(b.get()));
    synced = rest && PQresultStatus(rest.get()) == PGRES_PIPELINE_SYNC;
  }
  REQUIRE(synced);
  CHECK(PQexitPipelineMode(b.get()) == 1);
  CHECK(scalar(b.get(), "SELECT 'still serving'") == "still serving");
}

// The same on a server the client already holds (here inside a transaction begun through the extended protocol,
// which, unlike a simple-Query BEGIN, leaves the server's unnamed statement in place): PostgreSQL's 26000, which
// aborts the transaction as it would there.
TEST_CASE("inside its transaction, a client never describes the unnamed statement another client parsed") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  PgConn a = connect_leaving_unnamed_statement(info);

  PgConn b = connect(info);
  PgResult begin_parsed(PQprepare(b.get(), "b_begin", "BEGIN", 0, nullptr));
  REQUIRE(PQresultStatus(begin_parsed.get()) == PGRES_COMMAND_OK);
  PgResult begun(PQexecPrepared(b.get(), "b_begin", 0, nullptr, nullptr, nullptr, 0));
  REQUIRE(PQresultStatus(begun.get()) == PGRES_COMMAND_OK);
  check_describe_unnamed_as_postgresql(b.get());
  CHECK(exec_sqlstate(b.get(), "SELECT 1") == "25P02");  // the transaction is aborted, as on PostgreSQL
  exec(b.get(), "ROLLBACK");
  CHECK(scalar(b.get(), "SELECT 'still serving'") == "still serving");
}


// A Parse of the unnamed statement that PostgreSQL skips (an error earlier in its batch) or that fails leaves
// the statement it would have replaced, or none. A Bind of it pipelined behind that batch runs what PostgreSQL
// would run there, never what another client left on the server: compared with a direct connection.
TEST_CASE("a pipelined use of the unnamed statement after a skipped or failed Parse of it") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string direct_info = conninfo(cluster_ports().primary, "app", "app", "app");
  struct Case {
    const char* own;
    bool bad;
  };
  for (const Case& c : {Case{"", false}, Case{"SELECT 'own'::text", false}, Case{"SELECT 'own'::text", true}}) {
    const std::string own = c.own;
    CAPTURE(own);
    CAPTURE(c.bad);
    PgConn direct = connect(direct_info);
    const std::string expected = unnamed_use_after_skipped_parse(direct.get(), c.own, c.bad);
    PgConn b = connect(info);
    if (!std::string(c.own).empty()) {
      PgResult parsed(PQprepare(b.get(), "", c.own, 0, nullptr));
      REQUIRE(PQresultStatus(parsed.get()) == PGRES_COMMAND_OK);
    }
    PgConn a = connect_leaving_unnamed_statement(info);  // now on the one server, after b's own
    CHECK(unnamed_use_after_skipped_parse(b.get(), "", c.bad) == expected);
    CHECK(scalar(b.get(), "SELECT 'still serving'") == "still serving");
  }
}

// A use of the unnamed statement that continues an extended sequence left open by Flush, behind a batch ended by
// Sync whose reply has not come yet: it must not wait for that sequence to end (only its own Sync ends it). The
// Bind runs the statement the open sequence parsed, as on PostgreSQL.
TEST_CASE("a use of the unnamed statement inside a Flush-ended sequence, behind an unanswered Sync, does not hang") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const auto run = [](PGconn* conn) {
    REQUIRE(PQenterPipelineMode(conn) == 1);
    // Slow to answer: the rest arrives while it runs.
    REQUIRE(PQsendQueryParams(conn, "SELECT pg_sleep(0.3)::text", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    REQUIRE(PQsendPrepare(conn, "", "SELECT 'second'::text", 0, nullptr) == 1);
    REQUIRE(PQsendFlushRequest(conn) == 1);
    REQUIRE(PQsendQueryPrepared(conn, "", 0, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    std::string seen = pipeline_results(conn, 2);
    CHECK(PQexitPipelineMode(conn) == 1);
    return seen;
  };
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
  const std::string expected = run(direct.get());
  PgConn via = connect(conninfo(port, "app", "app", "app"));
  CHECK(run(via.get()) == expected);
  CHECK(scalar(via.get(), "SELECT 'still serving'") == "still serving");
}

// A batch that parses the unnamed statement twice and fails between them (the first one's Execute fails) leaves
// the first statement on the server: PostgreSQL runs it again at a later Bind of the unnamed statement. pgmux
// kept only the batch's last Parse and, the server given back, answered 26000. Compared with a direct connection.
TEST_CASE("the unnamed statement a failed batch's first Parse left runs again at a later Bind") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const auto run = [](PGconn* conn) {
    exec(conn, "DROP TABLE IF EXISTS unnamed_dup");
    exec(conn, "CREATE TABLE unnamed_dup (id int PRIMARY KEY)");
    exec(conn, "INSERT INTO unnamed_dup VALUES (1)");
    REQUIRE(PQenterPipelineMode(conn) == 1);
    const char* insert = "INSERT INTO unnamed_dup VALUES (1)";  // 23505
    REQUIRE(PQsendQueryParams(conn, insert, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQsendQueryParams(conn, "SELECT 'second'", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    REQUIRE(PQsendQueryPrepared(conn, "", 0, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn) == 1);
    std::string seen = pipeline_results(conn, 2);
    REQUIRE(PQexitPipelineMode(conn) == 1);
    PgResult again(PQexecPrepared(conn, "", 0, nullptr, nullptr, nullptr, 0));  // the server was given back
    seen += "then " + sqlstate(again.get());
    exec(conn, "DROP TABLE unnamed_dup");
    return seen;
  };
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
  const std::string expected = run(direct.get());
  CHECK(expected.find("then 23505") != std::string::npos);
  PgConn via = connect(conninfo(port, "app", "app", "app"));
  CHECK(run(via.get()) == expected);
}
