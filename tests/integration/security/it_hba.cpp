// The hba access rules (issue 11 item 3) end to end: each method, first match wins, "+group", the admin
// database, PostgreSQL's wording for a connection no rule admits, and a RELOAD that changes the rules for the
// next login. The first cases log in in plain text (no tls.client: a hostssl rule would not even load, as in
// PostgreSQL), so hostnossl rules always match them; the last ones turn tls.client on: hostssl, hostnossl and cert
// against TLS and plain-text clients, with PostgreSQL 15's words and SQLSTATEs (compared with a PostgreSQL 15
// server by hand).
#include <doctest/doctest.h>

#include <csignal>
#include <chrono>
#include <thread>

#include "tests/integration/tls/tls_support.hpp"
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

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// tls.client prefer, client certificates checked against the test CA, and rules that tell TLS from plain text.
json tls_rules_config(int port) {
  const tls::Certificates& certs = tls::certificates();
  json config = tls::config_with_tls(port, "prefer", certs.server_crt, certs.server_key, certs.ca_crt);
  config["hba"] = json::array({
      hba_rule("hostssl", "app", "app", "127.0.0.1", "cert"),
      hba_rule("hostnossl", "app", "app", "127.0.0.1", "md5"),  // where a plain-text app falls through to
      hba_rule("hostnossl", "app", "md5user", "all", "md5"),
  });
  return config;
}

struct TlsRules {
  TlsRules() : proxy(tls_rules_config(port).dump(2), port) {}
  // As user to database app, over `ssl`.
  std::string login(const std::string& user, const tls::Ssl& ssl) const {
    return tls::tls_conninfo(port, user, "app", ssl);
  }
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

TEST_CASE_FIXTURE(TlsRules, "hba over TLS: hostssl matches only TLS clients, hostnossl only plain-text ones") {
  if (proxy.direct()) return;
  // A plain-text app passes over the hostssl rule to the hostnossl one: md5, a password asked for.
  PgConn plain = connect(login("app", {"disable"}));
  CHECK(PQsslInUse(plain.get()) == 0);
  CHECK(PQconnectionUsedPassword(plain.get()) == 1);
  CHECK(raw_startup(port, "app", "app", "app").auth_method == "md5");
  // md5user has a hostnossl rule only: in in plain text, out over TLS.
  CHECK(raw_startup(port, "md5user", "md5user", "app").ok);
  CHECK(contains(tls::verbose_login_error(login("md5user", {"require"})),
                 "FATAL:  28000: no pg_hba.conf entry for host \"127.0.0.1\", user \"md5user\", database \"app\", "
                 "SSL encryption\n"));
  // No rule names postgres: the refusal says which kind of connection found none.
  StartupOutcome none = raw_startup(port, "postgres", "postgres", "app");
  CHECK(none.sqlstate == "28000");
  CHECK(none.message ==
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"app\", no encryption");
}

TEST_CASE_FIXTURE(TlsRules, "hba cert: the certificate's CN must be the user name; no password is asked") {
  if (proxy.direct()) return;
  const tls::Certificates& certs = tls::certificates();
  // A wrong password too: it is never asked for.
  PgConn admitted = connect(login("app", {"require", "", certs.client_crt, certs.client_key}) + " password=wrong");
  CHECK(PQsslInUse(admitted.get()) == 1);
  CHECK(PQconnectionUsedPassword(admitted.get()) == 0);
  CHECK(scalar(admitted.get(), "SELECT current_user") == "app");
  // A certificate of the right CA for another name (CN=postgres), and none at all: PostgreSQL 15's two refusals.
  CHECK(contains(tls::verbose_login_error(login("app", {"require", "", certs.postgres_crt, certs.postgres_key})),
                 "FATAL:  28000: certificate authentication failed for user \"app\"\n"));
  CHECK(contains(tls::verbose_login_error(login("app", {"require"})),
                 "FATAL:  28000: connection requires a valid client certificate\n"));
}
