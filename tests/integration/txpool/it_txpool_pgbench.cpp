// pgbench -M simple / extended / prepared through pgmux in transaction mode: 200 clients over a pool of 10
// (split over 2 workers), scale 1, -T 5, -n; no failed transactions and consistent balances
// (txpool_pgbench.sh does the run and the checks; this file starts pgmux with the transaction-mode config).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_pgbench";

// Runs txpool_pgbench.sh for one mode against `port`; returns its exit code, output in *out.
int run_script(int port, const std::string& mode, std::string* out) {
  setenv("PGMUX_PORT", std::to_string(port).c_str(), 1);
  setenv("PGMUX_PRIMARY_PORT", std::to_string(cluster_ports().primary).c_str(), 1);
  setenv("TXPOOL_DB", kDb, 1);
  setenv("TXPOOL_MODES", mode.c_str(), 1);
  return run_shell(std::string("bash ") + PGMUX_SOURCE_DIR + "/tests/integration/txpool/txpool_pgbench.sh", out);
}

void pgbench_mode(const std::string& mode) {
  fresh_database(kDb);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, kDb, 10).dump(), listen);
  wait_serving(app_conninfo(proxy.port(), kDb));
  std::string out;
  const int rc = run_script(proxy.port(), mode, &out);
  MESSAGE(out);
  if (rc != 0 && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  CHECK(rc == 0);
  drop_database_quietly(kDb);
}

}  // namespace

TEST_CASE("pgbench -M simple, 200 clients over a transaction pool of 10") { pgbench_mode("simple"); }

TEST_CASE("pgbench -M extended, 200 clients over a transaction pool of 10") { pgbench_mode("extended"); }

// A client's named statements must be prepared on whichever server it gets (issue 4 item 2).
TEST_CASE("pgbench -M prepared, 200 clients over a transaction pool of 10") {
  pgbench_mode("prepared");
}
