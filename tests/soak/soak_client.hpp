// One soak client connection: a state machine over a non-blocking socket that logs in (SCRAM), plays a scenario
// (plain queries, a transaction, or one of the faults: wrong password, unknown user or database, vanishing before
// or during login, mid-request or inside a transaction, a reset, a cancel) and ends with an outcome the driver
// counts. Faults pgmux does not cause (its servers killed under a client, the client killed from the admin console)
// end as the outcome "killed <SQLSTATE>" (57P01, 08006 or 08007), which every scenario tolerates, as it does "late
// cancel 57014" (see handle_error).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/soak/soak_protocol.hpp"

namespace pgmux::soak {

using Clock = std::chrono::steady_clock;

enum class Scenario : uint8_t {
  Queries,             // two SELECTs, Terminate
  Transaction,         // BEGIN, SELECT, COMMIT, Terminate
  WrongPassword,       // expects 28P01
  UnknownUser,         // expects 28P01 (the mock SCRAM exchange)
  UnknownDatabase,     // expects 3D000
  CloseAfterStartup,   // the startup packet, then gone
  CloseMidAuth,        // gone after the server's SCRAM challenge
  HalfQuery,           // logged in, half a Query message, gone
  CloseAfterQuery,     // a Query with a 20,000-row result, gone without reading it
  ResetMidQuery,       // a Query running on the server, then a TCP reset
  CloseInTransaction,  // BEGIN, SELECT, gone inside the transaction
  Cancel,              // pg_sleep(30) cancelled through a CancelRequest: expects 57014, then Terminate
  CloseAfterAuth,      // gone right after the SCRAM proof, while pgmux finds it a server
  BogusCancel,         // a CancelRequest with a key nobody has: pgmux closes the connection
  ExtendedThenVanish,  // Parse/Bind/Execute/Sync of a named statement, then the same without Sync, gone
};
inline constexpr int kScenarioCount = 15;
const char* scenario_name(Scenario s);

struct ClientTarget {
  int port = 0;
  std::string user = "app";
  std::string password = "app";
  std::string database = "app";
};

class SoakClient {
 public:
  SoakClient(Scenario scenario, ClientTarget target, Clock::time_point deadline);
  ~SoakClient();
  SoakClient(const SoakClient&) = delete;
  SoakClient& operator=(const SoakClient&) = delete;

  bool start();  // non-blocking connect; false (with outcome set) when it failed at once
  int fd() const { return fd_; }
  int cancel_fd() const { return cancel_fd_; }
  bool wants_write() const { return connecting_ || !out_.empty(); }
  bool cancel_wants_write() const { return cancel_connecting_ || !cancel_out_.empty(); }

  void on_event(uint32_t epoll_events);
  void on_cancel_event(uint32_t epoll_events);
  void on_tick(Clock::time_point now);  // timers: the cancel to send, the deadline

  bool done() const { return done_; }
  Scenario scenario() const { return scenario_; }
  // "ok", "cancelled", "28P01", "3D000", "vanished", "closed", "killed ..." are expected, each for its scenarios;
  // anything else is a failure.
  const std::string& outcome() const { return outcome_; }
  const std::string& detail() const { return detail_; }
  bool expected_outcome() const;

 private:
  enum class Phase : uint8_t { Login, Ready, Busy };
  void on_readable();
  void handle(const BackendMessage& msg);
  void handle_auth(const BackendMessage& msg);
  void handle_error(const BackendMessage& msg);
  void on_ready_for_query(char tx_status);
  void after_login();
  void next_step();
  void send(const std::string& bytes);
  void flush();
  void open_cancel_connection();
  void close_cancel();
  void finish(const std::string& outcome, const std::string& detail = {});
  void vanish(bool reset);

  Scenario scenario_;
  ClientTarget target_;
  Clock::time_point deadline_;
  int fd_ = -1;
  bool connecting_ = false;
  Phase phase_ = Phase::Login;
  std::string in_;
  std::string out_;
  CachedScram scram_;
  int32_t backend_pid_ = 0;
  int32_t backend_key_ = 0;
  std::vector<std::string> steps_;  // SQL to run, one per ReadyForQuery
  size_t step_ = 0;
  std::string error_state_;          // SQLSTATE of the last ErrorResponse of this request
  bool killed_ = false;              // a server under this client was lost: end at the next chance
  bool late_cancel_ = false;         // another client's late cancel hit this one's statement: end likewise
  int cancel_fd_ = -1;
  bool cancel_connecting_ = false;
  std::string cancel_out_;
  Clock::time_point next_cancel_{};  // while the Cancel scenario's query runs
  int cancels_sent_ = 0;
  bool done_ = false;
  std::string outcome_;
  std::string detail_;
};

}  // namespace pgmux::soak
