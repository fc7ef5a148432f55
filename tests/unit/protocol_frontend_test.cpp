// Frontend messages: every builder round-trips through the framer and its decoder; malformed bodies fail.
#include <doctest/doctest.h>

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"

using namespace pgmux::protocol;
using namespace std::string_view_literals;

namespace {
// Checks the framing of one whole message and returns its body.
ByteView body_of(const ByteVector& msg, char tag) {
  Frame f = next_frame(msg);
  REQUIRE(f.status == FrameStatus::Frame);
  CHECK(f.tag == tag);
  CHECK(f.total() == msg.size());
  return ByteView(msg).subspan(5);
}
}  // namespace

TEST_CASE("Query round-trip") {
  ByteVector m;
  build_query(m, "select 1; select 2");
  auto q = parse_query(body_of(m, frontend::kQuery));
  REQUIRE(q);
  CHECK(q->sql == "select 1; select 2");
  CHECK_FALSE(parse_query(as_bytes("select 1")));           // no NUL
  CHECK_FALSE(parse_query(as_bytes("select 1\0x"sv)));     // trailing bytes
  CHECK(parse_query(as_bytes("\0"sv))->sql.empty());
}

TEST_CASE("Parse round-trip") {
  ByteVector m;
  build_parse(m, "s1", "select $1::int + $2", {23, 0});
  auto p = parse_parse(body_of(m, frontend::kParse));
  REQUIRE(p);
  CHECK(p->statement == "s1");
  CHECK(p->sql == "select $1::int + $2");
  CHECK(p->parameter_types() == std::vector<int32_t>{23, 0});

  ByteVector u;
  build_parse(u, "", "select 1");
  auto q = parse_parse(body_of(u, frontend::kParse));
  REQUIRE(q);
  CHECK(q->statement.empty());
  CHECK(q->parameter_types().empty());
}

TEST_CASE("Parse malformed bodies") {
  ByteVector m;
  build_parse(m, "s", "select 1", {23});
  ByteView body = ByteView(m).subspan(5);
  CHECK_FALSE(parse_parse(body.first(body.size() - 1)));  // truncated type
  ByteVector extra(body.begin(), body.end());
  extra.push_back(std::byte{0});
  CHECK_FALSE(parse_parse(extra));
  // A count with the high bit set is read unsigned, as PostgreSQL reads it: 0xFFFF announces 65535 types.
  ByteVector high;
  ByteWriter w(high);
  w.cstring("");
  w.cstring("x");
  w.i16(-1);
  CHECK_FALSE(parse_parse(high));  // none follow
  for (int i = 0; i < 65535; ++i) w.i32(23);
  const auto all_types = parse_parse(high);
  REQUIRE(all_types);
  CHECK(all_types->parameter_count() == 65535);
  // Count larger than the data.
  ByteVector big;
  ByteWriter b(big);
  b.cstring("");
  b.cstring("x");
  b.i16(32767);
  b.i32(23);
  CHECK_FALSE(parse_parse(big));
}

TEST_CASE("Bind round-trip (names only)") {
  ByteVector m;
  build_bind(m, "p1", "s1", {std::string("42"), std::nullopt, std::string("")});
  ByteView body = body_of(m, frontend::kBind);
  auto b = parse_bind(body);
  REQUIRE(b);
  CHECK(b->portal == "p1");
  CHECK(b->statement == "s1");
  // The rest of the body is as documented: format count, params, result format count.
  ByteReader r(body);
  r.cstring();
  r.cstring();
  CHECK(r.i16() == 0);
  CHECK(r.i16() == 3);
  CHECK(r.i32() == 2);
  CHECK(as_chars(r.bytes(2)) == "42");
  CHECK(r.i32() == -1);
  CHECK(r.i32() == 0);
  CHECK(r.i16() == 0);
  CHECK(r.ok());
  CHECK(r.at_end());
  CHECK_FALSE(parse_bind(as_bytes("p1\0s1"sv)));
}

TEST_CASE("Describe, Close, Execute round-trip") {
  ByteVector d, c, e;
  build_describe(d, 'P', "portal");
  build_close(c, 'S', "stmt");
  build_execute(e, "portal", 100);
  auto dm = parse_describe(body_of(d, frontend::kDescribe));
  REQUIRE(dm);
  CHECK(dm->kind == 'P');
  CHECK(dm->name == "portal");
  auto cm = parse_close(body_of(c, frontend::kClose));
  REQUIRE(cm);
  CHECK(cm->kind == 'S');
  CHECK(cm->name == "stmt");
  auto em = parse_execute(body_of(e, frontend::kExecute));
  REQUIRE(em);
  CHECK(em->portal == "portal");
  CHECK(em->max_rows == 100);

  CHECK_FALSE(parse_describe(as_bytes("Xname\0"sv)));  // kind must be S or P
  CHECK_FALSE(parse_close(as_bytes("S"sv)));
  CHECK_FALSE(parse_close(ByteView{}));
  CHECK_FALSE(parse_execute(as_bytes("p\0\0\0"sv)));
}

TEST_CASE("Sync, Terminate, Flush are empty messages") {
  ByteVector s, x, h;
  build_sync(s);
  build_terminate(x);
  build_flush(h);
  CHECK(body_of(s, frontend::kSync).empty());
  CHECK(body_of(x, frontend::kTerminate).empty());
  CHECK(body_of(h, frontend::kFlush).empty());
}

TEST_CASE("PasswordMessage round-trip") {
  ByteVector m;
  build_password_message(m, "md5abcdef");
  auto p = parse_password_message(body_of(m, frontend::kPassword));
  REQUIRE(p);
  CHECK(*p == "md5abcdef");
  CHECK_FALSE(parse_password_message(as_bytes("secret")));
  CHECK_FALSE(parse_password_message(as_bytes("a\0b\0"sv)));
}

TEST_CASE("SASLInitialResponse round-trip") {
  ByteVector m;
  build_sasl_initial_response(m, "SCRAM-SHA-256", "n,,n=,r=abc");
  auto s = parse_sasl_initial_response(body_of(m, frontend::kPassword));
  REQUIRE(s);
  CHECK(s->mechanism == "SCRAM-SHA-256");
  CHECK(as_chars(s->data) == "n,,n=,r=abc");

  // Length -1: no data.
  ByteVector none;
  ByteWriter w(none);
  w.cstring("SCRAM-SHA-256");
  w.i32(-1);
  auto n = parse_sasl_initial_response(none);
  REQUIRE(n);
  CHECK(n->data.empty());

  // Length beyond the body, below -1, or with trailing bytes.
  ByteVector bad;
  ByteWriter b(bad);
  b.cstring("M");
  b.i32(10);
  b.bytes("abc"sv);
  CHECK_FALSE(parse_sasl_initial_response(bad));
  ByteVector neg;
  ByteWriter ng(neg);
  ng.cstring("M");
  ng.i32(-2);
  CHECK_FALSE(parse_sasl_initial_response(neg));
  ByteVector trail;
  ByteWriter t(trail);
  t.cstring("M");
  t.i32(1);
  t.bytes("ab"sv);
  CHECK_FALSE(parse_sasl_initial_response(trail));
}

TEST_CASE("SASLResponse carries the raw data as its body") {
  ByteVector m;
  build_sasl_response(m, "c=biws,r=abc,p=xyz");
  CHECK(as_chars(body_of(m, frontend::kPassword)) == "c=biws,r=abc,p=xyz");
}
