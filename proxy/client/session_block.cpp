#include "proxy/client/session_block.hpp"

#include <algorithm>

#include "routing/session_sql.hpp"

namespace pgmux::proxy {

using routing::SessionReplay;
using routing::TransactionCommand;

namespace {

// Moves session commands that now last into the outcome; one that cannot be replayed makes the state unknown.
void make_lasting(std::vector<TrackedStatement>& statements, SessionOutcome& out) {
  for (TrackedStatement& s : statements) {
    if (s.facts.replay == SessionReplay::Unknown) {
      out.unknown = true;
    } else {
      out.lasting.push_back(std::move(s));
    }
  }
  statements.clear();
}

// The index of the innermost open savepoint of that name, or -1 (PostgreSQL takes the most recent one).
template <typename Savepoints>
std::ptrdiff_t find_savepoint(const Savepoints& savepoints, const std::string& name) {
  for (auto i = static_cast<std::ptrdiff_t>(savepoints.size()) - 1; i >= 0; --i) {
    if (savepoints[static_cast<size_t>(i)].name == name) return i;
  }
  return -1;
}

bool is_transaction_command(const TrackedStatement& s) {
  return s.facts.transaction != TransactionCommand::None;
}

// A statement PostgreSQL runs in a failed transaction block: COMMIT / ROLLBACK (and their spellings), ROLLBACK TO
// SAVEPOINT, PREPARE TRANSACTION and the like (Other). Anything else there fails with 25P02.
bool leaves_failed_block(const TrackedStatement& s) {
  const TransactionCommand t = s.facts.transaction;
  return t == TransactionCommand::Commit || t == TransactionCommand::Rollback || t == TransactionCommand::RollbackTo ||
         t == TransactionCommand::Other;
}

}  // namespace

SessionOutcome SessionBlock::finish(std::vector<TrackedStatement> statements, char before, char after, bool failed) {
  SessionOutcome out;
  Block block = before == 'T' ? Block::Open : before == 'E' ? Block::Failed : Block::None;
  auto first = statements.begin();
  if (block == Block::None && first != statements.end() && first->facts.transaction == TransactionCommand::Begin) {
    // A BEGIN in front (the client's, or the one pgmux deferred) cannot fail once the text parsed: the rest runs
    // in the block it opens (and if the text did not parse, nothing ran and the block is not open after).
    block = Block::Open;
    ++first;
  }
  const bool any_session = std::any_of(first, statements.end(), [](const auto& s) { return s.changes_session(); });
  const bool any_transaction = std::any_of(first, statements.end(), is_transaction_command);
  const bool at_risk = any_session || !pending_.empty();  // the block's analysis changes alone need no log

  if (failed) {
    // The request stopped at its first error, which rolled back the implicit transaction around it or failed the
    // block. Which statement that was is not known: with a transaction command among several, it may have been
    // before or after it. A single statement is the one that failed: it did nothing. In a failed block, PostgreSQL
    // refuses (25P02) every statement but one that ends the block or rolls back to a savepoint: one of those first,
    // or nothing ran.
    if (block == Block::Failed && first != statements.end() && !leaves_failed_block(*first)) return out;
    if (any_transaction && at_risk && statements.end() - first > 1) {
      clear();
      out.unknown = true;
    } else if (after == 'I') {
      clear();  // the block ended without committing (a COMMIT that failed rolls back)
    }
    return out;
  }

  std::vector<TrackedStatement> implicit;  // session commands outside a block: they last if the request ends so
  for (auto it = first; it != statements.end(); ++it) run(*it, block, implicit, out);
  const char expected = block == Block::None ? 'I' : block == Block::Open ? 'T' : 'E';
  if (expected != after) {
    // Something ended or began a block that pgmux does not see (a procedure's COMMIT): nothing is certain.
    out.unknown = out.unknown || at_risk;
    out.lasting.clear();
    clear();
    return out;
  }
  if (block == Block::None) {
    make_lasting(implicit, out);
  } else {
    for (TrackedStatement& s : implicit) pending_.push_back(std::move(s));  // BEGIN made them part of the block
  }
  return out;
}

void SessionBlock::run(TrackedStatement& statement, Block& block, std::vector<TrackedStatement>& implicit,
                       SessionOutcome& out) {
  const routing::StatementSessionFacts& facts = statement.facts;
  switch (facts.transaction) {
    case TransactionCommand::None:
      if (block == Block::Open) note_analysis_change(statement);
      if (!statement.changes_session() || block == Block::Failed) return;
      (block == Block::Open ? pending_ : implicit).push_back(std::move(statement));
      return;
    case TransactionCommand::Begin:
      if (block != Block::None) return;  // a warning inside a block
      block = Block::Open;
      for (TrackedStatement& s : implicit) {  // the statements before join it
        note_analysis_change(s);
        pending_.push_back(std::move(s));
      }
      implicit.clear();
      return;
    case TransactionCommand::Commit:
    case TransactionCommand::Rollback: {
      const bool commit = facts.transaction == TransactionCommand::Commit;
      if (block == Block::None) {
        if (!commit) implicit.clear();  // ROLLBACK in a multi-statement string aborts what ran before it
      } else {
        end_block(commit && block == Block::Open, out);
      }
      block = facts.chain ? Block::Open : Block::None;
      return;
    }
    case TransactionCommand::Savepoint:
      if (block == Block::Open) savepoints_.push_back({facts.savepoint, pending_.size(), analysis_.size()});
      return;
    case TransactionCommand::Release: {
      // A savepoint not seen here was made before the block's first session command (requests are tracked from
      // then on): every savepoint seen is inside it.
      const auto i = find_savepoint(savepoints_, facts.savepoint);
      savepoints_.resize(i >= 0 ? static_cast<size_t>(i) : 0);  // their commands stay in the block
      return;
    }
    case TransactionCommand::RollbackTo: {
      const auto i = find_savepoint(savepoints_, facts.savepoint);
      pending_.resize(i >= 0 ? savepoints_[static_cast<size_t>(i)].pending : 0);
      if (!analysis_.empty()) analysis_.make().resize(i >= 0 ? savepoints_[static_cast<size_t>(i)].analysis : 0);
      savepoints_.resize(i >= 0 ? static_cast<size_t>(i) + 1 : 0);  // the savepoint itself stays
      block = Block::Open;
      return;
    }
    case TransactionCommand::Other:
      // PREPARE TRANSACTION and friends: what becomes of the block's SETs is not modelled.
      out.unknown = out.unknown || !pending_.empty() || !implicit.empty();
      clear();
      implicit.clear();
      block = Block::None;
      return;
  }
}

// Only commands another server can run as they are: not one with parameters ($1: a set_config bound by an
// extended batch), whose values are not kept (statements parsed behind it keep the session's settings then).
void SessionBlock::note_analysis_change(const TrackedStatement& statement) {
  const bool changes = statement.c.effects.has(routing::SessionEffect::SetLocalAnalysis) ||
                       (statement.changes_session() && routing::replayable_setting_command(statement.sql) &&
                        routing::may_affect_statement_analysis(statement.sql));
  if (changes && !routing::has_parameter_reference(statement.sql)) analysis_.make().push_back(statement.sql);
}

void SessionBlock::end_block(bool commit, SessionOutcome& out) {
  if (commit) make_lasting(pending_, out);
  clear();
}

}  // namespace pgmux::proxy
