#include "routing/classifier_rules.hpp"

#include <array>

namespace pgmux::routing {
namespace {

// currval and lastval only read session state, so they are not here. pg_backend_pid and
// pg_listening_channels read the session's identity, which lives on its primary connection (in session
// pooling the client's BackendKeyData carries that connection's pid).
constexpr std::array<std::string_view, 26> kWriteFunctions = {
    "nextval", "setval",
    "lo_create", "lo_creat", "lo_import", "lo_unlink", "lo_put", "lo_from_bytea", "lowrite",
    "lo_truncate", "lo_truncate64",
    "pg_notify", "set_config",
    "txid_current", "pg_current_xact_id",  // assign a transaction id
    "pg_switch_wal", "pg_create_restore_point",
    "pg_terminate_backend", "pg_cancel_backend", "pg_backend_pid", "pg_listening_channels",
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_logical_emit_message", "pg_import_system_collations",
};

constexpr std::array<std::string_view, 4> kSessionLocks = {
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
};

}  // namespace

bool is_builtin_write_function(std::string_view name, bool* session_lock) {
  // Every advisory lock function (lock, try, xact, unlock) changes lock state held on one server.
  if (name.starts_with("pg_advisory_") || name.starts_with("pg_try_advisory_")) {
    if (session_lock != nullptr) {
      for (std::string_view s : kSessionLocks) {
        if (name == s) *session_lock = true;
      }
    }
    return true;
  }
  for (std::string_view f : kWriteFunctions) {
    if (name == f) return true;
  }
  return false;
}

void StatementCombiner::add(const Classification& c) {
  if (c.kind == StatementKind::Empty) return;
  if (count_++ == 0) first_ = c;
  facts_.add_facts(c);
  switch (c.kind) {
    case StatementKind::Write:
      if (write_reason_ == nullptr) write_reason_ = c.reason;
      break;
    case StatementKind::Session:
      any_session_ = true;
      session_read_only_ = session_read_only_ || c.read_only;
      break;
    case StatementKind::TxBegin:
    case StatementKind::TxEnd:
      if (!any_tx_) first_tx_ = c.kind;
      any_tx_ = true;
      last_tx_ = c;
      any_other_ = true;
      break;
    default:
      any_other_ = true;
      break;
  }
}

Classification StatementCombiner::result() const {
  Classification out;
  if (count_ == 0) {
    out.kind = StatementKind::Empty;
    out.reason = "empty";
    return out;
  }
  if (count_ == 1) return first_;
  out.multi_statement = true;
  out.add_facts(facts_);
  if (write_reason_ != nullptr) {
    out.kind = StatementKind::Write;
    out.reason = write_reason_;
  } else if (any_session_ && !any_other_) {
    out.kind = StatementKind::Session;
    out.read_only = session_read_only_;
    out.reason = "session commands";
  } else if (any_session_) {
    out.kind = StatementKind::Write;
    out.reason = "multi-statement with session command";
  } else if (any_tx_ && last_tx_.kind == StatementKind::TxBegin) {
    out.kind = StatementKind::TxBegin;
    out.read_only = last_tx_.read_only;
    out.reason = "multi-statement opening a transaction";
  } else if (any_tx_ && first_tx_ == StatementKind::TxEnd) {
    out.kind = StatementKind::TxEnd;
    out.reason = "multi-statement ending a transaction";
  } else {
    out.kind = StatementKind::Read;
    out.reason = any_tx_ ? "transaction block of reads" : "multi-statement read";
  }
  return out;
}

}  // namespace pgmux::routing
