// Startup-phase packets: every kind, and malformed ones.
#include <doctest/doctest.h>

#include <optional>

#include "protocol/byte_writer.hpp"
#include "protocol/startup.hpp"

using namespace pgmux::protocol;

namespace {
// A startup packet with an arbitrary code and body (the length is patched in).
ByteVector packet(int32_t code, std::string_view body) {
  ByteVector out;
  ByteWriter w(out);
  w.begin_untagged();
  w.i32(code);
  w.bytes(body);
  w.end_message();
  return out;
}

std::string error_of(const StartupPacket& p) {
  const auto* e = std::get_if<StartupParseError>(&p);
  return e ? e->message : std::string();
}

std::optional<StartupRefusal> refusal_of(const StartupPacket& p) {
  const auto* e = std::get_if<StartupParseError>(&p);
  return e ? std::optional(e->refusal) : std::nullopt;
}

constexpr std::string_view kLayoutError = "invalid startup packet layout: expected terminator as last byte";
}  // namespace

TEST_CASE("StartupMessage round-trips") {
  ByteVector pkt;
  build_startup_message(pkt, {{"user", "app"}, {"database", "appdb"}, {"application_name", ""},
                              {"options", "-c search_path=x"}});
  StartupPacket p = parse_startup_packet(pkt);
  auto* m = std::get_if<StartupMessage>(&p);
  REQUIRE(m != nullptr);
  CHECK(m->protocol_version == kProtocolVersion3);
  REQUIRE(m->parameters.size() == 4);
  CHECK(m->parameters[0] == std::pair<std::string, std::string>{"user", "app"});
  CHECK(m->parameters[3].second == "-c search_path=x");
  REQUIRE(m->find("database") != nullptr);
  CHECK(*m->find("database") == "appdb");
  REQUIRE(m->find("application_name") != nullptr);
  CHECK(m->find("application_name")->empty());
  CHECK(m->find("missing") == nullptr);
}

TEST_CASE("StartupMessage with no parameters") {
  ByteVector pkt;
  build_startup_message(pkt, {});
  CHECK(pkt.size() == 9);
  auto p = parse_startup_packet(pkt);
  REQUIRE(std::holds_alternative<StartupMessage>(p));
  CHECK(std::get<StartupMessage>(p).parameters.empty());
}

TEST_CASE("StartupMessage: protocol 3.x minor versions are accepted") {
  auto p = parse_startup_packet(packet(kProtocolVersion3 + 2, std::string_view("user\0u\0\0", 8)));
  REQUIRE(std::holds_alternative<StartupMessage>(p));
  CHECK(std::get<StartupMessage>(p).protocol_version == 196610);
}

TEST_CASE("StartupMessage: other protocol majors are rejected with PostgreSQL's message") {
  auto p = parse_startup_packet(packet(2 << 16, std::string_view("user\0u\0\0", 8)));
  CHECK(error_of(p) == "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
  CHECK(refusal_of(p) == StartupRefusal::UnsupportedProtocol);
  CHECK(std::get<StartupParseError>(p).version_code == (2 << 16));
  auto q = parse_startup_packet(packet((4 << 16) | 1, std::string_view("\0", 1)));
  CHECK(error_of(q) == "unsupported frontend protocol 4.1: server supports 3.0 to 3.0");
  auto z = parse_startup_packet(packet(0, std::string_view("\0", 1)));
  CHECK(error_of(z) == "unsupported frontend protocol 0.0: server supports 3.0 to 3.0");
  auto high = parse_startup_packet(packet(int32_t(0xffff0000u), std::string_view("\0", 1)));
  CHECK(error_of(high) == "unsupported frontend protocol 65535.0: server supports 3.0 to 3.0");
}

TEST_CASE("protocol 1.x and 2.x clients are answered in protocol 2's format; 0.0 and 4.x in protocol 3's") {
  CHECK(answers_in_protocol2(2 << 16));
  CHECK(answers_in_protocol2((2 << 16) | 5));
  CHECK(answers_in_protocol2(1 << 16));
  CHECK(answers_in_protocol2(1));  // 0.1
  CHECK_FALSE(answers_in_protocol2(0));
  CHECK_FALSE(answers_in_protocol2(kProtocolVersion3));
  CHECK_FALSE(answers_in_protocol2(4 << 16));
  CHECK_FALSE(answers_in_protocol2(kSslRequestCode));  // 1234.5679
}

TEST_CASE("StartupMessage: _pq_. options are kept apart and a 3.x minor asks for negotiation") {
  using namespace std::string_view_literals;
  auto p = parse_startup_packet(packet(kProtocolVersion3, "user\0u\0_pq_.b\0x\0application_name\0a\0_pq_.a\0\0\0"sv));
  auto* m = std::get_if<StartupMessage>(&p);
  REQUIRE(m != nullptr);
  CHECK(m->protocol_options == std::vector<std::string>{"_pq_.b", "_pq_.a"});
  REQUIRE(m->parameters.size() == 2);
  CHECK(m->find("_pq_.b") == nullptr);
  CHECK(m->needs_negotiation());

  auto plain = parse_startup_packet(packet(kProtocolVersion3, "user\0u\0_pq_x\0y\0\0"sv));
  REQUIRE(std::holds_alternative<StartupMessage>(plain));
  CHECK_FALSE(std::get<StartupMessage>(plain).needs_negotiation());  // "_pq_x" is an ordinary setting
  CHECK(std::get<StartupMessage>(plain).find("_pq_x") != nullptr);

  auto minor = parse_startup_packet(packet(kProtocolVersion3 + 1, "user\0u\0\0"sv));
  REQUIRE(std::holds_alternative<StartupMessage>(minor));
  CHECK(std::get<StartupMessage>(minor).needs_negotiation());
}

TEST_CASE("StartupMessage: a repeated name takes its last value, as PostgreSQL reads it") {
  using namespace std::string_view_literals;
  auto p = parse_startup_packet(packet(kProtocolVersion3, "user\0first\0user\0second\0\0"sv));
  REQUIRE(std::holds_alternative<StartupMessage>(p));
  CHECK(*std::get<StartupMessage>(p).find("user") == "second");
}

TEST_CASE("SSLRequest, GSSENCRequest, CancelRequest round-trip") {
  ByteVector ssl, gss, cancel;
  build_ssl_request(ssl);
  build_gssenc_request(gss);
  build_cancel_request(cancel, 4242, -17);
  CHECK(ssl.size() == 8);
  CHECK(cancel.size() == 16);
  CHECK(std::holds_alternative<SslRequest>(parse_startup_packet(ssl)));
  CHECK(std::holds_alternative<GssEncRequest>(parse_startup_packet(gss)));
  auto c = parse_startup_packet(cancel);
  REQUIRE(std::holds_alternative<CancelRequest>(c));
  CHECK(std::get<CancelRequest>(c).process_id == 4242);
  CHECK(std::get<CancelRequest>(c).secret_key == -17);
}

TEST_CASE("CancelRequest must be exactly 16 bytes; any other length closes without a reply") {
  CHECK(refusal_of(parse_startup_packet(packet(kCancelRequestCode, "1234"))) == StartupRefusal::BadLength);
  CHECK(refusal_of(parse_startup_packet(packet(kCancelRequestCode, "123456789"))) == StartupRefusal::BadLength);
  CHECK(refusal_of(parse_startup_packet(packet(kCancelRequestCode, ""))) == StartupRefusal::BadLength);
  CHECK(std::holds_alternative<CancelRequest>(parse_startup_packet(packet(kCancelRequestCode, "12345678"))));
}

TEST_CASE("SSLRequest and GSSENCRequest with trailing bytes are accepted, as PostgreSQL does") {
  CHECK(std::holds_alternative<SslRequest>(parse_startup_packet(packet(kSslRequestCode, "x"))));
  CHECK(std::holds_alternative<GssEncRequest>(parse_startup_packet(packet(kGssEncRequestCode, "abcd"))));
}

TEST_CASE("a repeated encryption request is an unsupported protocol 1234.5679 / 1234.5680") {
  ByteVector ssl, gss;
  build_ssl_request(ssl);
  build_gssenc_request(gss);
  auto again = parse_startup_packet(ssl, {.ssl = true, .gss = false});
  CHECK(refusal_of(again) == StartupRefusal::UnsupportedProtocol);
  CHECK(error_of(again) == "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0");
  auto gss_again = parse_startup_packet(gss, {.ssl = false, .gss = true});
  CHECK(error_of(gss_again) == "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0");
  // The other kind is still welcome.
  CHECK(std::holds_alternative<GssEncRequest>(parse_startup_packet(gss, {.ssl = true, .gss = false})));
  CHECK(std::holds_alternative<SslRequest>(parse_startup_packet(ssl, {.ssl = false, .gss = true})));
}

TEST_CASE("Malformed StartupMessages") {
  using namespace std::string_view_literals;
  // No terminator at all.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, ""sv))).empty());
  // Name without value.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0"sv))).empty());
  // Odd number of strings, then the terminator.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0app\0database\0\0"sv))).empty());
  // Pair complete but no final terminator.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0app\0"sv))).empty());
  // Unterminated value.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0app"sv))).empty());
  // Bytes after the terminator.
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0app\0\0x"sv))).empty());
  CHECK_FALSE(error_of(parse_startup_packet(packet(kProtocolVersion3, "user\0app\0\0\0"sv))).empty());
  // Every one of them in PostgreSQL's single wording.
  for (auto body : {""sv, "user\0"sv, "user\0app\0database\0\0"sv, "user\0app"sv, "user\0app\0\0x"sv}) {
    auto p = parse_startup_packet(packet(kProtocolVersion3, body));
    CHECK(error_of(p) == kLayoutError);
    CHECK(refusal_of(p) == StartupRefusal::Layout);
  }
  // The good form, for contrast.
  CHECK(std::holds_alternative<StartupMessage>(parse_startup_packet(packet(kProtocolVersion3, "user\0app\0\0"sv))));
}

TEST_CASE("parse_startup_packet: bad length prefixes") {
  ByteVector pkt;
  build_startup_message(pkt, {{"user", "u"}});
  // Shorter than the length says.
  CHECK_FALSE(error_of(parse_startup_packet(ByteView(pkt).first(pkt.size() - 1))).empty());
  // Too short to hold a code.
  CHECK_FALSE(error_of(parse_startup_packet(ByteView(pkt).first(4))).empty());
  CHECK_FALSE(error_of(parse_startup_packet(ByteView{})).empty());
  // Length field below 8 though the buffer is longer.
  ByteVector bad = pkt;
  bad[3] = std::byte{7};
  CHECK(refusal_of(parse_startup_packet(bad)) == StartupRefusal::BadLength);
  // A longer buffer parses only the length-prefixed packet.
  ByteVector more = pkt;
  more.push_back(std::byte{'Z'});
  CHECK(std::holds_alternative<StartupMessage>(parse_startup_packet(more)));
}
