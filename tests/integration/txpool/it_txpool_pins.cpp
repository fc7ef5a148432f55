// Pins are counted by reason: a temporary table, LISTEN and a session advisory lock each pin their client in
// transaction pooling, and pgmux reports the counts by reason when it stops.
#include <doctest/doctest.h>

#include <csignal>
#include <string>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

TEST_CASE("pins are counted by reason and reported at shutdown") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  auto config = default_config(port);
  for (auto& database : config["databases"]) database["pool_mode"] = "transaction";
  PgmuxProcess pgmux(config.dump(), port);
  const std::string info = conninfo(port, "app", "app", "app");
  {
    PgConn temp = connect(info);
    PgConn listener = connect(info);
    PgConn locker = connect(info);
    PgConn plain = connect(info);
    exec(temp.get(), "CREATE TEMP TABLE pinned_here(v int)");
    exec(listener.get(), "LISTEN pin_channel");
    exec(locker.get(), "SELECT pg_advisory_lock(4242)");
    CHECK(scalar(plain.get(), "SELECT 1") == "1");  // no pin
  }
  pgmux.send_signal(SIGTERM);
  REQUIRE(pgmux.wait_exit(10));
  const std::string log = pgmux.log();
  INFO(log);
  CHECK(log.find("temporary table=1") != std::string::npos);
  CHECK(log.find("LISTEN=1") != std::string::npos);
  CHECK(log.find("session advisory lock=1") != std::string::npos);
  CHECK(log.find("SQL PREPARE=0") != std::string::npos);
}
