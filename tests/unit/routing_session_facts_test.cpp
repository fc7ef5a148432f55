// The facts the proxy decides from: pin reason, session effects, the parameter a RESET names, write-function
// calls. Checked through Classifier::classify (the lexer, or the parser where the lexer defers) and straight
// through the parser path; both must agree unless a row says the lexer can only be conservative.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "routing/classifier.hpp"
#include "routing/parse_classifier.hpp"

namespace {

using pgmux::routing::Classification;
using pgmux::routing::Classifier;
using pgmux::routing::PinReason;
using pgmux::routing::SessionEffect;
using pgmux::routing::SessionEffects;

using E = SessionEffect;
using P = PinReason;
constexpr bool WF = true;        // calls a write function
constexpr bool LEXER_ONLY = false;  // the parser tells more than the lexer (which stays on the safe side)

struct Case {
  std::string_view sql;
  std::initializer_list<SessionEffect> effects;
  PinReason pin = PinReason::None;
  std::string_view parameter = {};
  bool write_function = false;
  bool parser_agrees = true;
};

const Case kCases[] = {
    // --- SET: how long it lasts ---
    {"SET search_path = a", {E::Set}},
    {"set Search_Path TO a", {E::Set}},
    {"/* leading */ SET search_path = a", {E::Set}},
    {"-- a comment\nSET search_path = a", {E::Set}},
    {"SET SESSION search_path = a", {E::Set}},
    {"SET LOCAL search_path = a", {E::SetLocal}},  // PostgreSQL checks search_path again at each execution
    {"set local statement_timeout to default", {E::SetLocal}},
    // A setting prepared statements keep from their parse (routing::fixed_at_parse):
    {"SET LOCAL TimeZone = 'Asia/Tokyo'", {E::SetLocal, E::SetLocalAnalysis}},
    {"set local datestyle to 'German'", {E::SetLocal, E::SetLocalAnalysis}},
    {"SET TRANSACTION READ ONLY", {E::SetLocal}},
    {"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", {E::SetLocal}},
    {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", {E::Set}},
    {"SET transaction_read_only = off", {E::SetLocal}},  // each transaction starts from the defaults
    {"SET SESSION transaction_isolation TO 'serializable'", {E::SetLocal}},
    {"SET LOCAL transaction_deferrable = on", {E::SetLocal}},
    {"SET CONSTRAINTS ALL DEFERRED", {E::SetLocal}},
    {"SET TIME ZONE 'UTC'", {E::Set}},
    {"SET ROLE app", {E::Set}},
    {"SET SESSION AUTHORIZATION app", {E::Set}},
    {"SET x.y = 1", {E::Set}},
    // --- RESET and SET ... TO DEFAULT, with the parameter ---
    {"RESET search_path", {E::Reset}, P::None, "search_path"},
    {"reset Search_Path;", {E::Reset}, P::None, "search_path"},
    {"/* c */ RESET application_name", {E::Reset}, P::None, "application_name"},
    {"RESET \"Search_Path\"", {E::Reset}, P::None, "Search_Path"},
    {"RESET \"a\"\"b\"", {E::Reset}, P::None, "a\"b"},
    {"RESET myext.Setting", {E::Reset}, P::None, "myext.setting"},
    {"RESET TIME ZONE", {E::Reset}, P::None, "timezone"},
    {"RESET SESSION AUTHORIZATION", {E::Reset}, P::None, "session_authorization"},
    {"RESET TRANSACTION ISOLATION LEVEL", {E::Reset}, P::None, "transaction_isolation"},
    {"RESET ROLE", {E::Reset}, P::None, "role"},
    {"SET statement_timeout TO DEFAULT", {E::Reset}, P::None, "statement_timeout"},
    {"SET statement_timeout = DEFAULT", {E::Reset}, P::None, "statement_timeout"},
    {"SET SESSION statement_timeout TO DEFAULT", {E::Reset}, P::None, "statement_timeout"},
    {"SET a.b TO DEFAULT", {E::Reset}, P::None, "a.b"},
    {"SET TIME ZONE DEFAULT", {E::Reset}, P::None, "timezone"},
    {"SET TIME ZONE LOCAL", {E::Reset}, P::None, "timezone"},
    {"SET SESSION AUTHORIZATION DEFAULT", {E::Reset}, P::None, "session_authorization"},
    {"SET statement_timeout TO DEFAULT, 1", {E::Set}, P::None, {}, false, LEXER_ONLY},  // the server rejects it
    {"RESET U&\"d\\0061ta\"", {E::Reset}, P::None, {}, false, LEXER_ONLY},  // escapes are not decoded
    {"RESET ALL", {E::ResetAll}},
    {"/* c */ reset all", {E::ResetAll}},
    // --- DISCARD, PREPARE, DEALLOCATE, LISTEN, LOAD, SHOW ---
    {"DISCARD ALL", {E::DiscardAll}},
    {"-- c\nDISCARD ALL", {E::DiscardAll}},
    {"discard plans", {E::Discard}},
    {"DISCARD TEMP", {E::Discard}},
    {"DISCARD SEQUENCES", {E::Discard}},
    {"PREPARE p AS SELECT 1", {E::Prepare}},
    {"prepare p(int) AS SELECT $1", {E::Prepare}},
    {"PREPARE p AS SELECT nextval('s')", {E::Prepare}, P::None, {}, WF},  // named, not run
    {"PREPARE TRANSACTION 'gid'", {}},
    {"DEALLOCATE p", {E::Deallocate}},
    {"DEALLOCATE PREPARE p", {E::Deallocate}},
    {"DEALLOCATE prepare", {E::Deallocate}},  // a statement named "prepare"
    {"DEALLOCATE ALL", {E::DeallocateAll}},
    {"deallocate prepare all", {E::DeallocateAll}},
    {"LISTEN ch", {E::Listen}, P::Listen},
    {"UNLISTEN ch", {E::Listen}},
    {"UNLISTEN *", {E::Listen}},
    {"LOAD 'auto_explain'", {E::Load}},
    {"SHOW search_path", {E::Show}},
    {"SHOW ALL", {E::Show}},
    // --- pins ---
    {"CREATE TEMP TABLE t (a int)", {}, P::TempTable},
    {"create temporary table t (a int)", {}, P::TempTable},
    {"CREATE TEMP VIEW v AS SELECT 1", {}, P::TempTable},
    {"SELECT 1 INTO TEMP t", {}, P::TempTable},
    {"CREATE TABLE t (a int)", {}},
    // ... an object of the temporary schema however it is named, and a search_path that names that schema
    {"CREATE TABLE pg_temp.t (a int)", {}, P::TempTable},
    {"create table \"pg_temp\".t (a int)", {}, P::TempTable},
    {"CREATE TABLE PG_TEMP_3.t AS SELECT 1", {}, P::TempTable},
    {"SELECT 1 INTO pg_temp.t", {}, P::TempTable},
    {"CREATE SEQUENCE pg_temp.s", {}, P::TempTable},
    {"CREATE VIEW pg_temp.v AS SELECT 1", {}, P::TempTable},
    {"CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", {}, P::TempTable, {}, false, LEXER_ONLY},
    {"CREATE DOMAIN pg_temp.d AS int", {}, P::TempTable, {}, false, LEXER_ONLY},
    {"INSERT INTO pg_temp.t VALUES (1)", {}, P::TempTable, {}, false, LEXER_ONLY},
    {"CREATE TABLE U&\"pg\\005ftemp\".t (a int)", {}, P::TempTable},
    {"CREATE TABLE pg_tempo.t (a int)", {}},
    {"CREATE TABLE pg_temp_x.t (a int)", {}},
    {"CREATE TABLE \"PG_TEMP\".t (a int)", {}},  // quoted: another schema
    {"SELECT 'pg_temp.t'", {}},
    {"SET search_path = pg_temp, public", {E::Set}, P::TempTable, {}, false, LEXER_ONLY},
    {"SET SESSION search_path TO 'PG_TEMP'", {E::Set}, P::TempTable, {}, false, LEXER_ONLY},
    {"SET \"search_path\" = pg_temp, public", {E::Set}, P::TempTable, {}, false, LEXER_ONLY},
    {"SET \"SEARCH_PATH\" = pg_temp", {E::Set}, P::TempTable, {}, false, LEXER_ONLY},  // names ignore case
    {"SET search_path = public", {E::Set}},
    {"SET application_name = 'pg_temp'", {E::Set}},
    {"SELECT set_config('search_path', 'pg_temp, public', false)", {E::SetConfig}, P::TempTable, {}, WF, LEXER_ONLY},
    {"SELECT set_config('application_name', 'pg_temp_loader', false)", {E::SetConfig}, P::None, {}, WF},
    {"SELECT pg_advisory_lock(1)", {}, P::AdvisoryLock, {}, WF},
    {"select PG_ADVISORY_LOCK(1)", {}, P::AdvisoryLock, {}, WF},
    {"SELECT pg_try_advisory_lock_shared(1)", {}, P::AdvisoryLock, {}, WF},
    {"INSERT INTO t SELECT pg_advisory_lock(1)", {}, P::AdvisoryLock, {}, WF},
    {"SELECT pg_advisory_xact_lock(1)", {}, P::None, {}, WF},
    {"SELECT pg_advisory_unlock(1)", {}, P::None, {}, WF},
    {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", {}, P::HoldCursor},
    {"DECLARE c CURSOR FOR SELECT 1", {}},
    // --- write functions and set_config: a session SET the classifier sees only when it is a constant ---
    {"SELECT nextval('s')", {}, P::None, {}, WF},
    {"SELECT 1", {}},
    {"SELECT set_config('search_path', 'a', false)", {E::SetConfig}, P::None, {}, WF},
    {"SELECT pg_catalog.set_config('search_path', 'a', false)", {E::SetConfig}, P::None, {}, WF},
    {"SELECT set_config('search_path', 'a', $1)", {E::SetConfig}, P::None, {}, WF},
    {"SELECT set_config('search_path', 'a', true)", {E::SetLocal}, P::None, {}, WF},  // as SET LOCAL
    {"SELECT set_config('TimeZone', 'UTC', true)", {E::SetLocal, E::SetLocalAnalysis}, P::None, {}, WF},
    {"SELECT set_config(n, 'UTC', true) FROM names", {E::SetLocal, E::SetLocalAnalysis}, P::None, {}, WF},
    {"UPDATE t SET a = set_config('x', 'y', true)", {E::SetConfig}, P::None, {}, WF, LEXER_ONLY},
    {"SELECT 'set_config(1)', 'SET x = 1'", {}},
    // --- multi-statement strings: every statement counts; a parameter only for a single one ---
    {"SET a = 1; SET b = 2", {E::Set}},
    {"SELECT 1; set search_path = x", {E::Set}},
    {"INSERT INTO t VALUES (1);RESET ALL", {E::ResetAll}},
    {"RESET a; RESET b", {E::Reset}},
    {"SHOW a; SHOW b", {E::Show}},
    {"SET LOCAL a = 1; SELECT 1", {E::SetLocal}},
    {"SELECT 1; SET LOCAL TimeZone = 'UTC'", {E::SetLocal, E::SetLocalAnalysis}},
    {"DEALLOCATE ALL; SELECT 1", {E::DeallocateAll}},
    {"PREPARE p AS SELECT 1; EXECUTE p", {E::Prepare}},
    {"SELECT 1; LISTEN ch", {E::Listen}, P::Listen},
    {"BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT", {}, P::HoldCursor},
    {"CREATE TEMP TABLE t (a int); SELECT pg_advisory_lock(1)", {}, P::TempTable, {}, WF},
    {"SELECT offset_value FROM settings; SELECT 2", {}},
    {"INSERT INTO resets VALUES (1); SELECT 1", {}},
    {"SELECT 1 /* ; SET x = 1 */; SELECT 2", {}},
    {"SELECT $$; RESET ALL; $$; SELECT 2", {}},
};

SessionEffects effects_of(std::initializer_list<SessionEffect> list) {
  SessionEffects effects;
  for (SessionEffect e : list) effects.add(e);
  return effects;
}

std::string effects_text(const SessionEffects& effects) {
  std::string text;
  for (unsigned i = 0; i < static_cast<unsigned>(SessionEffect::Count); ++i) {
    if (!effects.has(static_cast<SessionEffect>(i))) continue;
    if (!text.empty()) text += ", ";
    text += to_string(static_cast<SessionEffect>(i));
  }
  return text;
}

void check_facts(const Case& c, const Classification& got) {
  CAPTURE(got.reason);
  CHECK(effects_text(got.effects) == effects_text(effects_of(c.effects)));
  CHECK(std::string(to_string(got.pin_reason)) == to_string(c.pin));
  CHECK(got.write_function == c.write_function);
}

}  // namespace

TEST_CASE("session facts table: through the classifier") {
  Classifier classifier;
  for (const Case& c : kCases) {
    CAPTURE(c.sql);
    check_facts(c, classifier.classify(c.sql));
    CHECK(classifier.reset_parameter(c.sql) == c.parameter);
  }
}

TEST_CASE("session facts table: the parser path agrees") {
  Classifier classifier;
  for (const Case& c : kCases) {
    if (!c.parser_agrees) continue;
    CAPTURE(c.sql);
    check_facts(c, pgmux::routing::classify_parsed(c.sql, classifier));
  }
}

TEST_CASE("what may change a session: everything but SHOW and transaction-scoped SETs") {
  Classifier classifier;
  auto changes = [&](std::string_view sql) { return classifier.classify(sql).effects.may_change_session(); };
  CHECK(changes("SET a = 1"));
  CHECK(changes("RESET ALL"));
  CHECK(changes("DISCARD TEMP"));
  CHECK(changes("PREPARE p AS SELECT 1"));
  CHECK(changes("DEALLOCATE p"));
  CHECK(changes("UNLISTEN *"));
  CHECK(changes("LOAD 'x'"));
  CHECK(changes("SELECT set_config('a', 'b', false)"));
  CHECK(changes("SELECT 1; SET a = 1"));
  CHECK_FALSE(changes("SHOW a"));
  CHECK_FALSE(changes("SET LOCAL a = 1"));
  CHECK_FALSE(changes("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  CHECK_FALSE(changes("SELECT set_config('a', 'b', true)"));
  CHECK_FALSE(changes("SELECT 1; SELECT 2"));
  CHECK_FALSE(changes("CREATE TEMP TABLE t (a int)"));  // pins instead
}

TEST_CASE("over-long parameter names are cut as the server cuts identifiers; what still does not fit is empty") {
  Classifier classifier;
  const std::string part(70, 'a');
  const std::string cut(63, 'a');
  for (const std::string& sql : {"RESET " + part, "RESET \"" + part + "\""}) {
    CAPTURE(sql);
    CHECK(classifier.reset_parameter(sql) == cut);
  }
  const std::string dotted = "RESET " + part + "." + part;
  CHECK(classifier.reset_parameter(dotted).empty());
  CHECK(classifier.classify(dotted).effects.has(SessionEffect::Reset));
}

TEST_CASE("facts come back the same from the cache") {
  Classifier classifier;
  const std::string_view sql = "WITH x AS (SELECT pg_advisory_lock(1), set_config('a', 'b', false)) SELECT * FROM x";
  const Classification first = classifier.classify(sql);
  const Classification second = classifier.classify(sql);
  CHECK(classifier.parser_calls() == 1);
  CHECK(classifier.cache_hits() == 1);
  CHECK(second.pin_reason == PinReason::AdvisoryLock);
  CHECK(second.effects == first.effects);
  CHECK(second.effects.has(SessionEffect::SetConfig));
  CHECK(second.write_function);
}

TEST_CASE("facts of an extended batch add up: pins, effects and hints hold whichever statement decides") {
  Classifier classifier;
  Classification batch = classifier.classify("INSERT INTO t VALUES (1)");
  batch.add_facts(classifier.classify("/* pgmux:primary */ DEALLOCATE ALL"));
  batch.add_facts(classifier.classify("LISTEN ch"));
  batch.add_facts(classifier.classify("CREATE TEMP TABLE t (a int)"));
  CHECK(std::string_view(batch.reason) == "INSERT");
  CHECK(batch.primary_hint);
  CHECK(batch.pin_reason == PinReason::Listen);  // the first pin stays
  CHECK(batch.effects.has(SessionEffect::DeallocateAll));
  CHECK(batch.effects.has(SessionEffect::Listen));
}

TEST_CASE("an UPDATE of pg_settings sets parameters as set_config does; reading the view does not") {
  Classifier classifier;
  for (const char* sql : {"UPDATE pg_settings SET setting = '7MB' WHERE name = 'work_mem'",
                          "update ONLY pg_catalog.\"pg_settings\" set setting = 'on' where name = 'enable_seqscan'",
                          "WITH s AS (UPDATE pg_settings SET setting = '1' WHERE name = 'x.y' RETURNING 1) "
                          "SELECT * FROM s"}) {
    CAPTURE(sql);
    CHECK(classifier.classify(sql).effects.has(SessionEffect::SetConfig));
    CHECK(pgmux::routing::classify_parsed(sql, classifier).effects.has(SessionEffect::SetConfig));
  }
  for (const char* sql : {"SELECT setting FROM pg_settings WHERE name = 'work_mem'",
                          "SELECT * FROM pg_catalog.pg_settings FOR UPDATE",
                          "UPDATE t SET a = (SELECT setting FROM pg_settings WHERE name = 'work_mem')",
                          "UPDATE app.pg_settings SET setting = '1'"}) {
    CAPTURE(sql);
    CHECK_FALSE(pgmux::routing::classify_parsed(sql, classifier).effects.has(SessionEffect::SetConfig));
  }
  CHECK_FALSE(classifier.classify("SELECT setting FROM pg_settings WHERE name = 'work_mem'").effects.has(
      SessionEffect::SetConfig));
  for (const char* sql : {"UPDATE t SET a = (SELECT setting FROM pg_settings WHERE name = 'work_mem')",
                          "UPDATE app.pg_settings SET setting = '1'", "UPDATE t SET pg_settings = 1",
                          "UPDATE ONLY app.pg_settings SET setting = '1'"}) {
    CAPTURE(sql);
    CHECK_FALSE(classifier.classify(sql).effects.has(SessionEffect::SetConfig));
  }
}
