// Session pooling with the read/write split: a named statement parsed on a standby (a read) and used later on the
// primary (inside a transaction block, or once the session is pinned there) is prepared there by pgmux. DDL in
// between must not change what the client sees: PostgreSQL fixed the statement's parameter types at its Parse
// (a binary int4 parameter stays an int4 after ALTER COLUMN ... TYPE real), and a statement whose result columns
// changed answers 0A000 "cached plan must not change result type". Each case asserts PostgreSQL's own answers, so
// it runs directly against the primary too (PGMUX_TEST_DIRECT=1).
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_statement_ddl";

struct Fixture {
  ClusterPorts ports = cluster_ports();
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  PgConn owner;  // direct to the primary: runs the DDL

  Fixture() : proxy(routing_config(listen, ports).dump(), listen) {
    ci = proxy.conninfo("app", "app", kDb);
    recreate_database(ports, kDb);
    owner = admin(ports.primary, kDb);
    exec(owner.get(), "CREATE TABLE t (id int PRIMARY KEY, v int); ALTER TABLE t OWNER TO app; "
                      "INSERT INTO t SELECT g, g FROM generate_series(1, 20) g");
    REQUIRE(wait_replayed(ports, 20));
    if (!direct_mode()) {
      REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
    }
  }
  ~Fixture() {
    owner.reset();
    try {
      drop_database(ports, kDb);
    } catch (...) {
    }
  }
  // DDL on the primary, replayed by both standbys before the test goes on.
  void alter(const std::string& ddl) {
    exec(owner.get(), ddl);
    REQUIRE(wait_replayed(ports, 20));
  }
  void log_on_failure(bool failed) {
    if (failed && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
};

void prepare(PGconn* conn, const char* name, const char* sql) {
  PgResult res(PQprepare(conn, name, sql, 1, nullptr));  // the parameter's type left to PostgreSQL
  REQUIRE_MESSAGE(PQresultStatus(res.get()) == PGRES_COMMAND_OK, PQerrorMessage(conn));
}

// Runs `name` with one binary int4 parameter; the first column of each row, space-separated, or "error <state>".
std::string run_binary_int4(PGconn* conn, const char* name, int32_t value) {
  const uint32_t wire = htonl(static_cast<uint32_t>(value));
  const char* values[1] = {reinterpret_cast<const char*>(&wire)};
  const int lengths[1] = {4};
  const int formats[1] = {1};
  PgResult res(PQexecPrepared(conn, name, 1, values, lengths, formats, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return "error " + sqlstate(res.get());
  std::string rows;
  for (int i = 0; i < PQntuples(res.get()); ++i) rows += (i ? " " : "") + std::string(PQgetvalue(res.get(), i, 0));
  return rows;
}

// "star" (SELECT *) parsed on a standby and run there, then t gains a column.
void prepare_star_then_add_column(Fixture& f, PGconn* conn) {
  prepare(conn, "star", "SELECT * FROM t WHERE id = $1");
  CHECK(run_binary_int4(conn, "star", 3) == "3");
  f.alter("ALTER TABLE t ADD COLUMN extra int DEFAULT 42");
}

// Sends a cancel request for conn's backend (through pgmux: for its request); false if it could not be sent.
bool cancel(PGconn* conn) {
  PGcancel* c = PQgetCancel(conn);
  char error[256] = {0};
  const bool sent = c != nullptr && PQcancel(c, error, sizeof error) == 1;
  if (c) PQfreeCancel(c);
  return sent;
}

// The SQLSTATE of the first result of what conn sent ("" when it succeeded; "no answer" after `seconds`); the
// remaining results are read.
std::string await_sqlstate(PGconn* conn, double seconds) {
  const bool answered = wait_until([&] { return PQconsumeInput(conn) == 1 && PQisBusy(conn) == 0; }, seconds);
  if (!answered) return "no answer";
  PgResult first(PQgetResult(conn));
  while (PgResult rest{PQgetResult(conn)}) {
  }
  return first ? sqlstate(first.get()) : "no result";
}

}  // namespace

TEST_CASE("a statement parsed on a standby keeps its parameter types on the primary after ALTER COLUMN TYPE") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare(conn.get(), "by_v", "SELECT id FROM t WHERE v = $1");  // a read: parsed on a standby, $1 int4
  CHECK(run_binary_int4(conn.get(), "by_v", 7) == "7");
  f.alter("ALTER TABLE t ALTER COLUMN v TYPE real");
  exec(conn.get(), "BEGIN");  // a read-write block: the primary, which prepares the statement only now
  const std::string in_block = run_binary_int4(conn.get(), "by_v", 7);
  exec(conn.get(), "COMMIT");
  CHECK(in_block == "7");  // an int4 7, compared with the real column (read as a real: no row)
  CHECK(run_binary_int4(conn.get(), "by_v", 8) == "8");
  f.log_on_failure(in_block != "7");
}

// An SQL PREPARE runs on the primary; a standby connection prepares it from the session log before its first read
// there. PostgreSQL fixed its parameter types at the PREPARE: $1 stays int4 after ALTER COLUMN ... TYPE numeric
// (inferred again on the standby after that DDL, it was numeric), and a type of another schema is PostgreSQL's by
// its OID: by_mood runs where the client may not name that type, and after its rename (pgmux leaves it to be
// inferred again). EXECUTE runs on the primary (pgmux cannot tell what it does), so only a read of
// pg_prepared_statements shows the standby's copy.
TEST_CASE("an SQL PREPARE replayed on a standby keeps the parameter types PostgreSQL inferred") {
  Fixture f;
  PgConn conn = connect(f.ci);
  exec(f.owner.get(), "CREATE SCHEMA hid; CREATE TYPE hid.mood AS ENUM ('sad', 'ok'); "
                      "ALTER TABLE t ADD COLUMN m hid.mood");  // app may not name the type (no USAGE on hid)
  exec(conn.get(), "PREPARE by_v AS SELECT count(*) FROM t WHERE v = $1");
  exec(conn.get(), "PREPARE by_v2 AS SELECT count(*) FROM t WHERE v = $1");  // while pgmux reads by_v's types
  exec(conn.get(), "PREPARE \"Typed\" (numeric) AS SELECT count(*) FROM t WHERE v = $1");  // its own types stay
  exec(conn.get(), "PREPARE by_mood AS SELECT count(*) FROM t WHERE m = $1 AND v = $2");
  f.alter("ALTER TABLE t ALTER COLUMN v TYPE numeric; ALTER TYPE hid.mood RENAME TO feeling");
  PgResult listed(PQexec(conn.get(), "SELECT string_agg(name || parameter_types::text, ' ' ORDER BY name), "
                                     "inet_server_port() FROM pg_prepared_statements"));
  REQUIRE(PQresultStatus(listed.get()) == PGRES_TUPLES_OK);
  const std::string types = PQgetvalue(listed.get(), 0, 0);
  CHECK(types == "Typed{numeric} by_mood{hid.feeling,integer} by_v{integer} by_v2{integer}");
  const int port = std::atoi(PQgetvalue(listed.get(), 0, 1));
  if (!direct_mode()) CHECK((port == f.ports.standby1 || port == f.ports.standby2));  // else this tests nothing
  CHECK(scalar(conn.get(), "EXECUTE by_v(10.4)") == "1");  // 10.4 as an int4: 10
  CHECK(scalar(conn.get(), "EXECUTE \"Typed\"(10.4)") == "0");
  CHECK(scalar(conn.get(), "EXECUTE by_v2(10.4)") == "1");
  f.log_on_failure(types != "Typed{numeric} by_mood{hid.feeling,integer} by_v{integer} by_v2{integer}");
}

// In SJIS the second byte of a character may be an ASCII letter (ア 83 41, ヂ 83 61): folded byte-wise, pgmux took
// ア's name for ヂ's and gave it ヂ's parameter types in the log, which the standby then failed to replay (FATAL).
// pgmux does not read the types of a statement whose name it cannot fold exactly: the log replays its text.
TEST_CASE("an SQL PREPARE named in SJIS is replayed on a standby as the client wrote it") {
  Fixture f;
  PgConn conn = connect(f.ci);
  exec(conn.get(), "SET client_encoding = 'SJIS'");
  exec(conn.get(), "PREPARE \x83\x61 AS SELECT $1 + 1");
  exec(conn.get(), "PREPARE \x83\x41 AS SELECT upper($1)");
  // A read while a query of pgmux's behind a PREPARE is owed would follow the primary: let one end.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  PgResult listed(PQexec(conn.get(), "SELECT string_agg(parameter_types::text, ' ' ORDER BY parameter_types::text), "
                                     "inet_server_port() FROM pg_prepared_statements"));
  REQUIRE_MESSAGE(PQresultStatus(listed.get()) == PGRES_TUPLES_OK, PQerrorMessage(conn.get()));
  CHECK(std::string(PQgetvalue(listed.get(), 0, 0)) == "{integer} {text}");
  const int port = std::atoi(PQgetvalue(listed.get(), 0, 1));
  if (!direct_mode()) CHECK((port == f.ports.standby1 || port == f.ports.standby2));
  CHECK(scalar(conn.get(), "EXECUTE \x83\x41('x')") == "X");
}

// The types read behind a PREPARE that fails (42P05) are those of the statement of that name in force: the log's
// older PREPARE of the name is not it when a DEALLOCATE ALL, or a name pgmux does not decode (U&), came between.
// Typed with the other's types (text for $1 + 1), it failed on the standby: the session ended (FATAL).
TEST_CASE("types read behind a failed PREPARE go to no older statement of the log") {
  Fixture f;
  PgConn conn = connect(f.ci);
  exec(conn.get(), "BEGIN; PREPARE q AS SELECT $1 + 1; COMMIT");  // in a block: its types are not read
  exec(conn.get(), "DEALLOCATE ALL");
  exec(conn.get(), "PREPARE U&\"\\0071\" AS SELECT $1 || 'x'");  // q, by its escape
  CHECK(exec_sqlstate(conn.get(), "PREPARE q AS SELECT 1") == "42P05");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // pgmux's query behind it has ended
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "");
  CHECK(scalar(conn.get(), "SELECT name || parameter_types::text FROM pg_prepared_statements") == "q{text}");
  CHECK(scalar(conn.get(), "EXECUTE q('a')") == "ax");
}

TEST_CASE("a statement parsed on a standby gets 0A000 on the primary after its columns changed") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare_star_then_add_column(f, conn.get());
  exec(conn.get(), "CREATE TEMP TABLE keeps_me_on_the_primary (x int)");  // pins the session to the primary
  const std::string after = run_binary_int4(conn.get(), "star", 3);
  CHECK(after == "error 0A000");  // cached plan must not change result type
  prepare(conn.get(), "star_again", "SELECT * FROM t WHERE id = $1");  // what a driver does next
  CHECK(run_binary_int4(conn.get(), "star_again", 4) == "4");
  f.log_on_failure(after != "error 0A000");
}

TEST_CASE("a statement parsed on a standby gets 0A000 in a block on the primary after its columns changed") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare_star_then_add_column(f, conn.get());
  exec(conn.get(), "BEGIN");  // a read-write block: the primary, which prepares the statement only now
  const std::string in_block = run_binary_int4(conn.get(), "star", 3);
  CHECK(in_block == "error 0A000");
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "25P02");  // the block failed, on the primary too
  exec(conn.get(), "ROLLBACK");
  CHECK(scalar(conn.get(), "SELECT count(*) FROM t") == "20");
  f.log_on_failure(in_block != "error 0A000");
}

// The block pgmux fails for that 0A000 must not stall what the client pipelined behind it: a second statement
// that pgmux has to prepare on the primary waits for the server to owe nothing, which pgmux's own failing
// statement ends (before, nobody was told, and the client hung). PostgreSQL's answers: 0A000, then 25P02.
TEST_CASE("requests pipelined behind that 0A000 in a block get PostgreSQL's 25P02, not a hang") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare(conn.get(), "other", "SELECT v FROM t WHERE id = $1");
  prepare_star_then_add_column(f, conn.get());
  exec(conn.get(), "BEGIN");
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  const char* values[1] = {"3"};
  for (const char* name : {"star", "other"}) {
    REQUIRE(PQsendQueryPrepared(conn.get(), name, 1, values, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
  }
  const std::string seen = pipeline_results(conn.get(), 2);
  CHECK(seen == "PGRES_FATAL_ERROR 0A000\nPGRES_PIPELINE_SYNC \nPGRES_FATAL_ERROR 25P02\nPGRES_PIPELINE_SYNC \n");
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  exec(conn.get(), "ROLLBACK");
  CHECK(scalar(conn.get(), "SELECT count(*) FROM t") == "20");
  f.log_on_failure(seen.find("25P02") == std::string::npos);
}

// A cancel while pgmux prepares the primary for a statement parsed on a standby, its Parse there waiting for a lock
// another session holds: the request has not run, and fails with 57014 once the primary is ready; the block it was
// in fails there too (25P02 next). PostgreSQL cancels the waiting execution: the same answers.
TEST_CASE("a cancel while pgmux prepares the primary for a statement fails it with 57014, and its block") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare(conn.get(), "by_id", "SELECT v FROM t WHERE id = $1");  // a read: parsed on a standby
  CHECK(run_binary_int4(conn.get(), "by_id", 5) == "5");
  exec(f.owner.get(), "BEGIN");
  exec(f.owner.get(), "LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
  exec(conn.get(), "BEGIN");  // a read-write block: the primary, which prepares the statement only now
  const uint32_t wire = htonl(5);
  const char* values[1] = {reinterpret_cast<const char*>(&wire)};
  const int lengths[1] = {4};
  const int formats[1] = {1};
  REQUIRE(PQsendQueryPrepared(conn.get(), "by_id", 1, values, lengths, formats, 0) == 1);
  CHECK_FALSE(wait_readable(conn.get(), 0.5));  // waits for the lock (pgmux: its Parse of the statement does)
  REQUIRE(cancel(conn.get()));
  // Directly the execution is cancelled at once; through pgmux the request waits for the preparation, pgmux's.
  if (!direct_mode()) CHECK_FALSE(wait_readable(conn.get(), 0.3));
  exec(f.owner.get(), "ROLLBACK");
  const std::string cancelled = await_sqlstate(conn.get(), 5.0);
  CHECK(cancelled == "57014");
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "25P02");
  exec(conn.get(), "ROLLBACK");
  CHECK(run_binary_int4(conn.get(), "by_id", 6) == "6");
  f.log_on_failure(cancelled != "57014");
}

// Session pooling: a cancel request while the client waits for nothing is ignored, as PostgreSQL ignores one for an
// idle backend, although pgmux's query behind the client's PREPARE still runs on the primary (here it waits for a
// lock on pg_prepared_statements). Cancelled, that query's types went unread, and the standby prepared the
// statement from its text after the DDL: numeric where PostgreSQL fixed integer.
TEST_CASE("a cancel while the client is idle leaves pgmux's query behind a PREPARE alone") {
  Fixture f;
  PgConn locker = admin(f.ports.primary, kDb);
  exec(locker.get(), "BEGIN");
  exec(locker.get(), "LOCK TABLE pg_catalog.pg_prepared_statements IN ACCESS EXCLUSIVE MODE");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE by_v AS SELECT count(*) FROM t WHERE v = $1");
  if (!direct_mode()) {
    const std::string waiting = std::string("SELECT count(*) FROM pg_stat_activity WHERE datname = '") + kDb +
                                "' AND wait_event_type = 'Lock' AND query LIKE '%pg_prepared_statements%'";
    REQUIRE(wait_until([&] { return scalar(locker.get(), waiting) == "1"; }, 5.0));
  }
  REQUIRE(cancel(conn.get()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the cancel has reached PostgreSQL, if sent
  exec(locker.get(), "ROLLBACK");
  // No read before the DDL: a standby connection made now would prepare the statement as it stands.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // pgmux's query ends
  f.alter("ALTER TABLE t ALTER COLUMN v TYPE numeric");
  CHECK(scalar(conn.get(), "SELECT name || parameter_types::text FROM pg_prepared_statements") == "by_v{integer}");
  CHECK(scalar(conn.get(), "EXECUTE by_v(10.4)") == "1");
}

// Two statements the client's standby lacks, prepared there by pgmux in one step: the second fails (its table was
// dropped), the first was made all the same (PostgreSQL keeps a named statement when the step's transaction rolls
// back). The next read of the first on that standby got 42P05 "prepared statement already exists" at every try:
// pgmux took it for never made and parsed it again there.
TEST_CASE("a statement made before another failed in pgmux's prepare step is used there afterwards") {
  Fixture f;
  exec(f.owner.get(), "CREATE TABLE gone (id int); ALTER TABLE gone OWNER TO app");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "BEGIN");  // parsed in a block: on the primary only
  prepare(conn.get(), "kept", "SELECT v FROM t WHERE id = $1");
  prepare(conn.get(), "broken", "SELECT id FROM gone WHERE id = $1");
  exec(conn.get(), "COMMIT");
  f.alter("DROP TABLE gone");
  // One batch using both, on a standby: pgmux prepares "kept", then "broken", which fails there.
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  const char* values[1] = {"4"};
  REQUIRE(PQsendQueryPrepared(conn.get(), "kept", 1, values, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendQueryPrepared(conn.get(), "broken", 1, values, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  const std::string batch = pipeline_results(conn.get(), 1);
  CHECK_MESSAGE(batch.find("42P01") != std::string::npos, batch);  // "gone" does not exist, as directly
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  for (int i = 0; i < 3; ++i) CHECK(run_binary_int4(conn.get(), "kept", 4) == "4");
  f.log_on_failure(run_binary_int4(conn.get(), "kept", 4) != "4");
}
