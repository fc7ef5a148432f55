// ErrorResponse ('E') and NoticeResponse ('N') fields.
#pragma once
#include <optional>
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

struct ErrorFields {
  std::string severity;  // S: ERROR, FATAL, PANIC, WARNING, NOTICE, ... (parsing: V, the non-localized copy, wins)
  std::string sqlstate;  // C
  std::string message;   // M
  std::string detail;    // D (empty = absent)
  std::string hint;      // H (empty = absent)
  std::string routine;   // R: the server's source routine that raised it (never translated, unlike M)
  std::vector<std::pair<char, std::string>> other;  // every other field, in wire order
};

// body = the message body (after tag and length).
std::optional<ErrorFields> parse_error_fields(ByteView body);
// One field's value (the first of its type; "" when absent or the body is malformed), without copying: for a
// look at the SQLSTATE before deciding whether the whole error is worth parsing.
std::string_view error_field(ByteView body, char type);

// PostgreSQL's "cached plan must not change result type": a prepared statement's result shape changed after
// DDL, and executing it again after a new Parse works. Told by SQLSTATE and routine (RevalidateCachedQuery),
// because the message is translated under lc_messages.
bool is_cached_plan_change(const ErrorFields& error);

// Why a hot standby refused a statement that runs on a primary, told by SQLSTATE and routine (the message is
// translated under lc_messages; 0A000 alone says no more than "not supported"):
// - ReadOnly: 25006, the statement writes;
// - Serializable: "cannot use serializable mode in a hot standby" for a statement whose transaction took the
//   session's default isolation level, SERIALIZABLE (GetSerializableTransactionSnapshot);
// - Unlogged: "cannot access temporary or unlogged relations during recovery" (get_relation_info): an unlogged
//   table's rows live on the primary only;
// - RecoveryConflict: "canceling statement due to conflict with recovery" (an ERROR, is_recovery_conflict): the
//   standby's replay of the primary's WAL needed what the statement held (a lock, a buffer pin, row versions a
//   VACUUM removed); on the primary the statement would have run.
enum class StandbyRefusal : uint8_t { None, ReadOnly, Serializable, Unlogged, RecoveryConflict };
StandbyRefusal standby_refusal(const ErrorFields& error);

// A standby canceling a statement (ERROR) or ending a connection (FATAL) for its replay of the primary's WAL:
// 40001, or 40P01 for a buffer-pin deadlock with the startup process, raised where interrupts are served
// (ProcessInterrupts; ProcessRecoveryConflictInterrupt from PostgreSQL 16), which no ordinary serialization failure
// or deadlock is.
bool is_recovery_conflict(const ErrorFields& error);

// A FATAL a crash or an immediate shutdown sends every connection (57P02, 57P03, or 57P01 worded as an immediate
// shutdown): never aimed at one connection, unlike the 57P01 of a fast shutdown, which PostgreSQL words as it
// words pg_terminate_backend of that one connection.
bool is_server_crash_fatal(const ErrorFields& error);

// Writes a whole 'E' message. Severity goes in both S and V fields as PostgreSQL does; routine (R) only where a
// driver reads it (pgjdbc re-prepares after 0A000 only when it names RevalidateCachedQuery).
void build_error_response(ByteVector& out, std::string_view severity, std::string_view sqlstate,
                          std::string_view message, std::string_view detail = {}, std::string_view hint = {},
                          std::string_view routine = {});
// A FATAL error in protocol 2's format, for a client that asked for protocol 1.x or 2.x: 'E', then
// "FATAL:  <message>\n" and a NUL, without a length word (what PostgreSQL 15 still sends such a client).
void build_protocol2_fatal(ByteVector& out, std::string_view message);
void build_notice_response(ByteVector& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message);

}  // namespace pgmux::protocol
