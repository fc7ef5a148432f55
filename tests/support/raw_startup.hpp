// A minimal, independent protocol-v3 login (no libpq): libpq does not expose the SQLSTATE of a failed
// connection, and authentication tests must check it. Supports cleartext, MD5 and SCRAM-SHA-256
// (without channel binding), plain TCP only.
#pragma once
#include <string>

namespace pgmux::test {

struct StartupOutcome {
  bool ok = false;          // reached ReadyForQuery
  std::string sqlstate;     // of the ErrorResponse, when one arrived
  std::string message;      // the ErrorResponse's message, or a local description of what went wrong
  std::string auth_method;  // what the server asked for: "cleartext", "md5", "scram-sha-256", "ok"
};

// Logs in to 127.0.0.1:port and disconnects (Terminate) on success. Every socket wait is bounded by timeout_s.
StartupOutcome raw_startup(int port, const std::string& user, const std::string& password,
                           const std::string& database, double timeout_s = 10.0);

}  // namespace pgmux::test
