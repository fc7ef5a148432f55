// The OpenSSL server context pgmux offers clients (tls.client): certificate, key, CAs for client certificates,
// protocol floor, ciphers and ALPN "postgresql". Built on the control loop at startup and at each reload and
// published as an immutable shared_ptr: a connection keeps the context it started with, so a reload that swaps
// the certificate touches only connections that come after it.
#pragma once
#include <memory>
#include <string>

#include "conf/config.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace pgmux::proxy {

class TlsServerContext {
 public:
  // nullptr when the files cannot be used; *error then names the setting (its JSON pointer), the file and
  // OpenSSL's reason, e.g. "/tls/client/key_file: could not load private key file "k.pem": ...".
  static std::shared_ptr<const TlsServerContext> create(const conf::TlsClient& settings, std::string* error);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  const conf::TlsClient& settings() const { return settings_; }

 private:
  TlsServerContext(SSL_CTX* ctx, conf::TlsClient settings) : ctx_(ctx), settings_(std::move(settings)) {}
  SSL_CTX* ctx_;
  conf::TlsClient settings_;
};

// The last OpenSSL error of this thread as text ("" when none), and the queue cleared.
std::string openssl_error_text();

}  // namespace pgmux::proxy
