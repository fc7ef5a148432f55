// The admin console: a session on the database "pgmux" whose simple queries are admin commands (SHOW POOLS,
// PAUSE, RELOAD, ...), answered by pgmux itself with RowDescription/DataRow/CommandComplete. Commands that need
// other workers or the control loop run asynchronously; the session reads nothing more until the answer is sent.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/bytes.hpp"

namespace pgmux::proxy {

class ClientConn;
class Worker;

class AdminConsole {
 public:
  // may_change: the user is in admin_users (else stats_users: SHOW and EXPLAIN ROUTE only).
  AdminConsole(Worker& worker, uint64_t client_id, std::string user, bool may_change);

  // Runs one simple-query string. `reply` gets the whole answer (ending in ReadyForQuery), possibly later, on this
  // worker's loop, and only if the client is still connected.
  void execute(std::string_view sql);

  // Worker tick: a PAUSE waiting for transactions to finish checks again.
  void on_tick();
  bool busy() const { return busy_; }

 private:
  friend struct AdminRun;
  void finish(protocol::ByteVector answer);

  Worker& worker_;
  uint64_t client_id_;
  std::string user_;
  bool may_change_;
  bool busy_ = false;
  std::string pause_waiting_for_;  // database a PAUSE waits on ("" = none; "*" = all)
  bool pause_check_running_ = false;
};

}  // namespace pgmux::proxy
