// Statement classification for read/write routing. Pure: a cheap lexical pass settles common statements;
// PostgreSQL's own parser (libpg_query) settles the rest; results are cached by statement text.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "routing/session_facts.hpp"
#include "routing/statement_cache.hpp"

namespace pgmux::routing {

enum class StatementKind : uint8_t {
  Read,        // may run on a standby: SELECT/VALUES/TABLE/EXPLAIN (not ANALYZE of a write), FETCH, COPY TO ...
  Write,       // must run on the primary (DML, DDL, locks, write functions, anything not understood)
  Session,     // SET/RESET/SHOW/DISCARD/PREPARE/DEALLOCATE/LISTEN/UNLISTEN...: session state, every server it uses
  TxBegin,     // BEGIN / START TRANSACTION
  TxEnd,       // COMMIT / END / ROLLBACK / ABORT / PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED
  Empty,       // only whitespace/comments
};
const char* to_string(StatementKind k);

struct Classification {
  StatementKind kind = StatementKind::Write;
  bool read_only = false;       // TxBegin ... READ ONLY, or SET TRANSACTION READ ONLY / SET SESSION CHARACTERISTICS
  bool read_write = false;      // TxBegin ... READ WRITE: a read-write transaction even in a read-only session
  bool primary_hint = false;    // a /* pgmux:primary */ comment anywhere
  bool multi_statement = false; // more than one statement in the string
  bool parsed = false;          // libpg_query was needed
  bool write_function = false;  // a built-in or configured write function is called (nextval, set_config, ...)
  // Session state only the primary can keep (the first such statement's): temp tables, session advisory locks
  // (pg_advisory_lock, not _xact_), LISTEN, DECLARE ... WITH HOLD.
  PinReason pin_reason = PinReason::None;
  SessionEffects effects;       // the session commands of every statement (SET, RESET, DISCARD, PREPARE, ...)
  ParameterName parameter;      // a single RESET name / SET name TO DEFAULT: the parameter (when readable)
  const char* reason = "";      // static text for EXPLAIN ROUTE / logs only: "INSERT", "write function"

  bool pins_primary() const { return pin_reason != PinReason::None; }
  // Adds the facts of another statement that run with this one (a multi-statement string, an extended batch):
  // the hint, the pin (this one's reason first), the session effects, write-function calls.
  void add_facts(const Classification& other);
};

// Known limits (each errs towards the primary, except the first):
// - a user function that writes, called from a SELECT, is invisible unless listed in write_functions;
// - SET default_transaction_read_only / transaction_read_only are plain Session (read_only stays false);
// - a multi-statement string mixing SET/SHOW... with other statements is a Write;
// - text the server would reject (unterminated literals, NUL, unbalanced parentheses) is a Write; so is a
//   backslash in a '...' literal that standard_conforming_strings = off would end elsewhere.
// Session facts (pin_reason, effects, write_function) see statements and calls as written: a session change
// made inside a function or DO block is invisible, and a call counts also where it does not run (EXPLAIN,
// PREPARE, CREATE VIEW). The lexer takes every set_config call for a session SET; the parser knows a constant
// is_local = true.
class Classifier {
 public:
  // write_functions: extra function names (lowercase, unqualified) whose call makes a statement a write;
  // the built-in list (nextval, setval, pg_advisory_lock*, lo_*, pg_notify ...) is always included.
  explicit Classifier(std::vector<std::string> write_functions = {}, size_t cache_capacity = 10000);

  // Not thread-safe: each worker owns its classifier (and cache), so the hot path takes no lock.
  // The lexical fast path allocates nothing; the parser path runs at most once per distinct text (LRU cache).
  Classification classify(std::string_view sql);

  size_t cache_hits() const;
  size_t parser_calls() const;

  // True when `name` (lowercase, unqualified) is a write function: built-in or configured.
  // `session_lock` is set for session-level advisory locks (they also pin the session to the primary).
  bool is_write_function(std::string_view name, bool* session_lock = nullptr) const;

 private:
  Classification classify_with_parser(std::string_view sql);

  std::vector<std::string> write_functions_;  // configured names, sorted: binary search needs no allocation
  StatementCache<Classification> cache_;
  size_t cache_hits_ = 0;
  size_t parser_calls_ = 0;
};

}  // namespace pgmux::routing
