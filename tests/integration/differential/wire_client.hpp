// A blocking, timeout-bounded PostgreSQL v3 client over one TCP socket: logs in (SCRAM-SHA-256, MD5 or
// cleartext), sends raw frontend bytes and reads whole backend messages. It interprets nothing after login,
// which is what a differential test needs: the caller sees every byte the backend (or pgmux) sent.
#pragma once
#include <chrono>
#include <string>
#include <utility>
#include <vector>
#include "protocol/bytes.hpp"

namespace pgmux::difftest {

using protocol::ByteVector;
using Clock = std::chrono::steady_clock;

struct BackendMessage {
  char tag = 0;
  ByteVector body;  // after tag and length
};

struct LoginParams {
  std::string user;
  std::string database;
  std::string password;
  std::vector<std::pair<std::string, std::string>> extra;  // more startup parameters, e.g. application_name
};

enum class ReadStatus { Message, Timeout, Closed, Error };

class WireClient {
 public:
  WireClient() = default;
  ~WireClient();
  WireClient(const WireClient&) = delete;
  WireClient& operator=(const WireClient&) = delete;

  bool connect(const std::string& host, int port, std::chrono::milliseconds timeout);
  bool send(const ByteVector& bytes);
  ReadStatus read_message(BackendMessage& out, Clock::time_point deadline);
  // Runs the startup and authentication exchange. Every message after AuthenticationOk up to and including
  // the first ReadyForQuery is appended to `captured` (the auth exchange itself carries random nonces).
  bool login(const LoginParams& params, std::vector<BackendMessage>& captured, std::chrono::milliseconds timeout);
  void close();

  const std::string& error() const { return error_; }

 private:
  bool fill(Clock::time_point deadline, ReadStatus& status);
  bool authenticate(const LoginParams& params, Clock::time_point deadline);

  int fd_ = -1;
  ByteVector in_;
  std::string error_;
};

}  // namespace pgmux::difftest
