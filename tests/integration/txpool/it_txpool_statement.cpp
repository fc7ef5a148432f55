// Statement pooling: the server goes back after every statement, so a transaction may not span statements: a lone
// BEGIN gets a clear error (the session goes on), a whole transaction in one query string works, and many clients
// share one server.
#include <doctest/doctest.h>

#include <string>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

TEST_CASE("statement pooling refuses BEGIN, runs one-string transactions, shares one server") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  auto config = default_config(port);
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "statement";
    database["pool_size"] = 1;
  }
  PgmuxProcess pgmux(config.dump(), port);
  const std::string info = conninfo(port, "app", "app", "app");

  PgConn a = connect(info);
  PgConn b = connect(info);
  PgResult begin(PQexec(a.get(), "BEGIN"));
  CHECK(PQresultStatus(begin.get()) == PGRES_FATAL_ERROR);
  CHECK(sqlstate(begin.get()) == "0A000");
  CHECK(std::string(PQresultErrorMessage(begin.get())).find("statement pooling") != std::string::npos);
  // The session is still usable, and outside any transaction.
  CHECK(scalar(a.get(), "SELECT 1") == "1");
  CHECK(PQtransactionStatus(a.get()) == PQTRANS_IDLE);
  // A whole transaction in one string is one statement for the pool (PQexec returns COMMIT's result).
  exec(a.get(), "CREATE TABLE IF NOT EXISTS statement_mode_t(v int)");
  PgResult tx(PQexec(a.get(), "BEGIN; INSERT INTO statement_mode_t VALUES (42); COMMIT"));
  CHECK(PQresultStatus(tx.get()) == PGRES_COMMAND_OK);
  CHECK(scalar(b.get(), "SELECT count(*) FROM statement_mode_t WHERE v = 42") != "0");
  exec(a.get(), "DROP TABLE statement_mode_t");
  // Two clients alternate over the pool's single server.
  for (int i = 0; i < 5; ++i) {
    CHECK(scalar(a.get(), "SELECT 'a'") == "a");
    CHECK(scalar(b.get(), "SELECT 'b'") == "b");
  }
}
