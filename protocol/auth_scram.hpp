// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, in both roles, and SCRAM-SHA-256-PLUS with the
// tls-server-end-point channel binding (RFC 5929) when the connection runs over TLS. Without binding the
// client sends gs2 header "n,," (PostgreSQL leaves the username in client-first empty); with it
// "p=tls-server-end-point,,", and client-final's c= carries that header followed by the hash of the server's
// certificate, so a man in the middle holding another certificate cannot relay the exchange.
#pragma once
#include <array>
#include <optional>
#include <utility>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

using Sha256 = std::array<unsigned char, 32>;

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";

// What PostgreSQL stores: SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>
struct ScramSecret {
  int iterations = 4096;
  std::string salt;  // raw bytes
  Sha256 stored_key{};
  Sha256 server_key{};
};

std::optional<ScramSecret> parse_scram_secret(std::string_view text);
std::string format_scram_secret(const ScramSecret& secret);
// Derives the secret from a password (SASLprep is applied as PostgreSQL does for ASCII; non-ASCII passwords
// are used as raw bytes, which is PostgreSQL's fallback too).
ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations = 4096);
bool is_scram_secret(std::string_view text);
// Whether a ClientKey (recovered from a client's proof) belongs to the secret: SHA-256 of it is the StoredKey.
bool client_key_matches(const Sha256& client_key, const ScramSecret& secret);
// A secret no password matches, for a user that does not exist (or has no usable SCRAM secret): the exchange
// runs to its end and fails there, as PostgreSQL's mock authentication does, so a stranger cannot tell such a
// user from a wrong password. The salt is HMAC(nonce_key, user) cut to 16 bytes: the same user always sees the
// same salt while nonce_key stays the same; the keys are random, so no proof verifies.
ScramSecret mock_scram_secret(std::string_view user, std::string_view nonce_key);

std::string base64_encode(std::string_view raw);
std::optional<std::string> base64_decode(std::string_view text);
std::string random_nonce();  // 18 random bytes, base64 (OpenSSL RAND_bytes)

// Client role (pgmux logging in to PostgreSQL).
class ScramClient {
 public:
  // From a plaintext password.
  explicit ScramClient(std::string password, std::string nonce = random_nonce());
  // From keys already known (e.g. recovered from a client's proof): used only when the server's salt and
  // iteration count match the secret these keys came from.
  ScramClient(const Sha256& client_key, const ScramSecret& secret, std::string nonce = random_nonce());

  // PostgreSQL ignores the SCRAM username (it uses the startup packet's); other servers (and the RFC 7677
  // test vector) need one. Call before client_first(); ',' and '=' are escaped as RFC 5802 requires.
  void set_username(std::string username) { username_ = std::move(username); }
  // SCRAM-SHA-256-PLUS: the tls-server-end-point data (the server certificate's hash). Call before
  // client_first().
  void set_channel_binding(std::string certificate_hash) { cbind_data_ = std::move(certificate_hash); }

  std::string client_first();                                      // "n,,n=,r=<nonce>"
  // Takes server-first; returns client-final, or nullopt with error() set.
  std::optional<std::string> client_final(std::string_view server_first);
  bool verify_server_final(std::string_view server_final);         // checks "v=<signature>"
  const std::string& error() const { return error_; }

 private:
  std::optional<std::string> password_;
  std::optional<Sha256> client_key_;
  std::optional<ScramSecret> known_secret_;
  std::string nonce_;
  std::string client_first_bare_;
  Sha256 server_signature_{};
  std::string error_;
  std::string username_;
  std::string gs2_header() const;
  std::string cbind_data_;  // empty: no channel binding
  bool awaiting_server_final_ = false;  // set once client_final() succeeded
};

// Why a client's SCRAM message was refused, with PostgreSQL's SQLSTATE and words (auth-scram.c): 08P01 for a
// malformed message or a nonce that does not match, 28000 for channel binding, 0A000 for what SCRAM allows and
// PostgreSQL does not support, 28P01 for a wrong proof (a wrong password: the caller words that one).
struct ScramFault {
  const char* sqlstate = "";
  std::string message;
  std::string detail;  // empty: none
};

// Server role (clients logging in to pgmux).
class ScramServer {
 public:
  explicit ScramServer(ScramSecret secret, std::string nonce = random_nonce());

  // Over TLS: the tls-server-end-point data (the hash of the certificate this side presented), which makes
  // SCRAM-SHA-256-PLUS possible and a client's "y" flag (it thinks the server cannot bind) an error, as in
  // PostgreSQL. Call before server_first().
  void set_channel_binding(std::string certificate_hash) { cbind_data_ = std::move(certificate_hash); }
  bool offers_channel_binding() const { return !cbind_data_.empty(); }

  // Takes client-first (the SASLInitialResponse data) and whether the client selected SCRAM-SHA-256-PLUS;
  // returns server-first or nullopt with error().
  std::optional<std::string> server_first(std::string_view client_first, bool plus = false);
  // Takes client-final; returns server-final ("v=...") when the proof is right, nullopt otherwise.
  std::optional<std::string> server_final(std::string_view client_final);
  // After a successful server_final: ClientKey = ClientProof XOR ClientSignature.
  const std::optional<Sha256>& recovered_client_key() const { return client_key_; }
  const std::string& error() const { return error_; }  // for the log: "SCRAM: " + the fault's message and detail
  const ScramFault& fault() const { return fault_; }
  bool sent_first() const { return state_ == State::SentFirst || state_ == State::Done; }
  bool finished() const { return state_ == State::Done || state_ == State::Failed; }

 private:
  ScramSecret secret_;
  std::string nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::optional<Sha256> client_key_;
  std::string error_;
  ScramFault fault_;
  std::nullopt_t fail(const char* sqlstate, std::string message, std::string detail = {});
  std::nullopt_t malformed(std::string detail);  // PostgreSQL's "malformed SCRAM message" with a detail
  std::optional<std::string> read_gs2_header(std::string_view client_first, bool plus);
  bool read_extensions(std::string_view rest);
  std::string gs2_header_;      // "n,,", "y,," or "p=tls-server-end-point,,": client-final's c= starts with it
  std::string cbind_data_;      // empty: no channel binding offered
  bool binding_ = false;        // the client asked for channel binding (flag 'p')
  std::string combined_nonce_;  // client nonce + server nonce
  enum class State : uint8_t { Start, SentFirst, Done, Failed };
  State state_ = State::Start;
};

}  // namespace pgmux::protocol
