// Session state set in ways pgmux does not replay (extended-protocol SET, SET inside a multi-statement string,
// set_config) must still never reach the next client of the same server in transaction pooling.
#include <doctest/doctest.h>

#include <string>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {
PgmuxProcess start_single_server_pool(int port) {
  auto config = default_config(port);
  config["workers"] = 1;
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "transaction";
    database["pool_size"] = 1;  // every client gets the same server
  }
  return PgmuxProcess(config.dump(), port);
}
}  // namespace

TEST_CASE("SET via the extended protocol or a multi-statement string does not leak to the next client") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  const std::string default_path = [&] {
    PgConn probe = connect(info);
    return scalar(probe.get(), "SHOW search_path");
  }();

  {
    PgConn a = connect(info);
    PgResult set(PQexecParams(a.get(), "SET search_path TO leaked_extended", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(set.get()) == PGRES_COMMAND_OK);
  }
  {
    PgConn b = connect(info);
    CHECK(scalar(b.get(), "SHOW search_path") == default_path);
  }
  {
    PgConn c = connect(info);
    exec(c.get(), "SELECT 1; SET statement_timeout = '4242ms'");
  }
  {
    PgConn d = connect(info);
    CHECK(scalar(d.get(), "SHOW statement_timeout") != "4242ms");
  }
}

TEST_CASE("set_config(..., false) in a query does not leak to the next client") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  PgmuxProcess pgmux = start_single_server_pool(port);
  const std::string info = conninfo(port, "app", "app", "app");
  {
    PgConn a = connect(info);
    CHECK(scalar(a.get(), "/* c */ SELECT set_config('statement_timeout', '4343ms', false)") == "4343ms");
  }
  {
    PgConn b = connect(info);
    CHECK(scalar(b.get(), "SHOW statement_timeout") != "4343ms");
  }
}
