// Which session commands last, under PostgreSQL's transaction rules: a SET inside a transaction block lasts
// only if the block commits, those after a savepoint go when the block rolls back to it, and the statements of
// one Query string or one extended batch outside a block form an implicit transaction that commits at its end.
// A plain value with no libuv, fed one finished request at a time (tests/unit/proxy_session_block_test.cpp);
// ClientConn records what it hands back in the session log.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "proxy/client/lazy_vector.hpp"
#include "routing/classifier.hpp"
#include "routing/session_statement.hpp"

namespace pgmux::proxy {

// One statement a request ran, with what decides its fate.
struct TrackedStatement {
  std::string sql;
  routing::Classification c;
  routing::StatementSessionFacts facts;  // only read for transaction commands and session commands
  std::string reset_parameter;           // SessionEffect::Reset: Classifier::reset_parameter

  bool changes_session() const { return c.effects.may_change_session(); }
};

// What one finished request made of the session.
struct SessionOutcome {
  std::vector<TrackedStatement> lasting;  // session commands that now last, in order: for the session log
  bool unknown = false;                   // what lasts cannot be told (or cannot be replayed)
};

class SessionBlock {
 public:
  // A request finished: `before` is the transaction status it started in ('I', 'T' or 'E': the status of the
  // request before it), `after` its ReadyForQuery status, `failed` whether an ErrorResponse came.
  SessionOutcome finish(std::vector<TrackedStatement> statements, char before, char after, bool failed);

  // Session commands wait for the block around them to end: every request until then is tracked. So do the
  // block's changes to the settings statements are analyzed under.
  bool at_stake() const { return !pending_.empty() || !analysis_.empty(); }

  // The commands of the open block that changed the settings a statement parsed now is analyzed under (a SET, or a
  // SET LOCAL of a setting fixed at parse: routing::SessionEffect::SetLocalAnalysis), in order, without those a
  // rollback to a savepoint undid: they bring another server's block to the same settings
  // (ClientSession::parse_settings). Empty outside a block.
  const std::vector<std::string>& analysis_commands() const { return analysis_.view(); }

 private:
  enum class Block : uint8_t { None, Open, Failed };
  void run(TrackedStatement& statement, Block& block, std::vector<TrackedStatement>& implicit, SessionOutcome& out);
  void end_block(bool commit, SessionOutcome& out);
  void clear() {
    pending_.clear();
    analysis_.clear();
    savepoints_.clear();
  }
  void note_analysis_change(const TrackedStatement& statement);

  struct Savepoint {
    std::string name;
    size_t pending = 0;   // pending_'s size at it
    size_t analysis = 0;  // analysis_'s
  };
  std::vector<TrackedStatement> pending_;  // session commands of the open block, in order
  LazyVector<std::string> analysis_;       // analysis_commands
  std::vector<Savepoint> savepoints_;      // open savepoints
};

}  // namespace pgmux::proxy
