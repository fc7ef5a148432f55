// The startup phase over TLS with a raw OpenSSL client (Debian 12's libpq is 15): PostgreSQL 17's direct TLS
// (the connection opens with a ClientHello, ALPN "postgresql" required), and what an SSLRequest-negotiated
// connection may send afterwards: a GSSENCRequest or a second SSLRequest refused as PostgreSQL does, plain-text
// bytes sent behind an SSLRequest refused.
#include <doctest/doctest.h>

#include <thread>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/tls/tls_support.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using namespace pgmux::test::tls;
using reload::contains;

namespace {

constexpr uint32_t kSslRequest = 80877103;
constexpr uint32_t kGssEncRequest = 80877104;

PgmuxProcess& proxy(const std::string& mode = "prefer") {
  static int port = pick_listen_port();
  static PgmuxProcess process(
      config_with_tls(port, mode, certificates().server_crt, certificates().server_key, "").dump(2), port);
  return process;
}

// The type byte of the first message pgmux answers a startup packet with ('R': authentication requested).
char first_reply_tag(RawTlsClient& client) {
  CHECK(client.send_tls(startup_packet("app", "app")));
  const std::string reply = client.read_tls(1);
  return reply.empty() ? '\0' : reply[0];
}

bool log_shows(PgmuxProcess& process, const std::string& text) {
  for (int i = 0; i < 50; ++i) {
    if (contains(process.full_log(), text)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TEST_CASE("direct TLS with ALPN postgresql: the login runs over TLS") {
  RawTlsClient client(proxy().port());
  REQUIRE(client.handshake({"postgresql"}) == "");
  CHECK(client.negotiated_alpn() == "postgresql");
  CHECK(first_reply_tag(client) == 'R');
}

TEST_CASE("direct TLS offering other protocols as well: postgresql is chosen") {
  RawTlsClient client(proxy().port());
  REQUIRE(client.handshake({"http/1.1", "postgresql"}) == "");
  CHECK(client.negotiated_alpn() == "postgresql");
  CHECK(first_reply_tag(client) == 'R');
}

TEST_CASE("direct TLS without ALPN: closed after the handshake, as PostgreSQL 17 does") {
  RawTlsClient client(proxy().port());
  REQUIRE(client.handshake({}) == "");
  client.send_tls(startup_packet("app", "app"));
  bool closed = false;
  CHECK(client.read_tls(1, &closed).empty());
  CHECK(closed);
  CHECK(log_shows(proxy(), "received direct SSL connection request without ALPN protocol negotiation extension"));
}

TEST_CASE("direct TLS with only a foreign ALPN protocol: the handshake fails (no_application_protocol)") {
  RawTlsClient client(proxy().port());
  CHECK(contains(client.handshake({"http/1.1"}), "no application protocol"));
}

// PostgreSQL goes on inside TLS with both kinds of encryption done: another request of either kind is a protocol
// it does not support (a GSSENCRequest was answered 'N' there before).
TEST_CASE("after SSLRequest: 'S', the handshake, then a second SSLRequest or a GSSENCRequest refused") {
  for (const auto& [request, version] : {std::pair{kSslRequest, "1234.5679"}, {kGssEncRequest, "1234.5680"}}) {
    const std::string expected = std::string("unsupported frontend protocol ") + version;
    CAPTURE(expected);
    RawTlsClient client(proxy().port());
    REQUIRE(client.send_plain(raw_packet(kSslRequest)));
    REQUIRE(client.read_plain(1) == "S");
    REQUIRE(client.handshake({}) == "");  // ALPN is optional after an SSLRequest
    CHECK(client.send_tls(raw_packet(request)));
    bool closed = false;
    const std::string error = client.read_tls(4096, &closed);
    REQUIRE(!error.empty());
    CHECK(error[0] == 'E');
    CHECK(contains(error, "0A000"));
    CHECK(contains(error, expected));
  }
}

TEST_CASE("after SSLRequest: a startup packet in the same write is refused, unencrypted (08P01)") {
  RawTlsClient client(proxy().port());
  REQUIRE(client.send_plain(raw_packet(kSslRequest) + startup_packet("app", "app")));
  const std::string reply = client.read_plain(4096);
  REQUIRE(reply.size() > 1);
  CHECK(reply[0] == 'S');
  CHECK(contains(reply, "08P01"));
  CHECK(contains(reply, "received unencrypted data after SSL request"));
}

TEST_CASE("direct TLS while tls.client.mode is disable: closed without a reply, as PostgreSQL 15 does") {
  const int port = pick_listen_port();
  PgmuxProcess plain(default_config_json(port), port);
  RawTlsClient client(port);
  CHECK_FALSE(client.handshake({"postgresql"}).empty());
}
