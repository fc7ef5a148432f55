// PostgreSQL MD5 password authentication: "md5" + md5hex(md5hex(password + user) + salt).
#pragma once
#include <array>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

// "md5" + md5hex(password + user): the form PostgreSQL stores in pg_authid.
std::string md5_stored_hash(std::string_view password, std::string_view user);
// The PasswordMessage a client sends for a salt, from the plaintext password.
std::string md5_client_response(std::string_view password, std::string_view user, const std::array<std::byte, 4>& salt);
// The same from a stored "md5..." hash (what a pooler holding only the hash can compute).
// Empty when stored_hash is not an MD5 hash (see is_md5_stored_hash).
std::string md5_response_from_stored(std::string_view stored_hash, const std::array<std::byte, 4>& salt);
bool is_md5_stored_hash(std::string_view s);  // "md5" + 32 lowercase hex digits

}  // namespace pgmux::protocol
