// pg_terminate_backend on the server of a client that is mid-query: that client gets an error promptly, other
// clients (already connected and new) keep working.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;
using Clock = std::chrono::steady_clock;

namespace {

// Waits (bounded) for the reply to a PQsendQuery. Returns "ok", "error:<sqlstate>", "closed" or "timeout".
std::string await_reply(PGconn* conn, double seconds) {
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  std::string outcome;
  while (true) {
    while (PQisBusy(conn)) {
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0) return "timeout";
      if (PQconsumeInput(conn) == 0) return outcome.empty() ? "closed" : outcome;
      if (PQisBusy(conn)) wait_readable(conn, left);
    }
    PgResult res(PQgetResult(conn));
    if (!res) break;
    if (outcome.empty()) {
      ExecStatusType st = PQresultStatus(res.get());
      outcome = (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) ? "ok" : "error:" + sqlstate(res.get());
    }
  }
  if (PQstatus(conn) == CONNECTION_BAD && outcome.empty()) return "closed";
  return outcome.empty() ? "ok" : outcome;
}

}  // namespace

TEST_CASE("pg_terminate_backend of a client's server mid-query") {
  ProxyUnderTest target;
  PgConn victim = connect(target.app_conninfo());
  PgConn bystander = connect(target.app_conninfo());
  PgConn admin = connect(conninfo(cluster_ports().primary, "postgres", "postgres", "postgres"));

  std::string victim_pid = scalar(victim.get(), "SELECT pg_backend_pid()");
  std::string bystander_pid = scalar(bystander.get(), "SELECT pg_backend_pid()");
  REQUIRE(victim_pid != bystander_pid);

  REQUIRE(PQsendQuery(victim.get(), "SELECT pg_sleep(30)") == 1);
  REQUIRE(PQsendQuery(bystander.get(), "SELECT pg_sleep(1), 'bystander'") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));

  auto t0 = Clock::now();
  CHECK(scalar(admin.get(), "SELECT pg_terminate_backend(" + victim_pid + ")") == "t");
  std::string victim_outcome = await_reply(victim.get(), 5.0);
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  MESSAGE("victim outcome: " << victim_outcome << " after " << elapsed << " s; " << PQerrorMessage(victim.get()));
  CHECK(victim_outcome != "ok");
  CHECK(victim_outcome != "timeout");
  CHECK(elapsed < 3.0);

  // The bystander's query finishes normally and its session goes on.
  CHECK(await_reply(bystander.get(), 10.0) == "ok");
  CHECK(scalar(bystander.get(), "SELECT 'still here'") == "still here");
  CHECK(scalar(bystander.get(), "SELECT pg_backend_pid()") == bystander_pid);

  // New clients work too.
  for (int i = 0; i < 5; ++i) {
    PgConn fresh = connect(target.app_conninfo());
    CHECK(scalar(fresh.get(), "SELECT " + std::to_string(i)) == std::to_string(i));
  }

  // The victim's next query answers (an error or a result), it does not hang.
  if (PQstatus(victim.get()) == CONNECTION_OK && PQsendQuery(victim.get(), "SELECT 1") == 1) {
    std::string next = await_reply(victim.get(), 5.0);
    MESSAGE("victim's next query: " << next);
    CHECK(next != "timeout");
  }
}

TEST_CASE("pg_terminate_backend of an idle client's server") {
  ProxyUnderTest target;
  PgConn victim = connect(target.app_conninfo());
  PgConn admin = connect(conninfo(cluster_ports().primary, "postgres", "postgres", "postgres"));
  std::string victim_pid = scalar(victim.get(), "SELECT pg_backend_pid()");
  CHECK(scalar(admin.get(), "SELECT pg_terminate_backend(" + victim_pid + ")") == "t");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  // Either an error right away or (a pooler may say so) a fresh server; never a hang.
  if (PQsendQuery(victim.get(), "SELECT 1") == 1) {
    std::string next = await_reply(victim.get(), 5.0);
    MESSAGE("idle victim's next query: " << next);
    CHECK(next != "timeout");
  }
  PgConn fresh = connect(target.app_conninfo());
  CHECK(scalar(fresh.get(), "SELECT 'fine'") == "fine");
}

namespace {

// pgmux in front of the primary with database app in transaction pooling.
struct TransactionPool {
  TransactionPool() : proxy(config(port), port) {}
  static std::string config(int port) {
    nlohmann::json c = default_config(port);
    c["databases"][0]["pool_mode"] = "transaction";
    return c.dump(2);
  }
  // Terminates the server running the statement whose text carries `tag`, once it runs.
  static bool terminate_running(const std::string& tag) {
    PgConn admin = connect(conninfo(cluster_ports().primary, "postgres", "postgres", "postgres"));
    const std::string sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'active' AND "
                            "query LIKE '%" + tag + "%' AND pid <> pg_backend_pid()";
    for (int i = 0; i < 50; ++i) {
      if (scalar(admin.get(), "SELECT count(*) FROM (" + sql + ") t") == "1") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  int port = pick_listen_port();
  ProxyUnderTest proxy;
};

}  // namespace

// Transaction pooling: the session lives in pgmux, not on the terminated server (the same FATAL 57P01 ends every
// session of a server being shut down for a failover or switchover). So the client hears that its statement may or
// may not have run, as for any lost server, and goes on; a direct client would be disconnected (README).
TEST_CASE_FIXTURE(TransactionPool, "transaction pooling: a terminated server's client between transactions goes on") {
  if (proxy.direct()) return;
  PgConn client = connect(proxy.app_conninfo());
  REQUIRE(PQsendQuery(client.get(), "SELECT pg_sleep(30) /* terminate-between */") == 1);
  REQUIRE(terminate_running("terminate-between"));
  CHECK(await_reply(client.get(), 5.0) == "error:08006");
  CHECK(PQstatus(client.get()) == CONNECTION_OK);
  CHECK(scalar(client.get(), "SELECT 'still here'") == "still here");
}

// Inside a transaction the work is gone with the server: 08006 saying so, and the connection ends, as directly.
TEST_CASE_FIXTURE(TransactionPool, "transaction pooling: a terminated server's client inside a transaction is told") {
  if (proxy.direct()) return;
  PgConn client = connect(proxy.app_conninfo());
  CHECK(scalar(client.get(), "BEGIN; SELECT 1") == "1");
  REQUIRE(PQsendQuery(client.get(), "SELECT pg_sleep(30) /* terminate-inside */") == 1);
  REQUIRE(terminate_running("terminate-inside"));
  const std::string outcome = await_reply(client.get(), 5.0);
  CHECK(outcome == "error:08006");
  CHECK(std::string(PQerrorMessage(client.get())).find("the transaction did not commit") != std::string::npos);
}
