// Signals: SIGTERM stops accepting, lets open sessions finish (up to shutdown_timeout) and exits 0; sessions still
// open at the timeout are closed with 57P01. SIGINT closes everything at once.
#include <doctest/doctest.h>

#include <csignal>
#include <chrono>
#include <string>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string config_with_shutdown_timeout(int port, double seconds) {
  auto config = default_config(port);
  config["timeouts"]["shutdown_timeout"] = seconds;
  return config.dump();
}

}  // namespace

TEST_CASE("SIGTERM: no new clients, the open session finishes, then pgmux exits 0") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux(config_with_shutdown_timeout(port, 30), port);
  const std::string info = conninfo(port, "app", "app", "app");

  PgConn session = connect(info);
  CHECK(scalar(session.get(), "SELECT 1") == "1");

  pgmux.send_signal(SIGTERM);
  // The listener closes at once: a new client is refused.
  bool refused = false;
  auto start = Clock::now();
  while (!refused && seconds_since(start) < 5) {
    PgConn late = try_connect(info);
    refused = PQstatus(late.get()) == CONNECTION_BAD;
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(refused);

  // The session that was open keeps working until it ends by itself.
  CHECK(scalar(session.get(), "SELECT 2") == "2");
  CHECK(scalar(session.get(), "SELECT count(*) FROM generate_series(1, 1000)") == "1000");
  int status = -1;
  CHECK_FALSE(pgmux.wait_exit(0.5, &status));  // still waiting for the session
  session.reset();
  REQUIRE(pgmux.wait_exit(5, &status));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("SIGTERM: a session still open at shutdown_timeout is closed with 57P01") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux(config_with_shutdown_timeout(port, 1), port);
  PgConn session = connect(conninfo(port, "app", "app", "app"));
  CHECK(scalar(session.get(), "SELECT 1") == "1");

  auto start = Clock::now();
  pgmux.send_signal(SIGTERM);
  int status = -1;
  REQUIRE(pgmux.wait_exit(10, &status));
  const double took = seconds_since(start);
  CHECK(took >= 0.9);
  CHECK(took < 5);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The client was told why before the connection closed.
  PgResult res(PQexec(session.get(), "SELECT 1"));
  CHECK(PQresultStatus(res.get()) != PGRES_TUPLES_OK);
  const std::string error = PQerrorMessage(session.get());
  INFO("client saw: " << error);
  CHECK(error.find("terminating connection due to administrator command") != std::string::npos);
}

TEST_CASE("SIGINT: every connection is closed at once, even mid-query") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux(config_with_shutdown_timeout(port, 30), port);
  PgConn busy = connect(conninfo(port, "app", "app", "app"));
  REQUIRE(PQsendQuery(busy.get(), "SELECT pg_sleep(20)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  auto start = Clock::now();
  pgmux.send_signal(SIGINT);
  int status = -1;
  REQUIRE(pgmux.wait_exit(5, &status));
  CHECK(seconds_since(start) < 3);
  CHECK(WIFEXITED(status));
  // The sleeping client's connection is gone well before its 20 s query could have finished.
  bool closed = false;
  bool got_rows = false;
  while (!closed && !got_rows && seconds_since(start) < 5) {
    if (PQconsumeInput(busy.get()) == 0) {
      closed = true;
      break;
    }
    if (PQisBusy(busy.get())) {
      wait_readable(busy.get(), 0.2);
      continue;
    }
    PgResult res(PQgetResult(busy.get()));
    if (!res) break;
    if (PQresultStatus(res.get()) == PGRES_TUPLES_OK) got_rows = true;
    else closed = true;  // an error result: the session ended
  }
  CHECK(closed);
  CHECK_FALSE(got_rows);
  CHECK(seconds_since(start) < 5);
}
