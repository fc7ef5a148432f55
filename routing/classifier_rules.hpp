// Rules shared by the lexical and the parser path: the built-in write-function list and how the classifications of
// the statements in one string combine into one answer; and the lexical path's first-word table.
#pragma once
#include <array>
#include <cstddef>
#include <string_view>

#include "routing/classifier.hpp"
#include "routing/sql_lexer.hpp"

namespace pgmux::routing {

struct WordRule {
  std::string_view word;
  StatementKind kind;
  const char* reason;
  PinReason pin;
};

// Statements the lexical path settles by their first word alone.
inline constexpr std::array<WordRule, 35> kWordRules = {{
    {"insert", StatementKind::Write, "INSERT", PinReason::None},
    {"update", StatementKind::Write, "UPDATE", PinReason::None},
    {"delete", StatementKind::Write, "DELETE", PinReason::None},
    {"merge", StatementKind::Write, "MERGE", PinReason::None},
    {"call", StatementKind::Write, "CALL", PinReason::None},
    {"do", StatementKind::Write, "DO", PinReason::None},
    {"lock", StatementKind::Write, "LOCK", PinReason::None},
    {"vacuum", StatementKind::Write, "VACUUM", PinReason::None},
    {"analyze", StatementKind::Write, "ANALYZE", PinReason::None},
    {"analyse", StatementKind::Write, "ANALYZE", PinReason::None},
    {"refresh", StatementKind::Write, "REFRESH MATERIALIZED VIEW", PinReason::None},
    {"cluster", StatementKind::Write, "CLUSTER", PinReason::None},
    {"reindex", StatementKind::Write, "REINDEX", PinReason::None},
    {"checkpoint", StatementKind::Write, "CHECKPOINT", PinReason::None},
    {"truncate", StatementKind::Write, "TRUNCATE", PinReason::None},
    {"notify", StatementKind::Write, "NOTIFY", PinReason::None},
    {"savepoint", StatementKind::Write, "SAVEPOINT", PinReason::None},
    {"release", StatementKind::Write, "RELEASE SAVEPOINT", PinReason::None},
    {"fetch", StatementKind::Write, "cursor command", PinReason::None},
    {"move", StatementKind::Write, "cursor command", PinReason::None},
    {"close", StatementKind::Write, "cursor command", PinReason::None},
    {"execute", StatementKind::Write, "EXECUTE", PinReason::None},
    {"alter", StatementKind::Write, "DDL", PinReason::None},
    {"drop", StatementKind::Write, "DDL", PinReason::None},
    {"grant", StatementKind::Write, "DDL", PinReason::None},
    {"revoke", StatementKind::Write, "DDL", PinReason::None},
    {"comment", StatementKind::Write, "DDL", PinReason::None},
    {"security", StatementKind::Write, "DDL", PinReason::None},
    {"reset", StatementKind::Session, "RESET", PinReason::None},
    {"show", StatementKind::Session, "SHOW", PinReason::None},
    {"discard", StatementKind::Session, "DISCARD", PinReason::None},
    {"deallocate", StatementKind::Session, "DEALLOCATE", PinReason::None},
    {"unlisten", StatementKind::Session, "UNLISTEN", PinReason::None},
    {"load", StatementKind::Session, "LOAD", PinReason::None},
    {"listen", StatementKind::Session, "LISTEN", PinReason::Listen},  // LISTEN works only on the primary, and stays
}};

// Built-in functions whose call changes database state or needs the primary (lowercase, unqualified):
// sequences (currval and lastval too: they read what nextval did in this session, on the primary), advisory
// locks, large objects, NOTIFY, set_config, xid assignment, WAL and backend control, and the session's identity
// (pg_backend_pid, pg_listening_channels; STABLE, so the catalog does not list them). The volatile ones are in a
// database's FunctionCatalog too; this list decides alone until that catalog is loaded.
// `session_lock` is set for session-level advisory locks (pg_advisory_lock, pg_try_advisory_lock[_shared]).
bool is_builtin_write_function(std::string_view name, bool* session_lock);

// Built-in VOLATILE functions that change nothing and give the same kind of answer on a standby: the
// function catalog leaves them out, so reads calling them still go to standbys.
inline constexpr std::array<std::string_view, 7> kVolatileBuiltinsSafeOnStandby = {
    "random", "clock_timestamp", "timeofday", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "gen_random_uuid",
};

// System views (pg_catalog, PostgreSQL 15) that read volatile functions: server-local state such as locks,
// prepared transactions, sequences and configuration files. They go to the primary, as on a direct connection.
inline constexpr std::array<std::string_view, 14> kSystemVolatileViews = {
    "pg_locks", "pg_prepared_xacts", "pg_sequences", "pg_backend_memory_contexts", "pg_shmem_allocations",
    "pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings", "pg_replication_origin_status",
    "pg_stat_recovery_prefetch", "pg_stat_xact_all_tables", "pg_stat_xact_user_tables", "pg_stat_xact_sys_tables",
    "pg_stat_xact_user_functions",
};

// Object kinds whose DDL may change which functions or views are volatile (as the word after CREATE [OR
// REPLACE] / ALTER / DROP spells them, lowercase): the database's function catalog is reloaded after it.
bool is_catalog_object_word(std::string_view word);

// The session's temporary schema, as PostgreSQL folds the identifier: the alias pg_temp or its real name
// pg_temp_<n>. An object created there is temporary whatever the statement's keywords say (CREATE TABLE pg_temp.t,
// CREATE FUNCTION pg_temp.f, SELECT ... INTO pg_temp.t), and a search_path that names it may put unqualified
// CREATEs there.
bool is_temp_schema_name(std::string_view name);
// A string literal (its text, quotes included) that names the temporary schema in any case: 'pg_temp, public'.
bool mentions_temp_schema(std::string_view literal);
// An identifier token that names it as PostgreSQL reads the token (a word in any case, "pg_temp" as written). A
// U&"..." identifier may spell it with escapes (U&"pg\005ftemp"): taken as naming it. Runs for every word of a
// statement the lexer classifies: most fail the first test.
bool is_temp_schema_token(const Token& token);
// A token naming the pg_settings view (a word in any case, "pg_settings" as written): an UPDATE of it runs
// set_config for each row it updates.
bool is_settings_view_token(const Token& token);
// A token naming setting `name` (lowercase), a word or quoted, in any case: PostgreSQL looks settings up without
// regard to case, quoted or not (SET "SEARCH_PATH" sets search_path).
bool is_setting(const Token& token, std::string_view name);

constexpr size_t kNameMax = 63;  // NAMEDATALEN - 1: PostgreSQL truncates longer identifiers
// An identifier as PostgreSQL reads it, in `buf`: unquoted words fold to lowercase (and are truncated like the
// server does); "name" is case-sensitive, taken as written (U&"..." escapes are not decoded). Empty when the
// token is no identifier.
std::string_view identifier_name(const Token& t, std::array<char, kNameMax>& buf);

// Makes one Classification of the statements of a multi-statement string:
// - any Write => Write (reason of the first write);
// - only Session statements => Session (read_only if any sets READ ONLY);
// - Session mixed with anything else => Write (session state and a query can't be split across servers);
// - a statement only the primary can run (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED) among others => Write;
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
  bool session_read_write_ = false;  // SET TRANSACTION READ WRITE among them (a standby refuses it)
  const char* primary_only_ = nullptr;  // the reason of the first statement only the primary can run
  Classification facts_;  // the facts of every statement (Classification::add_facts)
  bool any_tx_ = false;
  StatementKind first_tx_ = StatementKind::Empty;
  Classification last_tx_;
};

}  // namespace pgmux::routing
