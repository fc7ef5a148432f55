// Startup as PostgreSQL 15 does it (issue 10, item 6). The same raw bytes go to the primary and to pgmux, and
// the answers are compared: silence and a close for an invalid length, PostgreSQL's FATAL (in protocol 2's
// format for an old client) for an unsupported protocol, NegotiateProtocolVersion for a 3.x minor and "_pq_."
// options, one SSLRequest and one GSSENCRequest per connection. ErrorResponses are compared field by field
// (severity, SQLSTATE, message, detail), not by PostgreSQL's source file and line fields.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;

namespace {

constexpr uint32_t kProtocol3 = 196608;
constexpr uint32_t kSslRequest = 80877103;
constexpr uint32_t kGssEncRequest = 80877104;
constexpr uint32_t kCancelRequest = 80877102;

ProxyUnderTest& target() {
  static ProxyUnderTest t;  // one pgmux for every case in this file
  return t;
}

RawEndpoint pgmux_endpoint() { return {target().port(), {}}; }
RawEndpoint primary_endpoint() { return {cluster_ports().primary, {}}; }
// PostgreSQL answers a GSSENCRequest over TCP with 'G' (it is built with GSSAPI) and 'N' over a Unix socket;
// pgmux has no GSS encryption and always says 'N', so GSS cases compare with the Unix socket.
RawEndpoint primary_unix_endpoint() {
  return {0, cluster_dir() + "/.s.PGSQL." + std::to_string(cluster_ports().primary)};
}

std::string length_word(uint32_t length) {
  const uint32_t be = htonl(length);
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

std::string startup(uint32_t version, const std::vector<std::pair<std::string, std::string>>& parameters) {
  return raw_packet(version, raw_parameters(parameters));
}

// Protocol-3 messages with ErrorResponse/NoticeResponse reduced to the fields that must match; anything that
// does not frame as protocol 3 (a protocol-2 error, a lone 'N') is kept as it is.
std::string normalized(const std::string& bytes) {
  std::string out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint32_t length = 0;
    if (bytes.size() - pos >= 5) std::memcpy(&length, bytes.data() + pos + 1, 4);
    length = ntohl(length);
    if (bytes.size() - pos < 5 || length < 4 || length > bytes.size() - pos - 1) {
      return out + "raw:" + bytes.substr(pos);
    }
    const char tag = bytes[pos];
    const std::string body = bytes.substr(pos + 5, length - 4);
    pos += 1 + length;
    if (tag != 'E' && tag != 'N') {
      out += std::string(1, tag) + ":" + body + "|";
      continue;
    }
    out += std::string(1, tag) + ":";
    for (size_t at = 0; at < body.size() && body[at] != '\0';) {
      const char field = body[at];
      const size_t end = body.find('\0', at + 1);
      if (end == std::string::npos) break;
      if (std::strchr("SVCMDH", field)) out += std::string(1, field) + "=" + body.substr(at + 1, end - at - 1) + ";";
      at = end + 1;
    }
    out += "|";
  }
  return out;
}

struct Compared {
  RawReply primary;
  RawReply pgmux;
};

Compared both(const std::vector<RawStep>& steps, RawEndpoint primary = primary_endpoint()) {
  return {raw_exchange(primary, steps), raw_exchange(pgmux_endpoint(), steps)};
}

void check_same(const Compared& c) {
  INFO("primary: " << normalized(c.primary.rest) << "\npgmux:   " << normalized(c.pgmux.rest));
  CHECK(c.primary.step_replies == c.pgmux.step_replies);
  CHECK(normalized(c.primary.rest) == normalized(c.pgmux.rest));
  CHECK(c.primary.closed == c.pgmux.closed);
}

}  // namespace

TEST_CASE("an invalid startup-packet length: nothing is sent, the connection closes") {
  const std::map<std::string, std::string> cases = {
      {"length 0", length_word(0) + std::string(8, '\0')},
      {"length 3", length_word(3) + "abcd"},
      {"length 7", length_word(7) + "abc"},
      {"length -1", length_word(0xffffffffu) + std::string(8, '\0')},
      {"length 10005", length_word(10005) + std::string(200, '\0')},
      {"CancelRequest of 12 bytes", raw_packet(kCancelRequest, "abcd")},
      {"CancelRequest of 20 bytes", raw_packet(kCancelRequest, "abcdabcdabcd")},
      {"CancelRequest of 8 bytes", raw_packet(kCancelRequest)},
  };
  for (const auto& [name, bytes] : cases) {
    const auto& case_name = name;  // CAPTURE takes it in a lambda, which clang 14 cannot do with a binding
    CAPTURE(case_name);
    const Compared c = both({{bytes, 0}});
    CHECK(c.primary.rest.empty());
    CHECK(c.primary.closed);
    check_same(c);
  }
}

TEST_CASE("a startup packet of 10004 bytes is within PostgreSQL's limit (10000 after the length word)") {
  for (uint32_t length : {10001u, 10004u}) {
    CAPTURE(length);
    // Valid length, broken layout: both read it whole and refuse the layout.
    std::string packet = length_word(length) + length_word(kProtocol3) + std::string("user\0app\0", 9);
    packet.resize(length, 'x');
    const Compared c = both({{packet, 0}});
    CHECK(normalized(c.primary.rest).find("C=08P01;") != std::string::npos);
    check_same(c);
  }
}

TEST_CASE("a broken parameter list: PostgreSQL's one FATAL 08P01 for every layout") {
  const std::map<std::string, std::string> bodies = {
      {"no terminator", std::string("user\0app\0", 9)},
      {"name without value", std::string("user\0app\0database\0", 18)},
      {"bytes after the terminator", std::string("user\0app\0\0x", 11)},
      {"nothing after the version", ""},
  };
  for (const auto& [name, body] : bodies) {
    const auto& case_name = name;  // CAPTURE takes it in a lambda, which clang 14 cannot do with a binding
    CAPTURE(case_name);
    const Compared c = both({{raw_packet(kProtocol3, body), 0}});
    CHECK(normalized(c.primary.rest).find("M=invalid startup packet layout") != std::string::npos);
    check_same(c);
  }
}

TEST_CASE("an unsupported protocol version: FATAL 0A000, in protocol 2's format for a 1.x or 2.x client") {
  const std::map<std::string, uint32_t> versions = {
      {"2.0", 2u << 16}, {"2.5", (2u << 16) | 5}, {"1.0", 1u << 16}, {"0.1", 1u},
      {"0.0", 0u},       {"4.0", 4u << 16},       {"65535.0", 0xffff0000u},
  };
  for (const auto& [name, version] : versions) {
    const auto& case_name = name;  // CAPTURE takes it in a lambda, which clang 14 cannot do with a binding
    CAPTURE(case_name);
    const Compared c = both({{startup(version, {{"user", "app"}}), 0}});
    if (version != 0 && (version >> 16) < 3) {
      CHECK(c.primary.rest.rfind("EFATAL:  unsupported frontend protocol " + name, 0) == 0);
      CHECK(c.pgmux.rest == c.primary.rest);  // byte for byte: protocol 2 has no fields to differ in
    } else {
      CHECK(normalized(c.primary.rest).find("C=0A000;M=unsupported frontend protocol " + name) != std::string::npos);
    }
    check_same(c);
  }
}

TEST_CASE("no user name: FATAL 28000 as PostgreSQL says it") {
  check_same(both({{startup(kProtocol3, {{"database", "app"}}), 0}}));
}

TEST_CASE("NegotiateProtocolVersion for protocol 3.1 and _pq_. options, then the login goes on") {
  const std::vector<std::pair<std::string, StartupExtras>> cases = {
      {"3.1", {kProtocol3 + 1, {}}},
      {"3.65535", {kProtocol3 + 0xffff, {}}},
      {"_pq_. options", {kProtocol3, {{"_pq_.foo", "bar"}, {"application_name", "it_startup"}, {"_pq_.baz", ""}}}},
      {"3.2 and an option", {kProtocol3 + 2, {{"_pq_.compression", "on"}}}},
  };
  for (const auto& [name, extras] : cases) {
    const auto& case_name = name;  // CAPTURE takes it in a lambda, which clang 14 cannot do with a binding
    CAPTURE(case_name);
    const StartupOutcome direct = raw_startup(cluster_ports().primary, "app", "app", "app", 10.0, extras);
    const StartupOutcome proxied = raw_startup(target().port(), "app", "app", "app", 10.0, extras);
    INFO("direct: " << direct.message << " / pgmux: " << proxied.message);
    CHECK(direct.ok);
    CHECK(proxied.ok);
    CHECK_FALSE(direct.negotiation.empty());
    CHECK(proxied.negotiation == direct.negotiation);  // byte for byte
  }
  // Plain 3.0 without options gets none.
  const StartupOutcome plain = raw_startup(target().port(), "app", "app", "app");
  CHECK(plain.ok);
  CHECK(plain.negotiation.empty());
}

TEST_CASE("NegotiateProtocolVersion comes before the user-name check, as in PostgreSQL") {
  check_same(both({{startup(kProtocol3 + 1, {{"database", "app"}, {"_pq_.x", "1"}}), 0}}));
}

TEST_CASE("one SSLRequest per connection: a second one is an unsupported protocol 1234.5679") {
  const std::string ssl = raw_packet(kSslRequest);
  check_same(both({{ssl, 1}, {ssl, 0}}));
  const Compared c = both({{ssl, 1}, {ssl, 0}});
  CHECK(c.pgmux.step_replies[0] == "N");
  CHECK(normalized(c.pgmux.rest).find("C=0A000;M=unsupported frontend protocol 1234.5679") != std::string::npos);
}

TEST_CASE("an SSLRequest with extra bytes is answered like any other") {
  const Compared c = both({{raw_packet(kSslRequest, "abcd"), 1}, {startup(kProtocol3, {{"database", "app"}}), 0}});
  CHECK(c.primary.step_replies[0] == "N");
  check_same(c);  // 'N', then the StartupMessage is read (and refused for its missing user)
}

TEST_CASE("bytes sent with the SSLRequest, before its answer: 'N', then FATAL 08P01") {
  const std::string pipelined = raw_packet(kSslRequest) + startup(kProtocol3, {{"user", "app"}, {"database", "app"}});
  const Compared c = both({{pipelined, 1}});
  CHECK(normalized(c.primary.rest).find("M=received unencrypted data after SSL request;") != std::string::npos);
  check_same(c);
}

TEST_CASE("GSSENCRequest: once per connection, in either order with SSLRequest (against the Unix socket)") {
  const std::string ssl = raw_packet(kSslRequest);
  const std::string gss = raw_packet(kGssEncRequest);
  const std::string login = startup(kProtocol3, {{"database", "app"}});
  for (const auto& steps : std::vector<std::vector<RawStep>>{
           {{gss, 1}, {gss, 0}},
           {{gss, 1}, {ssl, 1}, {gss, 0}},
           {{ssl, 1}, {gss, 1}, {ssl, 0}},
           {{ssl, 1}, {gss, 1}, {login, 0}},
           {{gss + login, 1}},
       }) {
    CAPTURE(steps.size());
    CAPTURE(normalized(steps.back().send));
    check_same(both(steps, primary_unix_endpoint()));
  }
}

// PostgreSQL reads `replication` as "database" or a boolean: false (0, no, off, a prefix such as f) is an ordinary
// connection; a value it cannot read is 22023 with a hint, before authentication.
TEST_CASE("replication=false logs in as usual; an unreadable value gets PostgreSQL's 22023") {
  for (const std::string value : {"false", "0", "no", "OFF", "f", "of", "bogus", "o", ""}) {
    CAPTURE(value);
    StartupExtras extras;
    extras.parameters = {{"replication", value}};
    const StartupOutcome direct = raw_startup(cluster_ports().primary, "app", "app", "app", 5.0, extras);
    const StartupOutcome through = raw_startup(target().port(), "app", "app", "app", 5.0, extras);
    CHECK(through.ok == direct.ok);
    CHECK(through.sqlstate == direct.sqlstate);
    CHECK(through.message == direct.message);
  }
}

namespace {
std::string parameter(const StartupOutcome& out, const std::string& name) {
  std::string value = "(not reported)";
  for (const auto& [key, reported] : out.parameters) {
    if (key == name) value = reported;
  }
  return value;
}
}  // namespace

// PostgreSQL applies `options` first and the packet's own parameters over them, in whatever order they come
// (pgjdbc sends TimeZone before options): through pgmux the one that came last won. An application_name that is
// not valid UTF-8 is PostgreSQL 15's '?' for each byte outside printable ASCII (in session pooling pgmux refused
// the login: its SET of the bytes as given failed with 22021).
TEST_CASE("startup parameters: options first, explicit ones over them; application_name cleaned as PostgreSQL") {
  const std::vector<std::pair<std::string, std::string>> cases[] = {
      {{"TimeZone", "UTC"}, {"application_name", "direct"},
       {"options", "-c TimeZone=Asia/Tokyo -c application_name=fromopt"}},
      {{"options", "-c TimeZone=Asia/Tokyo"}, {"TimeZone", "UTC"}},
      {{"application_name", "bad\xff" "x\x01\xc3\xa9"}},
      {{"options", "-c application_name=opt\xfe"}},
  };
  // Also through transaction pooling, which logs clients in without a server once the pool knows what one reports.
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["databases"].push_back({{"name", "app_tx"}, {"server_database", "app"}, {"pool_mode", "transaction"}});
  ProxyUnderTest transaction(config.dump(), listen);
  std::vector<std::pair<int, const char*>> targets = {{target().port(), "app"}};
  if (!direct_mode()) {  // with PGMUX_TEST_DIRECT=1 both are the primary, which has no app_tx
    REQUIRE(raw_startup(transaction.port(), "app", "app", "app_tx").ok);
    targets.emplace_back(transaction.port(), "app_tx");
  }
  for (const auto& parameters : cases) {
    CAPTURE(parameters.size());
    StartupExtras extras;
    extras.parameters = parameters;
    const StartupOutcome direct = raw_startup(cluster_ports().primary, "app", "app", "app", 5.0, extras);
    CHECK(direct.ok);
    for (const auto& [port, database] : targets) {
      const std::string pooled_database = database;  // CAPTURE prints a const char* as a pointer
      CAPTURE(pooled_database);
      const StartupOutcome proxied = raw_startup(port, "app", "app", pooled_database, 5.0, extras);
      INFO("direct: " << direct.message << " / pgmux: " << proxied.message);
      CHECK(proxied.ok);
      CHECK(parameter(proxied, "TimeZone") == parameter(direct, "TimeZone"));
      CHECK(parameter(proxied, "application_name") == parameter(direct, "application_name"));
    }
  }
}
