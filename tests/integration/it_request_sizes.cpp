// Requests of every size get through pgmux whole and never hang (issue 9, item 1): simple and extended requests
// of 1 KiB to 60 MiB (across the 32 KiB receive buffer), a 40 KB Bind again and again, 1,000 Parse/Bind/Execute
// in one Sync, a request trickled in one byte at a time; a client that vanishes in the middle of a large request
// (or while it waits for a server) leaves nothing behind in SHOW CLIENTS or the pool; and an unknown frontend
// message type is answered as PostgreSQL does (FATAL 08P01, then close). Every case runs in session and
// transaction pooling, with every wait bounded: a hang fails the case instead of blocking the run.
#include <doctest/doctest.h>
#include <poll.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::sizes;
using routing::now_seconds;
using routing::wait_until;

namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;
const size_t kSizes[] = {1 * KiB, 31 * KiB, 32 * KiB, 33 * KiB, 1 * MiB, 60 * MiB};

enum class Kind { Simple, Params, Prepared };
std::string kind_name(Kind kind) {  // std::string: doctest prints a char* as a pointer
  switch (kind) {
    case Kind::Simple: return "simple Query";
    case Kind::Params: return "PQexecParams";
    default: return "PQprepare + PQexecPrepared";
  }
}

// What libpq writes around the payload (fe-exec.c, protocol 3.0), so that a request's size on the wire is exact.
// Query: 'Q', int32 length, sql, NUL.
constexpr size_t kQueryFraming = 1 + 4 + 1;
// PQsendQueryParams, one text parameter, no types: Parse ('P', len, "" NUL, sql NUL, int16 0) + Bind ('B', len,
// "" NUL, "" NUL, int16 0, int16 1, int32 len, value, int16 1, int16 0) + Describe portal (7) + Execute (10) + Sync.
constexpr size_t kParamsFraming = (1 + 4 + 1 + 1 + 2) + (1 + 4 + 1 + 1 + 2 + 2 + 4 + 2 + 2) + 7 + 10 + 5;
const std::string kParamSql = "SELECT length($1::text), md5($1::text)";
// PQsendPrepare: Parse ('P', len, name NUL, sql NUL, int16 0) + Sync.
const std::string kStmt = "big_stmt";
const size_t kPrepareFraming = 1 + 4 + kStmt.size() + 1 + 1 + 2 + 5;

// Sends the request of `kind` made `total` bytes long on a fresh connection; "" when its answer is right.
std::string sized_request(const Target& t, Kind kind, size_t total) {
  PgConn conn = connect_nonblocking(t.app("sizes"));
  PGconn* c = conn.get();
  const Limits limits = Limits::for_bytes(total);
  std::string error, literal;
  std::vector<PgResult> results;
  if (kind == Kind::Params) {
    literal = payload(total - kParamsFraming - kParamSql.size(), static_cast<unsigned>(total));
    const char* values[1] = {literal.c_str()};
    if (PQsendQueryParams(c, kParamSql.c_str(), 1, nullptr, values, nullptr, nullptr, 0) != 1) {
      return std::string("PQsendQueryParams: ") + PQerrorMessage(c);
    }
    results = finish(c, limits, error);
  } else {
    const size_t framing = kind == Kind::Simple ? kQueryFraming : kPrepareFraming;
    literal = payload(total - framing - literal_query_overhead(), static_cast<unsigned>(total));
    const std::string sql = literal_query(literal);
    const int sent = kind == Kind::Simple ? PQsendQuery(c, sql.c_str())
                                          : PQsendPrepare(c, kStmt.c_str(), sql.c_str(), 0, nullptr);
    if (sent != 1) return std::string("sending: ") + PQerrorMessage(c);
    results = finish(c, limits, error);
  }
  if (!error.empty()) return error;
  if (kind == Kind::Prepared) {  // the Parse was the big request; now run the statement
    if (results.size() != 1 || PQresultStatus(results[0].get()) != PGRES_COMMAND_OK) {
      return "PQprepare: " + (results.empty() ? std::string("no result") : describe(c, results[0].get()));
    }
    if (PQsendQueryPrepared(c, kStmt.c_str(), 0, nullptr, nullptr, nullptr, 0) != 1) {
      return std::string("PQsendQueryPrepared: ") + PQerrorMessage(c);
    }
    results = finish(c, limits, error);
    if (!error.empty()) return "PQexecPrepared: " + error;
  }
  if (results.size() != 1) return "expected 1 result, got " + std::to_string(results.size());
  return check_length_md5(c, results[0].get(), literal);
}

std::string guarded(const std::function<std::string()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("simple and extended requests of 1 KiB to 60 MiB come back whole, and none hangs") {
  for (const Mode& mode : modes(true)) {
    Target t(mode, 20);
    bool failed = false;
    for (Kind kind : {Kind::Simple, Kind::Params, Kind::Prepared}) {
      for (size_t total : kSizes) {
        const double started = now_seconds();
        const std::string error = guarded([&] { return sized_request(t, kind, total); });
        CHECK_MESSAGE(error.empty(), mode.pool_mode << " mode, " << kind_name(kind) << " of " << total
                                                    << " bytes: " << error << " (after "
                                                    << now_seconds() - started << " s)");
        failed |= !error.empty();
        if (error.empty() && total >= MiB) {
          MESSAGE(mode.pool_mode << " mode, " << kind_name(kind) << " of " << total << " bytes: "
                                 << now_seconds() - started << " s");
        }
      }
    }
    t.log_if(failed);
  }
}

TEST_CASE("a Bind with a 40 KB parameter, five times on one connection") {
  for (const Mode& mode : modes(true)) {
    Target t(mode, 20);
    INFO(mode.pool_mode << " mode");
    bool failed = false;
    const std::string error = guarded([&] {
      PgConn conn = connect_nonblocking(t.app("bind40k"));
      for (unsigned i = 0; i < 5; ++i) {
        const std::string value = payload(40000, 40 + i);
        const char* values[1] = {value.c_str()};
        if (PQsendQueryParams(conn.get(), kParamSql.c_str(), 1, nullptr, values, nullptr, nullptr, 0) != 1) {
          return "PQsendQueryParams: " + std::string(PQerrorMessage(conn.get()));
        }
        std::string error;
        std::vector<PgResult> results = finish(conn.get(), Limits{3, 20}, error);
        if (error.empty() && results.size() != 1) error = "got " + std::to_string(results.size()) + " results";
        if (error.empty()) error = check_length_md5(conn.get(), results[0].get(), value);
        if (!error.empty()) return "Bind #" + std::to_string(i + 1) + ": " + error;
      }
      exec_bounded(conn.get(), "SELECT 1");  // and the session goes on
      return std::string();
    });
    CHECK_MESSAGE(error.empty(), error);
    failed |= !error.empty();
    t.log_if(failed);
  }
}

namespace {

constexpr int kPipelined = 1000;

// 1,000 Parse/Bind/Describe/Execute in one pipeline with one Sync (about 66 KB); every result checked in order.
std::string pipeline_of_1000(PGconn* c) {
  if (PQenterPipelineMode(c) != 1) return std::string("PQenterPipelineMode: ") + PQerrorMessage(c);
  for (int i = 0; i < kPipelined; ++i) {
    const std::string value = std::to_string(i);
    const char* values[1] = {value.c_str()};
    if (PQsendQueryParams(c, "SELECT $1::int * 2", 1, nullptr, values, nullptr, nullptr, 0) != 1) {
      return std::string("PQsendQueryParams: ") + PQerrorMessage(c);
    }
  }
  if (PQpipelineSync(c) != 1) return std::string("PQpipelineSync: ") + PQerrorMessage(c);
  const Limits limits{3, 60};
  const double started = now_seconds();
  std::string error = flush(c, limits, started);
  if (!error.empty()) return error;
  for (int i = 0; i < kPipelined; ++i) {
    PgResult res = next_result(c, limits, started, error);
    const std::string where = "statement " + std::to_string(i) + ": ";
    if (!error.empty()) return where + error;
    if (!res || PQresultStatus(res.get()) != PGRES_TUPLES_OK) return where + describe(c, res.get());
    if (PQgetvalue(res.get(), 0, 0) != std::to_string(2 * i)) return where + "got " + PQgetvalue(res.get(), 0, 0);
    PgResult end = next_result(c, limits, started, error);
    if (!error.empty() || end) return where + "no end of result " + error;
  }
  PgResult sync = next_result(c, limits, started, error);
  if (!error.empty()) return "Sync: " + error;
  if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) return "Sync: got " + describe(c, sync.get());
  if (PQexitPipelineMode(c) != 1) return std::string("PQexitPipelineMode: ") + PQerrorMessage(c);
  return "";
}

}  // namespace

TEST_CASE("1,000 Parse/Bind/Execute in one Sync (libpq pipeline mode)") {
  for (const Mode& mode : modes(true)) {
    Target t(mode, 20);
    const std::string error = guarded([&] {
      PgConn conn = connect_nonblocking(t.app("pipeline"));
      std::string e = pipeline_of_1000(conn.get());
      if (e.empty()) exec_bounded(conn.get(), "SELECT 1");
      return e;
    });
    CHECK_MESSAGE(error.empty(), mode.pool_mode << " mode: " << error);
    t.log_if(!error.empty());
  }
}

namespace {

// Checks the replies of one length/md5 request read raw: tags as expected, the row matches what was sent.
std::string check_raw_reply(const std::vector<BackendMessage>& replies, RawSession::Read last,
                            const std::string& want_tags, const std::string& sent) {
  if (last != RawSession::Read::Message) {
    return std::string(last == RawSession::Read::Timeout ? "hang" : "closed") + " after replies '" + tags(replies) +
           "'";
  }
  if (tags(replies) != want_tags) return "replies '" + tags(replies) + "', expected '" + want_tags + "'";
  const std::vector<std::string> row = data_row(replies[want_tags.find('D')].body);
  if (row.size() != 2 || row[0] != std::to_string(sent.size()) || row[1] != md5_hex(sent)) {
    return "row (" + (row.empty() ? std::string() : row[0]) + ", ...) does not match what was sent";
  }
  return "";
}

// A 40 KB Query, then a 40 KB Parse/Bind/Describe/Execute/Sync, each written one byte per send().
std::string byte_by_byte(const Target& t) {
  RawSession s(t.app("one_byte"));
  const std::string literal = payload(40000, 11);
  if (!s.send(query_message(literal_query(literal)), 30, 1)) return "writing the Query failed";
  RawSession::Read last{};
  std::string error = check_raw_reply(s.read_until('Z', now_seconds() + 5, last), last, "TDCZ", literal);
  if (!error.empty()) return "Query: " + error;

  const std::string value = payload(40000, 12);
  const std::string batch = parse_message("", kParamSql) + bind_message("", {value}) + describe_portal_message() +
                            execute_message() + sync_message();
  if (!s.send(batch, 30, 1)) return "writing the extended batch failed";
  error = check_raw_reply(s.read_until('Z', now_seconds() + 5, last), last, "12TDCZ", value);
  return error.empty() ? "" : "Parse/Bind/Execute/Sync: " + error;
}

}  // namespace

TEST_CASE("a request written one byte at a time is answered") {
  for (const Mode& mode : modes(true)) {
    Target t(mode, 20);
    const double started = now_seconds();
    const std::string error = guarded([&] { return byte_by_byte(t); });
    CHECK_MESSAGE(error.empty(), mode.pool_mode << " mode: " << error << " (after " << now_seconds() - started
                                                << " s)");
    t.log_if(!error.empty());
  }
}

namespace {

// True when the admin console's SHOW CLIENTS has a client with this application_name.
bool listed(PGconn* console, const std::string& application_name) {
  PgResult res = exec_bounded(console, "SHOW CLIENTS");
  const int column = PQfnumber(res.get(), "application_name");
  if (column < 0) throw std::runtime_error("SHOW CLIENTS has no application_name column");
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    if (PQgetvalue(res.get(), r, column) == application_name) return true;
  }
  return false;
}

// Waits up to `seconds` until SHOW CLIENTS no longer lists the client; true when it went.
bool gone_within(PGconn* console, const std::string& application_name, double seconds) {
  return wait_until([&] { return !listed(console, application_name); }, seconds, 0.05);
}

// A 100 KB Parse/Bind/Describe/Execute/Sync of a length/md5 query.
std::string large_batch(unsigned seed) {
  return parse_message("", literal_query(payload(100000, seed))) + bind_message("", {}) +
         describe_portal_message() + execute_message() + sync_message();
}

// "" when a new client runs a query within 5 s (connect included).
std::string fresh_client_served(const Target& t) {
  const double started = now_seconds();
  const std::string error = guarded([&] {
    PgConn conn = connect_nonblocking(t.app("fresh"));
    exec_bounded(conn.get(), "SELECT 1", 5.0);
    return std::string();
  });
  if (!error.empty()) return error;
  return now_seconds() - started < 5.0 ? "" : "served only after " + std::to_string(now_seconds() - started) + " s";
}

}  // namespace

TEST_CASE("20 clients vanishing in the middle of a 100 KB request: gone from SHOW CLIENTS, pool of 1 serves") {
  for (const Mode& mode : modes(false)) {
    Target t(mode, 1);
    INFO(mode.pool_mode << " mode, pool_size 1");
    PgConn console = t.direct() ? PgConn() : connect_nonblocking(t.console());
    bool failed = false;
    for (unsigned i = 0; i < 20 && !failed; ++i) {
      const std::string name = "aborted_" + std::to_string(i);
      const bool whole = i % 2 == 0;  // even: the whole request, Sync included; odd: 60 KB of it
      const std::string what = name + (whole ? " (whole request)" : " (60 KB of it)");
      const std::string error = guarded([&] {
        const std::string batch = large_batch(i);
        RawSession s(t.app(name));
        const bool sent = s.send(whole ? batch : batch.substr(0, 60000), 5.0);
        s.abort();
        return sent ? std::string() : std::string("could not write the request");
      });
      // A stuck pool makes every later login wait out its connect_timeout: stop at the first failure.
      CHECK_MESSAGE(error.empty(), what << ": " << error);
      failed |= !error.empty();
      if (!console || failed) continue;  // pgmux only: the console
      const bool gone = gone_within(console.get(), name, 2.0);
      CHECK_MESSAGE(gone, what << " still in SHOW CLIENTS 2 s after it disconnected");
      failed |= !gone;
    }
    const std::string error = fresh_client_served(t);
    CHECK_MESSAGE(error.empty(), "after 20 aborted clients: " << error);
    t.log_if(failed || !error.empty());
  }
}

namespace {

// Drives PQconnectStart/PQconnectPoll for `seconds` at most; the connection may still be logging in after it.
PgConn login_pending(const std::string& conninfo, double seconds) {
  PgConn conn(PQconnectStart(conninfo.c_str()));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  const double deadline = now_seconds() + seconds;
  while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
    const double left = deadline - now_seconds();
    pollfd p{PQsocket(conn.get()), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left * 1000)) <= 0) break;
    st = PQconnectPoll(conn.get());
  }
  return conn;
}

// A client that waits for the pool's only server (held by another client), then vanishes. Transaction pooling:
// a logged-in client's 100 KB extended request waits. Session pooling takes the server at login, so there the
// client vanishes while its login waits.
void vanish_while_waiting(const Target& t, PGconn* console) {
  if (t.mode.pool_mode == "session") {
    PgConn waiter = login_pending(t.app("waiter"), 1.0);
    CHECK_MESSAGE(PQstatus(waiter.get()) != CONNECTION_OK,
                  "the waiter logged in although the only server is busy: the test proves nothing");
    CHECK(listed(console, "waiter"));
    return;  // PQfinish: the socket closes in the middle of the login
  }
  RawSession waiter(t.app("waiter"));
  REQUIRE(waiter.send(large_batch(99), 5.0));
  if (console) {
    BackendMessage m;
    CHECK_MESSAGE(waiter.read(m, now_seconds() + 0.5) == RawSession::Read::Timeout,
                  "the waiter was answered although the only server is busy: the test proves nothing");
    CHECK(listed(console, "waiter"));
  }
  waiter.abort();
}

}  // namespace

TEST_CASE("a client that vanishes while it waits for a server leaves nothing behind") {
  for (const Mode& mode : modes(false)) {
    Target t(mode, 1);
    INFO(mode.pool_mode << " mode, pool_size 1");
    PgConn console = t.direct() ? PgConn() : connect_nonblocking(t.console());
    PgConn holder = connect_nonblocking(t.app("holder"));
    exec_bounded(holder.get(), "BEGIN");
    exec_bounded(holder.get(), "SELECT 1");  // holds the pool's only server
    vanish_while_waiting(t, console.get());
    if (console) {
      const bool early = gone_within(console.get(), "waiter", 2.0);
      MESSAGE(mode.pool_mode << " mode: waiter gone before the holder committed: " << early);
    }
    exec_bounded(holder.get(), "COMMIT");
    if (mode.pool_mode == "session") holder.reset();  // in session pooling the server goes at logout
    const std::string error = fresh_client_served(t);
    CHECK_MESSAGE(error.empty(), "after the waiter vanished and the holder committed: " << error);
    bool gone = true;
    if (console) {
      gone = gone_within(console.get(), "waiter", 2.0);
      CHECK_MESSAGE(gone, "the vanished waiter is still in SHOW CLIENTS");
    }
    t.log_if(!error.empty() || !gone);
  }
}

namespace {

// What a client sees after writing `bytes`: the replies, the ErrorResponse fields and whether the peer closed
// within 2 s.
struct Seen {
  std::vector<BackendMessage> replies;
  std::map<char, std::string> error;
  bool closed = false;
  std::string field(char code) const {
    auto it = error.find(code);
    return it == error.end() ? "" : it->second;
  }
};

Seen write_and_watch(const std::string& conninfo, const std::string& bytes) {
  RawSession s(conninfo);
  Seen seen;
  if (!s.send(bytes, 2.0)) return seen;
  const double deadline = now_seconds() + 2.0;
  RawSession::Read last{};
  seen.replies = s.read_until('\0', deadline, last);  // no backend message has tag 0: reads to EOF or deadline
  seen.closed = last == RawSession::Read::Closed;
  for (const BackendMessage& m : seen.replies) {
    if (m.tag == 'E') seen.error = error_fields(m.body);
  }
  return seen;
}

struct Junk {
  std::string name;
  std::string bytes;
  bool same_replies;  // every reply before the error must match PostgreSQL's too
};

std::vector<Junk> junk_scripts() {
  return {
      {"type byte 0, length 4", std::string("\0\0\0\0\x04", 5), false},
      {"type 'z', length 4", message('z', ""), false},
      // PostgreSQL answers at the type byte: no length needs to follow.
      {"type 'z' alone", std::string("z"), false},
      {"type 'z' and half a length", std::string("z\0\0", 3), false},
      {"Parse (no Sync) then type 'z', one write", parse_message("", "SELECT 1") + message('z', ""), false},
      {"Query then type 'z', one write", query_message("SELECT 1") + message('z', ""), true},
  };
}

}  // namespace

TEST_CASE("unknown frontend message types: FATAL 08P01 like PostgreSQL, then the connection closes") {
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  for (const Mode& mode : modes(true)) {
    Target t(mode, 20);
    bool failed = false;
    for (const Junk& junk : junk_scripts()) {
      INFO(mode.pool_mode << " mode, " << junk.name);
      const Seen want = write_and_watch(primary, junk.bytes);
      REQUIRE_MESSAGE(want.closed, "PostgreSQL itself did not close");
      REQUIRE(want.field('C') == "08P01");
      const Seen got = write_and_watch(t.app("junk"), junk.bytes);
      INFO("PostgreSQL: '" << tags(want.replies) << "' " << want.field('V') << " " << want.field('M')
                           << "; through pgmux: '" << tags(got.replies) << "' " << got.field('V') << " "
                           << got.field('C') << " " << got.field('M'));
      CHECK(got.field('C') == want.field('C'));
      CHECK(got.field('S') == want.field('S'));
      CHECK(got.field('V') == want.field('V'));
      CHECK(got.field('M') == want.field('M'));
      CHECK_MESSAGE(got.closed, "not closed within 2 s");
      if (junk.same_replies) CHECK(tags(got.replies) == tags(want.replies));
      failed |= !got.closed || got.field('C') != want.field('C') || got.field('M') != want.field('M');
    }
    const std::string error = fresh_client_served(t);  // and everyone else goes on
    CHECK_MESSAGE(error.empty(), error);
    t.log_if(failed || !error.empty());
  }
}

// A length PostgreSQL refuses as such (below 4, or negative as its int32): it logs "invalid message length" and
// closes without a word, after answering what came before. pgmux sent a FATAL 08P01 first ("message length too
// large (max_message_size ...)" for a negative one).
TEST_CASE("invalid message lengths: the connection closes without a word, like PostgreSQL") {
  const std::string primary = conninfo(cluster_ports().primary, "app", "app", "app");
  const std::vector<std::pair<std::string, std::string>> scripts = {
      {"Query of length 3", std::string("Q\0\0\0\3", 5)},
      {"Query of length 0", std::string("Q\0\0\0\0", 5)},
      {"Query of length -1", std::string("Q\xff\xff\xff\xff", 5)},
      {"Sync of length -2147483648", std::string("S\x80\0\0\0", 5)},
      {"a Query, then a length of 2", query_message("SELECT 1") + std::string("Q\0\0\0\2", 5)},
  };
  for (const Mode& mode : direct_mode() ? modes(false) : std::vector<Mode>{{"session", true}, {"transaction", true},
                                                                       {"session", false}, {"transaction", false}}) {
    Target t(mode, 20);
    for (const auto& script : scripts) {
      // Not a structured binding: clang refuses one captured by INFO's lambda.
      const std::string& name = script.first;
      const std::string& bytes = script.second;
      INFO(mode.pool_mode << (mode.split ? " mode with the split, " : " mode, ") << name);
      const Seen want = write_and_watch(primary, bytes);
      REQUIRE(want.closed);
      const Seen got = write_and_watch(t.app("bad_length"), bytes);
      CHECK(tags(got.replies) == tags(want.replies));
      CHECK(got.error.empty());
      CHECK(got.closed);
    }
    const std::string error = fresh_client_served(t);
    CHECK_MESSAGE(error.empty(), error);
  }
}

// The admin console is pgmux's own: it answers a Query it cannot read as PostgreSQL would (an application's goes
// to the server, which answers it: the differential script unreadable_messages), and the session goes on.
TEST_CASE("a Query the admin console cannot read: PostgreSQL's ERROR 08P01, and the console goes on") {
  if (direct_mode()) return;  // the console is pgmux's
  Target t(Mode{"session", false}, 5);
  RawSession console(t.console());
  const std::vector<std::pair<std::string, std::string>> unreadable = {
      {message('Q', "SHOW VERSION"), "invalid string in message"},
      {message('Q', std::string("SHOW VERSION\0x", 14)), "invalid message format"},
  };
  for (const auto& [bytes, wanted] : unreadable) {
    const std::string& expected = wanted;  // not a structured binding: INFO's lambda captures it
    INFO(expected);
    REQUIRE(console.send(bytes, 5));
    RawSession::Read last = RawSession::Read::Timeout;
    const std::vector<BackendMessage> replies = console.read_until('Z', now_seconds() + 5, last);
    REQUIRE(tags(replies) == "EZ");
    const auto fields = error_fields(replies[0].body);
    CHECK(fields.at('S') == "ERROR");
    CHECK(fields.at('C') == "08P01");
    CHECK(fields.at('M') == expected);
    REQUIRE(console.send(query_message("SHOW VERSION"), 5));
    const std::vector<BackendMessage> after = console.read_until('Z', now_seconds() + 5, last);
    CHECK(tags(after) == "TDCZ");
  }
}
