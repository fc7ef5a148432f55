// TLS towards clients (issue 11, item 1) with libpq and psql's own library: every sslmode against each
// tls.client.mode, client certificates (verify-ca, verify-full, a wrong CA), PostgreSQL's refusal of plain text
// where TLS is required, and RELOAD swapping the certificate while a TLS client stays connected. The protocol
// floor (min_protocol) and the cipher list, with a raw OpenSSL client where libpq cannot choose (TLS 1.1, ciphers).
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/tls/tls_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using namespace pgmux::test::tls;
using reload::contains;

namespace {

// config_with_tls with `more` settings merged into tls.client.
nlohmann::json tls_config(int port, const std::string& mode, const std::string& ca, const nlohmann::json& more) {
  nlohmann::json config = config_with_tls(port, mode, certificates().server_crt, certificates().server_key, ca);
  config["tls"]["client"].update(more);
  return config;
}

struct TlsProxy {
  TlsProxy(const std::string& mode, const std::string& ca = certificates().ca_crt,
           const nlohmann::json& more = nlohmann::json::object())
      : port(pick_listen_port()), config(tls_config(port, mode, ca, more)), process(config.dump(2), port) {}
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

// A raw client's SSLRequest and handshake with the versions and ciphers it was limited to: "" when the handshake
// succeeded (and a startup packet over it is answered 'R', so the connection is usable), else why not.
std::string raw_tls_login(RawTlsClient& client) {
  if (!client.request_ssl()) return "SSLRequest not answered 'S'";
  const std::string refused = client.handshake({});
  if (!refused.empty()) return refused;
  if (!client.send_tls(startup_packet("app", "app"))) return "startup packet not sent";
  const std::string reply = client.read_tls(1);
  return reply == "R" ? "" : "no authentication request after the handshake";
}

// The log is written after the client has its answer: waits for `text` up to 5 s.
bool log_shows(PgmuxProcess& process, const std::string& text) {
  for (int i = 0; i < 50; ++i) {
    if (contains(process.full_log(), text)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
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

TEST_CASE("TLS 1.2 is the floor by default: a client offering at most TLS 1.1 is refused in the handshake") {
  TlsProxy proxy("prefer", "");
  RawTlsClient old(proxy.port);
  old.limit_versions(TLS1_VERSION, TLS1_1_VERSION);
  // pgmux's protocol_version alert, not a local refusal: the client's hello went out.
  CHECK(raw_tls_login(old) == "tlsv1 alert protocol version");
  CHECK(log_shows(proxy.process, "could not accept SSL connection: unsupported protocol"));
  RawTlsClient current(proxy.port);
  current.limit_versions(TLS1_VERSION, TLS1_2_VERSION);
  CHECK(raw_tls_login(current) == "");
  CHECK(current.negotiated_version() == "TLSv1.2");
  // libpq capped at TLS 1.2 logs in too.
  PgConn conn = connect(tls_conninfo(proxy.port, "app", "app", {"require"}) + " ssl_max_protocol_version=TLSv1.2");
  CHECK(std::string(PQsslAttribute(conn.get(), "protocol")) == "TLSv1.2");
}

TEST_CASE("tls.client.min_protocol TLSv1.3: a client capped at TLS 1.2 is refused, a TLS 1.3 client logs in") {
  TlsProxy proxy("prefer", "", {{"min_protocol", "TLSv1.3"}});
  const std::string capped = tls_conninfo(proxy.port, "app", "app", {"require"}) + " ssl_max_protocol_version=TLSv1.2";
  PgConn refused = try_connect(capped);
  CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
  CHECK(contains(PQerrorMessage(refused.get()), "SSL error: tlsv1 alert protocol version"));
  RawTlsClient raw(proxy.port);
  raw.limit_versions(TLS1_2_VERSION, TLS1_2_VERSION);
  CHECK(raw_tls_login(raw) == "tlsv1 alert protocol version");

  PgConn conn = connect(tls_conninfo(proxy.port, "app", "app", {"require"}));
  CHECK(std::string(PQsslAttribute(conn.get(), "protocol")) == "TLSv1.3");
  CHECK(scalar(conn.get(), "SELECT current_user") == "app");
}

TEST_CASE("tls.client.ciphers limits the TLS 1.2 ciphers pgmux agrees to; TLS 1.3 keeps its own suites") {
  // The test certificates have P-256 keys: ECDSA suites.
  const std::string chosen = "ECDHE-ECDSA-AES256-GCM-SHA384";
  const std::string other = "ECDHE-ECDSA-AES128-GCM-SHA256";
  TlsProxy proxy("prefer", "", {{"ciphers", chosen}});
  RawTlsClient outside(proxy.port);
  outside.limit_versions(TLS1_2_VERSION, TLS1_2_VERSION);
  outside.offer_ciphers(other);
  CHECK(raw_tls_login(outside) == "sslv3 alert handshake failure");
  RawTlsClient inside(proxy.port);
  inside.limit_versions(TLS1_2_VERSION, TLS1_2_VERSION);
  inside.offer_ciphers(other + ":" + chosen);
  CHECK(raw_tls_login(inside) == "");
  CHECK(inside.negotiated_cipher() == chosen);
  RawTlsClient tls13(proxy.port);
  tls13.limit_versions(TLS1_3_VERSION, TLS1_3_VERSION);
  CHECK(raw_tls_login(tls13) == "");
  CHECK(tls13.negotiated_version() == "TLSv1.3");

  // The setting is what refused it: PostgreSQL's default list takes the same client.
  TlsProxy defaults("prefer", "");
  RawTlsClient again(defaults.port);
  again.limit_versions(TLS1_2_VERSION, TLS1_2_VERSION);
  again.offer_ciphers(other);
  CHECK(raw_tls_login(again) == "");
  CHECK(again.negotiated_cipher() == other);
}

TEST_CASE("tls.client.mode allow: as prefer, TLS for a client that asks for it, plain text for one that does not") {
  TlsProxy proxy("allow", "");
  struct Case {
    Ssl ssl;
    bool tls;
  };
  // libpq's allow tries plain text first, and pgmux takes it.
  const Case cases[] = {{{"disable"}, false}, {{"allow"}, false}, {{"prefer"}, true}, {{"require"}, true}};
  for (const Case& c : cases) {
    CAPTURE(c.ssl.mode);
    bool used_tls = !c.tls;
    CHECK(try_login(proxy.port, "app", c.ssl, &used_tls) == "");
    CHECK(used_tls == c.tls);
  }
  // A plain-text client that never sends an SSLRequest.
  CHECK(raw_startup(proxy.port, "app", "app", "app").ok);
}
