// Transaction pooling shares a statement's server copy among clients by its text (pgmux_<hash>), and each server
// keeps a bounded list of them (prepared_statements.max_per_server). pgmux's list of what a server holds must
// never drift from what it really holds: a Close or Parse that PostgreSQL skipped after an error earlier in its
// batch must not make pgmux believe it ran, and the list must not close a statement the request is about to use.
// Every case compares with a direct connection to the primary where PostgreSQL's answer is the point.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_shared";

// One worker and one server, so every client meets the statements the others left there.
struct Fixture {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  explicit Fixture(int max_per_server)
      : proxy((fresh_database(kDb), config(listen, max_per_server).dump()), listen) {
    ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci);
  }
  ~Fixture() { drop_database_quietly(kDb); }
  static nlohmann::json config(int listen, int max_per_server) {
    nlohmann::json c = txpool_config(listen, kDb, 1);
    c["workers"] = 1;  // one pool
    c["timeouts"]["query_wait_timeout"] = 5;  // a server never given back fails the test, not hangs it
    c["prepared_statements"] = {{"max_per_server", max_per_server}};
    return c;
  }
};

// A direct connection to the primary's database (the oracle), or one through pgmux.
std::string target(const Fixture& f, bool direct) {
  return direct ? conninfo(cluster_ports().primary, "app", "app", kDb) : f.ci;
}

std::string prepare(PGconn* conn, const std::string& name, const std::string& sql) {
  return prepare_named(conn, name, sql);
}
std::string run(PGconn* conn, const std::string& name) { return run_named(conn, name); }

// A batch whose Parse of `name` PostgreSQL skips (a Bind of a missing statement fails first), then the client
// prepares and runs `name` for real: every outcome, one per line.
std::string skipped_parse_then_prepare(PGconn* conn, const std::string& name, const std::string& sql) {
  REQUIRE(PQenterPipelineMode(conn) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "no_such_statement", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendPrepare(conn, name.c_str(), sql.c_str(), 0, nullptr) == 1);
  REQUIRE(PQpipelineSync(conn) == 1);
  std::string seen = pipeline_results(conn, 1);
  REQUIRE(PQexitPipelineMode(conn) == 1);
  seen += "prepare: " + prepare(conn, name, sql) + "\n";
  seen += "run: " + run(conn, name) + "\n";
  return seen;
}

}  // namespace

// The batch's Parse of a text the server already shares goes out behind a Close of that copy (pgmux's, kept
// from the client). An error before them skips both: the copy stays, and pgmux must not take it for gone.
TEST_CASE("a batch that fails before its Parse of a shared statement leaves that statement usable") {
  if (direct_mode()) return;
  Fixture f(100);
  const std::string sql = "SELECT 'shared'::text";
  PgConn a = connect(f.ci);
  REQUIRE(prepare(a.get(), "a", sql).empty());
  REQUIRE(run(a.get(), "a") == "shared");  // the one server holds the shared copy now

  PgConn direct = connect(app_conninfo(cluster_ports().primary, kDb));
  const std::string expected = skipped_parse_then_prepare(direct.get(), "b", sql);
  PgConn b = connect(f.ci);
  CHECK(skipped_parse_then_prepare(b.get(), "b", sql) == expected);
  CHECK(run(a.get(), "a") == "shared");
}

// Preparing a statement the request uses makes room in the server's list by closing the least recently used.
// When that preparation fails (its table was dropped since the client's Parse), PostgreSQL skips the rest of it,
// that Close included: the closed-for-room statement is still there, and preparing it again later must not fail
// with 42P05.
TEST_CASE("a failed preparation that skipped its Close of another statement leaves that one usable") {
  if (direct_mode()) return;
  Fixture f(1);
  PgConn conn = connect(f.ci);
  exec(conn.get(), "CREATE TABLE doomed (v text)");
  REQUIRE(prepare(conn.get(), "x", "SELECT 'x'::text").empty());
  REQUIRE(prepare(conn.get(), "bad", "SELECT v FROM doomed").empty());  // the server keeps this one only
  exec(conn.get(), "DROP TABLE doomed");
  CHECK(run(conn.get(), "x") == "x");
  CHECK(run(conn.get(), "bad") == "error 42P01");  // prepared again there, with "x" closed for room behind it
  // Idle after that error, the client holds no server: the pool's one serves another client.
  PgConn bystander = connect(f.ci);
  CHECK(scalar(bystander.get(), "SELECT 'served'") == "served");
  CHECK(run(conn.get(), "x") == "x");
  PgConn other = connect(f.ci);
  REQUIRE(prepare(other.get(), "y", "SELECT 'x'::text").empty());  // the same text: the same shared copy
  CHECK(run(other.get(), "y") == "x");
}

// One request that uses more statements than a server keeps: all of them stay until it ran (as on PostgreSQL,
// which has no such limit); the list is trimmed afterwards.
TEST_CASE("a request using more statements than max_per_server runs every one of them") {
  if (direct_mode()) return;
  Fixture f(2);
  PgConn conn = connect(f.ci);
  const char* const names[] = {"one", "two", "three"};
  for (const char* name : names) REQUIRE(prepare(conn.get(), name, std::string("SELECT '") + name + "'::text").empty());
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  for (const char* name : names) REQUIRE(PQsendQueryPrepared(conn.get(), name, 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  CHECK(pipeline_results(conn.get(), 1) ==
        "PGRES_TUPLES_OK  one\nPGRES_TUPLES_OK  two\nPGRES_TUPLES_OK  three\nPGRES_PIPELINE_SYNC \n");
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  for (const char* name : names) CHECK(run(conn.get(), name) == name);
}

// PostgreSQL reads a statement's constants and names when it parses it, under the session's settings: a client of
// another TimeZone and DateStyle, or search_path, parsing the same text must get a copy of its own, and the first
// client's copy must stay its own (it ran the other client's before: another date, another table's columns).
TEST_CASE("clients whose settings change what a statement means share no server copy of it") {
  Fixture f(8);
  PgConn setup = connect(f.ci);
  exec(setup.get(), "CREATE SCHEMA s2; CREATE TABLE s2.spy (a text, b text); INSERT INTO s2.spy VALUES ('s2', 'x')");
  exec(setup.get(), "CREATE TABLE public.spy (a text); INSERT INTO public.spy VALUES ('public')");
  const std::string dates = "SELECT '01/02/2024'::date::text || ' ' || '2024-01-01 00:00'::timestamptz::text";
  for (bool direct : {true, false}) {
    CAPTURE(direct);
    const std::string ci = target(f, direct);
    PgConn a = connect(ci + " options='-c TimeZone=UTC -c DateStyle=ISO,MDY'");
    PgConn b = connect(ci + " options='-c TimeZone=Asia/Tokyo -c DateStyle=ISO,DMY'");
    PgConn c = connect(ci + " options='-c search_path=s2'");
    REQUIRE(prepare(a.get(), "st", dates) == "");
    REQUIRE(prepare(c.get(), "spy", "SELECT * FROM spy") == "");
    CHECK(run(a.get(), "st") == "2024-01-02 2024-01-01 00:00:00+00");
    CHECK(run(c.get(), "spy") == "s2");
    REQUIRE(prepare(b.get(), "st", dates) == "");
    REQUIRE(prepare(b.get(), "spy", "SELECT * FROM spy") == "");
    CHECK(run(b.get(), "st") == "2024-02-01 2024-01-01 00:00:00+09");
    CHECK(run(b.get(), "spy") == "public");
    CHECK(run(a.get(), "st") == "2024-01-02 2024-01-01 00:00:00+00");
    CHECK(run(c.get(), "spy") == "s2");
  }
}

// The same inside a transaction: a copy parsed after SET LOCAL TimeZone there is not the one of the session's
// settings its shared name says; it must not outlive the transaction on that server for another client. However
// the setting is made local: SET LOCAL alone, behind BEGIN in one string, or set_config(..., true).
TEST_CASE("a statement parsed after SET LOCAL of such a setting stays out of other clients' hands") {
  Fixture f(8);
  const std::string stamp = "SELECT '2024-01-01 00:00'::timestamptz::text";
  const std::vector<std::string> locally = {"BEGIN; SET LOCAL TimeZone = 'Asia/Tokyo'",
                                            "BEGIN; SELECT set_config('TimeZone', 'Asia/Tokyo', true)"};
  for (bool direct : {true, false}) {
    for (size_t way = 0; way <= locally.size(); ++way) {
      CAPTURE(direct);
      CAPTURE(way);
      const std::string ci = target(f, direct);
      PgConn a = connect(ci + " options='-c TimeZone=UTC'");
      PgConn b = connect(ci + " options='-c TimeZone=UTC'");
      REQUIRE(prepare(b.get(), "st", stamp) == "");
      CHECK(run(b.get(), "st") == "2024-01-01 00:00:00+00");
      if (way == locally.size()) {
        exec(a.get(), "BEGIN");
        exec(a.get(), "SET LOCAL TimeZone = 'Asia/Tokyo'");
      } else {
        exec(a.get(), locally[way]);
      }
      REQUIRE(prepare(a.get(), "st", stamp) == "");
      CHECK(run(a.get(), "st") == "2024-01-01 00:00:00+09");
      exec(a.get(), "COMMIT");
      CHECK(run(b.get(), "st") == "2024-01-01 00:00:00+00");
    }
  }
}

// Two batches pipelined, the second parsing the name the first one did: PostgreSQL answers it 42P05 (the first
// succeeded) and the statement keeps the first text. pgmux sent the second under its own text's shared name, and
// the client's statement became the second text (inside a block, a COMMIT then committed what PostgreSQL rolls
// back). From a black-box hunt.
TEST_CASE("a pipelined Parse of a name an unanswered batch parsed gets PostgreSQL's 42P05") {
  Fixture f(8);
  for (bool direct : {true, false}) {
    CAPTURE(direct);
    PgConn conn = connect(target(f, direct));
    REQUIRE(PQenterPipelineMode(conn.get()) == 1);
    REQUIRE(PQsendPrepare(conn.get(), "n0", "SELECT 'first'", 0, nullptr) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    REQUIRE(PQsendPrepare(conn.get(), "n0", "SELECT 'second'", 0, nullptr) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    CHECK(pipeline_results(conn.get(), 2) ==
          "PGRES_COMMAND_OK \nPGRES_PIPELINE_SYNC \nPGRES_FATAL_ERROR 42P05\nPGRES_PIPELINE_SYNC \n");
    REQUIRE(PQexitPipelineMode(conn.get()) == 1);
    CHECK(run(conn.get(), "n0") == "first");
  }
}

// A Bind pipelined behind a batch whose Parse of its statement PostgreSQL skipped (a Bind of a missing statement
// failed first): PostgreSQL answers it 26000, the statement was never made. pgmux took the statement as parsed
// and sent the Bind under its shared name, which another client's copy on the server answered (or, with no such
// copy, PostgreSQL's 26000 named pgmux's shared name). From a black-box hunt.
TEST_CASE("a Bind pipelined behind a skipped Parse of its statement gets PostgreSQL's 26000") {
  Fixture f(8);
  for (bool direct : {true, false}) {
    CAPTURE(direct);
    PgConn other = connect(target(f, direct));
    REQUIRE(prepare(other.get(), "mine", "SELECT 'never parsed'") == "");
    CHECK(run(other.get(), "mine") == "never parsed");
    PgConn conn = connect(target(f, direct));
    REQUIRE(PQenterPipelineMode(conn.get()) == 1);
    REQUIRE(PQsendQueryPrepared(conn.get(), "missing", 0, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQsendPrepare(conn.get(), "n1", "SELECT 'never parsed'", 0, nullptr) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    REQUIRE(PQsendQueryPrepared(conn.get(), "n1", 0, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQsendDescribePrepared(conn.get(), "n1") == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    REQUIRE(PQsendDescribePrepared(conn.get(), "n1") == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    CHECK(pipeline_results(conn.get(), 3) ==
          "PGRES_FATAL_ERROR 26000\nPGRES_PIPELINE_ABORTED \nPGRES_PIPELINE_SYNC \n"
          "PGRES_FATAL_ERROR 26000\nPGRES_PIPELINE_ABORTED \nPGRES_PIPELINE_SYNC \n"
          "PGRES_FATAL_ERROR 26000\nPGRES_PIPELINE_SYNC \n");
    REQUIRE(PQexitPipelineMode(conn.get()) == 1);
    PgResult described(PQdescribePrepared(conn.get(), "n1"));
    CHECK(std::string(PQresultErrorField(described.get(), PG_DIAG_MESSAGE_PRIMARY) ?: "") ==
          "prepared statement \"n1\" does not exist");
    CHECK(run(conn.get(), "n1") == "error 26000");
  }
}
