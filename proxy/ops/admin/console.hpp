// The admin console: a session on the database "pgmux" whose simple queries are admin commands (SHOW POOLS,
// PAUSE, RELOAD, ...), answered by pgmux itself with RowDescription/DataRow/CommandComplete. Commands that need
// other workers or the control loop run asynchronously; the session reads nothing more until the answer is sent.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/bytes.hpp"

namespace pgmux::proxy {

class Worker;

namespace admin {
struct Answer;
struct Command;
struct Input;
}

class AdminConsole {
 public:
  static constexpr const char* kDatabase = "pgmux";

  // Rights are checked per command against the running config: admin_users may run everything, stats_users SHOW
  // and EXPLAIN ROUTE only.
  AdminConsole(Worker& worker, uint64_t client_id, std::string user);

  // Runs one simple-query string. The answer (ending in ReadyForQuery) reaches the client through
  // ClientConn::on_admin_answer, at once or later on this worker's loop, and only if the client is still there.
  void execute(std::string_view sql);

  // Worker tick: a PAUSE waiting for transactions to finish checks again.
  void on_tick();
  // How many clients of the paused database were still inside a transaction (the result of the check started
  // for the PAUSE wait `generation`).
  void on_pause_check(uint64_t generation, size_t busy_clients);
  // A cancel request for this console: a PAUSE still waiting for transactions to finish is undone (the pause it
  // added lifted, as a cancelled statement leaves no effect; one that was there before stays) and answered with
  // 57014. False: nothing to cancel.
  bool cancel_waiting_pause();

 private:
  void answer(const admin::Answer& answer);
  bool permitted(const admin::Command& command);
  void run(const admin::Command& command, const admin::Input& input);
  void check_pause_done();

  Worker& worker_;
  uint64_t client_id_;
  std::string user_;
  std::string pause_waiting_for_;  // the database a PAUSE waits on ("*" = all); empty = none
  bool pause_added_ = false;       // that PAUSE paused it (it was not paused before): a cancel lifts it
  uint64_t pause_generation_ = 0;  // one per PAUSE wait begun or cancelled: a check's result is for its own
  bool pause_check_running_ = false;
};

// Sends `bytes` to admin client `client_id` on `worker` if it is still connected (any thread may post this).
void deliver_admin_answer(Worker& worker, uint64_t client_id, protocol::ByteVector bytes);

}  // namespace pgmux::proxy
