// A minimal, independent protocol-v3 login (no libpq): libpq does not expose the SQLSTATE of a failed
// connection, and authentication tests must check it. Supports cleartext, MD5 and SCRAM-SHA-256
// (without channel binding), plain TCP only.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pgmux::test {

struct StartupOutcome {
  bool ok = false;          // reached ReadyForQuery
  std::string sqlstate;     // of the ErrorResponse, when one arrived
  std::string message;      // the ErrorResponse's message, or a local description of what went wrong
  std::string detail;       // the ErrorResponse's detail
  std::string auth_method;  // what the server asked for: "cleartext", "md5", "scram-sha-256", "ok"
  std::string negotiation;  // the NegotiateProtocolVersion message ('v', length, body), when one came
  int32_t backend_pid = 0;  // from BackendKeyData
  // Every backend message in order: its tag, and for an authentication request its code ("R10 R11 E").
  std::string trace;
  std::string scram_server_first;  // the SCRAM server-first message, when one came (salt and iterations)
  std::vector<std::pair<std::string, std::string>> parameters;  // ParameterStatus messages, in order
};

// What the StartupMessage asks for besides user and database.
struct StartupExtras {
  uint32_t protocol_version = 196608;                            // 3.0
  std::vector<std::pair<std::string, std::string>> parameters;  // sent after user and database
  // Close the connection right after sending the SCRAM proof, without waiting for the answer (a client that
  // vanishes at the end of its login); with a TCP reset instead of FIN when reset_on_vanish.
  bool vanish_after_proof = false;
  bool reset_on_vanish = false;
  int vanish_delay_us = 0;  // how long after sending the proof
  // Broken or unusual SCRAM clients: a client-first-message sent as it is (non-empty); no initial response at
  // all (length -1: the client-first goes in the next message, after the server's empty challenge); the
  // client-final passed through this before it goes.
  std::string scram_client_first{};
  bool scram_no_initial_response = false;
  std::function<std::string(std::string)> scram_final_edit{};
  // Bytes sent in the same write as the SCRAM proof (requests pipelined behind the login), after which the client
  // shuts down its sending side and reads to the end of the stream: `trace` then holds every message until it.
  std::string after_proof{};
  std::string after_startup{};  // the same with the startup packet (a login that asks for no password)
};

// Logs in to 127.0.0.1:port and disconnects (Terminate) on success. Every socket wait is bounded by timeout_s.
StartupOutcome raw_startup(int port, const std::string& user, const std::string& password,
                           const std::string& database, double timeout_s = 10.0, const StartupExtras& extras = {});

// Raw startup-phase bytes, for comparing what pgmux and PostgreSQL answer to the same (often broken) input.
struct RawEndpoint {
  int port = 0;           // 127.0.0.1:port over TCP ...
  std::string unix_path;  // ... or this Unix socket when set
};
struct RawStep {
  std::string send;
  size_t read = 0;  // bytes to read back before the next step (the one-byte answer to an SSLRequest)
};
struct RawReply {
  std::vector<std::string> step_replies;  // what each step read back
  std::string rest;                       // everything after the last step, until the server closed or time ran out
  bool closed = false;                    // the server closed the connection (EOF or reset)
};
// Connects, runs the steps, then reads until the server closes or timeout_s passes.
RawReply raw_exchange(const RawEndpoint& to, const std::vector<RawStep>& steps, double timeout_s = 3.0);

// The value of `key` in a SCRAM message ("r=...,s=...,i=4096"); empty when absent.
std::string scram_attribute(const std::string& msg, char key);

// Builders for startup-phase packets (big-endian length word first).
std::string raw_packet(uint32_t code, const std::string& body = {});
std::string raw_parameters(const std::vector<std::pair<std::string, std::string>>& parameters);  // with the final NUL

}  // namespace pgmux::test
