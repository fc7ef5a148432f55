// COPY FROM STDIN whose data the client sends before PostgreSQL asks for it, with the Sync of the COPY's batch
// ahead of the data (PostgreSQL ignores it inside the COPY): the replies were right, but pgmux waited for one
// ReadyForQuery more than PostgreSQL sends, and held the server for good: with a pool of one server, every later
// client waited. The differential scripts compare the replies; this checks that the server is free afterwards.
// From a black-box hunt and a review.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::sizes;
using routing::now_seconds;

TEST_CASE("a COPY's batch Sync sent ahead of its data leaves the server free once the COPY is answered") {
  {
    PgConn p = routing::admin(cluster_ports().primary, "app");
    exec(p.get(), "CREATE TABLE IF NOT EXISTS copy_ahead (v text)");
    exec(p.get(), "GRANT ALL ON copy_ahead TO PUBLIC");
  }
  for (bool split : {false, true}) {
    for (const Mode& mode : modes(split)) {
      INFO(mode.pool_mode << std::string(split ? " mode with the split" : " mode"));
      Target t(mode, 1);
      {
        RawSession s(t.app("copy_ahead"));
        const std::string copy = parse_message("", "COPY copy_ahead FROM STDIN") + bind_message("", {}) +
                                 execute_message() + sync_message() + message('d', "ahead\n") + message('c', "");
        REQUIRE(s.send(copy + sync_message(), 2.0));
        RawSession::Read last{};
        CHECK(tags(s.read_until('Z', now_seconds() + 5.0, last)) == "12GCZ");
        REQUIRE(s.send(query_message("SELECT 1"), 2.0));
        CHECK(tags(s.read_until('Z', now_seconds() + 5.0, last)) == "TDCZ");
        REQUIRE(s.send(std::string("X\0\0\0\4", 5), 2.0));
      }
      if (t.direct()) continue;
      // The pool's one server serves the next client.
      PgConn next = connect_nonblocking(t.app("next"));
      PgResult res = exec_bounded(next.get(), "SELECT 1");
      const bool served = PQresultStatus(res.get()) == PGRES_TUPLES_OK;
      CHECK(served);
      t.log_if(!served);
    }
  }
}
