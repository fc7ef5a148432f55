// A Query sent inside an extended sequence, before its Sync: PostgreSQL runs it and answers it with a ReadyForQuery
// of its own, unless an error earlier in the sequence made it skip everything up to the Sync, the Query too; then
// the one ReadyForQuery that comes is the Sync's. pgmux could not tell the two apart: it waited for a ReadyForQuery
// that never came, so in transaction pooling the client kept its server for good (the next client waited
// query_wait_timeout for 53300, and the server was closed at the session's end). Now a Close of pgmux's own goes
// out in front of such a Query, whose answer says the sequence ran without error (ClientConn::
// hides_sequence_sentinel). Every case is compared with a direct connection to the primary; then, with the
// client still connected, a pool of one server must serve another client.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::sizes;
using routing::now_seconds;

namespace {

const std::string kFlush = message('H', "");

std::string sequence(const std::string& sql) {
  return parse_message("", sql) + bind_message("", {}) + execute_message() + kFlush;
}

struct Case {
  const char* name;
  std::string first;
  std::string then;  // sent 0.3 s later (after the sequence's error came back), if not empty
};

std::vector<Case> cases() {
  const std::string fails = sequence("SELECT 1/0");
  const std::string runs = sequence("SELECT 1");
  return {
      {"an error in the sequence, the Query sent after it came", fails, query_message("SELECT 2") + sync_message()},
      {"an error in the sequence, the Query sent with it", fails + query_message("SELECT 2") + sync_message(), ""},
      {"two Queries behind the error", fails + query_message("SELECT 2") + query_message("SELECT 3") + sync_message(),
       ""},
      {"the error, the Query, more of the sequence",
       fails + query_message("SELECT 2") + parse_message("", "SELECT 3") + bind_message("", {}) + execute_message() +
           sync_message(),
       ""},
      {"the Query fails, not the sequence", runs + query_message("SELECT 1/0") + sync_message(), ""},
      {"no error", runs + query_message("SELECT 2") + sync_message(), ""},
      {"the Query runs, the sequence after it fails",
       runs + query_message("SELECT 2") + parse_message("", "SELECT 1/0") + bind_message("", {}) + execute_message() +
           sync_message(),
       ""},
      // The statement the sequence named is used again behind the Query: pgmux must not wait for the first
      // entry's reply before sending it (that reply comes only after this Sync; it hung before).
      {"the sequence's named statement used again behind the Query",
       parse_message("sq1", "SELECT 1/0") + bind_message("sq1", {}) + execute_message() + kFlush,
       query_message("SELECT 2") + bind_message("sq1", {}) + execute_message() + sync_message()},
      {"inside a transaction block", query_message("BEGIN") + fails + query_message("SELECT 2") + sync_message(),
       query_message("ROLLBACK")},
  };
}

// What the client reads, up to the answer of a last "SELECT 'done'": tags, with each error's SQLSTATE.
std::string replies(const std::string& target, const Case& c, std::unique_ptr<RawSession>& keep) {
  keep = std::make_unique<RawSession>(target);
  REQUIRE(keep->send(c.first, 2.0));
  if (!c.then.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    REQUIRE(keep->send(c.then, 2.0));
  }
  REQUIRE(keep->send(query_message("SELECT 'done'"), 2.0));
  std::string seen;
  bool done = false;
  const double deadline = now_seconds() + 10;
  BackendMessage m;
  while (keep->read(m, deadline) == RawSession::Read::Message) {
    seen += m.tag;
    if (m.tag == 'E') seen += "(" + error_fields(m.body)['C'] + ")";
    if (m.tag == 'D') done = data_row(m.body) == std::vector<std::string>{"done"};
    if (m.tag == 'Z' && done) return seen;
  }
  FAIL("no answer to SELECT 'done' within 10 s; read: " << seen);
  return seen;
}

}  // namespace

TEST_CASE("a Query inside an extended sequence is answered as directly, and the server is given back") {
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  std::vector<Mode> all = modes(false);
  if (!direct_mode()) {
    for (const Mode& m : modes(true)) all.push_back(m);
  }
  for (const Mode& mode : all) {
    Target t(mode, 1);
    for (const Case& c : cases()) {
      INFO(mode.pool_mode << std::string(mode.split ? " mode with the split, " : " mode, ") << std::string(c.name));
      std::unique_ptr<RawSession> direct;
      std::unique_ptr<RawSession> client;
      const std::string want = replies(primary, c, direct);
      CHECK(replies(t.app("sequence_query"), c, client) == want);
      // The client stays; in transaction pooling its one server must serve another client now. The sequence
      // started on the primary (with the split too: it may go on with writes), so the read is sent there.
      if (mode.pool_mode == "transaction") {
        PgConn other = connect_nonblocking(t.app("other"));
        const std::string read = "SELECT 1 /* pgmux:primary */";
        CHECK(PQresultStatus(exec_bounded(other.get(), read, 5.0).get()) == PGRES_TUPLES_OK);
      }
    }
  }
}
