// A portal bound by one request and executed by a later one (Bind and Sync inside a transaction block, Execute
// in the next batch) runs its statement at the Execute: a SET run so lasts the session as on PostgreSQL, wherever
// the client's later transactions run (transaction pooling) and on the standby connection (session pooling with
// the split). pgmux took the statement from the batch that parsed it, which ran nothing: the SET was never
// logged. From a black-box hunt; compared with a direct connection to the primary.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::sizes;
using routing::now_seconds;

namespace {

// Sends `bytes` and reads up to the ReadyForQuery: the tags, then the DataRows' first values.
std::string round_trip(RawSession& s, const std::string& bytes) {
  REQUIRE(s.send(bytes, 2.0));
  RawSession::Read last{};
  const std::vector<BackendMessage> replies = s.read_until('Z', now_seconds() + 5.0, last);
  std::string seen = tags(replies);
  for (const BackendMessage& m : replies) {
    if (m.tag == 'D') seen += " " + data_row(m.body).at(0);
  }
  return seen;
}

std::string set_through_later_execute(const std::string& target, const std::string& other_target) {
  RawSession s(target);
  std::string seen = round_trip(s, query_message("BEGIN"));
  seen += " | " + round_trip(s, parse_message("", "SET statement_timeout = 4321") + bind_message("", {}, "px") +
                                    sync_message());
  seen += " | " + round_trip(s, execute_message("px") + sync_message());
  seen += " | " + round_trip(s, query_message("COMMIT"));
  // Other clients in transactions take servers (the one this client used among them, likely): its next
  // transaction runs elsewhere in transaction pooling.
  std::vector<PgConn> others;
  for (int i = 0; i < 3; ++i) {
    others.push_back(connect(other_target));
    exec(others.back().get(), "BEGIN");
  }
  for (int i = 0; i < 3; ++i) seen += " | " + round_trip(s, query_message("SHOW statement_timeout"));
  for (PgConn& other : others) exec(other.get(), "ROLLBACK");
  return seen;
}

}  // namespace

TEST_CASE("a SET run by Executing a portal an earlier batch bound lasts the session") {
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  const std::string direct = set_through_later_execute(primary, primary);
  REQUIRE(direct == "CZ | 12Z | CZ | CZ | TDCZ 4321ms | TDCZ 4321ms | TDCZ 4321ms");
  for (bool split : {false, true}) {
    for (const Mode& mode : modes(split)) {
      if (mode.pool_mode == "direct") continue;
      INFO(mode.pool_mode << std::string(split ? " mode with the split" : " mode"));
      Target t(mode, 20);
      CHECK(set_through_later_execute(t.app("portal"), t.app("other")) == direct);
    }
  }
}
