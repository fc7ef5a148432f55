#include "tests/integration/tls/tls_support.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

namespace pgmux::test::tls {
namespace {

void run(const std::string& command) {
  const std::string quiet = command + " >/dev/null 2>&1";
  if (std::system(quiet.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

// A P-256 key and a certificate for `subject` signed by ca (its .crt and .key), with the extensions in `ext`.
void signed_pair(const std::string& dir, const std::string& name, const std::string& subject, const std::string& ca,
                 const std::string& ext) {
  const std::string base = dir + "/" + name;
  run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + base + ".key -out " +
      base + ".csr -subj '" + subject + "'");
  std::ofstream(base + ".ext") << ext << "\n";
  run("openssl x509 -req -in " + base + ".csr -CA " + dir + "/" + ca + ".crt -CAkey " + dir + "/" + ca +
      ".key -CAcreateserial -days 2 -out " + base + ".crt -extfile " + base + ".ext");
  std::filesystem::permissions(base + ".key", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::replace);
}

void authority(const std::string& dir, const std::string& name, const std::string& subject) {
  run("openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -keyout " + dir +
      "/" + name + ".key -out " + dir + "/" + name + ".crt -subj '" + subject +
      "' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
}

}  // namespace

Certificates::Certificates() {
  char pattern[] = "/tmp/pgmux-tls-XXXXXX";
  if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir = pattern;
  authority(dir, "ca", "/CN=pgmux test CA");
  authority(dir, "rogue", "/CN=some other CA");
  const std::string server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1";
  signed_pair(dir, "server", "/O=pgmux first/CN=localhost", "ca", server_ext);
  signed_pair(dir, "server2", "/O=pgmux second/CN=localhost", "ca", server_ext);
  signed_pair(dir, "elsewhere", "/O=pgmux elsewhere/CN=db.example.com", "ca", "subjectAltName=DNS:db.example.com");
  signed_pair(dir, "client", "/CN=app", "ca", "extendedKeyUsage=clientAuth");
  signed_pair(dir, "postgres", "/CN=postgres", "ca", "extendedKeyUsage=clientAuth");
  signed_pair(dir, "rogue_client", "/CN=app", "rogue", "extendedKeyUsage=clientAuth");
  ca_crt = path("ca.crt");
  server_crt = path("server.crt");
  server_key = path("server.key");
  server2_crt = path("server2.crt");
  server2_key = path("server2.key");
  elsewhere_crt = path("elsewhere.crt");
  elsewhere_key = path("elsewhere.key");
  client_crt = path("client.crt");
  client_key = path("client.key");
  postgres_crt = path("postgres.crt");
  postgres_key = path("postgres.key");
  rogue_crt = path("rogue_client.crt");
  rogue_key = path("rogue_client.key");
}

Certificates::~Certificates() {
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

const Certificates& certificates() {
  static Certificates made;
  return made;
}

nlohmann::json config_with_tls(int listen_port, const std::string& mode, const std::string& cert,
                               const std::string& key, const std::string& ca) {
  nlohmann::json config = default_config(listen_port);
  nlohmann::json client = {{"mode", mode}, {"cert_file", cert}, {"key_file", key}};
  if (!ca.empty()) client["ca_file"] = ca;
  config["tls"] = {{"client", client}};
  config["admin_users"] = nlohmann::json::array({"postgres"});
  return config;
}

std::string tls_conninfo(int port, const std::string& user, const std::string& db, const Ssl& ssl) {
  std::string out = "host=localhost hostaddr=127.0.0.1 port=" + std::to_string(port) + " user=" + user +
                    " password=" + user + " dbname=" + db + " connect_timeout=5 sslmode=" + ssl.mode;
  // Never the user's ~/.postgresql files: a test names every file it means.
  out += " sslrootcert=" + (ssl.rootcert.empty() ? std::string("/nonexistent/root.crt") : ssl.rootcert);
  out += " sslcert=" + (ssl.cert.empty() ? std::string("/nonexistent/client.crt") : ssl.cert);
  out += " sslkey=" + (ssl.key.empty() ? std::string("/nonexistent/client.key") : ssl.key);
  return out;
}

std::string verbose_login_error(const std::string& conninfo) {
  PgConn conn(PQconnectStart(conninfo.c_str()));
  if (!conn) return "PQconnectStart failed";
  PQsetErrorVerbosity(conn.get(), PQERRORS_VERBOSE);
  using std::chrono::steady_clock;
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;  // what libpq documents for the first round
  while (status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED && PQstatus(conn.get()) != CONNECTION_BAD) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    pollfd pfd{PQsocket(conn.get()), static_cast<short>(status == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return "login timed out";
    status = PQconnectPoll(conn.get());
  }
  return PQstatus(conn.get()) == CONNECTION_OK ? "" : PQerrorMessage(conn.get());
}

std::string server_subject(void* pgconn) {
  auto* ssl = static_cast<SSL*>(PQsslStruct(static_cast<PGconn*>(pgconn), "OpenSSL"));
  if (ssl == nullptr) return "";
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  char text[512];
  X509_NAME_oneline(X509_get_subject_name(cert), text, sizeof text);
  X509_free(cert);
  return text;
}

RawTlsClient::RawTlsClient(int port, double timeout_s) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{static_cast<time_t>(timeout_s), static_cast<suseconds_t>((timeout_s - static_cast<int>(timeout_s)) * 1e6)};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr = loopback_address(port);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd_);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);  // the libpq tests check certificates
}

RawTlsClient::~RawTlsClient() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) close(fd_);
}

void RawTlsClient::limit_versions(int min_version, int max_version) {
  SSL_CTX_set_security_level(ctx_, 0);
  SSL_CTX_set_min_proto_version(ctx_, min_version);
  SSL_CTX_set_max_proto_version(ctx_, max_version);
}

void RawTlsClient::offer_ciphers(const std::string& ciphers) {
  SSL_CTX_set_security_level(ctx_, 0);
  if (SSL_CTX_set_cipher_list(ctx_, ciphers.c_str()) != 1) throw std::runtime_error("unknown cipher: " + ciphers);
}

bool RawTlsClient::request_ssl() {
  constexpr uint32_t kSslRequestCode = 80877103;
  return send_plain(raw_packet(kSslRequestCode)) && read_plain(1) == "S";
}

bool RawTlsClient::send_plain(const std::string& bytes) {
  return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

std::string RawTlsClient::read_plain(size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

std::string RawTlsClient::handshake(const std::vector<std::string>& alpn) {
  ssl_ = SSL_new(ctx_);
  if (!alpn.empty()) {
    std::string wire;
    for (const std::string& protocol : alpn) wire += static_cast<char>(protocol.size()) + protocol;
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  SSL_set_fd(ssl_, fd_);
  ERR_clear_error();
  if (SSL_connect(ssl_) == 1) return "";
  const unsigned long code = ERR_get_error();
  const char* reason = code ? ERR_reason_error_string(code) : nullptr;
  return reason ? reason : "handshake failed";
}

std::string RawTlsClient::negotiated_alpn() const {
  const unsigned char* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_, &data, &length);
  return data ? std::string(reinterpret_cast<const char*>(data), length) : "";
}

std::string RawTlsClient::negotiated_version() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

std::string RawTlsClient::negotiated_cipher() const {
  const char* name = ssl_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return name ? name : "";
}

bool RawTlsClient::send_tls(const std::string& bytes) {
  return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) == static_cast<int>(bytes.size());
}

std::string RawTlsClient::read_tls(size_t n, bool* closed) {
  std::string out(n, '\0');
  size_t got = 0;
  bool eof = false;
  while (got < n) {
    const int r = SSL_read(ssl_, out.data() + got, static_cast<int>(n - got));
    if (r <= 0) {
      const int error = SSL_get_error(ssl_, r);
      eof = error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && errno != EAGAIN && errno != EWOULDBLOCK) ||
            error == SSL_ERROR_SSL;
      break;
    }
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  if (closed) *closed = eof;
  return out;
}

std::string startup_packet(const std::string& user, const std::string& database) {
  return raw_packet(196608, raw_parameters({{"user", user}, {"database", database}}));
}

}  // namespace pgmux::test::tls
