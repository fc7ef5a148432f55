// Startup-phase packets: every kind, and malformed ones.
#include <doctest/doctest.h>

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

TEST_CASE("StartupMessage: other protocol majors are rejected with a clear message") {
  auto p = parse_startup_packet(packet(2 << 16, std::string_view("user\0u\0\0", 8)));
  CHECK(error_of(p) == "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
  auto q = parse_startup_packet(packet((4 << 16) | 1, std::string_view("\0", 1)));
  CHECK(error_of(q) == "unsupported frontend protocol 4.1: server supports 3.0 to 3.0");
  auto z = parse_startup_packet(packet(0, std::string_view("\0", 1)));
  CHECK(error_of(z).find("unsupported frontend protocol 0.0") == 0);
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

TEST_CASE("CancelRequest must be exactly 16 bytes") {
  CHECK_FALSE(error_of(parse_startup_packet(packet(kCancelRequestCode, "1234"))).empty());
  CHECK_FALSE(error_of(parse_startup_packet(packet(kCancelRequestCode, "123456789"))).empty());
  CHECK_FALSE(error_of(parse_startup_packet(packet(kCancelRequestCode, ""))).empty());
  CHECK(std::holds_alternative<CancelRequest>(parse_startup_packet(packet(kCancelRequestCode, "12345678"))));
}

TEST_CASE("SSLRequest with trailing bytes is malformed") {
  CHECK_FALSE(error_of(parse_startup_packet(packet(kSslRequestCode, "x"))).empty());
  CHECK_FALSE(error_of(parse_startup_packet(packet(kGssEncRequestCode, "x"))).empty());
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
  CHECK_FALSE(error_of(parse_startup_packet(bad)).empty());
  // A longer buffer parses only the length-prefixed packet.
  ByteVector more = pkt;
  more.push_back(std::byte{'Z'});
  CHECK(std::holds_alternative<StartupMessage>(parse_startup_packet(more)));
}
