#include "proxy/net/tls_session.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstring>
#include <vector>

namespace pgmux::proxy {
namespace {

// Twice the largest TLS record: OpenSSL reads a record in pieces, so a whole one never has to fit, but room for
// two keeps a busy socket read from stopping on every record.
constexpr size_t kInputCapacity = 32 * 1024;

BIO_METHOD* memory_bio_method(BIO_METHOD* (*make)()) {
  static BIO_METHOD* method = make();  // once per process; OpenSSL reads it from any thread
  return method;
}

std::string asn1_text(const ASN1_STRING* text) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                     static_cast<size_t>(ASN1_STRING_length(text)));
}

// A DNS or IP subjectAltName as libpq prints it: the name as written, the address in the usual notation.
std::string san_text(const GENERAL_NAME* name) {
  if (name->type == GEN_DNS) return asn1_text(name->d.dNSName);
  const ASN1_OCTET_STRING* address = name->d.iPAddress;
  const int length = ASN1_STRING_length(address);
  char text[INET6_ADDRSTRLEN] = "";
  if (length == 4 || length == 16) {
    inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(address), text, sizeof text);
  }
  return text;
}

// verify-full found none of the certificate's names to be `host`: libpq's sentence, so that a client reads what
// libpq would have told it. libpq looks at every DNS and IP subjectAltName, and at the CN too unless a SAN of
// the host's kind (name or address) exists; it names the first and counts the others.
std::string name_mismatch_text(X509* certificate, const std::string& host, bool host_is_address) {
  std::vector<std::string> names;
  bool san_of_host_kind = false;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type != GEN_DNS && name->type != GEN_IPADD) continue;
    names.push_back(san_text(name));
    if ((name->type == GEN_IPADD) == host_is_address) san_of_host_kind = true;
  }
  GENERAL_NAMES_free(sans);
  X509_NAME* subject = X509_get_subject_name(certificate);
  const int cn = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (!san_of_host_kind && cn >= 0) {
    names.push_back(asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn))));
  }
  if (names.empty()) return "could not get server's host name from server certificate";
  std::string text = "server certificate for \"" + names.front() + "\"";
  const size_t others = names.size() - 1;
  if (others > 0) text += " (and " + std::to_string(others) + (others == 1 ? " other name)" : " other names)");
  return text + " does not match host name \"" + host + "\"";
}

// OpenSSL says only "certificate verify failed" when verify-full's name check fails, where libpq names the
// names: that sentence, or "" for any other failure.
std::string name_mismatch_error(SSL* ssl, const TlsClientContext& context) {
  const long result = SSL_get_verify_result(ssl);
  if (result != X509_V_ERR_HOSTNAME_MISMATCH && result != X509_V_ERR_IP_ADDRESS_MISMATCH) return "";
  // The chain the server sent, its certificate first: the session keeps it though verification refused it.
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  if (chain == nullptr || sk_X509_num(chain) == 0) return "";
  return name_mismatch_text(sk_X509_value(chain, 0), context.host(), result == X509_V_ERR_IP_ADDRESS_MISMATCH);
}

}  // namespace

// OpenSSL's view of our buffers: a source/sink BIO whose reads drain the input buffer and whose writes
// append to the output, never blocking (an empty input is a retry).
int TlsSession::bio_write(BIO* bio, const char* data, int size) {
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  self->out_.insert(self->out_.end(), bytes, bytes + size);
  return size;
}

int TlsSession::bio_read(BIO* bio, char* data, int size) {
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const size_t available = self->in_end_ - self->in_begin_;
  if (available == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  const size_t n = std::min(available, static_cast<size_t>(size));
  std::memcpy(data, self->in_.get() + self->in_begin_, n);
  self->in_begin_ += n;
  if (self->in_begin_ == self->in_end_) self->in_begin_ = self->in_end_ = 0;
  return static_cast<int>(n);
}

long TlsSession::bio_ctrl(BIO* bio, int cmd, long, void*) {
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return static_cast<long>(self->in_end_ - self->in_begin_);
    case BIO_CTRL_WPENDING: return 0;
    default: return 0;
  }
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context)
    : context_(std::move(context)), in_(std::make_unique<std::byte[]>(kInputCapacity)) {
  BIO_METHOD* method = memory_bio_method([] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pgmux buffers");
    BIO_meth_set_write(m, &TlsSession::bio_write);
    BIO_meth_set_read(m, &TlsSession::bio_read);
    BIO_meth_set_ctrl(m, &TlsSession::bio_ctrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  });
  ssl_ = SSL_new(context_->get());
  BIO* bio = BIO_new(method);
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: the SSL owns it
  if (context_->server_side()) {
    SSL_set_accept_state(ssl_);
  } else {
    aim_at_server();
  }
  out_.reserve(16 * 1024 + 512);
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

// The client side, as libpq does it: SNI with the host name (not an address), and in verify-full the name or
// address checked against the server certificate's SANs (its CN when it has none).
void TlsSession::aim_at_server() {
  const auto& client = static_cast<const TlsClientContext&>(*context_);
  const std::string& host = client.host();
  unsigned char address[sizeof(in6_addr)];
  const bool is_address =
      inet_pton(AF_INET, host.c_str(), address) == 1 || inet_pton(AF_INET6, host.c_str(), address) == 1;
  if (!is_address) SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (client.mode() == conf::TlsMode::VerifyFull) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (is_address) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    }
  }
  SSL_set_connect_state(ssl_);
}

std::span<std::byte> TlsSession::input_space() {
  if (in_begin_ > 0 && in_end_ == kInputCapacity) {
    std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  return {in_.get() + in_end_, kInputCapacity - in_end_};
}

bool TlsSession::has_buffered_input() const { return in_end_ > in_begin_ || SSL_pending(ssl_) > 0; }

TlsSession::Status TlsSession::failure(int rc) {
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return Status::WantMore;
    case SSL_ERROR_ZERO_RETURN: return Status::Closed;
    case SSL_ERROR_SYSCALL:
      failed_ = true;
      error_ = ERR_peek_error() ? openssl_error_text() : "unexpected end of the TLS stream";
      if (!context_->server_side()) error_ = "SSL error: " + error_;  // libpq's words towards a backend
      return Status::Failed;
    default:
      failed_ = true;
      error_ = openssl_error_text();
      if (!context_->server_side()) {
        // libpq's words towards a backend: "SSL error: …", or its sentence naming the names, without that prefix.
        const std::string mismatch = name_mismatch_error(ssl_, static_cast<const TlsClientContext&>(*context_));
        error_ = mismatch.empty() ? "SSL error: " + error_ : mismatch;
      }
      return Status::Failed;
  }
}

TlsSession::Status TlsSession::handshake() {
  if (established_) return Status::Ok;
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return Status::Ok;
  }
  return failure(rc);
}

TlsSession::Status TlsSession::read(std::span<std::byte> into, size_t* n) {
  *n = 0;
  if (into.empty()) return Status::Ok;
  ERR_clear_error();
  const int want = static_cast<int>(std::min(into.size(), static_cast<size_t>(INT_MAX)));
  const int rc = SSL_read(ssl_, into.data(), want);
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Status::Ok;
  }
  return failure(rc);
}

void TlsSession::write(const std::byte* data, size_t size) {
  ERR_clear_error();
  while (size > 0) {
    const int chunk = static_cast<int>(std::min(size, static_cast<size_t>(INT_MAX)));
    const int rc = SSL_write(ssl_, data, chunk);
    if (rc <= 0) return;  // only after a fatal alert: the connection is failing, its reads say why
    data += rc;
    size -= static_cast<size_t>(rc);
  }
}

void TlsSession::shutdown() {
  if (!established_ || failed_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);
}

std::string TlsSession::description() const {
  const char* cipher = SSL_get_cipher_name(ssl_);
  return std::string(SSL_get_version(ssl_)) + ", cipher " + (cipher ? cipher : "?");
}

bool TlsSession::alpn_negotiated() const {
  const unsigned char* selected = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl_, &selected, &length);
  return selected != nullptr && length == 10 && std::memcmp(selected, "postgresql", 10) == 0;
}

bool TlsSession::peer_certificate_valid() const {
  X509* peer = SSL_get0_peer_certificate(ssl_);
  return peer != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK && context_->verifies_peer();
}

std::string TlsSession::server_certificate_hash() const {
  X509* certificate = SSL_get_certificate(ssl_);
  int digest_nid = NID_undef;
  if (certificate == nullptr ||
      OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &digest_nid, nullptr) == 0) {
    return "";
  }
  const EVP_MD* digest =
      digest_nid == NID_md5 || digest_nid == NID_sha1 ? EVP_sha256() : EVP_get_digestbynid(digest_nid);
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (digest == nullptr || X509_digest(certificate, digest, hash, &length) != 1) return "";
  return std::string(reinterpret_cast<const char*>(hash), length);
}

std::string TlsSession::peer_common_name() const {
  X509* peer = SSL_get0_peer_certificate(ssl_);
  if (peer == nullptr) return "";
  X509_NAME* subject = X509_get_subject_name(peer);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  const unsigned char* text = ASN1_STRING_get0_data(data);
  const int length = ASN1_STRING_length(data);
  std::string name(reinterpret_cast<const char*>(text), static_cast<size_t>(length));
  // PostgreSQL refuses a CN with an embedded NUL rather than compare a prefix of it.
  if (name.find('\0') != std::string::npos) return "";
  return name;
}

}  // namespace pgmux::proxy
