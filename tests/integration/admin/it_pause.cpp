// PAUSE and the requests it holds, against the real primary: a held request fails after query_wait_timeout as a
// request waiting for a pool's server does (PgBouncer's held clients meet query_wait_timeout too), SHOW CLIENTS
// and SHOW POOLS count its wait, and a cancel request for the console's waiting PAUSE undoes it (a cancelled
// statement leaves no effect) with 57014. A cancel of a held request is in it_cancel.cpp.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

struct Pausable {
  Pausable() : listen(pick_listen_port()) {
    nlohmann::json config = default_config(listen);
    config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
    config["admin_users"] = nlohmann::json::array({"admin"});
    proxy = std::make_unique<ProxyUnderTest>(config.dump(), listen);
  }
  PgConn console() const { return connect(proxy->conninfo("admin", "admin-secret", "pgmux")); }

  int listen;
  std::unique_ptr<ProxyUnderTest> proxy;
};

// The value of `column` in the row of SHOW CLIENTS whose application_name is `app`, or "" without one.
std::string client_column(PGconn* console, const std::string& app, const std::string& column) {
  PgResult res = exec(console, "SHOW CLIENTS");
  const int app_col = PQfnumber(res.get(), "application_name");
  const int col = PQfnumber(res.get(), column.c_str());
  REQUIRE(app_col >= 0);
  REQUIRE(col >= 0);
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    if (app == PQgetvalue(res.get(), r, app_col)) return PQgetvalue(res.get(), r, col);
  }
  return "";
}

// SHOW DATABASES' "paused" of database `name`.
std::string database_paused(PGconn* console, const std::string& name) {
  PgResult res = exec(console, "SHOW DATABASES");
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    if (name == PQgetvalue(res.get(), r, PQfnumber(res.get(), "name"))) {
      return PQgetvalue(res.get(), r, PQfnumber(res.get(), "paused"));
    }
  }
  return "no such row";
}

// `busy` opens a transaction; the console's `pause` waits for it and is cancelled: the console's error.
std::string cancel_pause_waiting_for(PGconn* console, PGconn* busy, const std::string& pause) {
  exec(busy, "BEGIN");
  exec(busy, "SELECT 1");
  REQUIRE(PQsendQuery(console, pause.c_str()) == 1);
  CHECK_FALSE(wait_readable(console, 0.5));  // waits for busy's transaction
  PGcancel* cancel = PQgetCancel(console);
  REQUIRE(cancel != nullptr);
  char err[256] = {0};
  CHECK(PQcancel(cancel, err, sizeof err) == 1);
  PQfreeCancel(cancel);
  return await_error(console, 3.0);
}

}  // namespace

TEST_CASE("a request held by PAUSE fails with 53300 after query_wait_timeout; SHOW CLIENTS and POOLS count its wait") {
  if (direct_mode()) return;
  Pausable p;
  PgConn admin = p.console();
  PgConn client = connect(p.proxy->app_conninfo() + " application_name=held");
  exec(admin.get(), "SET timeouts.query_wait_timeout = 1.5");
  exec(admin.get(), "PAUSE app");
  CHECK(database_paused(admin.get(), "app") == "1");
  REQUIRE(PQsendQuery(client.get(), "SELECT 42") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  CHECK(std::atof(client_column(admin.get(), "held", "wait").c_str()) +
            std::atof(client_column(admin.get(), "held", "wait_us").c_str()) / 1e6 >= 0.5);
  {  // SHOW POOLS counts it as PgBouncer does: cl_waiting, and its wait in maxwait
    PgResult pools = exec(admin.get(), "SHOW POOLS");
    int row = 0;
    while (row < PQntuples(pools.get()) && std::string("app") != PQgetvalue(pools.get(), row, 0)) ++row;
    REQUIRE(row < PQntuples(pools.get()));
    CHECK(std::string(PQgetvalue(pools.get(), row, PQfnumber(pools.get(), "cl_waiting"))) == "1");
    CHECK(std::atof(PQgetvalue(pools.get(), row, PQfnumber(pools.get(), "maxwait"))) +
              std::atof(PQgetvalue(pools.get(), row, PQfnumber(pools.get(), "maxwait_us"))) / 1e6 >= 0.5);
  }
  const std::string error = await_error(client.get(), 3.0);
  CHECK(error.find("53300") != std::string::npos);
  CHECK(error.find("stayed paused") != std::string::npos);
  exec(admin.get(), "RESUME app");
  CHECK(scalar(client.get(), "SELECT 'resumed'") == "resumed");
}

TEST_CASE("a cancel request for a PAUSE still waiting for a transaction undoes it and answers 57014") {
  if (direct_mode()) return;
  Pausable p;
  PgConn admin = p.console();
  PgConn busy = connect(p.proxy->app_conninfo());
  CHECK(cancel_pause_waiting_for(admin.get(), busy.get(), "PAUSE app").find("57014") != std::string::npos);
  // Undone: a new transaction of another client runs while busy's is still open.
  PgConn other = connect(p.proxy->app_conninfo());
  REQUIRE(PQsendQuery(other.get(), "SELECT 'not held'") == 1);
  if (!wait_readable(other.get(), 2.0)) {
    exec(busy.get(), "COMMIT");  // the PAUSE held on: it answers now; let go before failing, or this would hang
    PgConn again = p.console();
    exec(again.get(), "RESUME app");
    FAIL("a new transaction was still held by the PAUSE");
  }
  PgResult res(PQgetResult(other.get()));
  CHECK(std::string(PQgetvalue(res.get(), 0, 0)) == "not held");
  while (PGresult* r = PQgetResult(other.get())) PQclear(r);
  CHECK(database_paused(admin.get(), "app") == "0");
  exec(busy.get(), "COMMIT");
}

// A cancelled statement leaves no effect, and only its own: cancelling a PAUSE of everything that waits for a
// transaction must not lift a pause of one database made before it.
TEST_CASE("a cancel of a waiting PAUSE lifts only what that PAUSE paused") {
  if (direct_mode()) return;
  Pausable p;
  PgConn admin = p.console();
  exec(admin.get(), "PAUSE app");  // nothing running: answered at once
  PgConn busy = connect(p.proxy->conninfo("app", "app", "postgres"));  // another database, through "*"
  CHECK(cancel_pause_waiting_for(admin.get(), busy.get(), "PAUSE").find("57014") != std::string::npos);
  CHECK(database_paused(admin.get(), "app") == "1");  // paused before the cancelled PAUSE: stays paused
  exec(busy.get(), "COMMIT");
  REQUIRE(PQsendQuery(busy.get(), "SELECT 'not held'") == 1);
  const bool held = !wait_readable(busy.get(), 2.0);  // the cancelled PAUSE of everything holds nothing
  exec(admin.get(), held ? "RESUME" : "RESUME app");
  CHECK_FALSE(held);
  CHECK(await_error(busy.get(), 3.0).empty());
}

TEST_CASE("RESUME of what is not paused: 55000 naming it (pgmux, or the database), and what is paused in the hint") {
  Pausable p;
  PgConn admin = p.console();
  const auto error_of = [&](const char* sql) {
    PgResult res(PQexec(admin.get(), sql));
    CHECK(sqlstate(res.get()) == "55000");
    const char* hint = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_HINT);
    return std::string(PQresultErrorMessage(res.get())) + (hint ? hint : "");
  };
  CHECK(error_of("RESUME").find("pgmux is not paused") != std::string::npos);  // not: database "*"
  CHECK(error_of("RESUME \"*\"").find("pgmux is not paused") != std::string::npos);
  std::string error = error_of("RESUME app");
  CHECK(error.find("database \"app\" is not paused") != std::string::npos);
  CHECK(error.find("nothing is paused") != std::string::npos);
  exec(admin.get(), "PAUSE app");
  error = error_of("RESUME postgres");
  CHECK(error.find("database \"postgres\" is not paused") != std::string::npos);
  CHECK(error.find("paused now: app") != std::string::npos);
  exec(admin.get(), "RESUME");  // without a name: whatever is paused
  CHECK(error_of("RESUME app").find("nothing is paused") != std::string::npos);
}

namespace {

// Server connections to `db` on the primary, as PostgreSQL counts them (pgmux's and anyone's).
int backends_on(PGconn* superuser, const std::string& db) {
  return std::atoi(
      scalar(superuser, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                            "' AND backend_type = 'client backend'").c_str());
}

// Polls until `db` has no server connection, for `seconds` at most.
bool no_backends_within(PGconn* superuser, const std::string& db, double seconds) {
  for (int i = 0; i < static_cast<int>(seconds * 20); ++i) {
    if (backends_on(superuser, db) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

// As PgBouncer's PAUSE: once no transaction runs, the database's server connections close, and min_pool_size opens
// none while paused, so that the database can be renamed (or restarted, dropped) meanwhile; after RESUME the
// session goes on with a fresh server. Before, the idle servers stayed and ALTER DATABASE ... RENAME failed with
// 55006 "database is being accessed by other users".
TEST_CASE("PAUSE closes the database's server connections; RESUME opens them again") {
  const std::string db = "pause_closes";
  PgConn superuser = connect(conninfo(cluster_ports().primary, "postgres", "postgres", "postgres"));
  const auto drop_both = [&] {  // also the renamed one a failed run may have left
    exec(superuser.get(), "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
    exec(superuser.get(), "DROP DATABASE IF EXISTS " + db + "_renamed WITH (FORCE)");
  };
  drop_both();
  exec(superuser.get(), "CREATE DATABASE " + db);
  struct DropAtExit {
    std::function<void()> drop;
    ~DropAtExit() {
      try {
        drop();
      } catch (...) {
      }
    }
  } drop_at_exit{drop_both};
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
  config["admin_users"] = nlohmann::json::array({"admin"});
  config["databases"].push_back(
      {{"name", db}, {"pool_mode", "transaction"}, {"pool_size", 3}, {"min_pool_size", 2}});
  {
    ProxyUnderTest proxy(config.dump(), listen);
    PgConn app = connect(proxy.conninfo("app", "app", db));
    CHECK(scalar(app.get(), "SELECT 1") == "1");
    CHECK(backends_on(superuser.get(), db) >= 1);
    PgConn admin = connect(proxy.conninfo("admin", "admin-secret", "pgmux"));
    exec(admin.get(), "PAUSE " + db);
    CHECK(no_backends_within(superuser.get(), db, 5));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // min_pool_size's refill: not while paused
    CHECK(backends_on(superuser.get(), db) == 0);
    // A login meanwhile is answered from what the pool knows of one (transaction pooling): no server opens.
    PgConn late = connect(proxy.conninfo("app", "app", db));
    CHECK(backends_on(superuser.get(), db) == 0);
    exec(superuser.get(), "ALTER DATABASE " + db + " RENAME TO " + db + "_renamed");
    exec(superuser.get(), "ALTER DATABASE " + db + "_renamed RENAME TO " + db);
    exec(admin.get(), "RESUME " + db);
    CHECK(scalar(app.get(), "SELECT 2") == "2");
    CHECK(scalar(late.get(), "SELECT 3") == "3");
  }
}
