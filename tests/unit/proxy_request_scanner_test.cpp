#include <doctest/doctest.h>

#include <functional>

#include "protocol/frontend_messages.hpp"
#include "proxy/client/request_scanner.hpp"

using namespace pgmux::protocol;
using pgmux::proxy::RequestInfo;
using pgmux::proxy::RequestKind;
using pgmux::proxy::scan_request;
using pgmux::proxy::ScanStatus;
using pgmux::proxy::StatementStepKind;

namespace {
constexpr uint32_t kMax = 1 << 20;
constexpr size_t kBatch = 1 << 22;
}  // namespace

TEST_CASE("a Query is one request, exposing its SQL") {
  ByteVector bytes;
  build_query(bytes, "SELECT 1");
  build_query(bytes, "SELECT 2");
  RequestInfo info;
  auto result = scan_request(bytes, kMax, kBatch, info);
  REQUIRE(result.status == ScanStatus::Complete);
  CHECK(info.kind == RequestKind::Query);
  CHECK(info.sql == "SELECT 1");
  CHECK(info.size == bytes.size() / 2);
}

TEST_CASE("an extended batch runs to Sync and lists parses, uses and closes") {
  ByteVector bytes;
  build_parse(bytes, "s1", "SELECT $1");
  build_bind(bytes, "", "s1", {std::string("7")});
  build_describe(bytes, 'S', "s2");
  build_execute(bytes, "", 0);
  build_close(bytes, 'S', "old");
  build_sync(bytes);
  RequestInfo info;
  auto result = scan_request(bytes, kMax, kBatch, info);
  REQUIRE(result.status == ScanStatus::Complete);
  CHECK(info.kind == RequestKind::Extended);
  CHECK(info.ends_with_sync);
  CHECK(info.size == bytes.size());
  REQUIRE(info.parses.size() == 1);
  CHECK(info.parses[0].name == "s1");
  CHECK(info.parses[0].sql == "SELECT $1");
  REQUIRE(info.used.size() == 2);
  CHECK(info.used[0] == "s1");
  CHECK(info.used[1] == "s2");
  CHECK(info.closes == 1);
  // Every message that names a statement, in batch order (Describe 'S' of a name, Bind of any statement).
  REQUIRE(info.steps.size() == 4);
  CHECK((info.steps[0].kind == StatementStepKind::Parse && info.steps[0].name == "s1" && info.steps[0].parse == 0));
  CHECK((info.steps[1].kind == StatementStepKind::Use && info.steps[1].name == "s1"));
  CHECK((info.steps[2].kind == StatementStepKind::Use && info.steps[2].name == "s2"));
  CHECK((info.steps[3].kind == StatementStepKind::Close && info.steps[3].name == "old"));
}

TEST_CASE("the unnamed statement's Parse, Bind and Close 'S' are steps too, in order") {
  ByteVector bytes;
  build_bind(bytes, "", "", {});
  build_parse(bytes, "", "SELECT 1");
  build_describe(bytes, 'S', "");  // the unnamed statement described: not a named use
  build_close(bytes, 'P', "");     // a portal: no step
  build_close(bytes, 'S', "");
  build_parse(bytes, "n", "SELECT 2");
  build_sync(bytes);
  RequestInfo info;
  REQUIRE(scan_request(bytes, kMax, kBatch, info).status == ScanStatus::Complete);
  REQUIRE(info.steps.size() == 4);
  CHECK((info.steps[0].kind == StatementStepKind::Use && info.steps[0].name.empty()));
  CHECK((info.steps[1].kind == StatementStepKind::Parse && info.steps[1].name.empty()));
  CHECK((info.steps[2].kind == StatementStepKind::Close && info.steps[2].name.empty()));
  CHECK((info.steps[3].kind == StatementStepKind::Parse && info.steps[3].name == "n"));
  CHECK(info.binds_unnamed);
  CHECK(info.closes == 0);  // named statements only
  CHECK(info.close_messages == 2);
  REQUIRE(info.parses.size() == 2);
  CHECK(info.parses[0].position == 1);  // the message's place in the batch
  CHECK(info.parses[1].position == 5);
  CHECK(info.parses_named);
  CHECK(info.parses_unnamed);
}

TEST_CASE("Flush ends a batch without Sync; every split point but the last needs more") {
  ByteVector bytes;
  build_parse(bytes, "", "SELECT 1");
  build_flush(bytes);
  RequestInfo info;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    auto partial = scan_request(ByteView(bytes.data(), cut), kMax, kBatch, info);
    CHECK(partial.status == ScanStatus::NeedMore);
  }
  auto result = scan_request(bytes, kMax, kBatch, info);
  REQUIRE(result.status == ScanStatus::Complete);
  CHECK_FALSE(info.ends_with_sync);
  CHECK(info.size == bytes.size());
}

TEST_CASE("NeedMore reports the size a partly received message needs") {
  ByteVector bytes;
  build_query(bytes, std::string(1000, 'x'));
  RequestInfo info;
  auto result = scan_request(ByteView(bytes.data(), 10), kMax, kBatch, info);
  CHECK(result.status == ScanStatus::NeedMore);
  CHECK(result.bytes_needed == bytes.size());
}

TEST_CASE("a Query after unsynced extended messages ends the batch before it") {
  ByteVector bytes;
  build_parse(bytes, "", "SELECT 1");
  size_t first = bytes.size();
  build_query(bytes, "SELECT 2");
  RequestInfo info;
  auto result = scan_request(bytes, kMax, kBatch, info);
  REQUIRE(result.status == ScanStatus::Complete);
  CHECK(info.kind == RequestKind::Extended);
  CHECK(info.size == first);
}

TEST_CASE("Terminate, FunctionCall and stray COPY messages are requests of their own") {
  RequestInfo info;
  ByteVector terminate;
  build_terminate(terminate);
  REQUIRE(scan_request(terminate, kMax, kBatch, info).status == ScanStatus::Complete);
  CHECK(info.kind == RequestKind::Terminate);

  ByteVector copy_done{std::byte{'c'}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}};
  REQUIRE(scan_request(copy_done, kMax, kBatch, info).status == ScanStatus::Complete);
  CHECK(info.kind == RequestKind::CopyMessage);
}

TEST_CASE("oversized messages and unbounded batches are errors") {
  RequestInfo info;
  ByteVector big;
  build_query(big, std::string(2000, 'x'));
  auto too_big = scan_request(big, 1024, kBatch, info);
  CHECK(too_big.status == ScanStatus::Error);
  CHECK(too_big.error.find("max_message_size") != std::string::npos);

  ByteVector endless;
  for (int i = 0; i < 100; ++i) build_parse(endless, "", "SELECT 1");
  auto unbounded = scan_request(endless, kMax, 256, info);
  CHECK(unbounded.status == ScanStatus::Error);
}

TEST_CASE("NeedMore on a message boundary asks for the next header, so the buffer always has room to read it") {
  ByteVector bytes;
  build_parse(bytes, "", std::string(40000, 'x'));
  const size_t boundary = bytes.size();
  build_bind(bytes, "", "", {});
  build_sync(bytes);
  RequestInfo info;
  auto at_boundary = scan_request(ByteView(bytes.data(), boundary), kMax, kBatch, info);
  CHECK(at_boundary.status == ScanStatus::NeedMore);
  CHECK(at_boundary.bytes_needed == boundary + 5);
  auto mid_header = scan_request(ByteView(bytes.data(), boundary + 3), kMax, kBatch, info);
  CHECK(mid_header.status == ScanStatus::NeedMore);
  CHECK(mid_header.bytes_needed == boundary + 5);
}

TEST_CASE("an unknown message type ends the request with it (PostgreSQL answers it; nothing waits for Sync)") {
  for (char type : {'z', '\0', 'p'}) {
    ByteVector bytes;
    build_parse(bytes, "", "SELECT 1");
    bytes.push_back(std::byte(type));
    for (std::byte b : {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}}) bytes.push_back(b);
    const size_t request = bytes.size();
    build_sync(bytes);
    RequestInfo info;
    auto result = scan_request(bytes, kMax, kBatch, info);
    REQUIRE(result.status == ScanStatus::Complete);
    CHECK(info.size == request);
    CHECK_FALSE(info.ends_with_sync);
    CHECK(info.messages == 2);
  }
}

TEST_CASE("a Bind of the unnamed statement is flagged") {
  ByteVector bytes;
  build_bind(bytes, "", "", {});
  build_execute(bytes, "", 0);
  build_sync(bytes);
  RequestInfo info;
  REQUIRE(scan_request(bytes, kMax, kBatch, info).status == ScanStatus::Complete);
  CHECK(info.binds_unnamed);
  CHECK(info.used.empty());
}

// Only the server that parsed the unnamed statement has it: a Bind or Describe that comes before the batch's own
// Parse of it uses an earlier request's statement, and pgmux must route or prepare it (another client's may be
// on whichever server the pool hands over).
TEST_CASE("a Bind or Describe of the unnamed statement before the batch parses it uses the earlier one") {
  const auto scan = [](const std::function<void(ByteVector&)>& build) {
    ByteVector bytes;
    build(bytes);
    build_sync(bytes);
    RequestInfo info;
    REQUIRE(scan_request(bytes, kMax, kBatch, info).status == ScanStatus::Complete);
    return info;
  };
  CHECK(scan([](ByteVector& b) { build_bind(b, "", "", {}); }).uses_prior_unnamed);
  CHECK(scan([](ByteVector& b) { build_describe(b, 'S', ""); }).uses_prior_unnamed);
  CHECK(scan([](ByteVector& b) {
          build_bind(b, "", "", {});
          build_parse(b, "", "SELECT 2");
          build_bind(b, "", "", {});
        }).uses_prior_unnamed);
  CHECK_FALSE(scan([](ByteVector& b) {
                build_parse(b, "", "SELECT 1");
                build_describe(b, 'S', "");
                build_bind(b, "", "", {});
              }).uses_prior_unnamed);
  CHECK_FALSE(scan([](ByteVector& b) {
                build_describe(b, 'P', "");  // the unnamed portal
                build_bind(b, "", "named", {});
              }).uses_prior_unnamed);
}

namespace {
ByteVector raw_message(char tag, std::string_view body) {
  ByteVector m{std::byte(tag)};
  const auto length = static_cast<uint32_t>(body.size() + 4);
  for (int shift = 24; shift >= 0; shift -= 8) m.push_back(std::byte(length >> shift));
  for (char c : body) m.push_back(std::byte(c));
  return m;
}
}  // namespace

TEST_CASE("a Query PostgreSQL cannot read is a request of its own, with no text and counted as refused") {
  using namespace std::string_view_literals;
  for (const std::string_view body : {"ab"sv, "SELECT 1\0x"sv}) {
    CAPTURE(body);
    ByteVector bytes = raw_message('Q', body);
    const size_t first = bytes.size();
    build_query(bytes, "SELECT 2");
    RequestInfo info;
    REQUIRE(scan_request(bytes, kMax, kBatch, info).status == ScanStatus::Complete);
    CHECK(info.kind == RequestKind::Query);
    CHECK(info.size == first);
    CHECK(info.sql.empty());
    CHECK(info.refused_messages == 1);
    REQUIRE(scan_request(ByteView(bytes).subspan(first), kMax, kBatch, info).status == ScanStatus::Complete);
    CHECK(info.refused_messages == 0);
    CHECK(info.sql == "SELECT 2");
  }
}

TEST_CASE("batch messages PostgreSQL cannot read go on to Sync and record no statement step") {
  using namespace std::string_view_literals;
  const std::vector<std::pair<char, std::string_view>> unreadable = {
      {'P', "s9"sv},                  // name without NUL
      {'P', "s9\0SELECT 1\0\0\1"sv},  // one type announced, half of it there
      {'P', "s9\0SELECT 1\0\0\0x"sv},  // a byte after the types
      {'B', "portal"sv},              // portal name without NUL
      {'B', "\0s9"sv},                // statement name without NUL
      {'D', ""sv},                    // no kind
      {'D', "Xs9\0"sv},               // a kind PostgreSQL refuses
      {'D', "Ss9\0x"sv},              // a byte after the name
      {'C', "Qs9\0"sv},
      {'C', "Ss9"sv},
  };
  for (const auto& message : unreadable) {
    const char tag = message.first;  // not a structured binding: clang 14 cannot capture one in CAPTURE's lambda
    const std::string_view body = message.second;
    CAPTURE(tag);
    CAPTURE(body);
    ByteVector bytes;
    build_parse(bytes, "s1", "SELECT 1");
    const ByteVector bad = raw_message(tag, body);
    bytes.insert(bytes.end(), bad.begin(), bad.end());
    build_close(bytes, 'S', "s1");
    build_sync(bytes);
    RequestInfo info;
    REQUIRE(scan_request(bytes, kMax, kBatch, info).status == ScanStatus::Complete);
    CHECK(info.kind == RequestKind::Extended);
    CHECK(info.size == bytes.size());
    CHECK(info.refused_messages == 1);
    REQUIRE(info.steps.size() == 2);  // the Parse and the Close of s1 only
    CHECK(info.steps[0].kind == StatementStepKind::Parse);
    CHECK(info.steps[1].kind == StatementStepKind::Close);
    CHECK(info.close_messages == (tag == 'C' ? 2u : 1u));  // each Close is counted, readable or not
    CHECK(info.used.empty());
  }
}
