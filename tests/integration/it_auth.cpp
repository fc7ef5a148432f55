// Logins through pgmux: the right SQLSTATE for each failure (checked with an independent raw-protocol client,
// since libpq hides a failed connection's SQLSTATE) and working SCRAM and MD5 logins.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;

namespace {
ProxyUnderTest& target() {
  static ProxyUnderTest t;  // one pgmux for every case in this file
  return t;
}
}  // namespace

TEST_CASE("app/app logs in with SCRAM-SHA-256 and runs a query") {
  StartupOutcome out = raw_startup(target().port(), "app", "app", "app");
  INFO("message: " << out.message << " sqlstate: " << out.sqlstate);
  CHECK(out.ok);
  CHECK(out.auth_method == "scram-sha-256");

  PgConn conn = connect(target().app_conninfo());
  CHECK(scalar(conn.get(), "SELECT current_user") == "app");
  CHECK(scalar(conn.get(), "SELECT current_database()") == "app");
}

TEST_CASE("wrong password -> 28P01") {
  StartupOutcome out = raw_startup(target().port(), "app", "not-the-password", "app");
  INFO("message: " << out.message);
  CHECK_FALSE(out.ok);
  CHECK(out.sqlstate == "28P01");

  PgConn conn = try_connect(target().conninfo("app", "not-the-password", "app"));
  CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
  CHECK(std::string(PQerrorMessage(conn.get())).find("password authentication failed") != std::string::npos);
}

TEST_CASE("unknown database -> 3D000") {
  StartupOutcome out = raw_startup(target().port(), "app", "app", "no_such_database_xyz");
  INFO("message: " << out.message);
  CHECK_FALSE(out.ok);
  CHECK(out.sqlstate == "3D000");
  CHECK(out.message.find("no_such_database_xyz") != std::string::npos);
}

TEST_CASE("unknown user -> 28P01, as a wrong password (PostgreSQL's mock SCRAM exchange)") {
  StartupOutcome out = raw_startup(target().port(), "no_such_user_xyz", "whatever", "app");
  INFO("message: " << out.message << " sqlstate: " << out.sqlstate);
  CHECK_FALSE(out.ok);
  CHECK(out.sqlstate == "28P01");
  CHECK(out.message == "password authentication failed for user \"no_such_user_xyz\"");
}

// PostgreSQL cuts both names to 63 bytes (NAMEDATALEN - 1) before it looks them up, even inside a character.
TEST_CASE("names over 63 bytes are cut to 63, as PostgreSQL cuts them") {
  std::string long_user;
  for (int i = 0; i < 35; ++i) long_user += "\xc3\xa9";  // é, 70 bytes: the cut falls inside the 32nd
  StartupOutcome user_out = raw_startup(target().port(), long_user, "whatever", "app");
  CHECK(user_out.sqlstate == "28P01");
  CHECK(user_out.message == "password authentication failed for user \"" + long_user.substr(0, 63) + "\"");

  const std::string long_database = "app" + std::string(67, 'x');
  StartupOutcome db_out = raw_startup(target().port(), "app", "app", long_database);
  CHECK(db_out.sqlstate == "3D000");
  CHECK(db_out.message == "database \"" + long_database.substr(0, 63) + "\" does not exist");
}

TEST_CASE("md5user logs in with MD5") {
  StartupOutcome out = raw_startup(target().port(), "md5user", "md5user", "app");
  INFO("message: " << out.message << " sqlstate: " << out.sqlstate);
  CHECK(out.ok);
  CHECK(out.auth_method == "md5");

  StartupOutcome bad = raw_startup(target().port(), "md5user", "wrong", "app");
  CHECK_FALSE(bad.ok);
  CHECK(bad.sqlstate == "28P01");

  PgConn conn = connect(target().conninfo("md5user", "md5user", "app"));
  CHECK(scalar(conn.get(), "SELECT current_user") == "md5user");
}

TEST_CASE("superuser postgres logs in to database postgres (wildcard database entry)") {
  PgConn conn = connect(target().conninfo("postgres", "postgres", "postgres"));
  CHECK(scalar(conn.get(), "SELECT current_database()") == "postgres");
  CHECK(scalar(conn.get(), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t");
}

// Regression (found by the soak test): pgmux answers a correct proof with two writes (SASLFinal, then
// AuthenticationOk); when the client has already gone, the second fails, the client is closed, and the login went
// on with it anyway: an illegal state change "closing -> login_wait", the closed client queued in the pool, and a
// crash once the pool handed it a server.
TEST_CASE("clients gone right after their SCRAM proof leave pgmux serving") {
  for (int i = 0; i < 40; ++i) {
    StartupExtras extras;
    extras.vanish_after_proof = true;
    extras.reset_on_vanish = i % 2 == 1;
    StartupOutcome out = raw_startup(target().port(), "app", "app", "app", 5.0, extras);
    REQUIRE(out.message == "closed after sending the SCRAM proof");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  if (PgmuxProcess* pgmux = target().process()) {
    REQUIRE_FALSE(pgmux->wait_exit(0));
    CHECK(pgmux->full_log().find("illegal state change") == std::string::npos);
  }
  PgConn conn = connect(target().app_conninfo());
  CHECK(scalar(conn.get(), "SELECT 1") == "1");
}

// The same in transaction pooling, where a client is logged in without a server once the pool knows what a server
// reports: the login's last messages (ParameterStatus ... ReadyForQuery) are a third write, and a client that goes
// while the first two are under way made pgmux set a closed client Ready ("illegal state change closing ->
// ready"). The window is a few microseconds, so the clients leave at delays spread over 0..60 µs; this case failed
// 4 runs of 4 on the old code (about 30 such clients a run).
TEST_CASE("transaction pooling: clients gone as their login completes are not logged in") {
  const int port = pick_listen_port();
  nlohmann::json config = default_config(port);
  config["databases"].push_back({{"name", "app_tx"}, {"server_database", "app"}, {"pool_mode", "transaction"}});
  ProxyUnderTest proxy(config.dump(), port);
  REQUIRE(raw_startup(proxy.port(), "app", "app", "app_tx").ok);  // the pool learns the server's parameters
  for (int i = 0; i < 600; ++i) {
    StartupExtras extras;
    extras.vanish_after_proof = true;
    extras.vanish_delay_us = i % 61;
    raw_startup(proxy.port(), "app", "app", i % 2 ? "app_tx" : "app", 5.0, extras);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (PgmuxProcess* pgmux = proxy.process()) {
    REQUIRE_FALSE(pgmux->wait_exit(0));
    CHECK(pgmux->full_log().find("illegal state change") == std::string::npos);
  }
  PgConn conn = connect(proxy.conninfo("app", "app", "app_tx"));
  CHECK(scalar(conn.get(), "SELECT 1") == "1");
}
