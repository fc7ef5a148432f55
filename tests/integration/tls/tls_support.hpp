// Helpers for the TLS tests (issue 11, items 1 and 2): certificates made with the openssl CLI at test time, a
// pgmux config with tls.client, libpq connection strings per sslmode, and a raw OpenSSL client for what libpq 15
// cannot do (PostgreSQL 17's direct TLS, a second SSLRequest inside TLS, TLS 1.1, a chosen cipher list).
#pragma once
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgmux::test::tls {

// A CA, two server certificates it signed (CN localhost, SANs DNS:localhost and IP:127.0.0.1; the second with
// O=pgmux second, to tell them apart), one it signed for another name (db.example.com only: "elsewhere"), a
// client certificate for user app, and one for app from another CA ("rogue"). In a fresh directory, removed
// when the object goes.
struct Certificates {
  Certificates();
  ~Certificates();
  Certificates(const Certificates&) = delete;
  Certificates& operator=(const Certificates&) = delete;
  std::string path(const std::string& name) const { return dir + "/" + name; }

  std::string dir;
  std::string ca_crt, server_crt, server_key, server2_crt, server2_key, elsewhere_crt, elsewhere_key;
  std::string client_crt, client_key, postgres_crt, postgres_key, rogue_crt, rogue_key;
};
const Certificates& certificates();  // made once per test process

// The default test config with tls.client {mode, cert_file, key_file, ca_file} (ca_file only when non-empty),
// and admin_users ["postgres"].
nlohmann::json config_with_tls(int listen_port, const std::string& mode, const std::string& cert,
                               const std::string& key, const std::string& ca);

// conninfo(...) plus sslmode and, when set, sslrootcert / sslcert / sslkey; host=localhost hostaddr=127.0.0.1
// so verify-full has a name to check.
struct Ssl {
  Ssl(std::string sslmode = "prefer", std::string root = "", std::string client_cert = "",
      std::string client_key = "")
      : mode(std::move(sslmode)), rootcert(std::move(root)), cert(std::move(client_cert)), key(std::move(client_key)) {}
  std::string mode;
  std::string rootcert;
  std::string cert;
  std::string key;
};
std::string tls_conninfo(int port, const std::string& user, const std::string& db, const Ssl& ssl);

// Connects with libpq's verbose error wording, so that a refused login's message carries its SQLSTATE
// ("FATAL:  28000: ..."); "" when the connection was made. Bounded by connect_timeout and 10 s.
std::string verbose_login_error(const std::string& conninfo);

// Subject of the certificate the server presented on a libpq connection ("" without TLS).
std::string server_subject(void* pgconn);

// A blocking TCP + OpenSSL client with bounded waits, for raw protocol over TLS.
class RawTlsClient {
 public:
  explicit RawTlsClient(int port, double timeout_s = 5.0);
  ~RawTlsClient();
  RawTlsClient(const RawTlsClient&) = delete;
  RawTlsClient& operator=(const RawTlsClient&) = delete;

  // Before handshake(): the TLS versions offered (TLS1_2_VERSION and the like; 0 leaves OpenSSL's default at
  // that end) and, for TLS 1.2 and older, the cipher list. Security level 0, so that a client capped below
  // TLS 1.2 really sends its ClientHello: OpenSSL 3 would otherwise refuse before writing a byte, which says
  // nothing about the server.
  void limit_versions(int min_version, int max_version);
  void offer_ciphers(const std::string& ciphers);
  // Sends an SSLRequest; true when the answer is 'S' (a TLS handshake is to follow).
  bool request_ssl();
  // Plain-text bytes on the socket, and reading plain bytes back (up to n, until the deadline).
  bool send_plain(const std::string& bytes);
  std::string read_plain(size_t n);
  // The handshake, offering `alpn` (empty: no ALPN extension). "" when it succeeded, else OpenSSL's reason.
  std::string handshake(const std::vector<std::string>& alpn);
  std::string negotiated_alpn() const;
  std::string negotiated_version() const;  // "TLSv1.3", ...
  std::string negotiated_cipher() const;   // OpenSSL's name
  bool send_tls(const std::string& bytes);
  // Reads up to n decrypted bytes; fewer when the peer closed or the deadline passed (*closed says which).
  std::string read_tls(size_t n, bool* closed = nullptr);

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

// A StartupMessage for user app, database app (protocol 3.0).
std::string startup_packet(const std::string& user, const std::string& database);

}  // namespace pgmux::test::tls
