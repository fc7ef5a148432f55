#include "protocol/auth_md5.hpp"

#include <openssl/evp.h>

namespace pgmux::protocol {

namespace {

// Lowercase hex MD5 of data (32 characters), as PostgreSQL's pg_md5_hash.
std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (unsigned i = 0; i < 16; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

// "md5" + md5hex(hex_hash + salt): the second round shared by both response forms.
std::string salted_response(std::string_view hex_hash, const std::array<std::byte, 4>& salt) {
  std::string input(hex_hash);
  input.append(as_chars(salt));
  return "md5" + md5_hex(input);
}

}  // namespace

std::string md5_stored_hash(std::string_view password, std::string_view user) {
  std::string input(password);
  input.append(user);
  return "md5" + md5_hex(input);
}

std::string md5_client_response(std::string_view password, std::string_view user,
                                const std::array<std::byte, 4>& salt) {
  std::string input(password);
  input.append(user);
  return salted_response(md5_hex(input), salt);
}

std::string md5_response_from_stored(std::string_view stored_hash, const std::array<std::byte, 4>& salt) {
  if (!is_md5_stored_hash(stored_hash)) return {};  // nothing sensible to answer with
  return salted_response(stored_hash.substr(3), salt);
}

bool is_md5_stored_hash(std::string_view s) {
  if (s.size() != 35 || s.substr(0, 3) != "md5") return false;
  for (char c : s.substr(3)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace pgmux::protocol
