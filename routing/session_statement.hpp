// What one statement does to the session's transaction and settings, beyond its class: which transaction
// command it is (with the savepoint it names) and whether its set_config calls can be replayed elsewhere. Read
// with PostgreSQL's own parser; asked only for the statements of requests that touch session state, never on
// the common path.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace pgmux::routing {

enum class TransactionCommand : uint8_t {
  None,
  Begin,       // BEGIN, START TRANSACTION
  Commit,      // COMMIT, END
  Rollback,    // ROLLBACK, ABORT
  Savepoint,   // SAVEPOINT name
  Release,     // RELEASE [SAVEPOINT] name
  RollbackTo,  // ROLLBACK TO [SAVEPOINT] name
  Other,       // PREPARE TRANSACTION, COMMIT / ROLLBACK PREPARED: what becomes of the session's SETs is not modelled
};

// How a statement that may change the session (SessionEffects::may_change_session) can be carried to another
// server. Not meaningful for other statements.
enum class SessionReplay : uint8_t {
  Statement,  // replaying the statement itself has the same effect and nothing else: SET, RESET, and a SELECT of
              // nothing but set_config calls with constant arguments
  Unknown,    // what it changes cannot be told from its text: set_config with computed arguments or run under a
              // condition, DO blocks
};

// What a statement does to who the session is (see StatementSessionFacts::identity).
enum class Identity : uint8_t {
  None,
  Role,                  // SET / RESET ROLE, set_config('role', ...)
  SessionAuthorization,  // SET / RESET SESSION AUTHORIZATION (which resets the role too), or set_config of it
  Mixed,                 // set_config of role or session_authorization beside other settings in one SELECT
};

struct StatementSessionFacts {
  TransactionCommand transaction = TransactionCommand::None;
  bool chain = false;     // COMMIT / ROLLBACK AND CHAIN: a new transaction block starts at once
  std::string savepoint;  // the savepoint a Savepoint / Release / RollbackTo names
  SessionReplay replay = SessionReplay::Statement;
  // SET / RESET ROLE or SESSION AUTHORIZATION, or set_config of either: who the session is, which RESET ALL keeps
  // (PostgreSQL resets neither; DISCARD ALL does).
  Identity identity = Identity::None;
};

// The facts of one statement (not a multi-statement string). Text the parser rejects has an unknown effect (the
// server read it otherwise); otherwise the defaults.
StatementSessionFacts statement_session_facts(std::string_view statement);

// statement_session_facts(statement).identity == Identity::SessionAuthorization, the parser asked only for text
// that names it.
bool sets_session_authorization(std::string_view statement);

}  // namespace pgmux::routing
