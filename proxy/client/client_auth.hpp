// The server side of authentication, facing a client: SCRAM-SHA-256, MD5 or trust, checked against a user
// from config. Pure logic: it returns the bytes to send and a verdict; the ClientConn does the I/O.
#pragma once
#include <memory>
#include <optional>

#include "conf/config.hpp"
#include "protocol/auth_scram.hpp"
#include "protocol/bytes.hpp"
#include "proxy/net/failure.hpp"

namespace pgmux::proxy {

class ClientAuth {
 public:
  enum class Verdict { Continue, Ok, Failed };
  struct Step {
    Verdict verdict = Verdict::Continue;
    protocol::ByteVector reply;  // messages to send (challenge, SASLFinal, ...), possibly empty
    std::optional<FailureReport> failure;  // set when Failed
  };

  // `scram_secret` is the user's secret (parsed, or derived from a plaintext password and cached by the
  // caller); unused for md5 and trust. `channel_binding`: over TLS, the hash of pgmux's certificate
  // (TlsSession::server_certificate_hash), which makes SCRAM-SHA-256-PLUS an offer; "" otherwise.
  ClientAuth(const conf::User& user, conf::AuthMethod method, std::optional<protocol::ScramSecret> scram_secret,
             std::string channel_binding = {});

  Step start();
  // body of a 'p' message from the client.
  Step on_message(protocol::ByteView body);

  // The client's SCRAM key, when SCRAM succeeded: lets pgmux log in to PostgreSQL with a stored secret.
  std::optional<protocol::Sha256> client_key() const;

 private:
  Step fail_password() const;
  Step fail_protocol(std::string message) const;

  const conf::User& user_;
  conf::AuthMethod method_;
  std::optional<protocol::ScramSecret> secret_;
  std::string channel_binding_;
  std::unique_ptr<protocol::ScramServer> scram_;
  std::array<std::byte, 4> md5_salt_{};
  int step_ = 0;
};

}  // namespace pgmux::proxy
