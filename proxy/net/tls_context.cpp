#include "proxy/net/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pgmux::proxy {
namespace {

// The ALPN protocol PostgreSQL 17 registered for its wire protocol, in the wire's length-prefixed form.
constexpr unsigned char kAlpnPostgresql[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};
// PostgreSQL's default ssl_ciphers.
constexpr const char* kDefaultCiphers = "HIGH:MEDIUM:+3DES:!aNULL";

// A client that offers ALPN must offer "postgresql"; anything else gets the no_application_protocol alert,
// as PostgreSQL 17 answers. A client offering no ALPN is not called here (direct TLS checks that afterwards).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void*) {
  unsigned char* selected = nullptr;
  const int rc = SSL_select_next_proto(&selected, outlen, kAlpnPostgresql, sizeof kAlpnPostgresql, in, inlen);
  if (rc != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// A file that cannot be opened is reported with the system's reason, which OpenSSL's queue words poorly.
std::string file_error(const std::string& setting, const char* what, const std::string& file) {
  std::string reason;
  if (FILE* f = std::fopen(file.c_str(), "r")) {
    std::fclose(f);
    reason = openssl_error_text();
  } else {
    reason = std::strerror(errno);
    ERR_clear_error();
  }
  return setting + ": could not load " + what + " \"" + file + "\": " + reason;
}

// Certificate, key and (when set) the CAs client certificates are checked against; "" or the error.
std::string load_files(SSL_CTX* ctx, const conf::TlsClient& s) {
  if (SSL_CTX_use_certificate_chain_file(ctx, s.cert_file.c_str()) != 1) {
    return file_error("/tls/client/cert_file", "server certificate file", s.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, s.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return file_error("/tls/client/key_file", "private key file", s.key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return "/tls/client/key_file: \"" + s.key_file + "\" does not match the certificate in \"" + s.cert_file +
           "\": " + openssl_error_text();
  }
  if (s.ca_file.empty()) return "";
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.ca_file.c_str());
  if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1 || names == nullptr) {
    if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
    return file_error("/tls/client/ca_file", "root certificate file", s.ca_file);
  }
  SSL_CTX_set_client_CA_list(ctx, names);
  // A certificate a client presents is checked (a bad one fails the handshake, as in PostgreSQL); whether one
  // is required at all is the mode's business, decided after the handshake with PostgreSQL's message.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, nullptr);
  return "";
}

// Protocol floor, ciphers, and what PostgreSQL turns off: compression, renegotiation, session resumption.
std::string set_protocol(SSL_CTX* ctx, const conf::TlsClient& s) {
  const int floor = s.min_protocol == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(ctx, floor) != 1) {
    return "/tls/client/min_protocol: \"" + s.min_protocol + "\" is not supported: " + openssl_error_text();
  }
  const std::string ciphers = s.ciphers.empty() ? kDefaultCiphers : s.ciphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    return "/tls/client/ciphers: no usable cipher in \"" + ciphers + "\": " + openssl_error_text();
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  return "";
}

}  // namespace

// The first error of the queue is the cause (a PEM "no start line"); the ones after it are the callers giving
// up ("PEM lib").
std::string openssl_error_text() {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "no OpenSSL error reported";
  const char* reason = ERR_reason_error_string(first);
  if (reason != nullptr) return reason;
  char text[256];
  ERR_error_string_n(first, text, sizeof text);
  return text;
}

std::shared_ptr<const TlsServerContext> TlsServerContext::create(const conf::TlsClient& settings,
                                                                 std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    *error = "/tls/client: could not create an SSL context: " + openssl_error_text();
    return nullptr;
  }
  std::string problem = set_protocol(ctx, settings);
  if (problem.empty()) problem = load_files(ctx, settings);
  if (!problem.empty()) {
    SSL_CTX_free(ctx);
    *error = std::move(problem);
    return nullptr;
  }
  return std::shared_ptr<const TlsServerContext>(new TlsServerContext(ctx, settings));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// libpq's rules: the server's certificate is checked against sslrootcert from verify-ca on (the name too in
// verify-full, per connection: TlsSession); a client certificate is sent when configured.
std::shared_ptr<const TlsClientContext> TlsClientContext::create(const conf::Backend& backend,
                                                                 const std::string& pointer, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    *error = pointer + ": could not create an SSL context: " + openssl_error_text();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  std::string problem;
  if (backend.sslmode >= conf::TlsMode::VerifyCa) {
    if (SSL_CTX_load_verify_locations(ctx, backend.sslrootcert.c_str(), nullptr) != 1) {
      problem = file_error(pointer + "/sslrootcert", "root certificate file", backend.sslrootcert);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (problem.empty() && !backend.sslcert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, backend.sslcert.c_str()) != 1) {
      problem = file_error(pointer + "/sslcert", "client certificate file", backend.sslcert);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, backend.sslkey.c_str(), SSL_FILETYPE_PEM) != 1) {
      problem = file_error(pointer + "/sslkey", "private key file", backend.sslkey);
    }
  }
  if (!problem.empty()) {
    SSL_CTX_free(ctx);
    *error = std::move(problem);
    return nullptr;
  }
  return std::shared_ptr<const TlsClientContext>(new TlsClientContext(ctx, backend));
}

std::shared_ptr<const BackendTlsContexts> make_backend_tls_contexts(const conf::Config& config, std::string* error) {
  auto contexts = std::make_shared<BackendTlsContexts>();
  for (size_t i = 0; i < config.backends.size(); ++i) {
    const conf::Backend& backend = config.backends[i];
    if (backend.sslmode == conf::TlsMode::Disable) continue;
    auto context = TlsClientContext::create(backend, "/backends/" + std::to_string(i), error);
    if (!context) return nullptr;
    (*contexts)[backend.name] = std::move(context);
  }
  return contexts;
}

}  // namespace pgmux::proxy
