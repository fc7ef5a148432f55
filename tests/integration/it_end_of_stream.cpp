// A client's Terminate or end of stream ends its session after the requests it sent before, as on PostgreSQL, which
// runs and answers every complete message it read first (a client that shut down only its sending side reads the
// replies). pgmux closed at the EOF, dropping a request that still waited for a server (transaction pooling: an
// INSERT sent with a Terminate while the pool was busy never ran) and closed at a Terminate without the replies
// still owed. What pgmux does not do (README): a client gone while only requests already on a server run is
// closed at once, its server closed mid-request (the backend finishes what it read), so a half-closed client
// misses those replies. Every case is compared with a direct connection to the primary.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using namespace pgmux::test::sizes;
using routing::now_seconds;
using routing::wait_until;

namespace {

const std::string kTerminate = std::string("X\0\0\0\4", 5);

void create_table() {
  PgConn p = routing::admin(cluster_ports().primary, "app");
  exec(p.get(), "CREATE TABLE IF NOT EXISTS end_of_stream (v text)");
  exec(p.get(), "GRANT ALL ON end_of_stream TO PUBLIC");
}

// Rows with value `tag`, read on the primary itself (what committed, whoever was told).
int rows_tagged(const std::string& tag) {
  PgConn p = routing::admin(cluster_ports().primary, "app");
  return std::atoi(scalar(p.get(), "SELECT count(*) FROM end_of_stream WHERE v = '" + tag + "'").c_str());
}

std::string insert_tagged(const std::string& tag, const std::string& sleep = "0") {
  return query_message("INSERT INTO end_of_stream SELECT '" + tag + "' FROM pg_sleep(" + sleep + ")");
}

std::string unique_tag(const Mode& mode, const std::string& what) {
  return what + "-" + mode.pool_mode + (mode.split ? "-split-" : "-") + std::to_string(now_seconds());
}

// How the client ends after writing its requests.
enum class Ending { Terminate, Close, HalfClose };
std::string name(Ending e) {  // std::string: doctest prints a char* as a pointer
  return e == Ending::Terminate ? "Terminate and close" : e == Ending::Close ? "close" : "shutdown(SHUT_WR)";
}

// Writes `requests`, shuts down the sending side and reads to the end of the stream (5 s at most): the replies'
// tags. `closed` says whether the stream ended.
std::string tags_after_half_close(const std::string& target, const std::string& requests, bool& closed) {
  RawSession s(target);
  REQUIRE(s.send(requests, 2.0));
  s.finish_sending();
  RawSession::Read last{};
  const std::string seen = tags(s.read_until('\0', now_seconds() + 5.0, last));
  closed = last == RawSession::Read::Closed;
  return seen;
}

std::vector<Mode> all_modes() {
  std::vector<Mode> out = modes(false);
  if (!direct_mode()) {
    for (const Mode& m : modes(true)) out.push_back(m);
  }
  return out;
}

}  // namespace

// Transaction pooling, one server held in another client's transaction: the request waits in pgmux, and its client
// ends meanwhile. It runs once the server is free; a half-closed client reads its reply.
TEST_CASE("a request waiting for a server runs though its client sent a Terminate, closed or half-closed") {
  create_table();
  for (const Mode& mode : all_modes()) {
    if (mode.pool_mode == "session") continue;  // a session's server is its own from login on: nothing waits
    Target t(mode, 1);
    for (const Ending ending : {Ending::Terminate, Ending::Close, Ending::HalfClose}) {
      INFO(mode.pool_mode << std::string(mode.split ? " mode with the split, " : " mode, ") << name(ending));
      const std::string tag = unique_tag(mode, "waiting");
      PgConn holder = connect_nonblocking(t.app("holder"));
      exec_bounded(holder.get(), "BEGIN");
      exec_bounded(holder.get(), "INSERT INTO end_of_stream VALUES ('holder')");
      RawSession s(t.app("ends_while_waiting"));
      REQUIRE(s.send(insert_tagged(tag) + (ending == Ending::Terminate ? kTerminate : ""), 2.0));
      if (!t.direct()) {  // directly, nothing waits: the reply is on its way (the oracle for the rest)
        BackendMessage m;
        CHECK(s.read(m, now_seconds() + 0.3) == RawSession::Read::Timeout);  // waiting for the server
      }
      if (ending == Ending::HalfClose) {
        s.finish_sending();
      } else {
        s.abort();
      }
      exec_bounded(holder.get(), "ROLLBACK");
      if (ending == Ending::HalfClose) {
        RawSession::Read last{};
        const std::vector<BackendMessage> replies = s.read_until('\0', now_seconds() + 5.0, last);
        CHECK(tags(replies) == "CZ");
        CHECK(last == RawSession::Read::Closed);
      }
      CHECK(wait_until([&] { return rows_tagged(tag) == 1; }, 5.0, 0.05));
      t.log_if(rows_tagged(tag) != 1);
    }
  }
}

// Session pooling, the pool's one server held by another session: a client's login waits for it. The client sends
// a request and a Terminate with its last login message (the SCRAM proof directly, the startup packet through
// pgmux, which lets app in without a password) and shuts down its sending side: PostgreSQL finishes the login and
// answers the request. pgmux dropped the client at its end of stream (the request never ran). From a black-box hunt.
TEST_CASE("a login waiting for a server finishes and runs the requests behind it after the client's end of stream") {
  create_table();
  for (const Mode& mode : all_modes()) {
    INFO(mode.pool_mode << std::string(mode.split ? " mode with the split" : " mode"));
    Target t(mode, 1);
    const std::string tag = unique_tag(mode, "behind-login");
    std::optional<PgConn> holder(connect_nonblocking(t.app("holder")));
    exec_bounded(holder->get(), "BEGIN");
    StartupExtras extras;
    (t.direct() ? extras.after_proof : extras.after_startup) = insert_tagged(tag) + kTerminate;
    StartupOutcome outcome;
    std::thread client([&] { outcome = raw_startup(t.proxy.port(), "app", "app", "app", 10.0, extras); });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    holder.reset();  // its server is free
    client.join();
    CHECK(outcome.ok);
    CHECK(outcome.trace.substr(outcome.trace.size() - 5) == "Z C Z");
    CHECK(wait_until([&] { return rows_tagged(tag) == 1; }, 5.0, 0.05));
    t.log_if(rows_tagged(tag) != 1);
  }
}

// PostgreSQL answers every request before a Terminate: a client that pipelines requests, a Terminate, and shuts
// down its sending side reads every reply, then the end of the stream. pgmux closed at the Terminate.
TEST_CASE("a Terminate behind pipelined requests: their replies come first, then the end of the stream") {
  create_table();
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  for (const Mode& mode : all_modes()) {
    INFO(mode.pool_mode << std::string(mode.split ? " mode with the split" : " mode"));
    Target t(mode, 2);
    const std::string tag = unique_tag(mode, "pipelined");
    const std::string requests =
        query_message("SELECT pg_sleep(0.2)") + insert_tagged(tag) + query_message("SELECT 1") + kTerminate;
    std::string want;
    for (const std::string& target : {primary, t.app("pipelined_terminate")}) {
      bool closed = false;
      const std::string seen = tags_after_half_close(target, requests, closed);
      CHECK(closed);
      if (want.empty()) {
        want = seen;
        CHECK(want == "TDCZCZTDCZ");
      } else {
        CHECK(seen == want);
      }
    }
    CHECK(wait_until([&] { return rows_tagged(tag) == 2; }, 5.0, 0.05));  // once directly, once through pgmux
    t.log_if(rows_tagged(tag) != 2);
  }
}

// An extended sequence left open (no Sync) then a Terminate: PostgreSQL ends the session, its implicit transaction
// rolled back. pgmux must not wait for a ReadyForQuery that never comes (it passes the Terminate on).
TEST_CASE("a Terminate behind an extended sequence without Sync ends the session as directly; nothing commits") {
  create_table();
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  for (const Mode& mode : all_modes()) {
    INFO(mode.pool_mode << std::string(mode.split ? " mode with the split" : " mode"));
    Target t(mode, 2);
    const std::string tag = unique_tag(mode, "unsynced");
    const std::string sql = "INSERT INTO end_of_stream VALUES ('" + tag + "')";
    const std::string requests = parse_message("", sql) + bind_message("", {}) + execute_message() + kTerminate;
    bool closed = false;
    const std::string want = tags_after_half_close(primary, requests, closed);
    CHECK(closed);
    CHECK(tags_after_half_close(t.app("unsynced_terminate"), requests, closed) == want);
    CHECK(closed);
    CHECK(rows_tagged(tag) == 0);  // both sessions have ended: a commit would show
    PgConn next = connect_nonblocking(t.app("next"));  // the pool serves on (a hang throws, failing the case)
    CHECK(PQresultStatus(exec_bounded(next.get(), "SELECT 1").get()) == PGRES_TUPLES_OK);
  }
}

// Replies owed ahead of an extended sequence left open come first: a Query's, then the Terminate ends the session
// (PostgreSQL never answers the open sequence's Execute with a ReadyForQuery; it ends there, rolled back). pgmux
// waited for nothing at all when any open sequence was owed, and closed before the Query's reply.
TEST_CASE("a Terminate behind a Query and an open extended sequence: the Query's reply comes first") {
  create_table();
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  for (const Mode& mode : all_modes()) {
    INFO(mode.pool_mode << std::string(mode.split ? " mode with the split" : " mode"));
    Target t(mode, 2);
    const std::string tag = unique_tag(mode, "open_behind");
    const std::string requests = insert_tagged(tag, "0.2") +
                                 parse_message("", "SELECT 1") + bind_message("", {}) + execute_message() + kTerminate;
    std::string want;
    for (const std::string& target : {primary, t.app("open_behind")}) {
      bool closed = false;
      const std::string seen = tags_after_half_close(target, requests, closed);
      CHECK(closed);
      if (want.empty()) {
        want = seen;
        CHECK(want == "CZ");  // the INSERT's reply; PostgreSQL sends nothing of the sequence it never flushed
      } else {
        CHECK(seen == want);
      }
    }
    CHECK(wait_until([&] { return rows_tagged(tag) == 2; }, 5.0, 0.05));
  }
}

// A COPY FROM STDIN that starts after the client's end of stream (it waited for a server meanwhile) can never get
// its data: PostgreSQL ends such a session, the COPY failing. pgmux waited for the data forever, holding the server.
TEST_CASE("a COPY FROM STDIN that starts after the client's end of stream ends the session; the pool serves on") {
  create_table();
  for (const Mode& mode : all_modes()) {
    if (mode.pool_mode == "session") continue;  // a request waits for a server only in transaction pooling
    INFO(mode.pool_mode << std::string(mode.split ? " mode with the split" : " mode"));
    Target t(mode, 1);
    PgConn holder = connect_nonblocking(t.app("holder"));
    exec_bounded(holder.get(), "BEGIN");
    exec_bounded(holder.get(), "INSERT INTO end_of_stream VALUES ('holder')");
    RawSession s(t.app("copy_after_end"));
    REQUIRE(s.send(query_message("COPY end_of_stream FROM STDIN"), 2.0));
    s.finish_sending();
    exec_bounded(holder.get(), "ROLLBACK");
    RawSession::Read last{};
    const std::string seen = tags(s.read_until('\0', now_seconds() + 5.0, last));
    CHECK(last == RawSession::Read::Closed);
    // CopyInResponse, PostgreSQL's two errors (08006 "unexpected EOF on client connection", FATAL 08P01), the end:
    // pgmux passes the end of the stream on to the server, which answers as directly.
    CHECK(seen == "GEE");
    PgConn next = connect_nonblocking(t.app("next"));  // the pool's one server is free again
    CHECK(PQresultStatus(exec_bounded(next.get(), "SELECT 1").get()) == PGRES_TUPLES_OK);
    t.log_if(last != RawSession::Read::Closed);
  }
}

// Replies pgmux cannot count: an extended sequence flushed but never synced, a Query sent inside one. PostgreSQL
// answers what it read, then ends the session at the Terminate. pgmux passes the Terminate on to the server and
// relays what it sends until it closes (before, it closed at once: the client read nothing).
TEST_CASE("a Terminate behind replies pgmux cannot count goes on to the server: the replies come as directly") {
  create_table();
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  const std::string flush = message('H', "");
  const std::string sequence = parse_message("", "SELECT 1") + bind_message("", {}) + execute_message() + flush;
  const std::pair<std::string, std::string> cases[] = {
      {"Parse/Bind/Execute/Flush, Terminate", sequence + kTerminate},
      {"Parse/Bind/Execute/Flush, a Query, Terminate", sequence + query_message("SELECT 2") + kTerminate},
  };
  for (const Mode& mode : all_modes()) {
    Target t(mode, 2);
    for (const auto& one_case : cases) {
      INFO(mode.pool_mode << std::string(mode.split ? " mode with the split, " : " mode, ") << one_case.first);
      bool closed = false;
      const std::string want = tags_after_half_close(primary, one_case.second, closed);
      CHECK(closed);
      const std::string seen = tags_after_half_close(t.app("uncounted"), one_case.second, closed);
      CHECK(closed);
      CHECK(seen == want);
      CHECK(want.substr(0, 4) == "12DC");
    }
    PgConn next = connect_nonblocking(t.app("next"));  // the pool serves on
    CHECK(PQresultStatus(exec_bounded(next.get(), "SELECT 1").get()) == PGRES_TUPLES_OK);
    // The server's close was asked for: not taken for the whole backend's end (its idle connections closed).
    if (!t.direct()) CHECK(t.proxy.process()->full_log().find("ended as the whole server does") == std::string::npos);
  }
}
