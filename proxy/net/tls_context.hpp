// OpenSSL contexts, built on the control loop at startup and at each reload and published as immutable
// shared_ptrs: a connection keeps the context it started with, so a reload that swaps a certificate touches only
// connections that come after it.
// - TlsServerContext: what pgmux offers clients (tls.client): certificate, key, CAs for client certificates,
//   protocol floor, ciphers and ALPN "postgresql".
// - TlsClientContext: how pgmux's server connections reach one backend (its sslmode, sslrootcert, sslcert,
//   sslkey), with libpq's meanings.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "conf/config.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace pgmux::proxy {

class TlsContext {
 public:
  virtual ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool server_side() const { return server_side_; }
  // The peer's certificate is checked against CAs (a client's: tls.client.ca_file; a server's: sslrootcert).
  bool verifies_peer() const { return verifies_peer_; }

 protected:
  TlsContext(SSL_CTX* ctx, bool server_side, bool verifies_peer)
      : ctx_(ctx), server_side_(server_side), verifies_peer_(verifies_peer) {}

 private:
  SSL_CTX* ctx_;
  bool server_side_;
  bool verifies_peer_;
};

class TlsServerContext : public TlsContext {
 public:
  // nullptr when the files cannot be used; *error then names the setting (its JSON pointer), the file and
  // OpenSSL's reason, e.g. "/tls/client/key_file: could not load private key file "k.pem": ...".
  static std::shared_ptr<const TlsServerContext> create(const conf::TlsClient& settings, std::string* error);
  const conf::TlsClient& settings() const { return settings_; }

 private:
  TlsServerContext(SSL_CTX* ctx, conf::TlsClient settings)
      : TlsContext(ctx, true, !settings.ca_file.empty()), settings_(std::move(settings)) {}
  conf::TlsClient settings_;
};

class TlsClientContext : public TlsContext {
 public:
  // nullptr with *error naming the setting under `pointer` ("/backends/2") when a file cannot be used.
  static std::shared_ptr<const TlsClientContext> create(const conf::Backend& backend, const std::string& pointer,
                                                        std::string* error);
  conf::TlsMode mode() const { return mode_; }
  // The name the server's certificate must carry (verify-full) and that SNI announces: the backend's host.
  const std::string& host() const { return host_; }

 private:
  TlsClientContext(SSL_CTX* ctx, const conf::Backend& backend)
      : TlsContext(ctx, false, backend.sslmode >= conf::TlsMode::VerifyCa), mode_(backend.sslmode),
        host_(backend.host) {}
  conf::TlsMode mode_;
  std::string host_;
};

// Each backend's client context by name; backends with sslmode disable have none.
using BackendTlsContexts = std::map<std::string, std::shared_ptr<const TlsClientContext>>;
// For every backend of `config`; nullptr with *error at the first file that does not load.
std::shared_ptr<const BackendTlsContexts> make_backend_tls_contexts(const conf::Config& config, std::string* error);

// The first OpenSSL error of this thread as text ("no OpenSSL error reported" when none); the queue is cleared.
std::string openssl_error_text();

}  // namespace pgmux::proxy
