// Rules shared by the lexical and the parser path: the built-in write-function list and how the
// classifications of the statements in one string combine into one answer.
#pragma once
#include <cstddef>
#include <string_view>

#include "routing/classifier.hpp"

namespace pgmux::routing {

// Built-in functions whose call changes database state or needs the primary (lowercase, unqualified):
// sequences, advisory locks, large objects, NOTIFY, set_config, xid assignment, WAL and backend control, and
// the session's identity (pg_backend_pid, pg_listening_channels).
// `session_lock` is set for session-level advisory locks (pg_advisory_lock, pg_try_advisory_lock[_shared]).
bool is_builtin_write_function(std::string_view name, bool* session_lock);

// Makes one Classification of the statements of a multi-statement string:
// - any Write => Write (reason of the first write);
// - only Session statements => Session (read_only if any sets READ ONLY);
// - Session mixed with anything else => Write (session state and a query can't be split across servers);
// - Read/TxBegin/TxEnd only: the last transaction command is BEGIN => TxBegin (a transaction stays open),
//   else the first is COMMIT/ROLLBACK => TxEnd (it closes a transaction already running somewhere),
//   else (BEGIN ... COMMIT around reads, or plain reads) => Read;
// the facts hold for the whole string: the first pin reason, every session effect, any write-function call;
// the RESET parameter only for a single statement. Empty statements are ignored.
class StatementCombiner {
 public:
  void add(const Classification& c);
  Classification result() const;
  size_t count() const { return count_; }

 private:
  size_t count_ = 0;
  Classification first_;
  const char* write_reason_ = nullptr;
  bool any_session_ = false;
  bool any_other_ = false;  // Read / TxBegin / TxEnd
  bool session_read_only_ = false;
  Classification facts_;  // the facts of every statement (Classification::add_facts)
  bool any_tx_ = false;
  StatementKind first_tx_ = StatementKind::Empty;
  Classification last_tx_;
};

}  // namespace pgmux::routing
