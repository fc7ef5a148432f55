// The hba access rules (issue 11 item 3) end to end: each method, first match wins, "+group", the admin
// database, PostgreSQL's wording for a connection no rule admits, and a RELOAD that changes the rules for the
// next login. Client TLS is not there yet, so hostssl rules never match and hostnossl rules always do.
#include <doctest/doctest.h>

#include <csignal>
#include <chrono>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using nlohmann::json;

namespace {

json hba_rule(const char* type, json database, json user, const char* address, const char* method) {
  return json{{"type", type}, {"database", database}, {"user", user}, {"address", address}, {"method", method}};
}

json rules_config(int port) {
  json config = default_config(port);
  config["admin_users"] = json::array({"postgres"});
  config["groups"] = json::array({{{"name", "trusted"}, {"members", json::array({"postgres"})}}});
  config["hba"] = json::array({
      hba_rule("host", "pgmux", "md5user", "all", "reject"),
      hba_rule("hostssl", "all", "all", "all", "cert"),  // no TLS yet: never matches
      hba_rule("host", "all", "md5user", "127.0.0.1", "scram-sha-256"),
      hba_rule("host", json::array({"app", "pgmux"}), "app", "127.0.0.0/8", "md5"),
      hba_rule("host", "app", "+trusted", "127.0.0.1/32", "trust"),
      hba_rule("hostnossl", json::array({"app", "pgmux"}), "all", "127.0.0.1/32", "scram-sha-256"),
      hba_rule("host", "all", "all", "10.0.0.0/8", "trust"),  // other networks only
  });
  return config;
}

struct Rules {
  Rules() : proxy(rules_config(port).dump(2), port) {}
  int port = pick_listen_port();
  ProxyUnderTest proxy;
};

}  // namespace

TEST_CASE_FIXTURE(Rules, "hba: each rule's method is what the client is asked for") {
  if (proxy.direct()) return;
  StartupOutcome md5_as_scram = raw_startup(port, "md5user", "md5user", "app");  // rule 2 beats the user's md5
  CHECK(md5_as_scram.ok);
  CHECK(md5_as_scram.auth_method == "scram-sha-256");
  StartupOutcome app_md5 = raw_startup(port, "app", "app", "app");  // rule 3
  CHECK(app_md5.ok);
  CHECK(app_md5.auth_method == "md5");
  CHECK(raw_startup(port, "app", "wrong", "app").sqlstate == "28P01");
  StartupOutcome trusted = raw_startup(port, "postgres", "not even checked", "app");  // rule 4: +trusted
  CHECK(trusted.ok);
  CHECK(trusted.trace.starts_with("R0 "));
  // Not a member of +trusted: on to rule 5 (hostnossl matches a plain connection), SCRAM, and the mock exchange
  // for a user pgmux does not know.
  StartupOutcome stranger = raw_startup(port, "no_such_user", "x", "app");
  CHECK(stranger.trace == "R10 R11 E");
  CHECK(stranger.sqlstate == "28P01");
}

TEST_CASE_FIXTURE(Rules, "hba: no matching rule, and a reject rule, in PostgreSQL's words; the console included") {
  if (proxy.direct()) return;
  StartupOutcome none = raw_startup(port, "postgres", "postgres", "postgres");
  CHECK(none.trace == "E");  // refused before any password exchange
  CHECK(none.sqlstate == "28000");
  CHECK(none.message ==
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption");

  StartupOutcome rejected = raw_startup(port, "md5user", "md5user", "pgmux");
  CHECK(rejected.trace == "E");
  CHECK(rejected.sqlstate == "28000");
  CHECK(rejected.message ==
        "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"md5user\", database \"pgmux\", no encryption");

  // The console by its own rules: postgres is trusted only on app, so it goes by SCRAM on pgmux (rule 5).
  StartupOutcome admin = raw_startup(port, "postgres", "postgres", "pgmux");
  CHECK(admin.ok);
  CHECK(admin.auth_method == "scram-sha-256");
}

TEST_CASE_FIXTURE(Rules, "hba: RELOAD swaps the rules for the next login; connected clients stay") {
  if (proxy.direct()) return;
  PgConn kept = connect(conninfo(port, "app", "app", "app"));
  json config = rules_config(port);
  // A reject for app in front of everything else: first match wins.
  config["hba"].insert(config["hba"].begin(), hba_rule("host", "all", "app", "all", "reject"));
  proxy.process()->write_config(config.dump(2));
  PgConn admin = connect(conninfo(port, "postgres", "postgres", "pgmux"));
  exec(admin.get(), "RELOAD");
  StartupOutcome after = raw_startup(port, "app", "app", "app");
  CHECK(after.sqlstate == "28000");
  CHECK(after.message.starts_with("pg_hba.conf rejects connection"));
  CHECK(scalar(kept.get(), "SELECT 1") == "1");

  // And back by SIGHUP: the reject goes, app logs in again.
  proxy.process()->write_config(rules_config(port).dump(2));
  proxy.process()->send_signal(SIGHUP);
  bool back = false;
  for (int i = 0; i < 50 && !back; ++i) {
    back = raw_startup(port, "app", "app", "app").ok;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(back);
}
