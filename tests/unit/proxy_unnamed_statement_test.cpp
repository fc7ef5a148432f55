// The client's unnamed statement: which server holds it and which Parse, as PostgreSQL applies a batch's Parse
// "" and Close 'S' "" messages, including those an error earlier in the batch makes it skip.
#include <doctest/doctest.h>

#include <string>

#include "protocol/frontend_messages.hpp"
#include "proxy/client/unnamed_statement.hpp"

using namespace pgmux::protocol;
using namespace pgmux::proxy;
namespace routing = pgmux::routing;

namespace {

// Servers are only compared: two distinct addresses stand for two connections.
int server_a_storage = 0;
int server_b_storage = 0;
ServerConn* const kServerA = reinterpret_cast<ServerConn*>(&server_a_storage);
ServerConn* const kServerB = reinterpret_cast<ServerConn*>(&server_b_storage);

// The SQL of the kept Parse, or "" when none is kept.
std::string kept_sql(const UnnamedStatement& unnamed) {
  if (unnamed.parse().empty()) return "";
  auto parse = parse_parse(unnamed.parse().subspan(5));
  REQUIRE(parse);
  return std::string(parse->sql);
}

// Sends one scanned batch as request `number` (a new reply-queue entry unless `continues`).
void send(UnnamedStatement& unnamed, const ByteVector& bytes, ServerConn* server, uint64_t number,
          unsigned parses_before = 0, bool continues = false, bool keep_copy = true) {
  RequestInfo info;
  REQUIRE(scan_request(bytes, 1 << 20, 1 << 22, info).status == ScanStatus::Complete);
  routing::Classification c;
  c.kind = routing::StatementKind::Read;
  const bool ends = info.kind != RequestKind::Extended || info.ends_with_sync;
  unnamed.on_sent(info, {server, number, parses_before, !continues, ends}, c, keep_copy);
}

ByteVector parse_bind_sync(const std::string& sql) {
  ByteVector bytes;
  build_parse(bytes, "", sql);
  build_bind(bytes, "", "", {});
  build_execute(bytes, "", 0);
  build_sync(bytes);
  return bytes;
}

// The client's statement "SELECT 1" settled on server A (request 1).
UnnamedStatement settled_on_a() {
  UnnamedStatement unnamed;
  send(unnamed, parse_bind_sync("SELECT 1"), kServerA, 1);
  CHECK_FALSE(unnamed.settled());
  unnamed.on_finished(1, false, 1);
  CHECK(unnamed.settled());
  return unnamed;
}

}  // namespace

TEST_CASE("unnamed statement: a batch that succeeded leaves its Parse on its server") {
  UnnamedStatement unnamed = settled_on_a();
  CHECK(unnamed.server() == kServerA);
  CHECK(kept_sql(unnamed) == "SELECT 1");
  CHECK(unnamed.classification().kind == routing::StatementKind::Read);
}

TEST_CASE("unnamed statement: an error before the Parse keeps the earlier statement") {
  UnnamedStatement unnamed = settled_on_a();
  unnamed.forget_server(kServerA);  // given back: only the copy is left
  ByteVector bytes;
  build_bind(bytes, "", "missing", {});  // 26000: the rest is skipped
  build_parse(bytes, "", "SELECT 2");
  build_sync(bytes);
  send(unnamed, bytes, kServerB, 2);
  CHECK(unnamed.server() == kServerB);  // expected, until the reply tells
  CHECK(kept_sql(unnamed) == "SELECT 2");
  unnamed.on_finished(2, true, 0);
  CHECK(unnamed.server() == nullptr);
  CHECK(kept_sql(unnamed) == "SELECT 1");
}

TEST_CASE("unnamed statement: a Parse that fails itself drops the statement") {
  SUBCASE("first message of the batch") {
    UnnamedStatement unnamed = settled_on_a();
    send(unnamed, parse_bind_sync("SELEC 2"), kServerA, 2);
    unnamed.on_finished(2, true, 0);
    CHECK(unnamed.server() == kServerA);  // which holds none now
    CHECK(kept_sql(unnamed).empty());
  }
  SUBCASE("right after an answered Parse") {
    UnnamedStatement unnamed = settled_on_a();
    ByteVector bytes;
    build_parse(bytes, "named", "SELECT 3");
    build_parse(bytes, "", "SELEC 2");
    build_sync(bytes);
    send(unnamed, bytes, kServerB, 2);
    unnamed.on_finished(2, true, 1);
    CHECK(unnamed.server() == kServerB);
    CHECK(kept_sql(unnamed).empty());
  }
  SUBCASE("behind a Close of it: the Close ran, then the Parse failed") {
    UnnamedStatement unnamed = settled_on_a();
    unnamed.forget_server(kServerA);  // given back: only the copy is left
    ByteVector bytes;
    build_close(bytes, 'S', "");
    build_parse(bytes, "", "SELEC 2");
    build_sync(bytes);
    send(unnamed, bytes, kServerB, 2);
    unnamed.on_finished(2, true, 0);
    CHECK(unnamed.server() == kServerB);  // which holds none: never the old copy prepared elsewhere
    CHECK(kept_sql(unnamed).empty());
  }
  SUBCASE("after a message that may have failed instead: taken as skipped") {
    UnnamedStatement unnamed = settled_on_a();
    ByteVector bytes;
    build_parse(bytes, "named", "SELECT 3");
    build_bind(bytes, "", "named", {});
    build_execute(bytes, "", 0);
    build_parse(bytes, "", "SELEC 2");
    build_sync(bytes);
    send(unnamed, bytes, kServerA, 2);
    unnamed.on_finished(2, true, 1);
    CHECK(unnamed.server() == kServerA);
    CHECK(kept_sql(unnamed) == "SELECT 1");
  }
}

TEST_CASE("unnamed statement: the first of two Parses ran, the second did not") {
  ByteVector bytes;
  build_parse(bytes, "", "SELECT 2");
  build_bind(bytes, "", "", {});
  build_execute(bytes, "", 0);  // fails
  build_parse(bytes, "", "SELECT 3");
  build_sync(bytes);
  for (bool keep_copy : {true, false}) {
    CAPTURE(keep_copy);
    UnnamedStatement unnamed = settled_on_a();
    send(unnamed, bytes, kServerB, 2, 0, false, keep_copy);
    unnamed.on_finished(2, true, 1);
    CHECK(unnamed.server() == kServerB);  // holds "SELECT 2": prepared elsewhere from its copy, if kept
    CHECK(kept_sql(unnamed) == (keep_copy ? "SELECT 2" : ""));
    CHECK(unnamed.classification().kind == routing::StatementKind::Write);  // only the last Parse's class is known
  }
  SUBCASE("the second of three, in a request after another (the copies' buffer is reused)") {
    UnnamedStatement unnamed = settled_on_a();
    ByteVector three;
    for (const char* sql : {"SELECT 6", "SELECT 7", "SELECT 8"}) {
      build_parse(three, "", sql);
      build_bind(three, "", "", {});
      build_execute(three, "", 0);
    }
    build_sync(three);
    send(unnamed, three, kServerB, 2);
    unnamed.on_finished(2, false, 3);
    CHECK(kept_sql(unnamed) == "SELECT 8");
    send(unnamed, three, kServerB, 3);
    unnamed.on_finished(3, true, 2);  // the second one's Execute failed
    CHECK(kept_sql(unnamed) == "SELECT 7");
  }
  SUBCASE("a Close behind it, which the error skipped") {
    ByteVector closing;
    build_parse(closing, "", "SELECT 4");
    build_bind(closing, "", "", {});
    build_execute(closing, "", 0);  // fails
    build_close(closing, 'S', "");
    build_parse(closing, "", "SELECT 5");
    build_sync(closing);
    UnnamedStatement unnamed = settled_on_a();
    send(unnamed, closing, kServerB, 2);
    unnamed.on_finished(2, true, 1);
    CHECK(kept_sql(unnamed) == "SELECT 4");
  }
}

TEST_CASE("unnamed statement: Close 'S' \"\" and a simple Query drop it") {
  UnnamedStatement unnamed = settled_on_a();
  ByteVector close;
  build_close(close, 'S', "");
  build_sync(close);
  send(unnamed, close, kServerA, 2);
  unnamed.on_finished(2, false, 0);
  CHECK(unnamed.server() == kServerA);
  CHECK(kept_sql(unnamed).empty());

  UnnamedStatement pending = settled_on_a();
  send(pending, parse_bind_sync("SELECT 2"), kServerA, 2);
  ByteVector query;
  build_query(query, "SELECT 4");
  send(pending, query, kServerA, 3);
  CHECK(pending.settled());  // nothing left to wait for: the Query drops it whatever the batch did
  pending.on_finished(2, false, 1);
  CHECK(pending.server() == nullptr);
  CHECK(kept_sql(pending).empty());
}

TEST_CASE("unnamed statement: a Flush-ended sequence is settled until a Sync ends it") {
  UnnamedStatement unnamed = settled_on_a();
  ByteVector first;
  build_parse(first, "", "SELECT 2");
  build_flush(first);
  send(unnamed, first, kServerA, 2);
  CHECK(unnamed.settled());  // a use in the same sequence is skipped with it after an error
  ByteVector second;
  build_bind(second, "", "", {});
  build_sync(second);
  send(unnamed, second, kServerA, 2, 1, true);
  CHECK_FALSE(unnamed.settled());
  unnamed.on_finished(2, false, 1);
  CHECK(kept_sql(unnamed) == "SELECT 2");
}

TEST_CASE("unnamed statement: a server that leaves takes what was sent to it") {
  UnnamedStatement unnamed = settled_on_a();
  send(unnamed, parse_bind_sync("SELECT 2"), kServerB, 2);
  unnamed.forget_server(kServerB);  // lost before it answered
  CHECK(unnamed.settled());
  CHECK(unnamed.server() == kServerA);
  CHECK(kept_sql(unnamed) == "SELECT 1");
  unnamed.forget_server(kServerA);
  CHECK(unnamed.server() == nullptr);
  CHECK(kept_sql(unnamed) == "SELECT 1");
}

TEST_CASE("unnamed statement: a request never answered (it ran again elsewhere) is forgotten") {
  UnnamedStatement unnamed = settled_on_a();
  send(unnamed, parse_bind_sync("SELECT 2"), kServerA, 2);
  send(unnamed, parse_bind_sync("SELECT 2"), kServerB, 3);
  unnamed.on_finished(3, false, 1);
  CHECK(unnamed.settled());
  CHECK(unnamed.server() == kServerB);
  CHECK(kept_sql(unnamed) == "SELECT 2");
}

TEST_CASE("unnamed statement: session pooling keeps no copy of a statement the batch binds itself") {
  UnnamedStatement unnamed;
  send(unnamed, parse_bind_sync("SELECT 1"), kServerA, 1, 0, false, false);
  unnamed.on_finished(1, false, 1);
  CHECK(unnamed.server() == kServerA);
  CHECK(kept_sql(unnamed).empty());
  ByteVector parse_only;
  build_parse(parse_only, "", "SELECT 2");
  build_sync(parse_only);
  send(unnamed, parse_only, kServerA, 2, 0, false, false);
  unnamed.on_finished(2, false, 1);
  CHECK(kept_sql(unnamed) == "SELECT 2");
}
