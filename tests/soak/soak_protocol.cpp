#include "tests/soak/soak_protocol.hpp"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstring>

#include "tests/support/raw_startup.hpp"

namespace pgmux::soak {
namespace {

void put_u32(std::string& out, uint32_t v) {
  v = htonl(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}

std::string tagged(char tag, const std::string& body) {
  std::string out(1, tag);
  put_u32(out, static_cast<uint32_t>(body.size() + 4));
  return out + body;
}

using Key = protocol::Sha256;

Key hmac(const void* key, size_t key_len, const std::string& data) {
  Key out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key, static_cast<int>(key_len), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       out.data(), &len);
  return out;
}

// ClientKey = HMAC(PBKDF2(password, salt, iterations), "Client Key"), cached: the PBKDF2 is the slow part.
Key client_key_for(const std::string& password, const std::string& salt, int iterations) {
  static std::mutex mutex;
  static std::map<std::tuple<std::string, std::string, int>, Key> cache;
  std::lock_guard lock(mutex);
  auto key = std::make_tuple(password, salt, iterations);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  unsigned char salted[32];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                    EVP_sha256(), sizeof salted, salted);
  Key client_key = hmac(salted, sizeof salted, "Client Key");
  cache.emplace(std::move(key), client_key);
  return client_key;
}

}  // namespace

std::string startup_message(const std::string& user, const std::string& database) {
  std::string body;
  put_u32(body, 196608);  // protocol 3.0
  for (const char* part : {"user", user.c_str(), "database", database.c_str(), "application_name", "pgmux_soak"}) {
    body.append(part);
    body.push_back('\0');
  }
  body.push_back('\0');
  std::string out;
  put_u32(out, static_cast<uint32_t>(body.size() + 4));
  return out + body;
}

std::string query_message(const std::string& sql) { return tagged('Q', sql + std::string(1, '\0')); }

std::string terminate_message() { return tagged('X', {}); }

std::string extended_query(const std::string& statement, const std::string& sql, bool with_sync) {
  const std::string nul(1, '\0');
  const std::string no_parameter_types(2, '\0');
  const std::string bind_counts(6, '\0');  // no parameter formats, no parameters, no result formats
  std::string execute_body = nul;
  put_u32(execute_body, 0);  // all rows
  std::string out = tagged('P', statement + nul + sql + nul + no_parameter_types) +
                    tagged('B', nul + statement + nul + bind_counts) + tagged('E', execute_body);
  return with_sync ? out + tagged('S', {}) : out;
}

std::string cancel_request(int32_t pid, int32_t key) {
  std::string out;
  put_u32(out, 16);
  put_u32(out, 80877102);  // CancelRequest code
  put_u32(out, static_cast<uint32_t>(pid));
  put_u32(out, static_cast<uint32_t>(key));
  return out;
}

std::string sasl_initial_response(const std::string& client_first) {
  std::string body = std::string(protocol::kScramSha256) + std::string(1, '\0');
  put_u32(body, static_cast<uint32_t>(client_first.size()));
  return tagged('p', body + client_first);
}

std::string sasl_response(const std::string& data) { return tagged('p', data); }

std::optional<BackendMessage> take_message(std::string& buf, bool* broken) {
  if (buf.size() < 5) return std::nullopt;
  uint32_t len = read_u32(buf, 1);
  if (len < 4 || len > (64u << 20)) {
    *broken = true;
    return std::nullopt;
  }
  if (buf.size() < 1 + static_cast<size_t>(len)) return std::nullopt;
  BackendMessage msg{buf[0], buf.substr(5, len - 4)};
  buf.erase(0, 1 + static_cast<size_t>(len));
  return msg;
}

uint32_t read_u32(const std::string& body, size_t at) {
  uint32_t v = 0;
  if (at + 4 <= body.size()) std::memcpy(&v, body.data() + at, 4);
  return ntohl(v);
}

std::string error_field(const std::string& body, char code) {
  size_t pos = 0;
  while (pos < body.size() && body[pos] != '\0') {
    size_t end = body.find('\0', pos + 1);
    if (end == std::string::npos) break;
    if (body[pos] == code) return body.substr(pos + 1, end - pos - 1);
    pos = end + 1;
  }
  return {};
}

std::string CachedScram::client_first() {
  nonce_ = protocol::random_nonce();
  client_first_bare_ = "n=,r=" + nonce_;
  return "n,," + client_first_bare_;
}

std::optional<std::string> CachedScram::client_final(const std::string& server_first) {
  const std::string nonce = test::scram_attribute(server_first, 'r');
  auto salt = protocol::base64_decode(test::scram_attribute(server_first, 's'));
  const int iterations = std::atoi(test::scram_attribute(server_first, 'i').c_str());
  if (nonce.rfind(nonce_, 0) != 0 || !salt || iterations <= 0) return std::nullopt;
  const Key client_key = client_key_for(password_, *salt, iterations);
  Key stored_key{};
  SHA256(client_key.data(), client_key.size(), stored_key.data());
  const std::string without_proof = "c=biws,r=" + nonce;
  const Key signature = hmac(stored_key.data(), stored_key.size(),
                             client_first_bare_ + "," + server_first + "," + without_proof);
  std::string proof(client_key.size(), '\0');
  for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(client_key[i] ^ signature[i]);
  return without_proof + ",p=" + protocol::base64_encode(proof);
}

}  // namespace pgmux::soak
