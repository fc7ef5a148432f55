// Temporary tables in transaction mode: the client that creates one is pinned to its server connection and
// keeps seeing the table (and the same backend) across transactions; 20 other clients sharing the pool (3)
// meanwhile never see it, nor after the owner disconnects. Also: no pinned state (temp table, session advisory
// lock, SQL prepared statement, WITH HOLD cursor, LISTEN) outlives its client on a pool of 1.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_temp";

// NULL (empty) unless this session has a temporary table named tt_pin.
const char* const kProbe = "SELECT coalesce(to_regclass('pg_temp.tt_pin')::text, '')";

}  // namespace

TEST_CASE("a temp table pins its client and is never visible to another") {
  fresh_database(kDb);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, kDb, 3).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);

  PgConn owner = connect(ci);
  exec(owner.get(), "CREATE TEMP TABLE tt_pin (v int)");
  exec(owner.get(), "INSERT INTO tt_pin VALUES (1)");
  const std::string owner_pid = scalar(owner.get(), "SELECT pg_backend_pid()");

  std::atomic<bool> stop{false};
  std::atomic<long> probes{0};
  std::thread others_thread;
  std::string others_failure;
  others_thread = std::thread([&] {
    others_failure = run_threads(20, [&](int t) {
      PgConn conn = connect(ci);
      for (int n = 0; n < 2000 && !stop; ++n) {
        std::string seen = (n % 2 == 0) ? scalar(conn.get(), kProbe) : "";
        if (n % 2 == 1) {
          exec(conn.get(), "BEGIN");
          seen = scalar(conn.get(), kProbe);
          exec(conn.get(), "COMMIT");
        }
        probes++;
        if (!seen.empty()) throw std::runtime_error("client " + std::to_string(t) + " sees " + seen);
        if (scalar(conn.get(), "SELECT pg_backend_pid()") == owner_pid) {
          throw std::runtime_error("client " + std::to_string(t) + " got the pinned owner's server connection");
        }
      }
    });
  });

  std::string owner_failure;
  try {
    // At least 100 rounds, and on until the others have probed plenty (they connect slower than it runs).
    const double until = routing::now_seconds() + 10;
    for (int round = 0; round < 100 || (probes < 1000 && routing::now_seconds() < until); ++round) {
      if (round % 2 == 0) {
        exec(owner.get(), "BEGIN");
        exec(owner.get(), "INSERT INTO tt_pin VALUES (" + std::to_string(round) + ")");
        exec(owner.get(), "COMMIT");
      } else {
        if (scalar(owner.get(), "SELECT pg_backend_pid()") != owner_pid) {
          throw std::runtime_error("owner moved to another server connection in round " + std::to_string(round));
        }
        const std::string rows = scalar(owner.get(), "SELECT count(*) FROM tt_pin");
        if (rows != std::to_string(1 + (round + 1) / 2)) {
          throw std::runtime_error("owner sees " + rows + " rows in round " + std::to_string(round));
        }
      }
    }
  } catch (const std::exception& e) {
    owner_failure = e.what();
  }
  stop = true;
  others_thread.join();
  MESSAGE(probes.load() << " probes by other clients");
  CHECK_MESSAGE(owner_failure.empty(), owner_failure);
  CHECK_MESSAGE(others_failure.empty(), others_failure);
  CHECK(probes.load() >= 1000);

  // Gone for good once the owner leaves: every server the pool hands out is clean.
  owner.reset();
  std::string after = run_threads(6, [&](int t) {
    for (int n = 0; n < 20; ++n) {
      PgConn conn = connect(ci);
      const std::string seen = scalar(conn.get(), kProbe);
      if (!seen.empty()) throw std::runtime_error("new client " + std::to_string(t) + " sees " + seen);
    }
  });
  CHECK_MESSAGE(after.empty(), after);
  if ((!owner_failure.empty() || !others_failure.empty() || !after.empty()) && proxy.process()) {
    MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
  drop_database_quietly(kDb);
}

TEST_CASE("a pinned client's session state does not outlive it") {
  const std::string db = "txp_temp_leave";
  fresh_database(db);
  {
    // Made before pgmux starts, so that its first catalog load lists them (functions that change the session).
    PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", db));
    exec(direct.get(), "CREATE FUNCTION mk_temp() RETURNS void LANGUAGE plpgsql AS "
                       "$$ BEGIN CREATE TEMP TABLE tt_left (v int); END $$");
    exec(direct.get(), "CREATE FUNCTION listen_it() RETURNS void LANGUAGE plpgsql AS "
                       "$$ BEGIN EXECUTE 'listen left_ch'; END $$");
    exec(direct.get(), "CREATE FUNCTION scratch() RETURNS int LANGUAGE plpgsql AS "
                       "$$ BEGIN CREATE TEMP TABLE scratch_rows ON COMMIT DROP AS SELECT 1 AS v; RETURN 1; END $$");
  }
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, db, 1);
  config["workers"] = 1;  // one pool, one server: the next client gets the same server connection
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  const std::string state =
      "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) || ' ' || "
      "(SELECT count(*) FROM pg_prepared_statements) || ' ' || (SELECT count(*) FROM pg_cursors) || ' ' || "
      "(SELECT count(*) FROM pg_listening_channels()) || ' ' || "
      "(to_regclass('pg_temp.tt_left') IS NOT NULL)";
  struct Case {
    const char* what;
    std::vector<std::string> sql;
    bool calls_function = false;  // its effect is known from the function catalog: wait until that is loaded
  };
  // Until pgmux has loaded the database's function catalog (at the first client, once the prober has found the
  // primary; again after DDL), a call is not known to change the session (README: calls during a catalog load).
  const auto wait_catalog_loaded = [](PGconn* conn, const std::string& sql,
                                      const std::string& reason = "function that may change session state") {
    for (int i = 0; i < 100; ++i) {
      PgResult route(PQexec(conn, ("EXPLAIN ROUTE " + sql).c_str()));
      REQUIRE(PQresultStatus(route.get()) == PGRES_TUPLES_OK);
      const int column = PQfnumber(route.get(), "classifier_reason");
      REQUIRE(column >= 0);
      if (PQgetvalue(route.get(), 0, column) == reason) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("EXPLAIN ROUTE " << sql << " did not give '" << reason << "' within 5 s");
  };
  const Case cases[] = {
      {"temp table", {"CREATE TEMP TABLE tt_left (v int)"}},
      {"session advisory lock", {"SELECT pg_advisory_lock(42)"}},
      {"SQL PREPARE", {"PREPARE left_p AS SELECT 1"}},
      {"WITH HOLD cursor", {"BEGIN", "DECLARE left_c CURSOR WITH HOLD FOR SELECT 1", "COMMIT"}},
      {"LISTEN", {"LISTEN left_ch"}},
      // Temporary state made without the TEMP keyword or LISTEN in the statement (from a black-box hunt: the next
      // client read the table, or listened on the channel).
      {"table in pg_temp", {"CREATE TABLE pg_temp.tt_left (v int)"}},
      {"table through search_path", {"SET search_path = pg_temp, public", "CREATE TABLE tt_left (v int)"}},
      {"search_path by set_config",
       {"SELECT set_config('search_path', 'pg_temp, public', false)", "CREATE TABLE tt_left (v int)"}},
      {"table made by a function", {"SELECT mk_temp()"}, true},
      {"LISTEN by a function", {"SELECT listen_it()"}, true},
  };
  for (const Case& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    std::string owner_pid;
    {
      PgConn owner = connect(ci);
      if (c.calls_function && !proxy.direct()) wait_catalog_loaded(owner.get(), c.sql.front());
      for (const std::string& sql : c.sql) exec(owner.get(), sql);
      owner_pid = scalar(owner.get(), "SELECT pg_backend_pid()");
      CHECK(scalar(owner.get(), state) != "0 0 0 0 false");
    }
    PgConn next = connect(ci);
    const std::string pid = scalar(next.get(), "SELECT pg_backend_pid()");
    const std::string seen = scalar(next.get(), state);
    MESSAGE(what << ": next client on " << std::string(pid == owner_pid ? "the same" : "another")
                   << " server sees (advisory prepared cursors listen temp) = " << seen);
    CHECK(seen == "0 0 0 0 false");
    if (seen != "0 0 0 0 false" && !proxy.direct()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
  if (proxy.direct()) {  // PGMUX_TEST_DIRECT=1: pins are pgmux's
    drop_database_quietly(db);
    return;
  }
  // A function whose temporary table is dropped at commit leaves nothing: its callers are not pinned (a hot
  // function doing so would pin every client), where mk_temp's are (pgmux logs each pin).
  const auto pins_logged = [&] {
    const std::string log = proxy.process()->log();
    const std::string line = "pinned to its server";
    size_t count = 0;
    for (size_t at = log.find(line); at != std::string::npos; at = log.find(line, at + 1)) ++count;
    return count;
  };
  for (const std::string call : {"SELECT scratch()", "SELECT mk_temp()"}) {
    CAPTURE(call);
    PgConn caller = connect(ci);
    const bool changes_session = call == "SELECT mk_temp()";
    wait_catalog_loaded(caller.get(), call,
                        changes_session ? "function that may change session state" : "volatile function");
    const size_t before = pins_logged();
    exec(caller.get(), call);
    CHECK(scalar(caller.get(), "SELECT 1") == "1");  // the log line is written before this answer
    CHECK(pins_logged() == before + (changes_session ? 1 : 0));
  }
  drop_database_quietly(db);
}
