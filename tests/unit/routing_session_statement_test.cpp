// statement_session_facts: transaction commands with their savepoints, and which session changes replay as
// written (issue 10, item 1).
#include <doctest/doctest.h>

#include "routing/classifier.hpp"
#include "routing/session_statement.hpp"

using namespace pgmux::routing;

TEST_CASE("transaction commands and the savepoints they name") {
  CHECK(statement_session_facts("BEGIN").transaction == TransactionCommand::Begin);
  CHECK(statement_session_facts("start transaction read only").transaction == TransactionCommand::Begin);
  CHECK(statement_session_facts("COMMIT").transaction == TransactionCommand::Commit);
  CHECK(statement_session_facts("end work").transaction == TransactionCommand::Commit);
  CHECK(statement_session_facts("ROLLBACK").transaction == TransactionCommand::Rollback);
  CHECK(statement_session_facts("abort").transaction == TransactionCommand::Rollback);
  CHECK(statement_session_facts("COMMIT AND CHAIN").chain);
  CHECK_FALSE(statement_session_facts("COMMIT AND NO CHAIN").chain);
  const StatementSessionFacts savepoint = statement_session_facts("SAVEPOINT \"Mixed Case\"");
  CHECK(savepoint.transaction == TransactionCommand::Savepoint);
  CHECK(savepoint.savepoint == "Mixed Case");
  const StatementSessionFacts release = statement_session_facts("RELEASE SAVEPOINT Folded");
  CHECK(release.transaction == TransactionCommand::Release);
  CHECK(release.savepoint == "folded");
  const StatementSessionFacts back = statement_session_facts("ROLLBACK TO s1");
  CHECK(back.transaction == TransactionCommand::RollbackTo);
  CHECK(back.savepoint == "s1");
  CHECK(statement_session_facts("PREPARE TRANSACTION 'g'").transaction == TransactionCommand::Other);
  CHECK(statement_session_facts("COMMIT PREPARED 'g'").transaction == TransactionCommand::Other);
  CHECK(statement_session_facts("INSERT INTO t VALUES (1)").transaction == TransactionCommand::None);
}

TEST_CASE("session changes that replay as written, and those that cannot be told") {
  CHECK(statement_session_facts("SET ROLE reader").replay == SessionReplay::Statement);
  CHECK(statement_session_facts("SET SESSION AUTHORIZATION reader").replay == SessionReplay::Statement);
  CHECK(statement_session_facts("RESET row_security").replay == SessionReplay::Statement);
  CHECK(statement_session_facts("SELECT set_config('role', 'reader', false)").replay == SessionReplay::Statement);
  CHECK(statement_session_facts("select pg_catalog.set_config('search_path', '', false), "
                                "set_config('row_security', 'off'::text, false)")
            .replay == SessionReplay::Statement);
  // Computed arguments, a condition, other work alongside, or code pgmux cannot see into.
  CHECK(statement_session_facts("SELECT set_config('role', current_user, false)").replay == SessionReplay::Unknown);
  CHECK(statement_session_facts("SELECT set_config('role', $1, false)").replay == SessionReplay::Unknown);
  CHECK(statement_session_facts("SELECT set_config('role', 'r', false) FROM t").replay == SessionReplay::Unknown);
  CHECK(statement_session_facts("SELECT set_config('role', 'r', false), nextval('s')").replay ==
        SessionReplay::Unknown);
  CHECK(statement_session_facts("SELECT CASE WHEN x THEN set_config('role', 'r', false) END").replay ==
        SessionReplay::Unknown);
  CHECK(statement_session_facts("INSERT INTO t SELECT set_config('role', 'r', false)").replay ==
        SessionReplay::Unknown);
  CHECK(statement_session_facts("DO $$ BEGIN PERFORM set_config('role', 'r', false); END $$").replay ==
        SessionReplay::Unknown);
}

TEST_CASE("the classifier marks DO blocks as code that may change the session") {
  Classifier classifier;
  const Classification lexical = classifier.classify("DO $$ BEGIN NULL; END $$");
  CHECK(lexical.effects.has(SessionEffect::Opaque));
  CHECK(lexical.effects.may_change_session());
  const Classification parsed = classifier.classify("SELECT 1; DO $$ BEGIN NULL; END $$");
  CHECK(parsed.effects.has(SessionEffect::Opaque));
}

TEST_CASE("commands that set the role or the session authorization, which RESET ALL keeps, are told apart") {
  auto identity = [](const char* sql) { return statement_session_facts(sql).identity; };
  for (const char* sql : {"SET ROLE alice", "set role none", "RESET ROLE", "SET role = 'x'", "SET SESSION ROLE alice",
                          "SELECT set_config('role', 'bob', false)"}) {
    CAPTURE(sql);
    CHECK(identity(sql) == Identity::Role);
  }
  for (const char* sql : {"SET SESSION AUTHORIZATION bob", "RESET SESSION AUTHORIZATION",
                          "SELECT set_config('Session_Authorization'::text, 'bob', false)",
                          "SELECT set_config('role', 'a', false), set_config('session_authorization', 'b', false)"}) {
    CAPTURE(sql);
    CHECK(identity(sql) == Identity::SessionAuthorization);
  }
  // Beside another setting, which RESET ALL does reset: neither kept nor dropped whole.
  CHECK(identity("SELECT set_config('search_path', 'a', false), set_config('role', 'b', false)") == Identity::Mixed);
  for (const char* sql : {"SET search_path = role", "SET application_name = 'role'", "RESET ALL", "DISCARD ALL",
                          "SELECT set_config('search_path', 'role', false)", "SELECT 'role'"}) {
    CAPTURE(sql);
    CHECK(identity(sql) == Identity::None);
  }
}

TEST_CASE("only a command that sets the session authorization is one, whatever else names the word") {
  CHECK(sets_session_authorization("SET SESSION AUTHORIZATION bob"));
  CHECK(sets_session_authorization("reset session authorization"));
  CHECK(sets_session_authorization("SELECT set_config('session_authorization', 'bob', false)"));
  CHECK_FALSE(sets_session_authorization("SET ROLE bob"));
  CHECK_FALSE(sets_session_authorization("SET application_name = 'authorization'"));
  CHECK_FALSE(sets_session_authorization("SET search_path = s"));
}
