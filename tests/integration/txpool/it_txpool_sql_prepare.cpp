// SQL-level prepared statements (PREPARE / EXECUTE / DEALLOCATE) in transaction pooling: pooled, not pinned.
// Eight clients share two server connections, each with its own statement of the same name, re-prepared now
// and then with another text, run in autocommit and inside transactions: every EXECUTE must run the client's
// own current statement. Were SQL PREPARE still pinning, the third client would wait for a server until
// query_wait_timeout. Once on the primary alone, once with the read/write split on. The error cases (42P05,
// 26000, non-transactional PREPARE, EXPLAIN EXECUTE, extended protocol) are compared with PostgreSQL itself by
// the differential test's sql_prepare script.
#include <doctest/doctest.h>

#include <atomic>
#include <string>

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

}  // namespace

TEST_CASE("SQL prepared statements are pooled in transaction mode: each client runs its own") {
  SUBCASE("primary only") { check_pooled(false); }
  SUBCASE("read/write split") { check_pooled(true); }
}

TEST_CASE("a failed multi-statement string that prepared a statement keeps the client on its server") {
  const std::string db = "txp_sqlprep_fail";
  fresh_database(db);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 2).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  PgConn conn = connect(ci);
  // PREPARE ran, then the string failed: which of its statements ran is not visible to pgmux.
  PgResult failed(PQexec(conn.get(), "PREPARE kept AS SELECT 'kept' AS k; SELECT 1/0"));
  CHECK(PQresultStatus(failed.get()) == PGRES_FATAL_ERROR);
  CHECK(scalar(conn.get(), "EXECUTE kept") == "kept");
  PgConn other = connect(ci);
  CHECK(scalar(other.get(), "SELECT 1") == "1");  // the second server still serves others
  if (proxy.process()) {
    const std::string log = proxy.process()->full_log();
    INFO(log);
    CHECK(log.find("pinned to its server (SQL PREPARE)") != std::string::npos);
  }
  drop_database_quietly(db);
}

// PostgreSQL fixes the parameter types of an SQL PREPARE when it runs. pgmux prepares the statement again on each
// server a later EXECUTE runs on (the one it ran on was reset when given back), which would infer them anew: after
// ALTER COLUMN ... TYPE real the argument 7.5 was stored as 7.5, where PostgreSQL rounds it to the int4 the PREPARE
// fixed (8). pgmux reads the types right behind the PREPARE and spells them out. Directly: the same answers.
TEST_CASE("an SQL PREPARE keeps the parameter types PostgreSQL inferred, after ALTER COLUMN TYPE too") {
  const std::string db = "txp_sqlprep_types";
  fresh_database(db);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 2).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  PgConn owner = connect(app_conninfo(cluster_ports().primary, db));
  exec(owner.get(), "CREATE TABLE t (id int, v int)");
  PgConn conn = connect(ci);
  exec(conn.get(), "PREPARE ins AS INSERT INTO t VALUES ($1, $2)");
  exec(conn.get(), "PREPARE \"Typed\" (int, real) AS INSERT INTO t VALUES ($1, $2)");  // its own types stay
  exec(owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  exec(conn.get(), "EXECUTE ins(1, 7.5)");
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "EXECUTE ins(2, 7.5)");
  exec(conn.get(), "EXECUTE \"Typed\"(3, 7.5)");
  exec(conn.get(), "COMMIT");
  CHECK(scalar(owner.get(), "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM t") == "1=8 2=8 3=7.5");
  CHECK(scalar(conn.get(), "SELECT string_agg(name || parameter_types::text, ' ' ORDER BY name) "
                           "FROM pg_prepared_statements") == "Typed{integer,real} ins{integer,integer}");
  owner.reset();
  drop_database_quietly(db);
}
