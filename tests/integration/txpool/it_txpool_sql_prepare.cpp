// SQL-level prepared statements (PREPARE / EXECUTE / DEALLOCATE) in transaction pooling: pooled, not pinned.
// Eight clients share two server connections, each with its own statement of the same name, re-prepared now
// and then with another text, run in autocommit and inside transactions: every EXECUTE must run the client's
// own current statement. Were SQL PREPARE still pinning, the third client would wait for a server until
// query_wait_timeout. Once on the primary alone, once with the read/write split on. The error cases (42P05,
// 26000, non-transactional PREPARE, EXPLAIN EXECUTE, extended protocol) are compared with PostgreSQL itself by
// the differential test's sql_prepare script.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

constexpr int kClients = 8;
constexpr int kRounds = 25;

// One client's life: its statement `s` returns "c<client> v<version> <arg>".
void run_client(const std::string& ci, int client, std::atomic<int>& executed) {
  PgConn conn = connect(ci);
  int version = 0;
  auto prepare = [&] {
    exec(conn.get(), "PREPARE s (int) AS SELECT 'c" + std::to_string(client) + " v" + std::to_string(version) +
                         " ' || $1 AS who");
  };
  auto expect = [&](int arg) { return "c" + std::to_string(client) + " v" + std::to_string(version) + " " +
                                      std::to_string(arg); };
  prepare();
  for (int round = 0; round < kRounds; ++round) {
    const std::string autocommit = scalar(conn.get(), "EXECUTE s(" + std::to_string(round) + ")");
    if (autocommit != expect(round)) throw std::runtime_error("autocommit EXECUTE gave " + autocommit);
    exec(conn.get(), "BEGIN");
    const std::string in_block = scalar(conn.get(), "EXECUTE s(" + std::to_string(round + 1000) + ")");
    exec(conn.get(), "COMMIT");
    if (in_block != expect(round + 1000)) throw std::runtime_error("EXECUTE in a transaction gave " + in_block);
    executed += 2;
    if (round % 5 == 4) {
      exec(conn.get(), "DEALLOCATE s");
      ++version;
      prepare();
    }
  }
  // Visible to the session as on a direct connection: exactly its one statement of that name.
  const std::string listed =
      scalar(conn.get(), "SELECT string_agg(name, ',') FROM pg_prepared_statements WHERE from_sql");
  if (listed != "s") throw std::runtime_error("pg_prepared_statements lists " + listed);
}

void check_pooled(bool split) {
  const std::string db = split ? "txp_sqlprep_split" : "txp_sqlprep";
  fresh_database(db, split);
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, db, 2, split);
  config["workers"] = 1;  // one pool of two servers for all eight clients
  config["timeouts"]["query_wait_timeout"] = 10;
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  std::atomic<int> executed{0};
  const std::string error = run_threads(kClients, [&](int i) { run_client(ci, i, executed); });
  const std::string log = proxy.process() ? proxy.process()->log() : std::string();
  INFO(log);
  CHECK(error == "");
  CHECK(executed.load() == kClients * kRounds * 2);
  CHECK(server_connections(db) <= 2);
  drop_database_quietly(db);
}

// pgmux in transaction mode, two servers, on a fresh database `db` (dropped at the end); with `split`, over the
// whole cluster with the read/write split on.
struct TwoServers {
  std::string db;
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  explicit TwoServers(const std::string& name, bool split = false)
      : db(name), proxy((fresh_database(name, split), txpool_config(listen, name, 2, split).dump()), listen) {
    ci = app_conninfo(proxy.port(), db);
    wait_serving(ci);
  }
  ~TwoServers() { drop_database_quietly(db); }
};

}  // namespace

TEST_CASE("SQL prepared statements are pooled in transaction mode: each client runs its own") {
  SUBCASE("primary only") { check_pooled(false); }
  SUBCASE("read/write split") { check_pooled(true); }
}

TEST_CASE("a failed multi-statement string that prepared a statement keeps the client on its server") {
  TwoServers f("txp_sqlprep_fail");
  PgConn conn = connect(f.ci);
  // PREPARE ran, then the string failed: which of its statements ran is not visible to pgmux.
  PgResult failed(PQexec(conn.get(), "PREPARE kept AS SELECT 'kept' AS k; SELECT 1/0"));
  CHECK(PQresultStatus(failed.get()) == PGRES_FATAL_ERROR);
  CHECK(scalar(conn.get(), "EXECUTE kept") == "kept");
  PgConn other = connect(f.ci);
  CHECK(scalar(other.get(), "SELECT 1") == "1");  // the second server still serves others
  if (f.proxy.process()) {
    const std::string log = f.proxy.process()->full_log();
    INFO(log);
    CHECK(log.find("pinned to its server (SQL PREPARE)") != std::string::npos);
  }
}

// PostgreSQL fixes the parameter types of an SQL PREPARE when it runs. pgmux prepares the statement again on each
// server a later EXECUTE runs on (the one it ran on was reset when given back), which would infer them anew: after
// ALTER COLUMN ... TYPE real the argument 7.5 was stored as 7.5, where PostgreSQL rounds it to the int4 the PREPARE
// fixed (8). pgmux reads the types right behind the PREPARE and spells them out. Directly: the same answers.
TEST_CASE("an SQL PREPARE keeps the parameter types PostgreSQL inferred, after ALTER COLUMN TYPE too") {
  bool split = false;
  SUBCASE("primary only") {}
  SUBCASE("read/write split") { split = true; }
  TwoServers f("txp_sqlprep_types", split);
  PgConn owner = connect(app_conninfo(cluster_ports().primary, f.db));
  exec(owner.get(), "CREATE TABLE t (id int, v int)");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE ins AS INSERT INTO t VALUES ($1, $2)");
  exec(conn.get(), "PREPARE ins2 AS INSERT INTO t VALUES ($1, $2)");  // sent while pgmux still reads ins's types
  exec(conn.get(), "PREPARE \"Typed\" (int, real) AS INSERT INTO t VALUES ($1, $2)");  // its own types stay
  exec(owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  exec(conn.get(), "EXECUTE ins(1, 7.5)");
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "EXECUTE ins(2, 7.5)");
  exec(conn.get(), "EXECUTE \"Typed\"(3, 7.5)");
  exec(conn.get(), "COMMIT");
  exec(conn.get(), "EXECUTE ins2(4, 7.5)");
  CHECK(scalar(owner.get(), "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM t") == "1=8 2=8 3=7.5 4=8");
  CHECK(scalar(conn.get(), "SELECT string_agg(name || parameter_types::text, ' ' ORDER BY name) FROM "
                           "pg_prepared_statements") ==
        "Typed{integer,real} ins{integer,integer} ins2{integer,integer}");
  owner.reset();
}

// A parameter of a type outside pg_catalog: PostgreSQL keeps the type by its OID, so the statement runs whatever
// its name's schema lets the client do (no USAGE on it here) and after a rename. pgmux never names such a type when
// it prepares the statement again (it is inferred again there): named, it failed with 42501, then 42704.
TEST_CASE("a PREPARE with a parameter of a type the client cannot name runs, after the type's rename too") {
  TwoServers f("txp_sqlprep_hidden_type");
  PgConn owner = routing::admin(cluster_ports().primary, f.db);
  exec(owner.get(), "CREATE SCHEMA hid; CREATE TYPE hid.mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int, "
                    "m hid.mood); INSERT INTO t VALUES (1, 'ok'), (2, 'ok'), (3, 'sad'); GRANT SELECT ON t TO app");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE by_mood AS SELECT count(*) FROM t WHERE m = $1 AND id > $2");
  const std::string listed = "SELECT name || parameter_types::text FROM pg_prepared_statements";
  CHECK(exec_sqlstate(conn.get(), listed) == "");
  CHECK(scalar(conn.get(), listed) == "by_mood{hid.mood,integer}");
  CHECK(scalar(conn.get(), "EXECUTE by_mood('ok', 1)") == "1");
  exec(owner.get(), "ALTER TYPE hid.mood RENAME TO feeling");
  CHECK(scalar(conn.get(), "EXECUTE by_mood('ok', 0)") == "2");
  CHECK(scalar(conn.get(), listed) == "by_mood{hid.feeling,integer}");
  owner.reset();
}

// PostgreSQL folds a name after converting it to the server's encoding. In SJIS the second byte of a character may
// be an ASCII letter: ア is 83 41, ヂ 83 61, two statements for PostgreSQL, one for a byte-wise fold (and U& escapes
// are not decoded by pgmux at all). Such names keep the client on its server, where PostgreSQL tells them apart.
TEST_CASE("statement names pgmux cannot fold exactly keep the client on its server") {
  TwoServers f("txp_sqlprep_names");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "SET client_encoding = 'SJIS'");
  const std::string a = "\x83\x41", dzi = "\x83\x61";  // ア, ヂ
  exec(conn.get(), "PREPARE " + dzi + " AS SELECT $1 + 1");
  exec(conn.get(), "PREPARE " + a + " AS SELECT upper($1)");
  CHECK(scalar(conn.get(), "EXECUTE " + dzi + "(1)") == "2");
  CHECK(scalar(conn.get(), "EXECUTE " + a + "('x')") == "X");
  exec(conn.get(), "DEALLOCATE " + a);
  CHECK(scalar(conn.get(), "SELECT string_agg(parameter_types::text, ' ') FROM pg_prepared_statements") == "{integer}");
  CHECK(scalar(conn.get(), "EXECUTE " + dzi + "(2)") == "3");
  PgConn escaped = connect(f.ci);
  exec(escaped.get(), "SET client_encoding = 'UTF8'");
  exec(escaped.get(), "PREPARE before AS SELECT 1");  // made on one server, then given back: kept by pgmux
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // pgmux's query behind it ends: the server goes
  exec(escaped.get(), "PREPARE u&\"d\\0061t\" AS SELECT 7");
  CHECK(scalar(escaped.get(), "EXECUTE before") == "1");  // still the session's, wherever it runs now
  CHECK(scalar(escaped.get(), "EXECUTE dat") == "7");
  exec(escaped.get(), "DEALLOCATE dat");
  CHECK(scalar(escaped.get(), "SELECT count(*) FROM pg_prepared_statements") == "1");
  // An EXECUTE or DEALLOCATE by such a name names a statement made under its plain one (on another server).
  conn.reset();  // each pinned client holds one of the two servers
  escaped.reset();
  PgConn plain = connect(f.ci);
  exec(plain.get(), "PREPARE abc AS SELECT 3");
  CHECK(scalar(plain.get(), "EXECUTE U&\"\\0061bc\"") == "3");
  exec(plain.get(), "DEALLOCATE U&\"\\0061bc\"");
  CHECK(exec_sqlstate(plain.get(), "EXECUTE abc") == "26000");
}

namespace {

// A superuser's block on `db` holding pg_prepared_statements: pgmux's query behind a PREPARE waits for it.
PgConn lock_prepared_statements(const std::string& db) {
  PgConn locker = routing::admin(cluster_ports().primary, db);
  exec(locker.get(), "BEGIN");
  exec(locker.get(), "LOCK TABLE pg_catalog.pg_prepared_statements IN ACCESS EXCLUSIVE MODE");
  return locker;
}

// The backend whose query (pgmux's, behind a PREPARE) waits for that lock; "" if none within 5 s.
std::string waiting_backend(PGconn* locker, const std::string& db) {
  // One row always (scalar throws on none): '' until pgmux's query waits for the lock.
  const std::string waiting = "SELECT coalesce((SELECT pid::text FROM pg_stat_activity WHERE datname = '" + db +
                              "' AND wait_event_type = 'Lock' AND query LIKE '%pg_prepared_statements%' LIMIT 1), '')";
  std::string pid;
  routing::wait_until([&] { return !(pid = scalar(locker, waiting)).empty(); }, 5.0);
  return pid;
}

}  // namespace

// The server that ran the PREPARE is lost while only pgmux's query behind it is owed (terminated while that query
// waits for the lock): the client was answered and waits for nothing, so it hears nothing of it, and its next
// requests (extended ones too) run on another server, where the statement is prepared from its text. (Directly
// there is no such query: the case is pgmux's own.)
TEST_CASE("a server lost during pgmux's query behind a PREPARE is no error for the client") {
  if (direct_mode()) return;
  TwoServers f("txp_sqlprep_lost");
  PgConn locker = lock_prepared_statements(f.db);
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE plus AS SELECT $1::int + 1");  // answered; pgmux's query behind it waits
  const std::string pid = waiting_backend(locker.get(), f.db);
  REQUIRE(!pid.empty());
  CHECK(scalar(locker.get(), "SELECT pg_terminate_backend(" + pid + ")") == "t");
  exec(locker.get(), "ROLLBACK");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // pgmux sees the server go
  const char* values[1] = {"41"};
  PgResult extended(PQexecParams(conn.get(), "SELECT $1::int", 1, nullptr, values, nullptr, nullptr, 0));
  CHECK_MESSAGE(PQresultStatus(extended.get()) == PGRES_TUPLES_OK, std::string(PQerrorMessage(conn.get())));
  if (PQresultStatus(extended.get()) == PGRES_TUPLES_OK) CHECK(std::string(PQgetvalue(extended.get(), 0, 0)) == "41");
  CHECK(scalar(conn.get(), "EXECUTE plus(1)") == "2");
}

// A notification PostgreSQL delivers while pgmux's query behind a PREPARE runs comes with that query's reply: it is
// the client's (LISTEN pins it to the server), as directly, where the idle session gets it at once.
TEST_CASE("a notification arriving with pgmux's query behind a PREPARE reaches the client") {
  TwoServers f("txp_sqlprep_notify");
  PgConn conn = connect(f.ci);
  exec(conn.get(), "LISTEN pgmux_capture");
  PgConn locker = lock_prepared_statements(f.db);
  exec(conn.get(), "PREPARE plus AS SELECT $1::int + 1");
  if (!direct_mode()) REQUIRE(!waiting_backend(locker.get(), f.db).empty());
  PgConn notifier = connect(app_conninfo(cluster_ports().primary, f.db));
  exec(notifier.get(), "NOTIFY pgmux_capture, 'hello'");
  exec(locker.get(), "ROLLBACK");
  std::string payload;
  routing::wait_until(
      [&] {
        PQconsumeInput(conn.get());
        PGnotify* n = PQnotifies(conn.get());
        if (n) payload = n->extra;
        if (n) PQfreemem(n);
        return n != nullptr;
      },
      5.0);
  CHECK(payload == "hello");
}

// A cancel request while the client waits for nothing is ignored, as PostgreSQL ignores one for an idle backend,
// although pgmux's query behind the client's PREPARE is still running (here waiting for a lock): cancelled, its
// types went unread (and a request the client sent next, queued behind it, could be hit instead).
TEST_CASE("a cancel sent while the client is idle is ignored, while pgmux reads a PREPARE's types") {
  TwoServers f("txp_sqlprep_idle_cancel");
  PgConn owner = connect(app_conninfo(cluster_ports().primary, f.db));
  exec(owner.get(), "CREATE TABLE t (id int, v int)");
  PgConn locker = lock_prepared_statements(f.db);
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE ins AS INSERT INTO t VALUES ($1, $2)");
  if (!direct_mode()) REQUIRE(!waiting_backend(locker.get(), f.db).empty());
  PGcancel* cancel = PQgetCancel(conn.get());
  char error[256] = {0};
  CHECK(PQcancel(cancel, error, sizeof error) == 1);
  PQfreeCancel(cancel);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the cancel has reached PostgreSQL, if sent
  exec(locker.get(), "ROLLBACK");
  CHECK(exec_sqlstate(conn.get(), "SELECT pg_sleep(0.1)") == "");
  exec(owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  exec(conn.get(), "EXECUTE ins(1, 7.5)");
  CHECK(scalar(owner.get(), "SELECT string_agg(id || '=' || v, ' ') FROM t") == "1=8");
}

// A client that leaves while pgmux's query behind its PREPARE is still running (here waiting for a lock) leaves no
// request of its own there: its server finishes that query, is reset and serves others (before, it was closed,
// "mid-request": a new login for the next client). pgmux's own query: nothing to compare directly.
TEST_CASE("a server whose client left during pgmux's query behind a PREPARE is reset, not closed") {
  if (direct_mode()) return;
  TwoServers f("txp_sqlprep_left");
  PgConn locker = lock_prepared_statements(f.db);
  PgConn conn = connect(f.ci);
  exec(conn.get(), "PREPARE plus AS SELECT $1::int + 1");
  const std::string pid = waiting_backend(locker.get(), f.db);
  REQUIRE(!pid.empty());
  conn.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // pgmux hears the client go
  exec(locker.get(), "ROLLBACK");
  const std::string last_query = "SELECT state || ': ' || query FROM pg_stat_activity WHERE pid = " + pid;
  std::string seen;
  routing::wait_until([&] { return (seen = scalar(locker.get(), last_query)) == "idle: DISCARD ALL"; }, 5.0);
  CHECK(seen == "idle: DISCARD ALL");
  PgConn next = connect(f.ci);
  CHECK(scalar(next.get(), "SELECT count(*) FROM pg_prepared_statements") == "0");
}

