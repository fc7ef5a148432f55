// One TLS connection's OpenSSL state over memory buffers (DESIGN.md: TLS runs inside the libuv loop, OpenSSL
// never touches the socket). Ciphertext read from the socket goes into input_space(); OpenSSL takes it from
// there through a BIO of our own and decrypts into the caller's buffer. What OpenSSL writes (records, alerts)
// is appended to output(), which the connection hands to the socket. Both buffers are allocated once and then
// reused, so nothing is allocated per message.
#pragma once
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "protocol/bytes.hpp"
#include "proxy/net/tls_context.hpp"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace pgmux::proxy {

class TlsSession {
 public:
  // The server side of a handshake (a TlsServerContext: pgmux facing a client), or the client side (a
  // TlsClientContext: pgmux facing a backend, whose host SNI names and verify-full checks).
  explicit TlsSession(std::shared_ptr<const TlsContext> context);
  const TlsContext& context() const { return *context_; }
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Room for ciphertext from the socket (empty when OpenSSL has not taken what is there), and how much came.
  std::span<std::byte> input_space();
  void commit_input(size_t n) { in_end_ += n; }
  // Ciphertext OpenSSL has not read yet, or plaintext it decrypted and holds: more can be read without the
  // socket.
  bool has_buffered_input() const;

  enum class Status { Ok, WantMore, Closed, Failed };
  // Advances the handshake; Ok once it is done.
  Status handshake();
  bool established() const { return established_; }
  // Decrypts into `into`; *n says how much. WantMore: no whole record is in yet. Closed: the peer's
  // close_notify. Failed: see error().
  Status read(std::span<std::byte> into, size_t* n);
  // Encrypts; the records go to output(). Never blocks (the output grows).
  void write(const std::byte* data, size_t size);
  // A close_notify alert into output(), when the handshake was done.
  void shutdown();
  // Ciphertext for the socket, in order; the caller erases what the socket took.
  protocol::ByteVector& output() { return out_; }

  // Why handshake() or read() failed, in OpenSSL's words.
  const std::string& error() const { return error_; }
  // After the handshake: the negotiated protocol and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384").
  std::string description() const;
  // ALPN "postgresql" was negotiated (PostgreSQL 17 requires it for direct TLS).
  bool alpn_negotiated() const;
  // The peer presented a certificate that chains to the context's CAs.
  bool peer_certificate_valid() const;
  // tls-server-end-point channel-binding data (RFC 5929): the hash of the certificate pgmux presented, with its
  // signature's digest (SHA-256 for MD5 and SHA-1). "" when the algorithm has no single digest (Ed25519): then
  // SCRAM-SHA-256-PLUS is not offered, as PostgreSQL does not either.
  std::string server_certificate_hash() const;
  // The Common Name of the client's certificate ("" when none).
  std::string peer_common_name() const;

 private:
  static int bio_write(BIO* bio, const char* data, int size);
  static int bio_read(BIO* bio, char* data, int size);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);
  Status failure(int rc);

  void aim_at_server();

  std::shared_ptr<const TlsContext> context_;
  SSL* ssl_ = nullptr;
  std::unique_ptr<std::byte[]> in_;  // ciphertext from the socket: [in_begin_, in_end_) not yet read by OpenSSL
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  protocol::ByteVector out_;
  std::string error_;
  bool established_ = false;
  bool failed_ = false;  // a fatal error: OpenSSL forbids a close_notify after one
};

}  // namespace pgmux::proxy
