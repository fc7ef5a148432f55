// Nothing for an attacker (issue 11 item 5), the login side: a user name pgmux does not know is answered exactly
// as a known user with a wrong password, under SCRAM (the mock exchange), md5 and on the admin console; trust
// says "role does not exist" only after AuthenticationOk, as PostgreSQL does. Client-chosen text reaches the log
// escaped, on one line. With PGMUX_TEST_DIRECT=1 the comparisons run against PostgreSQL itself.
#include <doctest/doctest.h>

#include <sstream>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;

namespace {

ProxyUnderTest& scram_target() {
  static ProxyUnderTest t = [] {
    const int port = pick_listen_port();
    nlohmann::json config = default_config(port);
    config["admin_users"] = nlohmann::json::array({"postgres"});
    return ProxyUnderTest(config.dump(2), port);
  }();
  return t;
}

// The error text with the user's name taken out: what must not differ between two users.
std::string without_name(std::string message, const std::string& user) {
  const size_t at = message.find('"' + user + '"');
  if (at != std::string::npos) message.replace(at, user.size() + 2, "\"<user>\"");
  return message;
}

// The "s=<salt>,i=<iterations>" part of a SCRAM server-first message (the nonce differs every time).
std::string salt_and_iterations(const std::string& server_first) {
  const size_t at = server_first.find(",s=");
  return at == std::string::npos ? std::string() : server_first.substr(at + 1);
}

void check_indistinguishable(const StartupOutcome& unknown, const StartupOutcome& wrong_password,
                             const std::string& unknown_user, const std::string& known_user) {
  INFO("unknown user: " << unknown.trace << " " << unknown.sqlstate << " " << unknown.message);
  INFO("wrong password: " << wrong_password.trace << " " << wrong_password.sqlstate << " " << wrong_password.message);
  CHECK_FALSE(unknown.ok);
  CHECK_FALSE(wrong_password.ok);
  CHECK(unknown.trace == wrong_password.trace);
  CHECK(unknown.sqlstate == "28P01");
  CHECK(wrong_password.sqlstate == "28P01");
  CHECK(without_name(unknown.message, unknown_user) == without_name(wrong_password.message, known_user));
  CHECK(unknown.message == "password authentication failed for user \"" + unknown_user + "\"");
}

}  // namespace

TEST_CASE("SCRAM: an unknown user runs the whole exchange and fails as a wrong password does") {
  const int port = scram_target().port();
  StartupOutcome unknown = raw_startup(port, "no_such_role_x", "whatever", "app");
  StartupOutcome wrong = raw_startup(port, "app", "not-the-password", "app");
  check_indistinguishable(unknown, wrong, "no_such_role_x", "app");
  CHECK(unknown.trace == "R10 R11 E");  // AuthenticationSASL, SASLContinue, then the error: no SASLFinal

  // The same salt every time, as a real user's stored secret gives, with PostgreSQL's default iteration count.
  StartupOutcome again = raw_startup(port, "no_such_role_x", "something else", "app");
  REQUIRE_FALSE(unknown.scram_server_first.empty());
  CHECK(salt_and_iterations(again.scram_server_first) == salt_and_iterations(unknown.scram_server_first));
  CHECK(salt_and_iterations(unknown.scram_server_first).ends_with(",i=4096"));
  StartupOutcome other = raw_startup(port, "no_such_role_y", "whatever", "app");
  CHECK(salt_and_iterations(other.scram_server_first) != salt_and_iterations(unknown.scram_server_first));
}

TEST_CASE("SCRAM: the admin database answers an unknown user as a wrong password too") {
  if (scram_target().direct()) return;  // the console is pgmux's own
  const int port = scram_target().port();
  StartupOutcome unknown = raw_startup(port, "no_such_admin", "whatever", "pgmux");
  StartupOutcome wrong = raw_startup(port, "postgres", "not-the-password", "pgmux");
  check_indistinguishable(unknown, wrong, "no_such_admin", "postgres");
  StartupOutcome right = raw_startup(port, "postgres", "postgres", "pgmux");
  CHECK(right.ok);
}

TEST_CASE("md5: an unknown user gets the md5 challenge and the same failure as a wrong password") {
  if (direct_mode()) return;  // the cluster's pg_hba decides the method there
  const int port = pick_listen_port();
  nlohmann::json config = default_config(port);
  config["auth_method"] = "md5";
  ProxyUnderTest proxy(config.dump(2), port);
  StartupOutcome unknown = raw_startup(port, "no_such_role_md5", "whatever", "app");
  StartupOutcome wrong = raw_startup(port, "md5user", "wrong", "app");
  check_indistinguishable(unknown, wrong, "no_such_role_md5", "md5user");
  CHECK(unknown.trace == "R5 E");
  CHECK(raw_startup(port, "md5user", "md5user", "app").ok);
}

TEST_CASE("trust: an unknown user hears that the role does not exist after AuthenticationOk, as from PostgreSQL") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  nlohmann::json config = default_config(port);
  config["auth_method"] = "trust";
  ProxyUnderTest proxy(config.dump(2), port);
  StartupOutcome unknown = raw_startup(port, "no_such_role_trust", "", "app");
  INFO(unknown.trace << " " << unknown.message);
  CHECK(unknown.trace == "R0 E");
  CHECK(unknown.sqlstate == "28000");
  CHECK(unknown.message == "role \"no_such_role_trust\" does not exist");
}

TEST_CASE("client-chosen names with newlines and escape characters reach the log escaped, on one line") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  ProxyUnderTest proxy(default_config_json(port), port);
  const std::string forged = "evil\n2026-01-01 00:00:00.000 ERROR forged line\x1b[31m";
  StartupExtras extras;
  extras.parameters = {{"application_name", "app\nname\r"}};
  StartupOutcome out = raw_startup(port, forged, "pw", "db\nforged", 10.0, extras);
  CHECK_FALSE(out.ok);
  // And a known user naming a database that does not exist, through the "*" entry.
  CHECK_FALSE(raw_startup(port, "app", "app", "nodb\nforged line\x07").ok);

  const std::string log = proxy.process()->full_log();
  INFO(log);
  CHECK(log.find("forged line") != std::string::npos);  // the words are there ...
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    INFO(line);
    CHECK_FALSE(line.starts_with("forged"));     // no line of the client's making
    CHECK_FALSE(line.starts_with("2026-01-01"));
    CHECK(line.find('\x1b') == std::string::npos);  // ... never a raw control character
    CHECK(line.find('\x07') == std::string::npos);
    CHECK(line.find('\r') == std::string::npos);
  }
  CHECK(log.find("user=evil\\x0a2026-01-01 00:00:00.000 ERROR forged line\\x1b[31m") != std::string::npos);
  CHECK(log.find("db=nodb\\x0aforged line\\x07") != std::string::npos);
}
