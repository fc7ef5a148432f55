#include "protocol/auth_scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdio>

#include "protocol/sqlstate.hpp"

namespace pgmux::protocol {

namespace {

constexpr std::string_view kSecretPrefix = "SCRAM-SHA-256$";
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// ---- crypto primitives (OpenSSL libcrypto) ----

Sha256 hmac(const Sha256& key, std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       out.data(), &len);
  return out;
}

Sha256 sha256(const Sha256& data) {
  Sha256 out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

Sha256 salted_password(std::string_view password, std::string_view salt, int iterations) {
  Sha256 out{};
  PKCS5_PBKDF2_HMAC(password.data(), int(password.size()), reinterpret_cast<const unsigned char*>(salt.data()),
                    int(salt.size()), iterations, EVP_sha256(), int(out.size()), out.data());
  return out;
}

Sha256 xor_keys(const Sha256& a, const Sha256& b) {
  Sha256 out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

bool equal_keys(const Sha256& a, const Sha256& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

std::string_view key_chars(const Sha256& k) { return {reinterpret_cast<const char*>(k.data()), k.size()}; }

std::optional<Sha256> decode_key(std::string_view b64) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != Sha256{}.size()) return std::nullopt;
  Sha256 k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>((*raw)[i]);
  return k;
}

// ---- SCRAM message syntax (RFC 5802 section 7) ----

std::optional<int> parse_positive_int(std::string_view s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// A nonce is printable ASCII except ','.
bool valid_nonce(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

// Reads "<name>=<value>" up to the next ',' (consumed) or the end; nullopt when the next attribute differs.
std::optional<std::string_view> take_attr(std::string_view& s, char name) {
  if (s.size() < 2 || s[0] != name || s[1] != '=') return std::nullopt;
  size_t comma = s.find(',');
  std::string_view value = s.substr(2, comma == std::string_view::npos ? std::string_view::npos : comma - 2);
  s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
  return value;
}

std::string escape_username(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == '=') out += "=3D";
    else if (c == ',') out += "=2C";
    else out += c;
  }
  return out;
}

std::string auth_message(std::string_view client_first_bare, std::string_view server_first,
                         std::string_view client_final_without_proof) {
  std::string m(client_first_bare);
  m += ',';
  m += server_first;
  m += ',';
  m += client_final_without_proof;
  return m;
}

}  // namespace

// ---- base64 (RFC 4648, with padding; decoding is strict) ----

std::string base64_encode(std::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= raw.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(raw[i])) << 16) | (uint32_t(uint8_t(raw[i + 1])) << 8) | uint8_t(raw[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  const size_t left = raw.size() - i;
  if (left > 0) {
    uint32_t v = uint32_t(uint8_t(raw[i])) << 16;
    if (left == 2) v |= uint32_t(uint8_t(raw[i + 1])) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += left == 2 ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      int d = 0;
      if (j < 4 - size_t(pad)) {
        d = value(text[i + j]);
        if (d < 0) return std::nullopt;  // also rejects '=' anywhere but the final padding
      }
      v = (v << 6) | uint32_t(d);
    }
    // Canonical form only: the bits the padding leaves over must be zero.
    if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0)) return std::nullopt;
    out += char(v >> 16);
    if (pad < 2) out += char((v >> 8) & 0xff);
    if (pad < 1) out += char(v & 0xff);
  }
  return out;
}

std::string random_nonce() {
  unsigned char raw[18];
  if (RAND_bytes(raw, sizeof raw) != 1) return {};  // callers treat an empty nonce as a failure
  return base64_encode({reinterpret_cast<const char*>(raw), sizeof raw});
}

// ---- stored secret ----

std::optional<ScramSecret> parse_scram_secret(std::string_view text) {
  if (text.substr(0, kSecretPrefix.size()) != kSecretPrefix) return std::nullopt;
  text.remove_prefix(kSecretPrefix.size());
  // <iterations>:<salt>$<StoredKey>:<ServerKey>
  const size_t colon1 = text.find(':');
  const size_t dollar = text.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) return std::nullopt;
  const size_t colon2 = text.find(':', dollar);
  if (colon2 == std::string_view::npos) return std::nullopt;
  auto iterations = parse_positive_int(text.substr(0, colon1));
  auto salt = base64_decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  auto stored = decode_key(text.substr(dollar + 1, colon2 - dollar - 1));
  auto server = decode_key(text.substr(colon2 + 1));
  if (!iterations || !salt || salt->empty() || !stored || !server) return std::nullopt;
  return ScramSecret{*iterations, std::move(*salt), *stored, *server};
}

std::string format_scram_secret(const ScramSecret& secret) {
  std::string out(kSecretPrefix);
  out += std::to_string(secret.iterations);
  out += ':';
  out += base64_encode(secret.salt);
  out += '$';
  out += base64_encode(key_chars(secret.stored_key));
  out += ':';
  out += base64_encode(key_chars(secret.server_key));
  return out;
}

ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations) {
  // SASLprep leaves pure ASCII untouched; non-ASCII is used as raw bytes (PostgreSQL's fallback for
  // strings SASLprep rejects; full NFKC normalization is not implemented).
  const Sha256 salted = salted_password(password, salt, iterations);
  ScramSecret s;
  s.iterations = iterations;
  s.salt = std::string(salt);
  s.stored_key = sha256(hmac(salted, "Client Key"));
  s.server_key = hmac(salted, "Server Key");
  return s;
}

ScramSecret mock_scram_secret(std::string_view user, std::string_view nonce_key) {
  Sha256 digest{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), nonce_key.data(), int(nonce_key.size()), reinterpret_cast<const unsigned char*>(user.data()),
       user.size(), digest.data(), &len);
  ScramSecret s;
  s.iterations = 4096;  // PostgreSQL's default scram_iterations, what most real secrets carry
  s.salt.assign(reinterpret_cast<const char*>(digest.data()), 16);
  RAND_bytes(s.stored_key.data(), int(s.stored_key.size()));
  RAND_bytes(s.server_key.data(), int(s.server_key.size()));
  return s;
}

bool is_scram_secret(std::string_view text) { return parse_scram_secret(text).has_value(); }

bool client_key_matches(const Sha256& client_key, const ScramSecret& secret) {
  return equal_keys(sha256(client_key), secret.stored_key);
}

// ---- client role ----

ScramClient::ScramClient(std::string password, std::string nonce)
    : password_(std::move(password)), nonce_(std::move(nonce)) {
  if (!valid_nonce(nonce_)) error_ = "SCRAM: invalid client nonce";
}

ScramClient::ScramClient(const Sha256& client_key, const ScramSecret& secret, std::string nonce)
    : client_key_(client_key), known_secret_(secret), nonce_(std::move(nonce)) {
  if (!valid_nonce(nonce_)) error_ = "SCRAM: invalid client nonce";
  else if (!client_key_matches(client_key, secret)) error_ = "SCRAM: client key does not match the secret";
}

std::string ScramClient::client_first() {
  client_first_bare_ = "n=" + escape_username(username_) + ",r=" + nonce_;
  return gs2_header() + client_first_bare_;
}

std::string ScramClient::gs2_header() const { return cbind_data_.empty() ? "n,," : "p=tls-server-end-point,,"; }

std::optional<std::string> ScramClient::client_final(std::string_view server_first) {
  if (!error_.empty()) return std::nullopt;
  auto fail = [this](std::string msg) -> std::optional<std::string> {
    error_ = "SCRAM: " + std::move(msg);
    return std::nullopt;
  };
  if (client_first_bare_.empty()) return fail("client_final() before client_first()");
  std::string_view rest = server_first;
  if (rest.substr(0, 2) == "m=") return fail("server requires an unsupported SCRAM extension");
  auto nonce = take_attr(rest, 'r');
  auto salt_b64 = nonce ? take_attr(rest, 's') : std::nullopt;
  auto iter_text = salt_b64 ? take_attr(rest, 'i') : std::nullopt;
  if (!iter_text) return fail("malformed server-first-message");
  if (!valid_nonce(*nonce) || nonce->size() <= nonce_.size() || nonce->substr(0, nonce_.size()) != nonce_) {
    return fail("server nonce does not extend the client nonce");
  }
  auto salt = base64_decode(*salt_b64);
  auto iterations = parse_positive_int(*iter_text);
  if (!salt || salt->empty() || !iterations) return fail("malformed salt or iteration count in server-first-message");

  Sha256 client_key{}, stored_key{}, server_key{};
  if (password_) {
    const Sha256 salted = salted_password(*password_, *salt, *iterations);
    client_key = hmac(salted, "Client Key");
    stored_key = sha256(client_key);
    server_key = hmac(salted, "Server Key");
  } else {
    // Keys recovered from another exchange are only valid for the same salt and iteration count.
    if (*salt != known_secret_->salt || *iterations != known_secret_->iterations) {
      return fail("server's salt/iterations differ from the stored secret; cannot reuse the client key");
    }
    client_key = *client_key_;
    stored_key = known_secret_->stored_key;
    server_key = known_secret_->server_key;
  }

  // c=biws without binding (base64 of "n,,"); with it, the header and the certificate hash.
  const std::string binding = base64_encode(gs2_header() + cbind_data_);
  std::string final_without_proof = "c=" + binding + ",r=" + std::string(*nonce);
  const std::string msg = auth_message(client_first_bare_, server_first, final_without_proof);
  const Sha256 proof = xor_keys(client_key, hmac(stored_key, msg));
  server_signature_ = hmac(server_key, msg);
  awaiting_server_final_ = true;
  return final_without_proof + ",p=" + base64_encode(key_chars(proof));
}

bool ScramClient::verify_server_final(std::string_view server_final) {
  if (!awaiting_server_final_) {
    if (error_.empty()) error_ = "SCRAM: server-final-message before client-final-message";
    return false;
  }
  awaiting_server_final_ = false;
  std::string_view rest = server_final;
  if (auto err = take_attr(rest, 'e')) {
    error_ = "SCRAM: server reported error: " + std::string(*err);
    return false;
  }
  auto sig_b64 = take_attr(rest, 'v');
  auto sig = sig_b64 ? decode_key(*sig_b64) : std::nullopt;
  if (!sig) {
    error_ = "SCRAM: malformed server-final-message";
    return false;
  }
  if (!equal_keys(*sig, server_signature_)) {
    error_ = "SCRAM: incorrect server signature";
    return false;
  }
  return true;
}

// ---- server role ----

namespace {
// A byte of a client's message as PostgreSQL names it in a detail (sanitize_char), quoted: 'c' when printable,
// else its code (0x00 for the message's end).
std::string named_char(std::string_view text) {
  const unsigned char c = text.empty() ? 0 : static_cast<unsigned char>(text.front());
  char named[8];
  if (c >= 0x21 && c <= 0x7e) {
    snprintf(named, sizeof named, "'%c'", c);
  } else {
    snprintf(named, sizeof named, "0x%02x", c);
  }
  return std::string("\"") + named + "\"";
}

bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// A client's text in a message, as PostgreSQL's sanitize_str: printable ASCII kept, '?' for other bytes, at most
// 30 characters.
std::string sanitized(std::string_view text) {
  std::string out(text.substr(0, 30));
  for (char& c : out) {
    if (c < 0x21 || c > 0x7e) c = '?';
  }
  return out;
}

// What PostgreSQL's scram_exchange refuses before it reads a message: an empty one, or one with a NUL inside.
std::optional<std::string> unreadable_message(std::string_view message) {
  if (message.empty()) return "The message is empty.";
  if (message.find('\0') != std::string_view::npos) return "Message length does not match input length.";
  return std::nullopt;
}

// Steps over one attribute (a letter, '=', a value up to a comma) as PostgreSQL's read_any_attr reads it; what is
// wrong with it (a detail for "malformed SCRAM message") when it is not one.
std::optional<std::string> skip_attribute(std::string_view& rest) {
  if (rest.empty()) return "Attribute expected, but found end of string.";
  if (!is_alpha(rest.front())) return "Attribute expected, but found invalid character " + named_char(rest) + ".";
  if (rest.substr(1, 1) != "=") return std::string("Expected character \"=\" for attribute \"") + rest.front() + "\".";
  const size_t comma = rest.find(',');
  rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  return std::nullopt;
}
}  // namespace

ScramServer::ScramServer(ScramSecret secret, std::string nonce)
    : secret_(std::move(secret)), nonce_(std::move(nonce)) {}

std::nullopt_t ScramServer::fail(const char* sqlstate, std::string message, std::string detail) {
  error_ = "SCRAM: " + message + (detail.empty() ? "" : " (" + detail + ")");
  fault_ = ScramFault{sqlstate, std::move(message), std::move(detail)};
  state_ = State::Failed;
  return std::nullopt;
}

std::nullopt_t ScramServer::malformed(std::string detail) {
  return fail(sqlstate::kProtocolViolation, "malformed SCRAM message", std::move(detail));
}

// The gs2 header (cbind flag, authzid, two commas) with PostgreSQL's rules (read_client_first_message), or
// nullopt with the fault set.
std::optional<std::string> ScramServer::read_gs2_header(std::string_view client_first, bool plus) {
  const char flag = client_first.empty() ? '\0' : client_first.front();
  size_t at = 1;
  if (flag == 'n' || flag == 'y') {
    if (plus) {
      return malformed("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel "
                       "binding data.");
    }
    if (flag == 'y' && offers_channel_binding()) {
      return fail(sqlstate::kInvalidAuthorization, "SCRAM channel binding negotiation error",
                  "The client supports SCRAM channel binding but thinks the server does not.  However, this server "
                  "does support channel binding.");
    }
    if (client_first.substr(1, 1) != ",") {
      return malformed("Comma expected, but found character " + named_char(client_first.substr(1)) + ".");
    }
    at = 2;
  } else if (flag == 'p') {
    if (!plus) {
      return malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes "
                       "channel binding data.");
    }
    const size_t comma = client_first.find(',');
    if (client_first.substr(1, 1) != "=" || comma == std::string_view::npos) {
      return malformed("Expected character \"=\" for attribute \"p\".");
    }
    const std::string_view type = client_first.substr(2, comma - 2);
    if (type != "tls-server-end-point" || !offers_channel_binding()) {
      return fail(sqlstate::kProtocolViolation, "unsupported SCRAM channel-binding type \"" + sanitized(type) + "\"");
    }
    binding_ = true;
    at = comma + 1;
  } else {
    return malformed("Unexpected channel-binding flag " + named_char(client_first) + ".");
  }
  if (client_first.substr(at, 1) == "a") {
    return fail(sqlstate::kFeatureNotSupported, "client uses authorization identity, but it is not supported");
  }
  if (client_first.substr(at, 1) != ",") {
    return malformed("Unexpected attribute " + named_char(client_first.substr(at)) + " in client-first-message.");
  }
  return std::string(client_first.substr(0, at + 1));
}

// What may follow the nonce in client-first: attributes PostgreSQL reads and ignores, each a letter, '=' and a
// value (read_any_attr). False with the fault set.
bool ScramServer::read_extensions(std::string_view rest) {
  while (!rest.empty()) {
    if (const std::optional<std::string> problem = skip_attribute(rest)) {
      malformed(*problem);
      return false;
    }
  }
  return true;
}

std::optional<std::string> ScramServer::server_first(std::string_view client_first, bool plus) {
  if (state_ != State::Start) return malformed("Unexpected client-first-message.");
  if (const std::optional<std::string> problem = unreadable_message(client_first)) return malformed(*problem);
  if (!valid_nonce(nonce_)) return fail(sqlstate::kInternalError, "could not generate random nonce");
  std::optional<std::string> header = read_gs2_header(client_first, plus);
  if (!header) return std::nullopt;
  gs2_header_ = std::move(*header);
  std::string_view bare = client_first.substr(gs2_header_.size());
  if (bare.substr(0, 1) == "m") {
    return fail(sqlstate::kFeatureNotSupported, "client requires an unsupported SCRAM extension");
  }
  std::string_view rest = bare;
  auto user = take_attr(rest, 'n');  // ignored: the startup packet's user is authoritative
  if (!user) return malformed("Expected attribute \"n\" but found " + named_char(bare) + ".");
  const std::string_view at_nonce = rest;
  auto client_nonce = take_attr(rest, 'r');
  if (!client_nonce) return malformed("Expected attribute \"r\" but found " + named_char(at_nonce) + ".");
  if (!valid_nonce(*client_nonce)) return fail(sqlstate::kProtocolViolation, "non-printable characters in SCRAM nonce");
  if (!read_extensions(rest)) return std::nullopt;

  client_first_bare_ = std::string(bare);
  combined_nonce_ = std::string(*client_nonce) + nonce_;
  server_first_ = "r=" + combined_nonce_ + ",s=" + base64_encode(secret_.salt) + ",i=" +
                  std::to_string(secret_.iterations);
  state_ = State::SentFirst;
  return server_first_;
}

// PostgreSQL's order (read_client_final_message, then the nonce, then the proof): the channel binding, the
// message's shape, the nonce, and only then whether the proof is right.
std::optional<std::string> ScramServer::server_final(std::string_view client_final) {
  if (state_ != State::SentFirst) return malformed("Unexpected client-final-message.");
  if (const std::optional<std::string> problem = unreadable_message(client_final)) return malformed(*problem);
  std::string_view rest = client_final;
  auto binding = take_attr(rest, 'c');
  if (!binding) return malformed("Expected attribute \"c\" but found " + named_char(client_final) + ".");
  auto header = base64_decode(*binding);
  if (binding_) {
    // c= is the gs2 header and then the hash of the certificate this side presented: another certificate
    // (a man in the middle's) gives another hash.
    if (!header || *header != gs2_header_ + cbind_data_) {
      return fail(sqlstate::kInvalidAuthorization, "SCRAM channel binding check failed");
    }
  } else if (!header || *header != gs2_header_) {
    return fail(sqlstate::kProtocolViolation, "unexpected SCRAM channel-binding attribute in client-final-message");
  }
  const std::string_view at_nonce = rest;
  auto nonce = take_attr(rest, 'r');
  if (!nonce) return malformed("Expected attribute \"r\" but found " + named_char(at_nonce) + ".");
  // Extensions up to the proof, which is the last attribute.
  while (rest.substr(0, 2) != "p=") {
    if (const std::optional<std::string> problem = skip_attribute(rest)) return malformed(*problem);
  }
  const std::string_view without_proof = client_final.substr(0, client_final.size() - rest.size() - 1);
  auto proof_b64 = take_attr(rest, 'p');
  auto proof = proof_b64 ? decode_key(*proof_b64) : std::nullopt;
  if (!proof) return malformed("Malformed proof in client-final-message.");
  if (!rest.empty() || client_final.back() == ',') {
    return malformed("Garbage found at the end of client-final-message.");
  }
  if (*nonce != combined_nonce_) return fail(sqlstate::kProtocolViolation, "invalid SCRAM response",
                                             "Nonce does not match.");

  const std::string msg = auth_message(client_first_bare_, server_first_, without_proof);
  const Sha256 client_key = xor_keys(*proof, hmac(secret_.stored_key, msg));
  if (!equal_keys(sha256(client_key), secret_.stored_key)) {
    return fail(sqlstate::kInvalidPassword, "password authentication failed (bad proof)");
  }
  client_key_ = client_key;
  state_ = State::Done;
  return "v=" + base64_encode(key_chars(hmac(secret_.server_key, msg)));
}

}  // namespace pgmux::protocol
