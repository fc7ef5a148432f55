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

#include "routing/function_catalog.hpp"
#include "routing/learned_writes.hpp"
#include "routing/literal_shape.hpp"
#include "routing/session_facts.hpp"
#include "routing/statement_cache.hpp"

namespace pgmux::routing {

enum class StatementKind : uint8_t {
  Read,        // may run on a standby: SELECT/VALUES/TABLE/EXPLAIN (not ANALYZE of a write), FETCH, COPY TO ...
  Write,       // must run on the primary (DML, DDL, locks, write functions, anything not understood)
  Session,     // SET/RESET/SHOW/DISCARD/PREPARE/DEALLOCATE/LISTEN/UNLISTEN...: session state, every server it uses
  TxBegin,     // BEGIN / START TRANSACTION
  TxEnd,       // COMMIT / END / ROLLBACK / ABORT / PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED
               // (the last three also set primary_only)
  Empty,       // only whitespace/comments
};
const char* to_string(StatementKind k);

// The isolation level a statement asks for: of its transaction (BEGIN, START TRANSACTION, SET TRANSACTION), or as
// the session's default (SET default_transaction_isolation, SET SESSION CHARACTERISTICS). Hot standbys cannot
// run SERIALIZABLE transactions (PostgreSQL answers 0A000), so such a transaction, and every transaction of a
// session whose default is SERIALIZABLE, runs on the primary. Ordered: combining statements keeps the strictest.
enum class Isolation : uint8_t { Unchanged, Other, Serializable };

struct Classification {
  StatementKind kind = StatementKind::Write;
  bool read_only = false;       // TxBegin ... READ ONLY, or SET TRANSACTION READ ONLY / SET SESSION CHARACTERISTICS
  bool read_write = false;      // TxBegin ... READ WRITE: a read-write transaction even in a read-only session;
                                // also SET TRANSACTION READ WRITE (after a deferred read-only BEGIN: the primary),
                                // and any SET of transaction_read_only / _isolation / _deferrable (value unread),
                                // and SET TRANSACTION SNAPSHOT (pg_export_snapshot() runs on the primary)
  bool primary_hint = false;    // a /* pgmux:primary */ comment anywhere
  bool multi_statement = false; // more than one statement in the string
  bool parsed = false;          // libpg_query was needed
  bool write_function = false;  // a write function is called (built-in, configured, or volatile in the catalog)
  bool primary_only = false;    // PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED: only the primary runs it
  bool catalog_change = false;  // DDL of functions, views, extensions, schemas... or DO: reload the catalog
  bool reads_unlogged = false;  // reads a relation only the primary has rows of (FunctionCatalog::unlogged_relation)
  // A request that opens an extended sequence (closed by Flush, not Sync): its server runs the rest of the
  // sequence, which may write, so it starts on the primary; still a read, which starts no read-your-writes
  // (ClientConn::dispatch).
  // (Bit-fields from here: a Classification is copied with every request, and held several times by each client.)
  bool opens_sequence : 1 = false;
  // The lexer could not read the text as every session will (SqlLexer::ambiguous()), or at all: under
  // standard_conforming_strings off, or a client encoding whose characters may end in a backslash byte, statements
  // may hide in it. The rest of the classification is the default reading's (Reading::Standard).
  bool unreadable : 1 = false;
  bool copy_in : 1 = false;     // COPY ... FROM (or a COPY read no further): it may start COPY FROM STDIN
  // Session state only the primary can keep (the first such statement's): temp tables, session advisory locks
  // (pg_advisory_lock, not _xact_), LISTEN, DECLARE ... WITH HOLD.
  PinReason pin_reason = PinReason::None;
  Isolation isolation = Isolation::Unchanged;
  SessionEffects effects;       // the session commands of every statement (SET, RESET, DISCARD, PREPARE, ...)
  const char* reason = "";      // static text for EXPLAIN ROUTE / logs only: "INSERT", "write function"
  // A statement pgmux may answer itself and send with the next one (the read/write split holds a transaction's
  // start back until a statement decides where it runs): a BEGIN / START TRANSACTION alone, or a SET TRANSACTION
  // of modes alone, whose grammar PostgreSQL accepts. The command tag it answers with (well_formed_begin_tag,
  // well_formed_set_transaction_tag, worked out once per cached text); nullptr otherwise.
  const char* held_tag = nullptr;
  uint64_t catalog_stamp = 0;   // CatalogState::stamp() of the catalog it was made with

  bool pins_primary() const { return pin_reason != PinReason::None; }
  // A read that runs on the primary all the same (no write: read-your-writes and causal reads do not start): the
  // client asked for it, or the rows are there only.
  bool read_needs_primary() const { return primary_hint || reads_unlogged || opens_sequence; }
  // Adds the facts of another statement that run with this one (a multi-statement string, an extended batch):
  // the hint, the pin (this one's reason first), the session effects, write-function calls, primary_only,
  // catalog_change, reads of unlogged relations, COPY FROM and the strictest isolation.
  void add_facts(const Classification& other) {
    primary_hint = primary_hint || other.primary_hint;
    if (pin_reason == PinReason::None) pin_reason = other.pin_reason;
    effects.add(other.effects);
    write_function = write_function || other.write_function;
    primary_only = primary_only || other.primary_only;
    catalog_change = catalog_change || other.catalog_change;
    reads_unlogged = reads_unlogged || other.reads_unlogged;
    copy_in = copy_in || other.copy_in;
    unreadable = unreadable || other.unreadable;
    if (other.isolation > isolation) isolation = other.isolation;
  }
  bool serializable() const { return isolation == Isolation::Serializable; }
};

// A FunctionCall message of the function with this OID: a write, and, for any function but the large-object ones
// libpq's lo_* calls use (which leave nothing past their transaction), one that may change the session unseen
// (set_config, pg_advisory_lock): it pins its client as a DO block does.
Classification classify_function_call(uint32_t function_oid);

// One statement that ends its transaction by committing it (COMMIT, END, COMMIT PREPARED, PREPARE TRANSACTION):
// if its server goes away while it runs, whether the transaction committed cannot be known (08007).
// The settings SET TRANSACTION changes, as parameters (SET transaction_read_only = off): whatever a SET of one says,
// it lasts the transaction at hand (PostgreSQL starts each transaction from the defaults).
inline bool is_transaction_mode_parameter(std::string_view name) {
  return name == "transaction_read_only" || name == "transaction_isolation" || name == "transaction_deferrable";
}

inline bool commits_transaction(const Classification& c) {
  if (c.kind != StatementKind::TxEnd || c.multi_statement) return false;
  const std::string_view reason = c.reason;
  return reason == "COMMIT" || reason == "COMMIT PREPARED" || reason == "PREPARE TRANSACTION";
}

// What the parser path learns from one text: its class before the catalog is asked, and the names the catalog
// decides about: the functions called and the relations read by statements that are reads.
struct ParsedStatements {
  Classification classification;
  std::string calls;           // function names called by any statement, each followed by '\0'
  std::string read_calls;      // function names called by reads, each followed by '\0'
  std::string read_relations;     // relation names read by reads that run, each followed by '\0'
  std::string planned_relations;  // ... and by those only planned too (EXPLAIN without ANALYZE)
};

// What the lexical fast path (classifier_lexical.hpp) makes of a text.
struct LexicalResult {
  Classification classification;  // final when needs_parser is false
  bool needs_parser = false;      // some statement can't be settled from tokens
  // A statement names an object of the session's temporary schema, or sets a search_path naming it (the first
  // such statement's pin, for either path).
  PinReason temp_schema_pin = PinReason::None;
};

// What a function call does comes from the client database's FunctionCatalog (CatalogState): a read that
// calls a volatile function, or reads a view over one, anywhere (select list, FROM, WHERE, a CTE, VALUES, a
// subquery, any statement of the string) is a Write. Names are matched without their schema and arguments:
// one volatile function of that name anywhere makes every call of the name a write.
// Known limits (each errs towards the primary, except the first two, where a read may reach a standby and fail):
// - what the catalog does not say: a function declared STABLE or IMMUTABLE that writes anyway; a function
//   created or changed other than through pgmux, until the next timed reload; any function of a database whose
//   catalog could not be loaded (only the built-in list and write_functions count then);
// - functions reached other than by name in the statement itself: operators, casts, attribute notation
//   (t.f); inside a view all of them are seen (the catalog looks into view definitions);
// - SET default_transaction_read_only / transaction_read_only are plain Session (read_only stays false);
// - a multi-statement string mixing SET/SHOW... with other statements is a Write;
// - text the server would reject (unterminated literals, NUL, unbalanced parentheses) is a Write. Text a server
//   may read otherwise under other settings (SqlLexer::ambiguous()) is classified as read by default
//   (Reading::Standard) and marked unreadable: in a session whose settings make the other reading possible, it
//   is a Write whose session effects are unknown (ClientSession::lexer_may_misread).
// Session facts (pin_reason, effects, write_function) see statements and calls as written, and a call counts
// also where it does not run (EXPLAIN, PREPARE, CREATE VIEW). What a DO block changes is unknown (Opaque), and
// so is what a call of a catalog session function changes (FunctionCatalog::session_function); such a call is
// a Write: the session it changes is the primary's. The lexer takes every set_config call for a session SET; the parser
// knows a constant is_local = true.
class Classifier {
 public:
  // write_functions: extra function names whose call makes a statement a write (lowercased like unquoted names;
  // a schema qualifier is dropped: calls match by name in any schema); the built-in list (nextval, setval,
  // currval, pg_advisory_lock*, lo_*, pg_notify ...) is always included, and so is a database's catalog when given.
  // learned: texts found to write at run time (shared by the workers; may be null).
  explicit Classifier(std::vector<std::string> write_functions = {}, size_t cache_capacity = 10000,
                      std::shared_ptr<LearnedWrites> learned = nullptr);

  // Not thread-safe: each worker owns its classifier (and cache), so the hot path takes no lock.
  // The lexical fast path allocates nothing once its buffers have grown, and runs once per literal shape (texts
  // that differ only in numeric literals, ShapeCache); the parser path runs at most once per shape (LRU cache).
  // The cache holds what the text says, not what the catalog says about it: one entry serves every database
  // and every catalog snapshot, and the catalog is asked again on each call.
  Classification classify(std::string_view sql, const CatalogState& catalog = {});

  // The parameter a statement classified with SessionEffect::Reset gives its default (RESET name, SET name TO
  // DEFAULT), folded as PostgreSQL folds it; empty when the text is not one such statement or the name cannot be
  // read (U& escapes, too long). Read from the text again when needed rather than kept in every Classification,
  // which each client holds several of.
  std::string reset_parameter(std::string_view statement) const;

  size_t cache_hits() const;
  size_t parser_calls() const;

  // A statement a standby rejected with 25006 (it writes, through something the classifier cannot see: a
  // function declared STABLE that writes anyway, an operator...): this text, and every text of its literal
  // shape, is a write from now on, for every classifier sharing the LearnedWrites.
  void learn_write(std::string_view sql) { learn(sql, LearnedWrites::Lesson::Write); }
  // A read a standby refused to plan (0A000: an unlogged relation the catalog does not list yet): a read that
  // needs the primary from now on (Classification::reads_unlogged), not a write.
  void learn_primary_read(std::string_view sql) { learn(sql, LearnedWrites::Lesson::PrimaryRead); }
  void learn(std::string_view sql, LearnedWrites::Lesson lesson);

  // True when `name` (lowercase, unqualified) is a write function: built-in or configured (not the catalog's).
  // `session_lock` is set for session-level advisory locks (they also pin the session to the primary).
  bool is_write_function(std::string_view name, bool* session_lock = nullptr) const;

 private:
  // key: the text's literal shape (literal_shape.hpp), or the text itself when it has none.
  Classification classify_with_parser(std::string_view sql, std::string_view key, const FunctionCatalog* catalog);

  std::vector<std::string> write_functions_;  // configured names, sorted: binary search needs no allocation
  StatementCache<ParsedStatements> cache_;
  ShapeCache<LexicalResult> shapes_;  // lexical results by literal shape and catalog stamp
  std::string shape_buffer_;          // the shape of the text being classified (the buffer is reused)
  LexicalResult lexical_scratch_;     // the lexer's result on a shape-cache miss (moved in, not lexed into)
  std::shared_ptr<LearnedWrites> learned_;  // texts that turned out to write (learn_write); usually empty
  size_t cache_hits_ = 0;
  size_t parser_calls_ = 0;
};

}  // namespace pgmux::routing
