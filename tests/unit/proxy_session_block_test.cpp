// SessionBlock: which session commands last under PostgreSQL's transaction rules (issue 10, item 1).
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "proxy/client/session_block.hpp"
#include "routing/classifier.hpp"

using namespace pgmux;
using namespace pgmux::proxy;

namespace {

// The statements as ClientConn tracks them: classified, and their facts read where they decide something.
std::vector<TrackedStatement> statements(std::initializer_list<const char*> sqls) {
  static routing::Classifier classifier;
  std::vector<TrackedStatement> out;
  for (const char* sql : sqls) {
    TrackedStatement s{sql, classifier.classify(sql), {}, classifier.reset_parameter(sql)};
    if (s.c.kind == routing::StatementKind::TxBegin) {
      s.facts.transaction = routing::TransactionCommand::Begin;
    } else {
      s.facts = routing::statement_session_facts(sql);
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> lasting(const SessionOutcome& outcome) {
  std::vector<std::string> sqls;
  for (const TrackedStatement& s : outcome.lasting) sqls.push_back(s.sql);
  return sqls;
}

using Sqls = std::vector<std::string>;

}  // namespace

TEST_CASE("a SET outside a block lasts once it succeeded; a failed one does not") {
  SessionBlock block;
  CHECK(lasting(block.finish(statements({"SET search_path = a"}), 'I', 'I', false)) == Sqls{"SET search_path = a"});
  CHECK(lasting(block.finish(statements({"SET search_path = a"}), 'I', 'I', true)).empty());
  CHECK_FALSE(block.at_stake());
}

TEST_CASE("a SET inside a block lasts when the block commits, not when it rolls back") {
  SessionBlock block;
  CHECK(lasting(block.finish(statements({"BEGIN"}), 'I', 'T', false)).empty());
  CHECK(lasting(block.finish(statements({"SET ROLE reader"}), 'T', 'T', false)).empty());
  CHECK(block.at_stake());
  CHECK(lasting(block.finish(statements({"SELECT 1"}), 'T', 'T', false)).empty());
  CHECK(lasting(block.finish(statements({"COMMIT"}), 'T', 'I', false)) == Sqls{"SET ROLE reader"});
  CHECK_FALSE(block.at_stake());

  block.finish(statements({"SET ROLE reader"}), 'T', 'T', false);
  CHECK(lasting(block.finish(statements({"ROLLBACK"}), 'T', 'I', false)).empty());
  CHECK_FALSE(block.at_stake());
}

TEST_CASE("COMMIT of a failed block rolls it back; a COMMIT that fails too") {
  SessionBlock block;
  block.finish(statements({"SET ROLE reader"}), 'T', 'T', false);
  block.finish(statements({"SELECT 1/0"}), 'T', 'E', true);
  CHECK(lasting(block.finish(statements({"COMMIT"}), 'E', 'I', false)).empty());

  block.finish(statements({"SET ROLE reader"}), 'T', 'T', false);
  const SessionOutcome failed_commit = block.finish(statements({"COMMIT"}), 'T', 'I', true);
  CHECK(lasting(failed_commit).empty());
  CHECK_FALSE(failed_commit.unknown);
  CHECK_FALSE(block.at_stake());
}

TEST_CASE("SET LOCAL and SHOW leave nothing; set_config with is_local true neither") {
  SessionBlock block;
  block.finish(statements({"SET LOCAL ROLE reader", "SHOW role", "SELECT set_config('role', 'x', true)"}), 'T', 'T',
               false);
  CHECK_FALSE(block.at_stake());
}

TEST_CASE("savepoints: ROLLBACK TO drops the commands after it, RELEASE keeps them") {
  SessionBlock block;
  block.finish(statements({"BEGIN", "SET search_path = a", "SAVEPOINT s1", "SET ROLE reader"}), 'I', 'T', false);
  block.finish(statements({"SAVEPOINT s2", "SET row_security = off"}), 'T', 'T', false);
  block.finish(statements({"SELECT 1/0"}), 'T', 'E', true);
  block.finish(statements({"ROLLBACK TO SAVEPOINT s2"}), 'E', 'T', false);  // row_security goes
  block.finish(statements({"RELEASE s1"}), 'T', 'T', false);                 // role stays
  CHECK(lasting(block.finish(statements({"COMMIT"}), 'T', 'I', false)) ==
        Sqls{"SET search_path = a", "SET ROLE reader"});

  block.finish(statements({"BEGIN", "SAVEPOINT s", "SET ROLE reader", "ROLLBACK TO s", "SET search_path = b"}), 'I',
               'T', false);
  CHECK(lasting(block.finish(statements({"END"}), 'T', 'I', false)) == Sqls{"SET search_path = b"});
}

TEST_CASE("a savepoint made before the block's first session command covers all of them") {
  SessionBlock block;
  block.finish(statements({"SET ROLE reader"}), 'T', 'T', false);  // SAVEPOINT early came before: not tracked
  block.finish(statements({"SAVEPOINT late", "SET search_path = b"}), 'T', 'T', false);
  block.finish(statements({"ROLLBACK TO early"}), 'T', 'T', false);
  CHECK_FALSE(block.at_stake());
  block.finish(statements({"SET ROLE reader", "SAVEPOINT late", "SET search_path = b"}), 'T', 'T', false);
  block.finish(statements({"RELEASE early"}), 'T', 'T', false);  // late goes with early; the commands stay
  CHECK(lasting(block.finish(statements({"COMMIT"}), 'T', 'I', false)) ==
        Sqls{"SET ROLE reader", "SET search_path = b"});
}

TEST_CASE("one string: commands before BEGIN join the block; ROLLBACK drops them, COMMIT AND CHAIN keeps them") {
  SessionBlock block;
  CHECK(lasting(block.finish(statements({"SET search_path = a", "BEGIN", "SET ROLE reader", "ROLLBACK"}), 'I', 'I',
                             false))
            .empty());
  CHECK(lasting(block.finish(statements({"BEGIN", "SET ROLE reader", "COMMIT", "SET search_path = b"}), 'I', 'I',
                             false)) == Sqls{"SET ROLE reader", "SET search_path = b"});
  CHECK(lasting(block.finish(statements({"SET ROLE reader", "ROLLBACK"}), 'I', 'I', false)).empty());
  CHECK(lasting(block.finish(statements({"BEGIN", "SET ROLE reader", "COMMIT AND CHAIN", "SET search_path = c"}),
                             'I', 'T', false)) == Sqls{"SET ROLE reader"});
  CHECK(block.at_stake());
  CHECK(lasting(block.finish(statements({"ROLLBACK"}), 'T', 'I', false)).empty());
}

TEST_CASE("a failed string with a transaction command among session commands: unknown") {
  SessionBlock block;
  const SessionOutcome outcome =
      block.finish(statements({"SET ROLE reader", "COMMIT", "SET search_path = b", "SELECT 1/0"}), 'T', 'I', true);
  CHECK(outcome.unknown);
  CHECK_FALSE(block.at_stake());
  // A BEGIN in front cannot be what failed: the rest ran in its block, which is now failed.
  const SessionOutcome begun = block.finish(statements({"BEGIN", "SET ROLE reader", "SELECT 1/0"}), 'I', 'E', true);
  CHECK_FALSE(begun.unknown);
  CHECK(lasting(block.finish(statements({"ROLLBACK"}), 'E', 'I', false)).empty());
}

// In a failed block PostgreSQL runs nothing but what ends it or rolls back to a savepoint (25P02): a failed string
// that starts otherwise ran nothing, whatever follows in it (the split's read-only block on a standby ended the
// session for `SET search_path = x; BEGIN` there).
TEST_CASE("a failed string in a failed block that starts with neither ROLLBACK nor COMMIT ran nothing") {
  SessionBlock block;
  block.finish(statements({"BEGIN", "SET ROLE reader", "SELECT 1/0"}), 'I', 'E', true);
  const SessionOutcome refused = block.finish(statements({"SET search_path = x", "BEGIN"}), 'E', 'E', true);
  CHECK_FALSE(refused.unknown);
  const SessionOutcome also = block.finish(statements({"SAVEPOINT s", "SET search_path = y", "RELEASE s"}), 'E', 'E',
                                           true);
  CHECK_FALSE(also.unknown);
  // ROLLBACK TO first may have run, and what follows with it: as before, unknown.
  const SessionOutcome maybe = block.finish(
      statements({"ROLLBACK TO SAVEPOINT s", "SET search_path = z", "SAVEPOINT u", "SELECT 1/0"}), 'E', 'E', true);
  CHECK(maybe.unknown);
}

TEST_CASE("set_config: replayable when it is all the statement does, else unknown once it lasts") {
  SessionBlock block;
  CHECK(lasting(block.finish(statements({"SELECT set_config('role', 'reader', false)"}), 'I', 'I', false)) ==
        Sqls{"SELECT set_config('role', 'reader', false)"});
  const SessionOutcome computed =
      block.finish(statements({"SELECT set_config('role', current_user, false)"}), 'I', 'I', false);
  CHECK(computed.unknown);
  const SessionOutcome conditional =
      block.finish(statements({"SELECT set_config('role', 'reader', false) FROM t WHERE x"}), 'I', 'I', false);
  CHECK(conditional.unknown);
  const SessionOutcome in_do = block.finish(statements({"DO $$ BEGIN PERFORM 1; END $$"}), 'I', 'I', false);
  CHECK(in_do.unknown);
  // Rolled back: nothing of it lasts, so nothing is unknown.
  block.finish(statements({"BEGIN", "SELECT set_config('role', current_user, false)"}), 'I', 'T', false);
  CHECK_FALSE(block.finish(statements({"ROLLBACK"}), 'T', 'I', false).unknown);
}

TEST_CASE("a block that ends where pgmux does not see it (a procedure's COMMIT): unknown") {
  SessionBlock block;
  block.finish(statements({"BEGIN", "SET ROLE reader"}), 'I', 'T', false);
  const SessionOutcome outcome = block.finish(statements({"CALL commits()"}), 'T', 'I', false);
  CHECK(outcome.unknown);
  CHECK_FALSE(block.at_stake());
}

TEST_CASE("PREPARE TRANSACTION with session commands in its block: unknown") {
  SessionBlock block;
  block.finish(statements({"BEGIN", "SET ROLE reader"}), 'I', 'T', false);
  CHECK(block.finish(statements({"PREPARE TRANSACTION 'x'"}), 'T', 'I', false).unknown);
}

TEST_CASE("the block's changes to the settings a Parse reads: SET LOCAL and SET, back to a savepoint, until its end") {
  SessionBlock block;
  block.finish(statements({"SET LOCAL TimeZone = 'UTC'"}), 'I', 'I', false);  // outside a block: nothing
  CHECK(block.analysis_commands().empty());
  block.finish(statements({"BEGIN"}), 'I', 'T', false);
  block.finish(statements({"SET LOCAL TimeZone = 'Asia/Tokyo'"}), 'T', 'T', false);
  CHECK(block.analysis_commands() == Sqls{"SET LOCAL TimeZone = 'Asia/Tokyo'"});
  CHECK(block.at_stake());  // the rest of the block is tracked
  block.finish(statements({"SET LOCAL work_mem = '8MB'"}), 'T', 'T', false);  // no Parse reads it
  block.finish(statements({"SAVEPOINT s"}), 'T', 'T', false);
  block.finish(statements({"SET DateStyle = 'ISO, DMY'"}), 'T', 'T', false);
  CHECK(block.analysis_commands() == Sqls{"SET LOCAL TimeZone = 'Asia/Tokyo'", "SET DateStyle = 'ISO, DMY'"});
  block.finish(statements({"ROLLBACK TO SAVEPOINT s"}), 'T', 'T', false);
  CHECK(block.analysis_commands() == Sqls{"SET LOCAL TimeZone = 'Asia/Tokyo'"});
  CHECK(lasting(block.finish(statements({"COMMIT"}), 'T', 'I', false)).empty());  // SET LOCAL never lasts
  CHECK(block.analysis_commands().empty());
  CHECK_FALSE(block.at_stake());

  // A SET in front of BEGIN in one string joins the block.
  block.finish(statements({"SET TimeZone = 'UTC'", "BEGIN"}), 'I', 'T', false);
  CHECK(block.analysis_commands() == Sqls{"SET TimeZone = 'UTC'"});
  block.finish(statements({"ROLLBACK"}), 'T', 'I', false);
  CHECK(block.analysis_commands().empty());
}
