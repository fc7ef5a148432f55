// Per-request routing inside one session: autocommit reads on standbys, read-only transactions on a standby,
// other transactions on the primary, the primary hint, temp-table pinning, SET replayed to the standby, named
// prepared statements before and after writes, and libpq pipelines mixing reads and writes.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_session";

struct Fixture {
  ClusterPorts ports = cluster_ports();
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;

  Fixture() : proxy(make_config(), listen) {
    ci = proxy.conninfo("app", "app", kDb);
    recreate_database(ports, kDb);
    PgConn p = admin(ports.primary, kDb);
    exec(p.get(), "CREATE TABLE items (id serial PRIMARY KEY, v int) ; ALTER TABLE items OWNER TO app");
    REQUIRE(wait_replayed(ports, 20));
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }
  ~Fixture() {
    try {
      drop_database(ports, kDb);
    } catch (...) {
    }
  }
  std::string make_config() const { return routing_config(listen, ports).dump(); }
  bool standby(int port) const { return port == ports.standby1 || port == ports.standby2; }
};

// Routing is pgmux's: with PGMUX_TEST_DIRECT=1 there is nothing to check against a bare server.
bool skip_in_direct_mode() {
  if (!direct_mode()) return false;
  MESSAGE("PGMUX_TEST_DIRECT=1: routing is pgmux's; nothing to check against a bare server");
  return true;
}

}  // namespace

TEST_CASE("session routing: autocommit reads land on standbys, both of them") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  std::set<int> seen;
  for (int i = 0; i < 20; ++i) {
    int port = fresh_read_port(f.ci);
    CHECK(f.standby(port));
    seen.insert(port);
  }
  CHECK(seen.size() == 2);
  PgConn conn = connect(f.ci);
  for (int i = 0; i < 20; ++i) CHECK(f.standby(server_port(conn.get())));
}

TEST_CASE("session routing: read-only transactions run on a standby, others on the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  for (const char* begin : {"BEGIN READ ONLY", "START TRANSACTION READ ONLY",
                            "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"}) {
    CAPTURE(begin);
    exec(conn.get(), begin);
    CHECK(f.standby(server_port(conn.get())));
    CHECK(scalar(conn.get(), "SELECT count(*) FROM items") == "0");
    exec(conn.get(), "COMMIT");
  }
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "SET TRANSACTION READ ONLY");
  CHECK(f.standby(server_port(conn.get())));
  CHECK(scalar(conn.get(), "SELECT current_setting('transaction_read_only')") == "on");
  exec(conn.get(), "COMMIT");

  exec(conn.get(), "BEGIN");
  CHECK(server_port(conn.get()) == f.ports.primary);
  exec(conn.get(), "COMMIT");
  exec(conn.get(), "START TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  CHECK(server_port(conn.get()) == f.ports.primary);
  exec(conn.get(), "ROLLBACK");
  // Back to autocommit: a standby again (read-your-writes may hold reads on the primary for a probe round or
  // two after the read-write transaction, even though it wrote nothing).
  const int right_after = server_port(conn.get());
  MESSAGE("first autocommit read after BEGIN/COMMIT and a rolled-back transaction: "
          << (right_after == f.ports.primary ? "primary" : "standby"));
  CHECK(wait_until([&] { return f.standby(server_port(conn.get())); }, 3, 0.05));
}

// In a failed read-only block on a standby PostgreSQL refuses every statement but ROLLBACK / COMMIT (25P02): a
// string with a session command there ran nothing. pgmux ended the session (08006, "cannot tell which session
// settings a transaction on standby ... left in place"). From a black-box hunt.
TEST_CASE("session routing: a session command refused in a failed read-only block on a standby") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  const std::string default_path = scalar(conn.get(), "SHOW search_path");
  exec(conn.get(), "BEGIN READ ONLY");
  CHECK(f.standby(server_port(conn.get())));
  CHECK(exec_sqlstate(conn.get(), "SELECT 1/0") == "22012");
  CHECK(exec_sqlstate(conn.get(), "SET search_path = x; BEGIN") == "25P02");
  exec(conn.get(), "ROLLBACK");
  CHECK(scalar(conn.get(), "SHOW search_path") == default_path);
}

// PostgreSQL lets a read-only block turn read-write before its first query: pgmux holds a read-only BEGIN back like a
// plain one, and SET TRANSACTION READ WRITE behind it takes the block to the primary. Before, the BEGIN had gone to
// a standby at once, which refused the SET (0A000 "cannot set transaction read-write mode during recovery").
TEST_CASE("session routing: SET TRANSACTION READ WRITE right after a read-only BEGIN runs the block on the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  // Read-only blocks stay on a standby (checked before anything is written: a read after a commit may be held on
  // the primary until the standbys replayed it).
  for (const char* begin : {"BEGIN READ ONLY", "START TRANSACTION READ ONLY"}) {
    CAPTURE(begin);
    exec(conn.get(), begin);
    CHECK(f.standby(server_port(conn.get())));
    exec(conn.get(), "COMMIT");
  }
  exec(conn.get(), "SET default_transaction_read_only = on");  // a read-only session: a plain BEGIN is read-only
  exec(conn.get(), "BEGIN");
  CHECK(f.standby(server_port(conn.get())));
  exec(conn.get(), "COMMIT");
  exec(conn.get(), "RESET default_transaction_read_only");
  for (const char* begin : {"BEGIN READ ONLY", "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"}) {
    CAPTURE(begin);
    exec(conn.get(), begin);
    exec(conn.get(), "SET TRANSACTION READ WRITE");
    CHECK(server_port(conn.get()) == f.ports.primary);
    exec(conn.get(), "INSERT INTO items (v) VALUES (1)");
    exec(conn.get(), "COMMIT");
  }
  // The other way round: a BEGIN READ WRITE stays on the primary (a standby would refuse it) whatever follows.
  exec(conn.get(), "BEGIN READ WRITE");
  exec(conn.get(), "SET TRANSACTION READ ONLY");
  CHECK(server_port(conn.get()) == f.ports.primary);
  exec(conn.get(), "COMMIT");
  // A read-only session: a plain BEGIN is read-only; SET TRANSACTION READ WRITE takes it to the primary.
  exec(conn.get(), "SET default_transaction_read_only = on");
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "SET TRANSACTION READ WRITE");
  exec(conn.get(), "INSERT INTO items (v) VALUES (2)");
  exec(conn.get(), "COMMIT");
  exec(conn.get(), "RESET default_transaction_read_only");
  PgConn direct = connect(conninfo(f.ports.primary, "app", "app", kDb));
  CHECK(scalar(direct.get(), "SELECT count(*) FROM items") == "3");
}

TEST_CASE("session routing: the pgmux:primary hint forces the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  for (const char* sql : {"/* pgmux:primary */ SELECT inet_server_port()",
                          "SELECT inet_server_port() /* pgmux:primary */",
                          "-- pgmux:primary\nSELECT inet_server_port()"}) {
    CAPTURE(sql);
    CHECK(server_port(conn.get(), sql) == f.ports.primary);
  }
  CHECK(f.standby(server_port(conn.get())));  // only that statement
}

TEST_CASE("session routing: a temp table pins the session to the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  CHECK(f.standby(server_port(conn.get())));
  exec(conn.get(), "CREATE TEMP TABLE scratch (a int)");
  exec(conn.get(), "INSERT INTO scratch VALUES (1), (2)");
  for (int i = 0; i < 10; ++i) {
    CHECK(server_port(conn.get()) == f.ports.primary);
    CHECK(scalar(conn.get(), "SELECT count(*) FROM scratch") == "2");
  }
}

// The same for a temporary table made without TEMP: named in pg_temp, or created while the search_path names pg_temp
// (set inside a read-only block a standby ran: the SET lasts, and the primary's CREATEs make temporary tables).
// Reads of it went to a standby: 42P01 there. From a black-box hunt.
TEST_CASE("session routing: a temp table made without TEMP pins the session to the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  const std::vector<std::vector<std::string>> ways = {
      {"CREATE TABLE pg_temp.scratch (a int)"},
      {"BEGIN READ ONLY", "SELECT count(*) FROM items", "SET search_path = pg_temp, public", "COMMIT",
       "CREATE TABLE scratch (a int)"}};
  for (const std::vector<std::string>& way : ways) {
    CAPTURE(way.front());
    PgConn conn = connect(f.ci);
    for (const std::string& sql : way) exec(conn.get(), sql);
    exec(conn.get(), "INSERT INTO scratch VALUES (1), (2)");
    // Right after DDL the function catalog reloads and reads go to the primary anyway: the reason tells.
    PgResult route(PQexec(conn.get(), "EXPLAIN ROUTE SELECT count(*) FROM scratch"));
    REQUIRE(PQresultStatus(route.get()) == PGRES_TUPLES_OK);
    CHECK(std::string(PQgetvalue(route.get(), 0, PQfnumber(route.get(), "route_reason"))) == "pinned");
    for (int i = 0; i < 10; ++i) {
      CHECK(server_port(conn.get()) == f.ports.primary);
      CHECK(scalar(conn.get(), "SELECT count(*) FROM scratch") == "2");
    }
  }
}

TEST_CASE("session routing: SET is replayed to the standby the reads use") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  CHECK(f.standby(server_port(conn.get())));  // take the standby connection first
  exec(conn.get(), "SET statement_timeout = '12345ms'");
  exec(conn.get(), "SET rt.flag = 'on-both'");
  PgResult r = exec(conn.get(),
                    "SELECT inet_server_port(), current_setting('statement_timeout'), current_setting('rt.flag')");
  CHECK(f.standby(std::atoi(PQgetvalue(r.get(), 0, 0))));
  CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "12345ms");
  CHECK(std::string(PQgetvalue(r.get(), 0, 2)) == "on-both");
  // And before any standby connection was taken.
  PgConn second = connect(f.ci);
  exec(second.get(), "SET application_name = 'rt-session'");
  PgResult r2 = exec(second.get(), "SELECT inet_server_port(), current_setting('application_name')");
  CHECK(f.standby(std::atoi(PQgetvalue(r2.get(), 0, 0))));
  CHECK(std::string(PQgetvalue(r2.get(), 0, 1)) == "rt-session");
  // The primary got it too.
  PgResult r3 = exec(second.get(), "/* pgmux:primary */ SELECT current_setting('application_name')");
  CHECK(std::string(PQgetvalue(r3.get(), 0, 0)) == "rt-session");
}

TEST_CASE("session routing: named prepared statements, before and after writes") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  auto exec_rd = [&](int i) {
    const std::string v = std::to_string(i);
    const char* params[] = {v.c_str()};
    PgResult r(PQexecPrepared(conn.get(), "rd", 1, params, nullptr, nullptr, 0));
    REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(r.get()));
    CHECK(std::atoi(PQgetvalue(r.get(), 0, 1)) == i + 1);
    return std::atoi(PQgetvalue(r.get(), 0, 0));
  };
  PgResult pr(PQprepare(conn.get(), "rd", "SELECT inet_server_port(), $1::int + 1", 1, nullptr));
  REQUIRE_MESSAGE(PQresultStatus(pr.get()) == PGRES_COMMAND_OK, PQresultErrorMessage(pr.get()));
  for (int i = 0; i < 20; ++i) CHECK(f.standby(exec_rd(i)));  // no write yet: a standby every time

  PgResult pw(PQprepare(conn.get(), "wr", "INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", 1,
                        nullptr));
  REQUIRE_MESSAGE(PQresultStatus(pw.get()) == PGRES_COMMAND_OK, PQresultErrorMessage(pw.get()));
  // Preparing a write runs nothing; where the next reads go shows whether pgmux counted it as a write.
  int after_parse_on_primary = 0;
  for (int i = 0; i < 5; ++i) after_parse_on_primary += exec_rd(i) == f.ports.primary;
  MESSAGE("reads right after preparing (not executing) an INSERT: " << after_parse_on_primary
                                                                    << " of 5 on the primary");

  int on_standby = 0;
  int on_primary = 0;
  for (int i = 0; i < 60; ++i) {
    const int port = exec_rd(i);
    on_standby += f.standby(port);
    on_primary += port == f.ports.primary;
    if (i % 10 == 9) {  // a write through the other prepared statement, then a plain one
      const std::string v = std::to_string(i);
      const char* params[] = {v.c_str()};
      PgResult w(PQexecPrepared(conn.get(), "wr", 1, params, nullptr, nullptr, 0));
      REQUIRE_MESSAGE(PQresultStatus(w.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(w.get()));
      CHECK(std::atoi(PQgetvalue(w.get(), 0, 0)) == f.ports.primary);
      exec(conn.get(), "INSERT INTO items (v) VALUES (-1)");
    }
  }
  MESSAGE("prepared reads among writes: " << on_standby << " on standbys, " << on_primary << " on the primary");
  CHECK(on_standby + on_primary == 60);
  // Read-your-writes over: the statement prepared on both servers runs on a standby again.
  CHECK(wait_until([&] { return f.standby(exec_rd(1)); }, 5, 0.05));
  PgConn p = admin(f.ports.primary, kDb);
  CHECK(scalar(p.get(), "SELECT count(*) FROM items") == "12");
  exec(conn.get(), "DEALLOCATE rd");
  PgResult gone(PQexecPrepared(conn.get(), "rd", 0, nullptr, nullptr, nullptr, 0));
  CHECK(sqlstate(gone.get()) == "26000");
}

// A write pipelined behind a read-only block's COMMIT (each request its own Sync) runs after the block, on the
// primary, as on PostgreSQL; it went to the standby, still running the block when it was routed, and failed (25006).
TEST_CASE("session routing: a write pipelined behind a read-only block's COMMIT runs on the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  for (const char* sql : {"BEGIN READ ONLY", "SELECT count(*) FROM items", "COMMIT",
                          "INSERT INTO items (v) VALUES (77) RETURNING v"}) {
    REQUIRE(PQsendQueryParams(conn.get(), sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
  }
  CHECK(pipeline_results(conn.get(), 4) ==
        "PGRES_COMMAND_OK \nPGRES_PIPELINE_SYNC \nPGRES_TUPLES_OK  0\nPGRES_PIPELINE_SYNC \nPGRES_COMMAND_OK \n"
        "PGRES_PIPELINE_SYNC \nPGRES_TUPLES_OK  77\nPGRES_PIPELINE_SYNC \n");
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  PgConn p = admin(f.ports.primary, kDb);
  CHECK(scalar(p.get(), "SELECT count(*) FROM items WHERE v = 77") == "1");
}

TEST_CASE("session routing: pipeline mode mixing reads and writes") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  REQUIRE(PQsendPrepare(conn.get(), "pr", "SELECT inet_server_port(), $1::int", 1, nullptr) == 1);
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    const std::string v = std::to_string(i);
    const char* params[] = {v.c_str()};
    REQUIRE(PQsendQueryParams(conn.get(), "SELECT inet_server_port(), $1::int", 1, nullptr, params, nullptr,
                              nullptr, 0) == 1);
    REQUIRE(PQsendQueryParams(conn.get(), "INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", 1,
                              nullptr, params, nullptr, nullptr, 0) == 1);
    REQUIRE(PQsendQueryPrepared(conn.get(), "pr", 1, params, nullptr, nullptr, 0) == 1);
    if (i % 5 == 4) REQUIRE(PQpipelineSync(conn.get()) == 1);
  }
  // Expected: 1 prepare + 3 per round, each followed by a NULL; a PIPELINE_SYNC per sync.
  int tuples = 0, commands = 0, syncs = 0, errors = 0, write_on_primary = 0;
  const double deadline = now_seconds() + 20;
  while (syncs < kRounds / 5 && now_seconds() < deadline) {
    PGresult* raw = PQgetResult(conn.get());
    if (!raw) continue;  // end of one query's results
    PgResult r(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_TUPLES_OK:
        ++tuples;
        if (std::string(PQfname(raw, 0)) == "inet_server_port" && PQnfields(raw) == 1) {
          write_on_primary += std::atoi(PQgetvalue(raw, 0, 0)) == f.ports.primary;
        }
        break;
      case PGRES_COMMAND_OK: ++commands; break;
      case PGRES_PIPELINE_SYNC: ++syncs; break;
      default:
        ++errors;
        MESSAGE("pipeline error: " << PQresultErrorMessage(raw));
        break;
    }
  }
  CHECK(syncs == kRounds / 5);
  CHECK(errors == 0);
  CHECK(commands == 1);
  CHECK(tuples == 3 * kRounds);
  CHECK(write_on_primary == kRounds);
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  PgConn p = admin(f.ports.primary, kDb);
  CHECK(scalar(p.get(), "SELECT count(*) FROM items") == std::to_string(kRounds));
  CHECK(scalar(conn.get(), "SELECT 1") == "1");
}

// The unnamed statement's Parse skipped by PostgreSQL (an error earlier in its batch) or failing itself, and a
// Bind of it pipelined behind that batch, with reads on the standbys: the Bind runs what a direct connection to the
// primary runs (the earlier statement, or 26000), in session and in transaction pooling.
TEST_CASE("session routing: a pipelined use of the unnamed statement after a skipped or failed Parse of it") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  for (const std::string mode : {"session", "transaction"}) {
    CAPTURE(mode);
    nlohmann::json config = routing_config(pick_listen_port(), f.ports);
    const int listen = config["listeners"][0]["port"];
    for (auto& database : config["databases"]) database["pool_mode"] = mode;
    ProxyUnderTest proxy(config.dump(), listen);
    for (const std::string own : {"", "SELECT 'own'::text"}) {
      for (bool bad : {false, true}) {
        if (bad && own.empty()) continue;
        CAPTURE(own);
        CAPTURE(bad);
        PgConn direct = connect(conninfo(f.ports.primary, "app", "app", kDb));
        PgConn via = connect(proxy.conninfo("app", "app", kDb));
        CHECK(unnamed_use_after_skipped_parse(via.get(), own, bad) ==
              unnamed_use_after_skipped_parse(direct.get(), own, bad));
        CHECK(scalar(via.get(), "SELECT 'still serving'") == "still serving");
      }
    }
  }
}

namespace {

// Each statement's outcome ("ok", its first value, or its SQLSTATE), then the rows the sequences wrote. A statement
// given as "@primary:SQL" runs on a connection of its own straight to the primary, for what others see there.
std::string transcript_of(const std::string& ci, const std::vector<std::vector<std::string>>& sequences,
                          int primary_port) {
  std::string out;
  PgConn conn = connect(ci);
  PgConn direct = connect(conninfo(primary_port, "app", "app", kDb));
  constexpr std::string_view kOnPrimary = "@primary:";
  for (const std::vector<std::string>& sequence : sequences) {
    for (const std::string& sql : sequence) {
      const bool on_primary = sql.starts_with(kOnPrimary);
      PgResult res(PQexec(on_primary ? direct.get() : conn.get(), sql.c_str() + (on_primary ? kOnPrimary.size() : 0)));
      const ExecStatusType status = PQresultStatus(res.get());
      out += status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? "ok" : sqlstate(res.get());
      if (status == PGRES_TUPLES_OK && PQntuples(res.get()) > 0) out += std::string(":") + PQgetvalue(res.get(), 0, 0);
      out += "; ";
    }
    out += "\n";
  }
  out += scalar(direct.get(), "SELECT string_agg(v::text, ',' ORDER BY v) FROM items");
  exec(direct.get(), "TRUNCATE items");
  return out;
}

}  // namespace

// The transaction's own settings behind a deferred BEGIN, as PostgreSQL takes them: SET transaction_read_only or
// transaction_isolation (a standby refuses read-write and SERIALIZABLE), SET SESSION CHARACTERISTICS (the next
// transactions', not this one's), commands a read-only block runs on the primary only (NOTIFY, LOCK, ANALYZE), write
// functions (an advisory lock, txid_current), a WITH HOLD cursor, and the primary hint on a read-only BEGIN.
// Before, each of these blocks went to a standby, which refused them, or (SESSION CHARACTERISTICS) refused the
// block's INSERT.
TEST_CASE("session routing: a transaction's own settings and primary-only commands after a deferred BEGIN") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  // First those that write nothing: after a commit, reads may be held on the primary until the standbys replay it
  // (and each that pgmux runs on the primary counts as one), so the earlier ones went to a standby before the fix.
  const std::vector<std::vector<std::string>> sequences = {
      // A WITH HOLD cursor that outlives its block; the primary hint on the BEGIN; an advisory lock others see.
      {"BEGIN READ ONLY", "DECLARE h CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 5) g", "COMMIT",
       "FETCH 2 FROM h", "CLOSE h"},
      {"BEGIN READ ONLY /* pgmux:primary */", "SELECT pg_is_in_recovery()", "COMMIT"},
      {"BEGIN READ ONLY", "SELECT pg_advisory_xact_lock(77)",
       "@primary:SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 77", "COMMIT"},
      {"BEGIN READ ONLY", "NOTIFY rt_session_channel", "COMMIT"},
      {"BEGIN READ ONLY", "LOCK TABLE items IN ACCESS EXCLUSIVE MODE", "COMMIT"},
      {"BEGIN READ ONLY", "ANALYZE items", "COMMIT"},
      {"BEGIN READ ONLY", "SELECT txid_current() > 0", "COMMIT"},  // an xid: a commit that writes
      {"BEGIN READ ONLY", "SET transaction_read_only = off", "INSERT INTO items (v) VALUES (10)", "COMMIT"},
      {"BEGIN READ ONLY", "SET LOCAL transaction_read_only TO off", "INSERT INTO items (v) VALUES (11)", "COMMIT"},
      {"BEGIN READ ONLY", "SET transaction_isolation = 'serializable'", "SELECT 1", "COMMIT"},
      {"BEGIN", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "INSERT INTO items (v) VALUES (12)", "COMMIT",
       "INSERT INTO items (v) VALUES (13)", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"},
      {"BEGIN", "SET transaction_read_only = on", "INSERT INTO items (v) VALUES (14)", "ROLLBACK"},
      {"INSERT INTO items (v) VALUES (15)"},  // the session is read-write again
      {"BEGIN READ ONLY", "SET TRANSACTION READ WRITE", "INSERT INTO items (v) VALUES (16)", "COMMIT"},
  };
  const std::string direct = transcript_of(conninfo(f.ports.primary, "app", "app", kDb), sequences, f.ports.primary);
  CHECK(direct.find("10,11,12,15,16") != std::string::npos);
  for (const std::string mode : {"session", "transaction"}) {
    CAPTURE(mode);
    const int listen = pick_listen_port();
    nlohmann::json config = routing_config(listen, f.ports);
    config["databases"].push_back({{"name", kDb}, {"pool_mode", mode}, {"pool_size", 10}});
    ProxyUnderTest proxy(config.dump(), listen);
    const std::string ci = proxy.conninfo("app", "app", kDb);
    REQUIRE(wait_ports_serving(ci, {f.ports.standby1, f.ports.standby2}, 20));
    CHECK(transcript_of(ci, sequences, f.ports.primary) == direct);
  }
}

// A sequence a Flush opens with nothing in it (libpq's PQsendFlushRequest alone, or a Close and a Flush) goes on to
// its Sync on the same server, where an INSERT may follow: on the primary, even when the session's last read ran
// on a standby (a review found 4b4f43d's opener, no longer taken for a write, following that standby: 25006).
TEST_CASE("session routing: a write behind an empty sequence opened by a Flush runs on the primary") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  REQUIRE(f.standby(server_port(conn.get())));
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  REQUIRE(PQsendFlushRequest(conn.get()) == 1);
  REQUIRE(PQflush(conn.get()) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the Flush alone, a request of its own
  REQUIRE(PQsendQueryParams(conn.get(), "INSERT INTO items (v) VALUES (7)", 0, nullptr, nullptr, nullptr, nullptr,
                            0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  const std::string results = pipeline_results(conn.get(), 1);
  CHECK_MESSAGE(results.find("PGRES_COMMAND_OK") != std::string::npos, results);
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  PgConn direct = connect(conninfo(f.ports.primary, "app", "app", kDb));
  CHECK(scalar(direct.get(), "SELECT count(*) FROM items WHERE v = 7") == "1");
}

// The same with a read that opens the sequence, pipelined behind a read the standby still owes a reply to: the
// sequence starts on the primary once the standby has answered (it followed the standby before, and the INSERT
// later in that sequence got 25006 there).
TEST_CASE("session routing: a read opening a sequence behind a standby's pipelined read, then a write in it") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  REQUIRE(f.standby(server_port(conn.get())));
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  REQUIRE(PQsendQueryParams(conn.get(), "SELECT count(*) FROM items", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  REQUIRE(PQsendQueryParams(conn.get(), "SELECT 1", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendFlushRequest(conn.get()) == 1);
  REQUIRE(PQsendQueryParams(conn.get(), "INSERT INTO items (v) VALUES (8)", 0, nullptr, nullptr, nullptr, nullptr,
                            0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  REQUIRE(PQflush(conn.get()) == 0);
  const std::string results = pipeline_results(conn.get(), 2);
  CHECK_MESSAGE(results.find("ERROR") == std::string::npos, results);
  CHECK_MESSAGE(results.find("FATAL") == std::string::npos, results);
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  PgConn direct = connect(conninfo(f.ports.primary, "app", "app", kDb));
  CHECK(scalar(direct.get(), "SELECT count(*) FROM items WHERE v = 8") == "1");
}

// psycopg's pipeline mode evicts its statement cache with a DEALLOCATE among other statements: it runs on the
// primary, and pgmux replayed it from the session log on the standby the next read used, where the statement was
// never parsed: "could not restore session setting", and the session ended (FATAL).
TEST_CASE("session routing: a DEALLOCATE among other statements of a statement made with Parse") {
  if (skip_in_direct_mode()) return;
  Fixture f;
  PgConn conn = connect(f.ci);
  const std::vector<std::string> deallocates = {"SELECT 2; DEALLOCATE s1", "DEALLOCATE s1; SELECT 2"};
  for (const std::string& deallocate : deallocates) {
    CAPTURE(deallocate);
    exec(conn.get(), "INSERT INTO items (v) VALUES (1)");  // reads stay on the primary a moment: s1 is parsed there
    PgResult made(PQprepare(conn.get(), "s1", "SELECT inet_server_port()", 0, nullptr));
    REQUIRE_MESSAGE(PQresultStatus(made.get()) == PGRES_COMMAND_OK, PQresultErrorMessage(made.get()));
    PgResult ran(PQexecPrepared(conn.get(), "s1", 0, nullptr, nullptr, nullptr, 0));
    REQUIRE_MESSAGE(PQresultStatus(ran.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(ran.get()));
    exec(conn.get(), deallocate.c_str());
    int port = 0;
    const bool on_standby = wait_until(
        [&] {
          PgResult r(PQexec(conn.get(), "SELECT inet_server_port()"));
          port = PQresultStatus(r.get()) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r.get(), 0, 0)) : -1;
          return port < 0 || f.standby(port);
        },
        10, 0.05);
    CHECK_MESSAGE(port > 0, PQerrorMessage(conn.get()));
    CHECK(on_standby);
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
    PgResult gone(PQexecPrepared(conn.get(), "s1", 0, nullptr, nullptr, nullptr, 0));
    CHECK(sqlstate(gone.get()) == "26000");
  }
}
