#include <doctest/doctest.h>

#include "protocol/frontend_messages.hpp"
#include "protocol/statement_naming.hpp"
#include "proxy/client/session.hpp"
#include "routing/session_statement.hpp"

using pgmux::proxy::ClientSession;
using pgmux::proxy::LogUpdate;

namespace {
// Records `sql` with the classifier's facts, as ClientConn does once the command succeeded.
LogUpdate record(ClientSession& session, const std::string& sql, bool transaction_pooling) {
  static pgmux::routing::Classifier classifier;
  return session.record_command(sql, classifier.classify(sql), classifier.reset_parameter(sql), transaction_pooling);
}
}  // namespace

TEST_CASE("session log: commands are appended and the server that ran one has applied them all") {
  ClientSession session;
  LogUpdate first = record(session, "SET search_path = a", false);
  LogUpdate second = record(session, "SET work_mem = '8MB'", false);
  CHECK(first.runner_applied == 1);
  CHECK(second.runner_applied == 2);
  CHECK_FALSE(second.others_restart);
  REQUIRE(session.log.size() == 2);
  CHECK(session.log[1] == "SET work_mem = '8MB'");
}

TEST_CASE("session log: RESET ALL and DISCARD ALL restart it, and every other server replays from the start") {
  for (const char* reset : {"RESET ALL", "discard all"}) {
    ClientSession session;
    record(session, "SET search_path = a", false);
    LogUpdate update = record(session, reset, false);
    CHECK(update.others_restart);
    REQUIRE(session.log.size() == 1);
    CHECK(session.log[0] == reset);
    CHECK(update.runner_applied == 1);
  }
}

TEST_CASE("session log: a PREPARE gets the parameter types read behind it, where no server replayed it yet") {
  ClientSession session;
  record(session, "PREPARE q AS SELECT $1", false);
  record(session, "SET search_path = a", false);
  record(session, "PREPARE \"Q\" AS SELECT $1", false);  // another statement: "Q" is not q
  session.type_logged_prepare("q", "pg_catalog.int4", 3);  // replayed on the standby already: kept
  CHECK(session.log[0] == "PREPARE q AS SELECT $1");
  session.type_logged_prepare("q", "pg_catalog.int4", 0);
  CHECK(session.log[0] == "PREPARE q (pg_catalog.int4) AS SELECT $1");
  CHECK(session.log[2] == "PREPARE \"Q\" AS SELECT $1");
  session.type_logged_prepare("q", "pg_catalog.text", 0);  // one with types keeps them
  CHECK(session.log[0] == "PREPARE q (pg_catalog.int4) AS SELECT $1");
  record(session, "DEALLOCATE q", false);
  record(session, "PREPARE q AS SELECT $1 + 1", false);
  session.type_logged_prepare("q", "pg_catalog.int8", 0);  // the latest PREPARE of the name
  CHECK(session.log[4] == "PREPARE q (pg_catalog.int8) AS SELECT $1 + 1");
  CHECK(session.log[0] == "PREPARE q (pg_catalog.int4) AS SELECT $1");
  session.type_logged_prepare("unknown", "pg_catalog.int4", 0);  // no such PREPARE: nothing changes
  CHECK(session.log.size() == 5);
}

TEST_CASE("session log: RESET ALL keeps the commands that set the role and the session authorization") {
  for (const bool transaction_pooling : {false, true}) {
    CAPTURE(transaction_pooling);
    ClientSession session;
    record(session, "SET SESSION AUTHORIZATION bob", transaction_pooling);
    record(session, "SET work_mem = '8MB'", transaction_pooling);
    record(session, "SELECT set_config('role', 'alice', false)", transaction_pooling);
    const LogUpdate update = record(session, "RESET ALL", transaction_pooling);
    CHECK(update.others_restart);
    REQUIRE(session.log.size() == 3);
    CHECK(session.log[0] == "RESET ALL");
    CHECK(session.log[1] == "SET SESSION AUTHORIZATION bob");
    CHECK(session.log[2] == "SELECT set_config('role', 'alice', false)");
    // Session pooling: the server that ran RESET ALL kept them; transaction pooling replays them there too.
    CHECK(update.runner_applied == (transaction_pooling ? 1 : 3));
    record(session, "DISCARD ALL", transaction_pooling);  // resets them as well
    CHECK(session.log.size() == 1);
    // SET SESSION AUTHORIZATION resets the role: a SET ROLE before it is not replayed (under the new session
    // user it may be refused).
    record(session, "SET ROLE admins", transaction_pooling);
    record(session, "SET SESSION AUTHORIZATION bob", transaction_pooling);
    record(session, "SET ROLE readers", transaction_pooling);
    CHECK_FALSE(record(session, "RESET ALL", transaction_pooling).state_unknown);
    REQUIRE(session.log.size() == 3);
    CHECK(session.log[1] == "SET SESSION AUTHORIZATION bob");
    CHECK(session.log[2] == "SET ROLE readers");
    // A role set beside another setting: RESET ALL undoes one and not the other, which the log cannot say.
    record(session, "SELECT set_config('search_path', 'a', false), set_config('role', 'b', false)",
           transaction_pooling);
    CHECK(record(session, "RESET ALL", transaction_pooling).state_unknown);
  }
}

TEST_CASE("session log, transaction pooling: RESET of a startup parameter returns to the client's own value") {
  ClientSession session;
  session.wanted_params.set("application_name", "billing");
  record(session, "SET application_name = 'other'", true);
  LogUpdate update = record(session, "RESET application_name", true);
  REQUIRE(session.log.size() == 2);
  CHECK(session.log[1].find("billing") != std::string::npos);
  CHECK(session.log[1].rfind("SET ", 0) == 0);
  // The server ran a plain RESET (to its own default): it still needs the SET to the client's value.
  CHECK(update.runner_applied == 1);
  CHECK_FALSE(update.others_restart);
}

TEST_CASE("session log, transaction pooling: RESET of another parameter is kept as it is") {
  ClientSession session;
  session.wanted_params.set("application_name", "billing");
  LogUpdate update = record(session, "RESET work_mem", true);
  REQUIRE(session.log.size() == 1);
  CHECK(session.log[0] == "RESET work_mem");
  CHECK(update.runner_applied == 1);
}

TEST_CASE("session log, transaction pooling: RESET ALL is followed by the client's startup values") {
  ClientSession session;
  session.wanted_params.set("application_name", "billing");
  session.wanted_params.set("TimeZone", "UTC");
  record(session, "SET search_path = a", true);
  LogUpdate update = record(session, "RESET ALL", true);
  CHECK(update.others_restart);
  CHECK(update.runner_applied == 1);  // ran the reset, not yet the startup values
  REQUIRE(session.log.size() == 3);
  CHECK(session.log[0] == "RESET ALL");
  CHECK(session.log[1].rfind("SET ", 0) == 0);
  CHECK(session.log[2].rfind("SET ", 0) == 0);
}

TEST_CASE("prepared statements: remembered by client name with message, class and (transaction pooling) server name") {
  pgmux::protocol::ByteVector parse;
  pgmux::protocol::build_parse(parse, "s1", "SELECT $1");
  pgmux::proxy::ParsedStatement statement{"s1", "SELECT $1", parse};
  pgmux::routing::Classification c;
  c.kind = pgmux::routing::StatementKind::Read;

  ClientSession session;
  CHECK(session.find_statement("s1") == nullptr);
  const auto& stored = session.remember(statement, c, true, 1, 1);
  CHECK(stored.parse == parse);
  CHECK(stored.classification.kind == pgmux::routing::StatementKind::Read);
  CHECK(stored.server_name.rfind("pgmux_", 0) == 0);
  REQUIRE(session.find_statement("s1") != nullptr);
  CHECK(session.find_statement("s1")->server_name == stored.server_name);

  ClientSession session_pooled;
  CHECK(session_pooled.remember(statement, c, false, 1, 1).server_name.empty());
}

// find_statement remembers the entry it found last (a batch asks for the same name several times): what it
// answers must stay what the map holds, through erasing, parsing the name again, other names and copies.
TEST_CASE("prepared statements: the last statement found is never answered once it is gone or elsewhere") {
  pgmux::protocol::ByteVector parse_a, parse_b, parse_a2;
  pgmux::protocol::build_parse(parse_a, "a", "SELECT 1");
  pgmux::protocol::build_parse(parse_b, "b", "SELECT 2");
  pgmux::protocol::build_parse(parse_a2, "a", "SELECT 3");
  const pgmux::routing::Classification c;
  ClientSession session;
  session.remember({"a", "SELECT 1", parse_a}, c, false, 1, 1);
  REQUIRE(session.find_statement("a") != nullptr);
  CHECK(session.find_statement("a")->parse == parse_a);
  CHECK(session.find_statement("b") == nullptr);  // a miss leaves the memo as it was
  CHECK(session.find_statement("a")->parse == parse_a);

  // Many more statements: the map rehashes, the entry found last stays where it is.
  for (int i = 0; i < 200; ++i) {
    pgmux::protocol::ByteVector p;
    const std::string name = "n" + std::to_string(i);
    pgmux::protocol::build_parse(p, name, "SELECT 4");
    session.remember({name, "SELECT 4", p}, c, false, 1, 1);
  }
  CHECK(session.find_statement("a")->parse == parse_a);

  session.erase_statement("a");  // a Close of it
  CHECK(session.find_statement("a") == nullptr);
  session.remember({"a", "SELECT 3", parse_a2}, c, false, 2, 1);  // parsed again
  REQUIRE(session.find_statement("a") != nullptr);
  CHECK(session.find_statement("a")->parse == parse_a2);

  // A copy answers from its own map.
  const ClientSession copy = session;
  session.erase_statement("a");
  CHECK(session.find_statement("a") == nullptr);
  REQUIRE(copy.find_statement("a") != nullptr);
  CHECK(copy.find_statement("a")->parse == parse_a2);
  CHECK(copy.find_statement("a") != session.find_statement("a"));
}

// DISCARD ALL answered: the statements parsed by earlier requests go, those parsed by requests pipelined behind
// it stay (PostgreSQL ran their Parse after the DISCARD).
TEST_CASE("prepared statements: DISCARD ALL forgets only those parsed before it") {
  pgmux::protocol::ByteVector parse_old, parse_new;
  pgmux::protocol::build_parse(parse_old, "old", "SELECT 1");
  pgmux::protocol::build_parse(parse_new, "new", "SELECT 2");
  const pgmux::routing::Classification c;
  ClientSession session;
  session.remember({"old", "SELECT 1", parse_old}, c, true, 1, 4);
  session.remember({"new", "SELECT 2", parse_new}, c, true, 2, 6);
  REQUIRE(session.find_statement("old") != nullptr);  // the memo points at it
  session.clear_statements_before(5);  // the DISCARD ALL was request 5
  CHECK(session.find_statement("old") == nullptr);
  REQUIRE(session.find_statement("new") != nullptr);
  CHECK(session.find_statement("new")->parse == parse_new);
  CHECK(session.statement_count() == 1);
}

// Once the types PostgreSQL inferred are known (the ParameterDescription of its copy), a statement is prepared
// elsewhere with them in its Parse, under that Parse's shared name; one that named them all already stays as is.
TEST_CASE("prepared statements: inferred parameter types are spelled out once known") {
  using pgmux::protocol::ByteVector;
  ByteVector parse;
  pgmux::protocol::build_parse(parse, "s1", "INSERT INTO t VALUES ($1, $2)", {23});  // $2 left to infer
  pgmux::proxy::ParsedStatement statement{"s1", "INSERT INTO t VALUES ($1, $2)", parse};
  ClientSession session;
  auto& stored = session.remember(statement, {}, true, 1, 1);
  const std::string inferred_name = stored.server_name;
  CHECK_FALSE(pgmux::proxy::pin_parameter_types(stored));  // not known yet: nothing to spell out

  // ParameterDescription body: two parameters, int4 and real.
  const ByteVector described = {std::byte{0}, std::byte{2}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{23},
                                std::byte{0}, std::byte{0}, std::byte{2}, std::byte{188}};
  stored.parameter_types = described;
  REQUIRE(pgmux::proxy::pin_parameter_types(stored));
  ByteVector typed;
  pgmux::protocol::build_parse(typed, "s1", "INSERT INTO t VALUES ($1, $2)", {23, 700});
  CHECK(stored.parse == typed);  // the client's name kept: renamed as any Parse when sent
  CHECK(stored.server_name == pgmux::protocol::server_statement_name(typed));
  CHECK(stored.server_name != inferred_name);
  CHECK_FALSE(pgmux::proxy::pin_parameter_types(stored));  // spelled out now

  // Parsed again: the types are the new Parse's business, not known until its copy is described.
  auto& again = session.remember(statement, {}, true, 2, 2);
  CHECK(again.parameter_types.empty());
  CHECK(again.server_name == inferred_name);
}

TEST_CASE("session: the analysis settings key follows what changes a statement's meaning, nothing else") {
  ClientSession plain;
  CHECK(plain.analysis_settings_key() == 0);
  plain.wanted_params.set("application_name", "app");
  plain.wanted_params.set("client_encoding", "UTF8");
  CHECK(plain.analysis_settings_key() == 0);  // neither changes what a statement means
  ClientSession tokyo;
  tokyo.wanted_params.set("TimeZone", "Asia/Tokyo");
  ClientSession utc;
  utc.wanted_params.set("TimeZone", "UTC");
  CHECK(tokyo.analysis_settings_key() != 0);
  CHECK(tokyo.analysis_settings_key() != utc.analysis_settings_key());
  const uint64_t before = plain.analysis_settings_key();
  record(plain, "SET statement_timeout = 5000", true);
  CHECK(plain.analysis_settings_key() == before);
  record(plain, "SET search_path = tenant_7", true);
  CHECK(plain.analysis_settings_key() != before);
  // The shared name of one text differs with the key; alike sessions share it.
  pgmux::protocol::ByteVector parse;
  pgmux::protocol::build_parse(parse, "s", "SELECT 1", {});
  CHECK(pgmux::protocol::server_statement_name(parse, tokyo.analysis_settings_key()) !=
        pgmux::protocol::server_statement_name(parse, utc.analysis_settings_key()));
  CHECK(pgmux::protocol::server_statement_name(parse, 0) == pgmux::protocol::server_statement_name(parse));
}

TEST_CASE("session: a statement keeps the settings of its Parse, the open block's changes included") {
  static pgmux::routing::Classifier classifier;
  const auto tracked = [](const char* sql) {
    std::vector<pgmux::proxy::TrackedStatement> out;
    out.push_back({sql, classifier.classify(sql), pgmux::routing::statement_session_facts(sql), ""});
    return out;
  };
  ClientSession session;
  session.wanted_params.set("TimeZone", "UTC");
  record(session, "SET DateStyle = 'ISO, DMY'", true);
  record(session, "SET work_mem = '8MB'", true);
  pgmux::protocol::ByteVector message;
  pgmux::protocol::build_parse(message, "s", "SELECT now()", {});
  const pgmux::proxy::ParsedStatement parse{"s", "SELECT now()", pgmux::protocol::ByteView(message)};
  const auto& plain = session.remember(parse, {}, true, 1, 1);
  REQUIRE(plain.settings != nullptr);
  CHECK(plain.settings_key() == session.analysis_settings_key());
  CHECK(plain.settings->commands == std::vector<std::string>{"SET DateStyle = 'ISO, DMY'"});
  const uint64_t session_key = session.parse_settings_key();

  std::vector<pgmux::proxy::TrackedStatement> begin = tracked("BEGIN");
  begin[0].facts.transaction = pgmux::routing::TransactionCommand::Begin;
  session.block.finish(std::move(begin), 'I', 'T', false);
  session.block.finish(tracked("SET LOCAL TimeZone = 'Asia/Tokyo'"), 'T', 'T', false);
  CHECK(session.parse_settings_key() != session_key);
  const auto& local = session.remember(parse, {}, true, 2, 2);
  CHECK(local.settings_key() == session.parse_settings_key());
  CHECK(local.settings->commands ==
        std::vector<std::string>{"SET DateStyle = 'ISO, DMY'", "SET LOCAL TimeZone = 'Asia/Tokyo'"});
  CHECK(local.server_name == pgmux::protocol::server_statement_name(message, local.settings_key()));
  session.block.finish(tracked("ROLLBACK"), 'T', 'I', false);
  CHECK(session.parse_settings_key() == session_key);
}
