// Protocol pieces the soak driver needs to speak to pgmux from non-blocking sockets: frontend messages, backend
// message framing, ErrorResponse fields, and SCRAM-SHA-256 answers with the expensive key derivation cached (a
// driver that runs PBKDF2 for each of 100,000 logins would measure itself, not pgmux).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "protocol/auth_scram.hpp"

namespace pgmux::soak {

std::string startup_message(const std::string& user, const std::string& database);
std::string query_message(const std::string& sql);
std::string terminate_message();
// Parse (named statement), Bind, Execute, and Sync when with_sync: one extended-protocol request.
std::string extended_query(const std::string& statement, const std::string& sql, bool with_sync);
std::string cancel_request(int32_t pid, int32_t key);
std::string sasl_initial_response(const std::string& client_first);
std::string sasl_response(const std::string& data);

// One whole backend message cut from the front of a receive buffer.
struct BackendMessage {
  char tag = 0;
  std::string body;  // without tag and length
};
// Takes one message off the front of buf; nullopt while it is incomplete. *broken is set on an impossible length.
std::optional<BackendMessage> take_message(std::string& buf, bool* broken);

uint32_t read_u32(const std::string& body, size_t at);
// Field `code` ('C' SQLSTATE, 'V' severity, 'M' message) of an ErrorResponse or NoticeResponse body.
std::string error_field(const std::string& body, char code);

// SCRAM-SHA-256 client for one login, the slow PBKDF2 step taken from a process-wide cache keyed by (password,
// salt, iterations): pgmux keeps one salt per user and worker, so after a few logins every key is cached.
class CachedScram {
 public:
  explicit CachedScram(std::string password) : password_(std::move(password)) {}
  std::string client_first();
  // The SASLResponse data for server-first; nullopt when server-first is malformed.
  std::optional<std::string> client_final(const std::string& server_first);

 private:
  std::string password_;
  std::string nonce_;
  std::string client_first_bare_;
};

}  // namespace pgmux::soak
