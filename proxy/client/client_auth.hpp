// The server side of authentication, facing a client: SCRAM-SHA-256, MD5 or trust, checked against a user
// from config. Pure logic: it returns the bytes to send and a verdict; the ClientConn does the I/O.
// A user pgmux does not know goes through the same exchange as one with a wrong password and fails at the same
// point with the same error, as PostgreSQL's mock authentication does: nobody learns which roles exist.
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

  // `user` is null for a name the config does not have. `scram_secret` is the user's secret (parsed, or derived
  // from a plaintext password and cached by the caller); for SCRAM without one (no such user, or no usable
  // secret) the exchange runs against mock_scram_secret(). Unused for md5 and trust. `channel_binding`: over TLS,
  // the hash of pgmux's certificate (TlsSession::server_certificate_hash), which makes SCRAM-SHA-256-PLUS an
  // offer; "" otherwise.
  ClientAuth(std::string user_name, const conf::User* user, conf::AuthMethod method,
             std::optional<protocol::ScramSecret> scram_secret, std::string channel_binding = {});

  // Before start(): the exchange runs against a mock secret and fails with `why` (the same words to the client
  // as a wrong password; the log and the metric tell the operator which it was), as PostgreSQL does for a role
  // whose password expired or that has none.
  void refuse(Failure why);

  Step start();
  // body of a 'p' message from the client.
  Step on_message(protocol::ByteView body);

  // The client's SCRAM key, when SCRAM succeeded: lets pgmux log in to PostgreSQL with a stored secret.
  std::optional<protocol::Sha256> client_key() const;
  // What PostgreSQL calls the message it waits for ("expected SASL response, got message type 81").
  const char* expected_response() const { return scram_ ? "SASL" : "password"; }
  // The longest message PostgreSQL reads here (PG_MAX_SASL_MESSAGE_LENGTH, PG_MAX_AUTH_TOKEN_LENGTH), and its
  // answer to one it does not read (too long, or a length under 4): a SASL exchange fails as a wrong password
  // would (CheckSASLAuth's STATUS_ERROR), a password exchange ends without a word.
  uint32_t max_message() const { return scram_ ? 1024 : 65535; }
  Step refuse_unreadable(std::string why) const;

 private:
  Step fail_password() const;
  Step fail_protocol(std::string message) const;
  Step fail_scram() const;
  Step scram_first(protocol::ByteView client_first);

  std::string user_name_;
  const conf::User* user_;  // null: a mock exchange, bound to fail
  conf::AuthMethod method_;
  std::optional<protocol::ScramSecret> secret_;
  std::string channel_binding_;
  std::unique_ptr<protocol::ScramServer> scram_;
  std::array<std::byte, 4> md5_salt_{};
  int step_ = 0;
  bool plus_ = false;  // the client selected SCRAM-SHA-256-PLUS
  // Set when no secret can verify: the exchange only looks like a real one, and fails with this.
  std::optional<Failure> mock_failure_;
};

}  // namespace pgmux::proxy
