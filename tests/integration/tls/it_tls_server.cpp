// TLS towards servers (issue 11, item 4): a backend's sslmode for pooled server connections and the prober.
// standby2 of the shared cluster gets ssl = on (ALTER SYSTEM, reload) for this test's life, with a certificate
// of the test CA; the primary stays plain text (the startup differential tests compare with it).
#include <doctest/doctest.h>
#include <grp.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/reload/reload_support.hpp"
#include "tests/integration/tls/tls_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;
using namespace pgmux::test::tls;
using reload::contains;

namespace {

std::string superuser(int port) { return conninfo(port, "postgres", "postgres", "postgres") + " sslmode=disable"; }

// ssl = on for one server while the object lives. The key is copied where the postgres OS user may read it,
// with the permissions PostgreSQL insists on.
struct SslOnServer {
  explicit SslOnServer(int port, const std::string& cert = certificates().server_crt,
                       const std::string& server_key = certificates().server_key)
      : port(port) {
    const Certificates& certs = certificates();
    std::filesystem::permissions(certs.dir, std::filesystem::perms(0755));
    const std::string key = certs.path("pgserver.key");
    std::filesystem::copy_file(server_key, key, std::filesystem::copy_options::overwrite_existing);
    if (geteuid() == 0) {
      const group* postgres = getgrnam("postgres");
      if (postgres != nullptr && chown(key.c_str(), 0, postgres->gr_gid) != 0) FAIL("chown " << key);
      chmod(key.c_str(), 0640);
      chmod(cert.c_str(), 0644);
    }
    PgConn conn = connect(superuser(port));
    exec(conn.get(), "ALTER SYSTEM SET ssl_cert_file = '" + cert + "'");
    exec(conn.get(), "ALTER SYSTEM SET ssl_key_file = '" + key + "'");
    exec(conn.get(), "ALTER SYSTEM SET ssl = on");
    exec(conn.get(), "SELECT pg_reload_conf()");
    for (int i = 0; i < 100 && !serves_tls(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE_MESSAGE(serves_tls(), "ssl = on did not take effect on port " << port);
  }
  ~SslOnServer() {
    PgConn conn = try_connect(superuser(port));
    if (PQstatus(conn.get()) != CONNECTION_OK) return;
    for (const char* setting : {"ssl", "ssl_cert_file", "ssl_key_file"}) {
      PQclear(PQexec(conn.get(), (std::string("ALTER SYSTEM RESET ") + setting).c_str()));
    }
    PQclear(PQexec(conn.get(), "SELECT pg_reload_conf()"));
  }
  bool serves_tls() const {
    PgConn conn = try_connect(conninfo(port, "postgres", "postgres", "postgres") + " sslmode=require");
    return PQstatus(conn.get()) == CONNECTION_OK;
  }
  int port;
};

nlohmann::json backend(const std::string& name, int port, int weight) {
  return {{"name", name}, {"host", "127.0.0.1"}, {"port", port}, {"weight", weight}};
}

nlohmann::json config_for(int listen, const nlohmann::json& backends) {
  nlohmann::json config = default_config(listen);
  config["backends"] = backends;
  config["health_check"] = {{"period", 0.2}, {"timeout", 1}, {"max_retries", 1}, {"user", "postgres"}};
  return config;
}

// The primary in plain text with weight 0 (no reads), standby2 with `sslmode` and `rootcert` taking the reads.
nlohmann::json reads_on_standby2(int listen, const std::string& sslmode, const std::string& rootcert) {
  const ClusterPorts ports = cluster_ports();
  nlohmann::json standby = backend("standby2", ports.standby2, 1);
  standby["sslmode"] = sslmode;
  standby["sslrootcert"] = rootcert;
  return config_for(listen, nlohmann::json::array({backend("primary", ports.primary, 0), standby}));
}

// Polls `sql` through `conninfo` until it returns `expected` (20 s at most: a standby the prober found down or
// lagging meanwhile serves reads again only after lag_hysteresis, 5 s); the last answer or error.
std::string wait_for(const std::string& conninfo, const std::string& sql, const std::string& expected) {
  std::string last;
  for (int i = 0; i < 200; ++i) {
    try {
      PgConn conn = connect(conninfo);
      last = scalar(conn.get(), sql);
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (last == expected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return last;
}

// The log is written while the client reads its answer: waits for `text` up to 5 s.
bool log_shows(PgmuxProcess& process, const std::string& text) {
  for (int i = 0; i < 50; ++i) {
    if (contains(process.full_log(), text)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TEST_CASE("a backend with sslmode verify-full: pooled connections and the prober run over TLS") {
  const ClusterPorts ports = cluster_ports();
  SslOnServer ssl(ports.standby2);
  const int listen = pick_listen_port();
  PgmuxProcess pgmux(reads_on_standby2(listen, "verify-full", certificates().ca_crt).dump(2), listen);
  const std::string app = conninfo(listen, "app", "app", "app");
  // A read goes to the standby (the primary has weight 0) once the prober found it. (pg_backend_pid() would
  // send it to the primary, so the standby is asked about its connections directly.)
  // (pg_is_in_recovery() is VOLATILE: once the function catalog is loaded, a read calling it goes to the primary.)
  const std::string where = "SELECT inet_server_port()::text";
  const std::string standby2 = std::to_string(ports.standby2);
  CHECK_MESSAGE(wait_for(app, where, standby2) == standby2, pgmux.log());
  // Every connection pgmux holds on the standby is encrypted: the pooled one (user app) and the prober's.
  PgConn direct = connect(superuser(ports.standby2));
  const std::string from = "FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ";
  CHECK(scalar(direct.get(), "SELECT count(*) " + from + "usename = 'app'") != "0");
  CHECK(scalar(direct.get(), "SELECT count(*) " + from + "application_name = 'pgmux-prober'") != "0");
  CHECK(scalar(direct.get(), "SELECT count(*) " + from + "(application_name = 'pgmux-prober' OR usename = 'app') "
                             "AND NOT ssl") == "0");
}

TEST_CASE("sslmode require against a server without TLS: libpq's words, 08006; prefer goes on in plain text") {
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json primary = backend("primary", ports.primary, 1);
  primary["sslmode"] = "require";
  PgmuxProcess pgmux(config_for(listen, nlohmann::json::array({primary})).dump(2), listen);
  PgConn refused = try_connect(conninfo(listen, "app", "app", "app"));
  CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
  CHECK(contains(PQerrorMessage(refused.get()), "server does not support SSL, but SSL was required"));

  nlohmann::json config = config_for(listen, nlohmann::json::array({primary}));
  config["backends"][0]["sslmode"] = "prefer";
  reload::reload_config(pgmux, config);
  PgConn plain = connect(conninfo(listen, "app", "app", "app"));
  CHECK(scalar(plain.get(), "SELECT coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '?')") ==
        "false");
}

TEST_CASE("sslmode verify-ca with another CA: the prober cannot reach the server, and says why") {
  const ClusterPorts ports = cluster_ports();
  SslOnServer ssl(ports.standby2);
  const int listen = pick_listen_port();
  PgmuxProcess pgmux(reads_on_standby2(listen, "verify-ca", certificates().path("rogue.crt")).dump(2), listen);
  bool logged = false;
  for (int i = 0; i < 100 && !logged; ++i) {
    logged = contains(pgmux.full_log(), "certificate verify failed");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK_MESSAGE(logged, pgmux.log());
}

TEST_CASE("sslmode verify-ca: any certificate of sslrootcert's CA will do, whatever name it was made for") {
  const ClusterPorts ports = cluster_ports();
  const Certificates& certs = certificates();
  SslOnServer ssl(ports.standby2, certs.elsewhere_crt, certs.elsewhere_key);  // for db.example.com only
  const int listen = pick_listen_port();
  PgmuxProcess pgmux(reads_on_standby2(listen, "verify-ca", certs.ca_crt).dump(2), listen);
  const std::string app = conninfo(listen, "app", "app", "app");
  const std::string standby2 = std::to_string(ports.standby2);
  CHECK_MESSAGE(wait_for(app, "SELECT inet_server_port()::text", standby2) == standby2, pgmux.log());
  PgConn direct = connect(superuser(ports.standby2));
  CHECK(scalar(direct.get(),
               "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
               "WHERE usename = 'app' AND ssl") != "0");
}

TEST_CASE("sslmode verify-full against a certificate for another name: 08006 for the client, naming the backend") {
  const ClusterPorts ports = cluster_ports();
  const Certificates& certs = certificates();
  SslOnServer ssl(ports.standby2, certs.elsewhere_crt, certs.elsewhere_key);
  const int listen = pick_listen_port();
  nlohmann::json standby = backend("standby2", ports.standby2, 1);
  standby["sslmode"] = "verify-full";
  standby["sslrootcert"] = certs.ca_crt;
  PgmuxProcess pgmux(config_for(listen, nlohmann::json::array({standby})).dump(2), listen);
  // libpq's own words for it, straight to the server with the same settings.
  PgConn direct = try_connect(conninfo(ports.standby2, "app", "app", "app") +
                              " sslmode=verify-full sslrootcert=" + certs.ca_crt + " sslcert=/nonexistent");
  REQUIRE(PQstatus(direct.get()) == CONNECTION_BAD);
  const std::string libpq_error = PQerrorMessage(direct.get());
  const std::string::size_type from = libpq_error.find("server certificate for");
  REQUIRE_MESSAGE(from != std::string::npos, libpq_error);
  const std::string mismatch = libpq_error.substr(from, libpq_error.find('\n', from) - from);
  CHECK(mismatch ==
        "server certificate for \"db.example.com\" (and 1 other name) does not match host name \"127.0.0.1\"");

  const std::string error = verbose_login_error(conninfo(listen, "app", "app", "app"));
  CHECK_MESSAGE(contains(error, "FATAL:  08006: could not connect to server: " + mismatch + "\n"), error);
  CHECK(contains(error, "backend \"standby2\" at 127.0.0.1:" + std::to_string(ports.standby2)));
  // The log says it for the server connection, and the prober's libpq in its own words.
  const std::string port = std::to_string(ports.standby2);
  CHECK_MESSAGE(log_shows(pgmux, "backend standby2 (127.0.0.1:" + port + ") pool app/app@standby2: could not " +
                                     "connect to server: " + mismatch),
                pgmux.full_log());
  CHECK_MESSAGE(log_shows(pgmux, "backend standby2 is down: connection to server at \"127.0.0.1\", port " + port +
                                     " failed: " + mismatch),
                pgmux.full_log());

  // By name: a DNS subjectAltName rules the CN out, so libpq names one name.
  nlohmann::json by_name = config_for(listen, nlohmann::json::array({standby}));
  by_name["backends"][0]["host"] = "localhost";
  reload::reload_config(pgmux, by_name);
  CHECK(contains(verbose_login_error(conninfo(listen, "app", "app", "app")),
                 "could not connect to server: server certificate for \"db.example.com\" does not match host name "
                 "\"localhost\"\n"));
}

TEST_CASE("backend TLS settings are checked: the setting is named") {
  const ClusterPorts ports = cluster_ports();
  const int port = pick_listen_port();
  auto start_error = [&](const nlohmann::json& b) {
    try {
      PgmuxProcess process(config_for(port, nlohmann::json::array({b})).dump(2), port);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("pgmux started");
  };
  nlohmann::json b = backend("primary", ports.primary, 1);
  b["sslmode"] = "verify-full";
  CHECK(contains(start_error(b), "/backends/0/sslrootcert: is required when sslmode is \"verify-full\""));
  b["sslrootcert"] = certificates().path("missing.crt");
  CHECK(contains(start_error(b), "/backends/0/sslrootcert: could not load root certificate file"));
  b["sslmode"] = "allow";
  CHECK(contains(start_error(b), "/backends/0/sslmode: must be one of"));
}

// standby2 admits user app only with a client certificate of the test CA (a "cert" rule in front of its hba
// file) for the test's life.
struct CertRuleOnServer {
  explicit CertRuleOnServer(int port) : port(port) {
    PgConn conn = connect(superuser(port));
    hba_file = scalar(conn.get(), "SHOW hba_file");
    std::ifstream in(hba_file);
    std::stringstream text;
    text << in.rdbuf();
    original = text.str();
    write_hba("hostssl all app 127.0.0.1/32 cert\n" + original);
    exec(conn.get(), "ALTER SYSTEM SET ssl_ca_file = '" + certificates().ca_crt + "'");
    exec(conn.get(), "SELECT pg_reload_conf()");
  }
  ~CertRuleOnServer() {
    write_hba(original);
    PgConn conn = try_connect(superuser(port));
    if (PQstatus(conn.get()) != CONNECTION_OK) return;
    PQclear(PQexec(conn.get(), "ALTER SYSTEM RESET ssl_ca_file"));
    PQclear(PQexec(conn.get(), "SELECT pg_reload_conf()"));
  }
  void write_hba(const std::string& text) const {
    std::ofstream out(hba_file, std::ios::trunc);
    out << text;
  }
  int port;
  std::string hba_file;
  std::string original;
};

TEST_CASE("a backend with sslcert and sslkey: pgmux logs in to a server that demands a client certificate") {
  const ClusterPorts ports = cluster_ports();
  SslOnServer ssl(ports.standby2);
  CertRuleOnServer cert_rule(ports.standby2);
  const Certificates& certs = certificates();
  chmod(certs.client_key.c_str(), 0600);  // libpq (the prober) insists
  PgConn refused = try_connect(conninfo(ports.standby2, "app", "app", "app") + " sslmode=require");
  REQUIRE_MESSAGE(PQstatus(refused.get()) == CONNECTION_BAD, "the cert rule did not take effect");

  const int listen = pick_listen_port();
  nlohmann::json config = reads_on_standby2(listen, "verify-full", certs.ca_crt);
  config["backends"][1]["sslcert"] = certs.client_crt;
  config["backends"][1]["sslkey"] = certs.client_key;
  PgmuxProcess pgmux(config.dump(2), listen);
  const std::string app = conninfo(listen, "app", "app", "app");
  const std::string standby2 = std::to_string(ports.standby2);
  CHECK_MESSAGE(wait_for(app, "SELECT inet_server_port()::text", standby2) == standby2, pgmux.log());
  PgConn direct = connect(superuser(ports.standby2));
  CHECK(scalar(direct.get(), "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                             "WHERE usename = 'app' AND client_dn = '/CN=app'") != "0");
}
