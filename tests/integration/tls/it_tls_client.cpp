// TLS towards clients (issue 11, item 1) with libpq and psql's own library: every sslmode against each
// tls.client.mode, client certificates (verify-ca, verify-full, a wrong CA), PostgreSQL's refusal of plain text
// where TLS is required, and RELOAD swapping the certificate while a TLS client stays connected.
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <csignal>
#include <fstream>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/tls/tls_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using namespace pgmux::test::tls;
using reload::contains;

namespace {

struct TlsProxy {
  TlsProxy(const std::string& mode, const std::string& ca = certificates().ca_crt)
      : port(pick_listen_port()),
        config(config_with_tls(port, mode, certificates().server_crt, certificates().server_key, ca)),
        process(config.dump(2), port) {}
  int port;
  nlohmann::json config;
  PgmuxProcess process;
};

// Connects with `ssl`; "" when the connection works (a query runs), else libpq's message.
std::string try_login(int port, const std::string& user, const Ssl& ssl, bool* used_tls = nullptr) {
  PgConn conn = try_connect(tls_conninfo(port, user, user == "postgres" ? "postgres" : "app", ssl));
  if (PQstatus(conn.get()) != CONNECTION_OK) return PQerrorMessage(conn.get());
  if (used_tls) *used_tls = PQsslInUse(conn.get()) == 1;
  return scalar(conn.get(), "SELECT current_user") == user ? "" : "wrong current_user";
}

}  // namespace

TEST_CASE("tls.client.mode prefer: libpq's sslmode disable, allow, prefer, require, verify-ca, verify-full") {
  TlsProxy proxy("prefer");
  const std::string ca = certificates().ca_crt;
  struct Case {
    Ssl ssl;
    bool tls;
  };
  const Case cases[] = {{{"disable"}, false},      {{"allow"}, false},          {{"prefer"}, true},
                        {{"require"}, true},       {{"verify-ca", ca}, true},   {{"verify-full", ca}, true}};
  for (const Case& c : cases) {
    CAPTURE(c.ssl.mode);
    bool used_tls = !c.tls;
    CHECK(try_login(proxy.port, "app", c.ssl, &used_tls) == "");
    CHECK(used_tls == c.tls);
  }
  // A client that trusts another CA does not accept pgmux's certificate.
  const std::string refused = try_login(proxy.port, "app", {"verify-ca", certificates().path("rogue.crt")});
  CHECK(contains(refused, "certificate verify failed"));
  // A client certificate is checked when one is presented, even where none is required.
  CHECK(try_login(proxy.port, "app", {"require", "", certificates().client_crt, certificates().client_key}) == "");
  CHECK(contains(try_login(proxy.port, "app", {"require", "", certificates().rogue_crt, certificates().rogue_key}),
                 "unknown ca"));
}

TEST_CASE("tls.client.mode require: plain text refused with PostgreSQL's 28000; TLS logins and the console work") {
  TlsProxy proxy("require", "");
  StartupOutcome plain = raw_startup(proxy.port, "app", "app", "app");
  CHECK_FALSE(plain.ok);
  CHECK(plain.sqlstate == "28000");
  CHECK(plain.message == "no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"app\", no encryption");
  CHECK(contains(try_login(proxy.port, "app", {"disable"}), "no pg_hba.conf entry for host \"127.0.0.1\""));
  bool used_tls = false;
  CHECK(try_login(proxy.port, "app", {"prefer"}, &used_tls) == "");
  CHECK(used_tls);
  CHECK(try_login(proxy.port, "app", {"require"}) == "");
  // The admin console is a login like any other: over TLS it answers as before.
  PgConn console = connect(tls_conninfo(proxy.port, "postgres", "pgmux", {"require"}));
  CHECK(PQsslInUse(console.get()) == 1);
  PgResult pools = exec(console.get(), "SHOW POOLS");
  CHECK(PQntuples(pools.get()) >= 0);
}

TEST_CASE("tls.client.mode disable: SSLRequest answered N") {
  TlsProxy proxy("disable", "");
  CHECK(contains(try_login(proxy.port, "app", {"require"}), "server does not support SSL"));
  bool used_tls = true;
  CHECK(try_login(proxy.port, "app", {"prefer"}, &used_tls) == "");
  CHECK_FALSE(used_tls);
}

TEST_CASE("verify-ca and verify-full: client certificates signed by ca_file") {
  const Certificates& certs = certificates();
  SUBCASE("verify-ca") {
    TlsProxy proxy("verify-ca");
    CHECK(try_login(proxy.port, "app", {"verify-full", certs.ca_crt, certs.client_crt, certs.client_key}) == "");
    // Any certificate of the CA will do under verify-ca, whatever its CN.
    CHECK(try_login(proxy.port, "postgres", {"require", "", certs.client_crt, certs.client_key}) == "");
    CHECK(contains(try_login(proxy.port, "app", {"require"}), "connection requires a valid client certificate"));
    CHECK(contains(try_login(proxy.port, "app", {"require", "", certs.rogue_crt, certs.rogue_key}), "unknown ca"));
    CHECK(contains(try_login(proxy.port, "app", {"disable"}), "no encryption"));
  }
  SUBCASE("verify-full: the certificate's CN is the user name") {
    TlsProxy proxy("verify-full");
    CHECK(try_login(proxy.port, "app", {"require", "", certs.client_crt, certs.client_key}) == "");
    CHECK(try_login(proxy.port, "postgres", {"require", "", certs.postgres_crt, certs.postgres_key}) == "");
    CHECK(contains(try_login(proxy.port, "postgres", {"require", "", certs.client_crt, certs.client_key}),
                   "certificate authentication failed for user \"postgres\""));
    CHECK(contains(try_login(proxy.port, "app", {"require"}), "connection requires a valid client certificate"));
  }
}

TEST_CASE("RELOAD swaps the certificate for new connections; a connected TLS client goes on") {
  const Certificates& certs = certificates();
  TlsProxy proxy("require");
  PgConn kept = connect(tls_conninfo(proxy.port, "app", "app", {"verify-full", certs.ca_crt}));
  CHECK(contains(server_subject(kept.get()), "O=pgmux first"));

  nlohmann::json next = proxy.config;
  next["tls"]["client"]["cert_file"] = certs.server2_crt;
  next["tls"]["client"]["key_file"] = certs.server2_key;
  reload::reload_config(proxy.process, next);
  PgConn fresh = connect(tls_conninfo(proxy.port, "app", "app", {"verify-full", certs.ca_crt}));
  CHECK(contains(server_subject(fresh.get()), "O=pgmux second"));
  CHECK(scalar(kept.get(), "SELECT 'still here'") == "still here");
  CHECK(contains(server_subject(kept.get()), "O=pgmux first"));

  // A certificate that does not load: the reload fails, says which file and why, and nothing changes.
  const std::string broken = certs.path("broken.crt");
  std::ofstream(broken) << "not a certificate\n";
  nlohmann::json bad = next;
  bad["tls"]["client"]["cert_file"] = broken;
  const std::string log = reload::reload_config(proxy.process, bad, reload::Outcome::Failed);
  CHECK(contains(log, "/tls/client/cert_file: could not load server certificate file \"" + broken + "\""));
  CHECK(contains(log, "the TLS context in use stays"));
  PgConn after = connect(tls_conninfo(proxy.port, "app", "app", {"verify-full", certs.ca_crt}));
  CHECK(contains(server_subject(after.get()), "O=pgmux second"));
  CHECK(scalar(kept.get(), "SELECT 1") == "1");
  CHECK(scalar(fresh.get(), "SELECT 2") == "2");
}

TEST_CASE("TLS settings that cannot work stop pgmux at startup, naming the setting") {
  const Certificates& certs = certificates();
  const int port = pick_listen_port();
  auto start_error = [&](const nlohmann::json& config) {
    try {
      PgmuxProcess process(config.dump(2), port);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("pgmux started");
  };
  nlohmann::json no_cert = config_with_tls(port, "require", "", certs.server_key, "");
  CHECK(contains(start_error(no_cert), "/tls/client/cert_file: is required when mode is \"require\""));
  nlohmann::json no_ca = config_with_tls(port, "verify-ca", certs.server_crt, certs.server_key, "");
  CHECK(contains(start_error(no_ca), "/tls/client/ca_file: is required when mode is \"verify-ca\""));
  nlohmann::json missing = config_with_tls(port, "prefer", certs.path("nope.crt"), certs.server_key, "");
  CHECK(contains(start_error(missing), "/tls/client/cert_file: could not load server certificate file"));
  nlohmann::json mismatched = config_with_tls(port, "prefer", certs.server_crt, certs.server2_key, "");
  CHECK(contains(start_error(mismatched), "/tls/client/key_file:"));
  nlohmann::json bad_mode = config_with_tls(port, "sometimes", certs.server_crt, certs.server_key, "");
  CHECK(contains(start_error(bad_mode), "/tls/client/mode: must be one of"));
}

TEST_CASE("SCRAM-SHA-256-PLUS: libpq's channel_binding=require logs in over TLS, and cannot without it") {
  TlsProxy proxy("prefer", "");
  const std::string bound = tls_conninfo(proxy.port, "app", "app", {"require"}) + " channel_binding=require";
  PgConn conn = try_connect(bound);
  REQUIRE_MESSAGE(PQstatus(conn.get()) == CONNECTION_OK, PQerrorMessage(conn.get()));
  CHECK(scalar(conn.get(), "SELECT current_user") == "app");
  // Plain text has no certificate to bind to: libpq refuses to go on without binding, as with PostgreSQL.
  const std::string plain = tls_conninfo(proxy.port, "app", "app", {"disable"}) + " channel_binding=require";
  PgConn refused = try_connect(plain);
  CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
  CHECK(contains(PQerrorMessage(refused.get()), "channel binding"));
  // MD5 has no binding either.
  PgConn md5 = try_connect(tls_conninfo(proxy.port, "md5user", "app", {"require"}) + " channel_binding=require");
  CHECK(PQstatus(md5.get()) == CONNECTION_BAD);
}
