// Classifier behaviour beyond the table: the parser cache and its counters, configured write functions,
// the multi_statement / parsed flags, and that the fast path never reaches the parser.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "routing/classifier.hpp"
#include "routing/parse_classifier.hpp"
#include "routing/router.hpp"
#include "routing/statement_cache.hpp"

using pgmux::routing::Classification;
using pgmux::routing::Classifier;
using pgmux::routing::StatementCache;
using pgmux::routing::StatementKind;

namespace {
constexpr std::string_view kCte = "WITH x AS (SELECT 1) SELECT * FROM x";
constexpr std::string_view kCte2 = "WITH y AS (SELECT 2) SELECT * FROM y";
constexpr std::string_view kCte3 = "WITH z AS (SELECT 3) SELECT * FROM z";
}  // namespace

TEST_CASE("classifier: the same text twice runs the parser once") {
  Classifier c;
  CHECK(c.parser_calls() == 0);
  CHECK(c.cache_hits() == 0);
  const Classification first = c.classify(kCte);
  CHECK(c.parser_calls() == 1);
  CHECK(c.cache_hits() == 0);
  const Classification second = c.classify(kCte);
  CHECK(c.parser_calls() == 1);
  CHECK(c.cache_hits() == 1);
  CHECK(first.kind == StatementKind::Read);
  CHECK(second.kind == first.kind);
  CHECK(std::string_view(second.reason) == first.reason);
  CHECK(first.parsed);
  CHECK(second.parsed);
  // A different text (even by one character) is a different entry.
  c.classify(std::string(kCte) + " ");
  CHECK(c.parser_calls() == 2);
}

TEST_CASE("classifier: the cache is keyed by text, not by the caller's buffer") {
  Classifier c;
  std::string buf(kCte);
  c.classify(buf);
  buf.assign(kCte2);  // the first text's storage is reused for another statement
  CHECK(c.classify(buf).kind == StatementKind::Read);
  CHECK(c.parser_calls() == 2);
  CHECK(c.classify(std::string(kCte)).kind == StatementKind::Read);
  CHECK(c.cache_hits() == 1);
}

TEST_CASE("classifier: the cache is least-recently-used with the configured capacity") {
  Classifier c({}, 2);
  c.classify(kCte);   // parse 1: [x]
  c.classify(kCte2);  // parse 2: [y x]
  c.classify(kCte);   // hit:     [x y]
  c.classify(kCte3);  // parse 3: [z x], y evicted
  CHECK(c.parser_calls() == 3);
  CHECK(c.cache_hits() == 1);
  c.classify(kCte);  // still cached
  CHECK(c.cache_hits() == 2);
  c.classify(kCte2);  // evicted: parsed again
  CHECK(c.parser_calls() == 4);
}

TEST_CASE("classifier: capacity 0 disables the cache") {
  Classifier c({}, 0);
  c.classify(kCte);
  c.classify(kCte);
  CHECK(c.parser_calls() == 2);
  CHECK(c.cache_hits() == 0);
}

TEST_CASE("classifier: the fast path settles common statements without the parser") {
  Classifier c;
  for (std::string_view sql : {"SELECT * FROM t WHERE id = $1", "select a, b from t order by a limit 10",
                               "INSERT INTO t VALUES ($1, $2)", "UPDATE t SET a = $1 WHERE id = $2",
                               "DELETE FROM t WHERE id = $1", "BEGIN", "BEGIN READ ONLY", "COMMIT", "ROLLBACK",
                               "SET search_path = app", "SHOW server_version", "SELECT 1; SELECT 2",
                               "/* pgmux:primary */ SELECT 1", "CREATE TEMP TABLE t (a int)", ""}) {
    CAPTURE(sql);
    const Classification r = c.classify(sql);
    CHECK_FALSE(r.parsed);
  }
  CHECK(c.parser_calls() == 0);
  CHECK(c.cache_hits() == 0);
}

TEST_CASE("classifier: statements the lexer can't settle go to the parser and say so") {
  Classifier c;
  for (std::string_view sql : {"SELECT * FROM t FOR UPDATE", "SELECT 1 INTO x", "SELECT nextval('s')",
                               "WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", "EXPLAIN ANALYZE SELECT 1",
                               "COPY (SELECT 1) TO STDOUT", "(SELECT 1)"}) {
    CAPTURE(sql);
    CHECK(c.classify(sql).parsed);
  }
  CHECK(c.parser_calls() == 7);
}

TEST_CASE("classifier: BEGIN READ WRITE is marked, by the lexer and by the parser") {
  Classifier c;
  for (const char* sql : {"BEGIN READ WRITE", "START TRANSACTION READ WRITE",
                          "begin isolation level serializable, read write", "BEGIN READ ONLY, READ WRITE"}) {
    CAPTURE(sql);
    const Classification r = c.classify(sql);
    CHECK(r.kind == StatementKind::TxBegin);
    CHECK(r.read_write);
    CHECK_FALSE(r.read_only);
  }
  for (const char* sql : {"BEGIN", "BEGIN READ ONLY", "START TRANSACTION"}) {
    CAPTURE(sql);
    CHECK_FALSE(c.classify(sql).read_write);
  }
  // PostgreSQL sets the modes in order, and a standby refuses READ WRITE even when READ ONLY comes after it: such a
  // block stays off standbys, in both paths (the parser's for the option list in a comment's company).
  for (const char* sql : {"BEGIN READ WRITE, READ ONLY", "BEGIN /* x */ READ WRITE READ ONLY",
                          "SET TRANSACTION READ WRITE, READ ONLY",
                          "SET TRANSACTION READ ONLY; SET TRANSACTION READ WRITE"}) {
    CAPTURE(sql);
    const Classification r = c.classify(sql);
    CHECK(r.read_write);
    CHECK_FALSE(pgmux::routing::is_read_only_statement(r, pgmux::routing::ClientRouteState{}));
  }
  // The parser's answer for an option list the lexer leaves to it.
  const Classification parsed = c.classify("BEGIN /* x */ ISOLATION LEVEL REPEATABLE READ READ WRITE");
  CHECK(parsed.kind == StatementKind::TxBegin);
  CHECK(parsed.read_write);
}

// A SET of a transaction setting takes a deferred read-only BEGIN to the primary (value unread), by either path.
TEST_CASE("classifier: a SET of transaction_read_only, _isolation or _deferrable is marked read_write") {
  Classifier c;
  for (const char* sql : {"SET transaction_read_only = off", "set local TRANSACTION_READ_ONLY to on",
                          "SET SESSION transaction_isolation = 'serializable'", "SET transaction_deferrable TO true"}) {
    CAPTURE(sql);
    const Classification r = c.classify(sql);
    CHECK(r.kind == StatementKind::Session);
    CHECK(r.read_write);
    CHECK(pgmux::routing::classify_parsed(sql, c).read_write);
  }
  for (const char* sql : {"SET default_transaction_read_only = off",
                          "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "SET statement_timeout = 0"}) {
    CAPTURE(sql);
    CHECK_FALSE(c.classify(sql).read_write);
    CHECK_FALSE(pgmux::routing::classify_parsed(sql, c).read_write);
  }
}

// Allowed in a read-only transaction, refused during recovery: a read-only block starting so runs on the primary.
TEST_CASE("classifier: the commands a standby refuses in a read-only block") {
  Classifier c;
  for (const char* sql : {"NOTIFY ch", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock t", "ANALYZE t", "ANALYSE",
                          "CLUSTER t", "REINDEX TABLE t", "VACUUM t", "NOTIFY ch; SELECT 1"}) {
    CAPTURE(sql);
    CHECK(pgmux::routing::refused_during_recovery(c.classify(sql)));
  }
  for (const char* sql : {"SELECT 1", "INSERT INTO t VALUES (1)", "DECLARE c CURSOR FOR SELECT 1", "SHOW x",
                          "SELECT pg_notify('ch', 'x')"}) {
    CAPTURE(sql);
    CHECK_FALSE(pgmux::routing::refused_during_recovery(c.classify(sql)));
  }
}

TEST_CASE("classifier: the isolation level asked for, by the lexer and by the parser") {
  using pgmux::routing::Isolation;
  Classifier c;
  // Both paths: the lexer's (classify) and the parser's, which must agree.
  const auto isolation_of = [&](const char* sql) {
    const Isolation parsed = pgmux::routing::classify_parsed(sql, c).isolation;
    const Isolation lexed = c.classify(sql).isolation;
    CHECK(parsed == lexed);
    return lexed;
  };
  for (const char* sql : {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", "start transaction read only, isolation "
                          "level serializable", "BEGIN /* x */ ISOLATION LEVEL SERIALIZABLE READ ONLY",
                          "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
                          "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                          "SET SESSION CHARACTERISTICS /* x */ AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                          "SET default_transaction_isolation = 'serializable'",
                          "SET SESSION default_transaction_isolation TO SERIALIZABLE",
                          "set default_transaction_isolation to 'SERIALIZABLE'",
                          "SET default_transaction_isolation /* x */ = 'serializable'",
                          "SET default_transaction_isolation = E'serializable'",
                          "SET default_transaction_isolation = $$serializable$$",
                          "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; SELECT 1"}) {
    CAPTURE(sql);
    CHECK(isolation_of(sql) == Isolation::Serializable);
  }
  for (const char* sql : {"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                          "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                          "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                          "SET default_transaction_isolation = 'repeatable read'",
                          "SET default_transaction_isolation /* x */ = 'read committed'"}) {
    CAPTURE(sql);
    CHECK(isolation_of(sql) == Isolation::Other);
  }
  // No level asked for: the session's default stands (RESET and TO DEFAULT say so by their parameter).
  for (const char* sql : {"BEGIN", "BEGIN READ ONLY", "SET TRANSACTION READ ONLY", "SELECT 'serializable'",
                          "SET search_path = serializable", "RESET default_transaction_isolation",
                          "SET default_transaction_isolation TO DEFAULT", "SET LOCAL default_transaction_isolation "
                          "= 'serializable'"}) {
    CAPTURE(sql);
    CHECK(isolation_of(sql) == Isolation::Unchanged);
  }
}

// A snapshot pg_export_snapshot() made (on the primary: it is a write function's call there) can be imported only
// where it was exported: the block that imports it runs on the primary.
TEST_CASE("classifier: SET TRANSACTION SNAPSHOT asks for a read-write block, in both paths") {
  Classifier c;
  for (const char* sql : {"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", "set transaction /* x */ snapshot 'a'",
                          "SET TRANSACTION READ WRITE", "SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE"}) {
    CAPTURE(sql);
    CHECK(c.classify(sql).read_write);
    CHECK(pgmux::routing::classify_parsed(sql, c).read_write);
  }
  for (const char* sql : {"SET TRANSACTION READ ONLY", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"}) {
    CAPTURE(sql);
    CHECK_FALSE(c.classify(sql).read_write);
    CHECK_FALSE(pgmux::routing::classify_parsed(sql, c).read_write);
  }
}

TEST_CASE("classifier: a parse error is a write with reason unparsable") {
  Classifier c;
  const Classification r = c.classify("SELECT * FROM t WHERE (a = 1 FOR UPDATE");
  CHECK(r.kind == StatementKind::Write);
  CHECK(std::string_view(r.reason) == "unparsable");
  CHECK(r.parsed);
}

// Text pgmux cannot read as every server will (an encoding-dependent backslash, standard_conforming_strings =
// off): classified as PostgreSQL reads it by default, the reading of every session that changed neither, and marked
// unreadable: the session decides what else it may be (ClientConn::read_as_session_does).
TEST_CASE("classifier: ambiguous text is classified as read by default, and marked unreadable") {
  using pgmux::routing::PinReason;
  using pgmux::routing::SessionEffect;
  Classifier c;
  for (const char* hidden : {"select E'\x95\\'; set role r2; --'", "select 'a\\''; set role r2; --'"}) {
    CAPTURE(hidden);
    const Classification r = c.classify(hidden);  // one SELECT of a string by default
    CHECK(r.kind == StatementKind::Read);
    CHECK(r.unreadable);
    CHECK(r.effects.empty());
  }
  const Classification set = c.classify("SET search_path = a; SELECT replace(p, '\\', '/') FROM t");
  CHECK(set.unreadable);
  CHECK(set.effects.has(SessionEffect::Set));
  const Classification temp = c.classify("CREATE TEMP TABLE d AS SELECT 'C:\\' AS p");
  CHECK(temp.unreadable);
  CHECK(temp.pin_reason == PinReason::TempTable);
  const Classification read = c.classify("SELECT 'C:\\' || p FROM t");
  CHECK(read.unreadable);
  CHECK(read.kind == StatementKind::Read);
  // Text the server rejects: a write, unreadable only where the ambiguity came first.
  const Classification rejected = c.classify("SELECT 'x");
  CHECK(rejected.kind == StatementKind::Write);
  CHECK_FALSE(rejected.unreadable);
  const Classification both = c.classify("SELECT 'C:\\'; SELECT 'x");
  CHECK(both.kind == StatementKind::Write);
  CHECK(both.unreadable);
}

TEST_CASE("classifier: reasons name the rule") {
  Classifier c;
  CHECK(std::string_view(c.classify("INSERT INTO t VALUES (1)").reason) == "INSERT");
  CHECK(std::string_view(c.classify("SELECT * FROM t FOR SHARE").reason) == "FOR UPDATE/SHARE");
  CHECK(std::string_view(c.classify("SELECT nextval('s')").reason) == "write function");
  CHECK(std::string_view(c.classify("SELECT 1 INTO t").reason) == "SELECT INTO");
  CHECK(std::string_view(c.classify("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1").reason) == "data-modifying CTE");
  CHECK(std::string_view(c.classify("EXPLAIN ANALYZE DELETE FROM t").reason) == "EXPLAIN ANALYZE of a write");
  CHECK(std::string_view(c.classify("FOO").reason) == "unrecognised statement");
  CHECK(std::string_view(c.classify("SELECT 'x").reason) == "unterminated quoted string");
  CHECK(std::string_view(c.classify("SELECT 1").reason) == "SELECT");
}

TEST_CASE("classifier: multi_statement counts non-empty statements") {
  Classifier c;
  CHECK_FALSE(c.classify("SELECT 1").multi_statement);
  CHECK_FALSE(c.classify("SELECT 1;").multi_statement);
  CHECK_FALSE(c.classify(";; SELECT 1 ;; -- x").multi_statement);
  CHECK(c.classify("SELECT 1; SELECT 2").multi_statement);
  CHECK(c.classify("SELECT 1; INSERT INTO t VALUES (1)").multi_statement);
  CHECK(c.classify("SELECT 1; WITH x AS (SELECT 1) SELECT * FROM x").multi_statement);  // parser path
  const Classification r = c.classify("SELECT 1; DELETE FROM t; SELECT 2");
  CHECK(r.kind == StatementKind::Write);
  CHECK(std::string_view(r.reason) == "DELETE");
}

TEST_CASE("classifier: configured write functions") {
  Classifier plain;
  CHECK(plain.classify("SELECT audit_log('x')").kind == StatementKind::Read);

  Classifier c({"audit_log", "Bump_Counter"});
  CHECK(c.classify("SELECT audit_log('x')").kind == StatementKind::Write);
  CHECK(c.classify("SELECT AUDIT_LOG('x')").kind == StatementKind::Write);
  CHECK(c.classify("SELECT app.audit_log('x')").kind == StatementKind::Write);
  CHECK(c.classify("SELECT bump_counter()").kind == StatementKind::Write);  // configured names are lowercased
  CHECK(c.classify("SELECT * FROM t WHERE a = audit_log(b)").kind == StatementKind::Write);
  CHECK(c.classify("WITH x AS (SELECT audit_log(1)) SELECT * FROM x").kind == StatementKind::Write);
  CHECK(c.classify("SELECT audit_log").kind == StatementKind::Read);  // a column, not a call
  CHECK(c.classify("SELECT 'audit_log(1)'").kind == StatementKind::Read);
  CHECK(c.classify("EXPLAIN SELECT audit_log(1)").kind == StatementKind::Read);
  CHECK(c.classify("EXPLAIN ANALYZE SELECT audit_log(1)").kind == StatementKind::Write);
  CHECK(std::string_view(c.classify("SELECT audit_log(1)").reason) == "write function");

  bool session_lock = false;
  CHECK(c.is_write_function("audit_log", &session_lock));
  CHECK_FALSE(session_lock);
  CHECK(c.is_write_function("nextval"));
  CHECK(c.is_write_function("currval"));  // reads the session's nextval, which ran on the primary
  CHECK(c.is_write_function("lastval"));
  CHECK_FALSE(c.is_write_function("now"));
  CHECK(c.is_write_function("pg_advisory_lock", &session_lock));
  CHECK(session_lock);
  session_lock = false;
  CHECK(c.is_write_function("pg_advisory_xact_lock", &session_lock));
  CHECK_FALSE(session_lock);
}

TEST_CASE("classifier: the hint survives the cache") {
  Classifier c;
  const std::string_view hinted = "/* pgmux:primary */ WITH x AS (SELECT 1) SELECT * FROM x";
  CHECK(c.classify(hinted).primary_hint);
  CHECK(c.classify(hinted).primary_hint);
  CHECK(c.cache_hits() == 1);
  CHECK_FALSE(c.classify(kCte).primary_hint);
}

TEST_CASE("statement cache: find, insert, evict, update") {
  StatementCache<int> cache(2);
  CHECK(cache.find("a") == nullptr);
  cache.insert("a", 1);
  cache.insert("b", 2);
  REQUIRE(cache.find("a") != nullptr);
  CHECK(*cache.find("a") == 1);
  cache.insert("c", 3);  // b is the least recently used
  CHECK(cache.find("b") == nullptr);
  CHECK(cache.size() == 2);
  cache.insert("a", 10);  // update in place
  CHECK(*cache.find("a") == 10);
  CHECK(cache.size() == 2);
  StatementCache<int> off(0);
  off.insert("a", 1);
  CHECK(off.find("a") == nullptr);
  CHECK(off.size() == 0);
}

TEST_CASE("to_string(StatementKind)") {
  CHECK(std::string_view(to_string(StatementKind::Read)) == "read");
  CHECK(std::string_view(to_string(StatementKind::Write)) == "write");
  CHECK(std::string_view(to_string(StatementKind::Session)) == "session");
  CHECK(std::string_view(to_string(StatementKind::TxBegin)) == "tx_begin");
  CHECK(std::string_view(to_string(StatementKind::TxEnd)) == "tx_end");
  CHECK(std::string_view(to_string(StatementKind::Empty)) == "empty");
}

TEST_CASE("classifier: absurdly nested statements are writes, not crashes") {
  Classifier c;
  std::string deep = "WITH x AS (SELECT ";
  for (int i = 0; i < 1000; ++i) deep += "ARRAY[";
  deep += "1";
  for (int i = 0; i < 1000; ++i) deep += "]";
  deep += ") SELECT * FROM x";
  const Classification r = c.classify(deep);
  CHECK(r.kind == StatementKind::Write);
  std::string parens = "SELECT ";
  for (int i = 0; i < 100000; ++i) parens += "(";
  parens += "1";
  for (int i = 0; i < 100000; ++i) parens += ")";
  CHECK(c.classify(parens).kind == StatementKind::Read);  // the lexer needs no stack
  CHECK(c.classify("WITH x AS (" + parens.substr(0, 100000) + ") SELECT 1").kind == StatementKind::Write);
}

TEST_CASE("classifier: a statement that may start COPY FROM STDIN is marked, also among others") {
  Classifier c;
  for (const char* sql : {"COPY t FROM STDIN", "copy t (a, b) from stdin with (format csv)", "COPY t FROM '/tmp/f'",
                          "SELECT 1; COPY t FROM STDIN"}) {
    CAPTURE(std::string(sql));
    CHECK(c.classify(sql).copy_in);
  }
  for (const char* sql : {"COPY t TO STDOUT", "COPY (SELECT 1) TO STDOUT", "SELECT 'COPY t FROM STDIN'",
                          "INSERT INTO t SELECT 1"}) {
    CAPTURE(std::string(sql));
    CHECK_FALSE(c.classify(sql).copy_in);
  }
}

TEST_CASE("classifier: a FunctionCall is a write; one of a function other than the large-object ones pins") {
  for (uint32_t large_object : {952u, 954u, 955u, 957u, 964u}) {  // lo_open, loread, lowrite, lo_creat, lo_unlink
    CAPTURE(large_object);
    const Classification c = pgmux::routing::classify_function_call(large_object);
    CHECK(c.kind == StatementKind::Write);
    CHECK(c.pin_reason == pgmux::routing::PinReason::None);
    CHECK(c.effects.empty());
  }
  for (uint32_t other : {2078u, 2880u, 0u}) {  // set_config, pg_advisory_lock(bigint), a message too short
    CAPTURE(other);
    const Classification c = pgmux::routing::classify_function_call(other);
    CHECK(c.kind == StatementKind::Write);
    CHECK(c.pin_reason == pgmux::routing::PinReason::UnknownSessionState);
    CHECK(c.effects.has(pgmux::routing::SessionEffect::Opaque));
  }
}
