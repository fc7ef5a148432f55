// The classification table: every rule and every lexical trick, checked through Classifier::classify
// and, where the text is valid SQL, also straight through the parser path (both must agree).
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "routing/classifier.hpp"
#include "routing/parse_classifier.hpp"

namespace {

using pgmux::routing::Classification;
using pgmux::routing::Classifier;
using pgmux::routing::StatementKind;

constexpr StatementKind R = StatementKind::Read;
constexpr StatementKind W = StatementKind::Write;
constexpr StatementKind S = StatementKind::Session;
constexpr StatementKind B = StatementKind::TxBegin;
constexpr StatementKind E = StatementKind::TxEnd;
constexpr StatementKind X = StatementKind::Empty;

struct Case {
  std::string_view sql;
  StatementKind kind;
  bool read_only = false;
  bool pins = false;
  bool hint = false;
  bool parser_agrees = true;  // false where only the lexer can see the trick (e.g. backslash ambiguity)
};

constexpr bool RO = true;
constexpr bool PIN = true;
constexpr bool HINT = true;

const Case kCases[] = {
    // --- plain reads, odd casing and whitespace ---
    {"SELECT 1", R},
    {"select * from t", R},
    {"SeLeCt * FrOm t WHERE id = $1", R},
    {"  \n\tSELECT 1  ", R},
    {"SELECT 1 AS x\r\n", R},
    {"SELECT\tinsert_col FROM t", R},
    {"SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1", R},
    {"SELECT now(), current_timestamp", R},
    {"SELECT currval('s')", W},  // what nextval did in this session: the primary knows
    {"SELECT lastval()", W},
    {"SELECT txid_current_if_assigned()", R},
    {"SELECT pg_is_in_recovery()", R},
    {"SELECT my_func(1)", R},  // unknown functions are reads unless configured (documented limit)
    {"SELECT * FROM t WHERE a IN (SELECT b FROM u)", R},
    {"SELECT a FROM t UNION ALL SELECT b FROM u", R},
    {"SELECT * FROM t WHERE id = ANY($1::int[])", R},
    {"SELECT x::numeric(10,2) FROM t", R},
    {"SELECT n.nspname FROM pg_catalog.pg_namespace n", R},
    {"SELECT * FROM t TABLESAMPLE SYSTEM (10)", R},
    {"SELECT 1e5, .5, 1.5e-3", R},
    {"SELECT $1, $2", R},
    {"SELECT a$b FROM t", R},
    {"VALUES (1), (2)", R},
    {"TABLE t", R},
    {"(SELECT 1) UNION (SELECT 2)", R},
    {"SELECT 1;", R},
    {"SELECT 1; SELECT 2", R},
    {"SELECT 1;;; SELECT 2;", R},
    {"SELECT 1 /**/;/**/ SELECT 2", R},
    // --- strings, identifiers and comments that must not fool it ---
    {"SELECT 'INSERT'", R},
    {"SELECT 'it''s; DELETE FROM t'", R},
    {"SELECT 1 FROM t WHERE a = 'FOR UPDATE'", R},
    {"SELECT 'nextval(1)'", R},
    {"SELECT \"update\" FROM t", R},
    {"SELECT \"insert\", \"delete\" FROM \"select\"", R},
    {"SELECT \"for\", \"into\" FROM t", R},
    {"SELECT 1 AS \"with\"", R},
    {"SELECT \"FOR\" FROM t", R},
    {"SELECT * FROM \"Weird \"\"Name\"\"\"", R},
    {"SELECT U&\"d\\0061t\" FROM t", R},
    {"SELECT t.nextval FROM t", R},
    {"SELECT \"NEXTVAL\"('s')", R},  // quoted: a different (case-sensitive) name
    {"SELECT * FROM t AS setval(a)", R},  // an alias with column list, not a call: the parser tells
    {"SELECT $$ DELETE $$", R},
    {"SELECT $$FOR UPDATE$$", R},
    {"SELECT $tag$ ; DROP TABLE t; $tag$", R},
    {"SELECT $a$ $b$ ; DELETE $b$ $a$", R},
    {"SELECT $x$a$$b$x$", R},
    {"SELECT 'a' || $q$ ' $q$ || 'b'", R},
    {"SELECT E'\\' ; DELETE FROM t; \\''", R},
    {"SELECT e'it\\'s'", R},
    {"SELECT 'a\\b'", R},
    {"SELECT U&'\\0041'", R},
    {"SELECT B'0101', X'ff'", R},
    {"SELECT 1 -- ; DELETE FROM t", R},
    {"SELECT * FROM t -- FOR UPDATE", R},
    {"SELECT * FROM t /* FOR UPDATE */", R},
    {"SELECT 1 /* ; DELETE FROM t */", R},
    {"SELECT 1 /* outer /* inner */ ; DELETE FROM t */", R},
    {"/* leading */ SELECT 1", R},
    {"-- c\nSELECT 1", R},
    {"SELECT 1 +-- comment\n 2", R},
    // --- reads the parser settles ---
    {"WITH x AS (SELECT 1) SELECT * FROM x", R},
    {"WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", R},
    {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", R},
    {"SELECT substring('abc' FROM 1 FOR 2)", R},
    {"SELECT * FROM generate_series(1, 3) WITH ORDINALITY", R},
    {"EXPLAIN SELECT 1", R},
    {"EXPLAIN INSERT INTO t VALUES (1)", R},  // plain EXPLAIN does not execute
    {"EXPLAIN (COSTS OFF) DELETE FROM t", R},
    {"explain select nextval('s')", R},
    {"EXPLAIN ANALYZE SELECT 1", R},
    {"EXPLAIN (ANALYZE false) INSERT INTO t VALUES (1)", R},
    {"EXPLAIN (ANALYZE off, VERBOSE) UPDATE t SET a = 1", R},
    {"EXPLAIN (ANALYZE 0) DELETE FROM t", R},
    {"COPY t TO STDOUT", R},
    {"COPY t (a, b) TO STDOUT WITH (FORMAT csv)", R},
    {"COPY (SELECT * FROM t) TO STDOUT", R},
    // --- DML ---
    {"INSERT INTO t VALUES (1)", W},
    {"insert into t select * from u", W},
    {"UPDATE t SET a = 1", W},
    {"DELETE FROM t", W},
    {"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", W},
    {"  /* c */ update t set a=1", W},
    {"INSERT INTO t SELECT pg_advisory_lock(1)", W, false, PIN},
    // --- DDL and utility ---
    {"CREATE TABLE t (a int)", W},
    {"CREATE INDEX CONCURRENTLY i ON t (a)", W},
    {"ALTER TABLE t ADD COLUMN b int", W},
    {"DROP TABLE t", W},
    {"TRUNCATE t", W},
    {"GRANT SELECT ON t TO u", W},
    {"REVOKE ALL ON t FROM u", W},
    {"COMMENT ON TABLE t IS 'x'", W},
    {"CREATE VIEW v AS SELECT 1", W},
    {"CREATE MATERIALIZED VIEW mv AS SELECT 1", W},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", W},
    {"CREATE OR REPLACE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql", W},
    {"CREATE SCHEMA s", W},
    {"CREATE EXTENSION IF NOT EXISTS hstore", W},
    {"CREATE TABLE t2 AS SELECT 1", W},
    {"CREATE SEQUENCE s", W},
    {"ALTER SEQUENCE s RESTART", W},
    {"CREATE UNLOGGED TABLE ut (a int)", W},
    {"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); DELETE FROM v)", W},
    {"IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y", W},
    {"SECURITY LABEL ON TABLE t IS 'x'", W},
    {"COPY t FROM STDIN", W},
    {"COPY t (a, b) FROM STDIN WITH (FORMAT csv)", W},
    {"copy t from '/tmp/x'", W},
    {"COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", W},
    {"CALL p(1)", W},
    {"DO $$ BEGIN PERFORM 1; END $$", W},
    {"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", W},
    {"VACUUM t", W},
    {"VACUUM (ANALYZE) t", W},
    {"ANALYZE t", W},
    {"analyse", W},
    {"REFRESH MATERIALIZED VIEW mv", W},
    {"CLUSTER t USING i", W},
    {"REINDEX TABLE t", W},
    {"CHECKPOINT", W},
    {"NOTIFY ch, 'x'", W},
    // --- locking clauses, SELECT INTO, data-modifying CTEs ---
    {"SELECT * FROM t FOR UPDATE", W},
    {"SELECT * FROM t FOR SHARE", W},
    {"SELECT * FROM t FOR NO KEY UPDATE", W},
    {"SELECT * FROM t FOR KEY SHARE", W},
    {"SELECT * FROM t FOR UPDATE SKIP LOCKED", W},
    {"SELECT * FROM t FOR UPDATE OF t NOWAIT", W},
    {"select * from t for update", W},
    {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W},
    {"SELECT * INTO t2 FROM t", W},
    {"SELECT 1 INTO TEMP t3", W, false, PIN},
    {"SELECT * INTO TEMPORARY TABLE t4 FROM t", W, false, PIN},
    {"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", W},
    {"WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i", W},
    {"WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u", W},
    {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W},
    {"WITH x AS (SELECT 1) DELETE FROM t", W},
    {"WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING 1) SELECT * FROM a", W},
    {"with x as (select nextval('s')) select * from x", W},
    // --- write functions ---
    {"SELECT nextval('s')", W},
    {"SELECT NEXTVAL('s')", W},
    {"SELECT pg_catalog.nextval('s')", W},
    {"SELECT \"nextval\"('s')", W},
    {"SELECT setval('s', 10)", W},
    {"SELECT id, nextval('s') FROM t", W},
    {"VALUES (nextval('s'))", W},
    {"SELECT * FROM t WHERE id = nextval('s')", W},
    {"SELECT pg_advisory_lock(1)", W, false, PIN},
    {"SELECT pg_try_advisory_lock(1)", W, false, PIN},
    {"SELECT pg_advisory_lock_shared(1)", W, false, PIN},
    {"SELECT pg_try_advisory_lock_shared(1, 2)", W, false, PIN},
    {"SELECT PG_ADVISORY_LOCK(1)", W, false, PIN},
    {"SELECT pg_advisory_xact_lock(1)", W},
    {"SELECT pg_try_advisory_xact_lock(1)", W},
    {"SELECT pg_advisory_xact_lock_shared(1)", W},
    {"SELECT pg_advisory_unlock(1)", W},
    {"SELECT pg_advisory_unlock_all()", W},
    {"SELECT lo_create(0)", W},
    {"SELECT lo_import('/tmp/x')", W},
    {"SELECT lo_unlink(123)", W},
    {"SELECT lo_put(1, 0, 'x')", W},
    {"SELECT lo_from_bytea(0, 'x')", W},
    {"SELECT pg_notify('ch', 'x')", W},
    {"SELECT set_config('a.b', '1', false)", W},
    {"SELECT txid_current()", W},
    {"SELECT pg_current_xact_id()", W},
    {"SELECT pg_switch_wal()", W},
    {"SELECT pg_create_restore_point('x')", W},
    {"SELECT pg_terminate_backend(123)", W},
    {"SELECT pg_cancel_backend(123)", W},
    // --- the session's identity lives on its primary connection ---
    {"SELECT pg_backend_pid()", W},
    {"select PG_BACKEND_PID(), now()", W},
    {"SELECT * FROM pg_listening_channels()", W},
    // --- EXPLAIN ANALYZE runs the statement ---
    {"EXPLAIN ANALYZE INSERT INTO t VALUES (1)", W},
    {"EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", W},
    {"EXPLAIN (ANALYZE true) UPDATE t SET a = 1", W},
    {"EXPLAIN ANALYZE SELECT nextval('s')", W},
    {"EXPLAIN ANALYZE CREATE TABLE t5 AS SELECT 1", W},
    {"explain analyze verbose with d as (delete from t returning *) select * from d", W},
    // --- prepared statements, savepoints, cursors ---
    {"EXECUTE stmt1(1)", W},
    {"EXECUTE stmt1", W},
    {"SAVEPOINT a", W},
    {"RELEASE SAVEPOINT a", W},
    {"RELEASE a", W},
    {"ROLLBACK TO SAVEPOINT a", W},
    {"ROLLBACK TO a", W},
    {"ROLLBACK WORK TO SAVEPOINT a", W},
    {"DECLARE c CURSOR FOR SELECT 1", W},
    {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", W, false, PIN},
    {"DECLARE c BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t", W, false, PIN},
    {"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", W},
    {"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", W},
    {"FETCH NEXT FROM c", W},
    {"FETCH 10 c", W},
    {"MOVE NEXT IN c", W},
    {"CLOSE c", W},
    {"CLOSE ALL", W},
    // --- temporary objects pin the session ---
    {"CREATE TEMP TABLE tt (a int)", W, false, PIN},
    {"CREATE TEMPORARY TABLE tt (a int)", W, false, PIN},
    {"create local temp table tt (a int)", W, false, PIN},
    {"CREATE GLOBAL TEMPORARY TABLE tt (a int)", W, false, PIN},
    {"CREATE TEMP VIEW tv AS SELECT 1", W, false, PIN},
    {"CREATE OR REPLACE TEMP VIEW tv AS SELECT 1", W, false, PIN},
    {"CREATE TEMP SEQUENCE ts", W, false, PIN},
    {"CREATE TEMP TABLE tt AS SELECT 1", W, false, PIN},
    // --- multi-statement strings: any write => write ---
    {"SELECT 1; INSERT INTO t VALUES (1)", W},
    {"INSERT INTO t VALUES (1); SELECT 1", W},
    {"SELECT 'x;'; DELETE FROM t", W},
    {"SELECT 1 /* c */; UPDATE t SET a = 1 -- x", W},
    {"SELECT $$;$$; DELETE FROM t", W},
    {"SELECT E'\\\\'; DELETE FROM t", W},
    {"SELECT 1; SELECT nextval('s')", W},
    {"SELECT 1;\nWITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", W},
    {"SELECT 1; CREATE TEMP TABLE x (a int); SELECT 2", W, false, PIN},
    {"BEGIN; INSERT INTO t VALUES (1); COMMIT", W},
    {"SET a = 1; SELECT 1", W},
    {"SET a = 1; SET b = 2", S},
    {"BEGIN; SELECT 1; COMMIT", R},
    {"BEGIN; SELECT 1", B},
    {"BEGIN READ ONLY; SELECT 1", B, RO},
    {"SELECT 1; COMMIT", E},
    // --- not understood / broken: write ---
    {"FOO BAR", W},
    {"SELECT 'unterminated", W},
    {"SELECT 1 /* unterminated", W},
    {"SELECT \"unterminated", W},
    {"SELECT $$ unterminated", W},
    {"SELECT FROM WHERE (", W},
    {"SELECT (1; DELETE FROM t)", W},
    {"SELECT 1); DELETE FROM t", W},
    {"SELECT 'a\\'; DELETE FROM t; --'", W},
    // One string as PostgreSQL reads it by default (Classification::unreadable: a session with
    // standard_conforming_strings = off ends it early and runs the DELETE; ClientConn::read_as_session_does):
    {"SELECT 'a\\''; DELETE FROM t; --'", R, false, false, false, false},
    // --- session state ---
    {"SET search_path TO app, public", S},
    {"set statement_timeout = 1000", S},
    {"SET LOCAL lock_timeout = '1s'", S},
    {"SET SESSION AUTHORIZATION u", S},
    {"SET ROLE r", S},
    {"SET TIME ZONE 'UTC'", S},
    {"RESET ALL", S},
    {"RESET search_path", S},
    {"SHOW search_path", S},
    {"SHOW ALL", S},
    {"DISCARD ALL", S},
    {"DISCARD TEMP", S},
    {"PREPARE p1 AS SELECT 1", S},
    {"PREPARE p2 (int) AS INSERT INTO t VALUES ($1)", S},
    {"DEALLOCATE p1", S},
    {"DEALLOCATE ALL", S},
    {"DEALLOCATE PREPARE p1", S},
    {"LISTEN ch", S, false, PIN},
    {"UNLISTEN *", S},
    {"LOAD 'auto_explain'", S},
    {"SET TRANSACTION READ ONLY", S, RO},
    {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", S, RO},
    {"SET TRANSACTION READ WRITE", S},
    {"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", S},
    {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", S},  // the next transactions', not this one's
    {"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", S},
    // --- transaction control ---
    {"BEGIN", B},
    {"begin;", B},
    {"BEGIN WORK", B},
    {"BEGIN TRANSACTION", B},
    {"BEGIN READ ONLY", B, RO},
    {"BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", B, RO},
    {"BEGIN ISOLATION LEVEL READ COMMITTED", B},
    {"BEGIN READ WRITE", B},
    {"START TRANSACTION", B},
    {"START TRANSACTION READ ONLY", B, RO},
    {"start transaction isolation level serializable read only deferrable", B, RO},
    {"COMMIT", E},
    {"commit work", E},
    {"END", E},
    {"END TRANSACTION", E},
    {"ROLLBACK", E},
    {"ABORT", E},
    {"ROLLBACK WORK", E},
    {"COMMIT AND CHAIN", E},
    {"PREPARE TRANSACTION 'gid1'", E},
    {"COMMIT PREPARED 'gid1'", E},
    {"ROLLBACK PREPARED 'gid1'", E},
    // --- two-phase commands only the primary runs, also behind reads ---
    {"BEGIN; SELECT 1; PREPARE TRANSACTION 'gid1'", W},
    {"SELECT 1; COMMIT PREPARED 'gid1'", W},
    {"SELECT 1; ROLLBACK PREPARED 'gid1'", W},
    // --- empty ---
    {"", X},
    {"   ", X},
    {";", X},
    {" ; ; ", X},
    {"-- only a comment", X},
    {"/* block */", X},
    {"/* a /* nested */ b */ -- and more\n", X},
    // --- the primary hint ---
    {"/* pgmux:primary */ SELECT 1", R, false, false, HINT},
    {"SELECT 1 /* pgmux:primary */", R, false, false, HINT},
    {"SELECT /*pgmux:primary*/ * FROM t", R, false, false, HINT},
    {"-- pgmux:primary\nSELECT 1", R, false, false, HINT},
    {"/* PGMUX:PRIMARY */ SELECT 1", R, false, false, HINT},
    {"/* pgmux:primary */ WITH x AS (SELECT 1) SELECT * FROM x", R, false, false, HINT},
    {"/* pgmux:primary */ INSERT INTO t VALUES (1)", W, false, false, HINT},
    {"/* pgmux:primary */", X, false, false, HINT},
    {"SELECT '/* pgmux:primary */'", R},
    {"SELECT 'pgmux:primary'", R},
    {"SELECT $$ /* pgmux:primary */ $$", R},
};

}  // namespace

TEST_CASE("classifier table: kind, read_only, pins_primary, primary_hint") {
  Classifier classifier;
  size_t count = 0;
  for (const Case& c : kCases) {
    ++count;
    CAPTURE(c.sql);
    const Classification got = classifier.classify(c.sql);
    CAPTURE(got.reason);
    CHECK(std::string(to_string(got.kind)) == std::string(to_string(c.kind)));
    CHECK(got.read_only == c.read_only);
    CHECK(got.pins_primary() == c.pins);
    CHECK(got.primary_hint == c.hint);
    CHECK(got.reason != nullptr);
    if (got.kind == StatementKind::Write) CHECK(std::string_view(got.reason).size() > 0);
  }
  CHECK(count >= 150);
}

TEST_CASE("classifier table: the parser path agrees with the table") {
  Classifier classifier;
  for (const Case& c : kCases) {
    if (!c.parser_agrees) continue;
    CAPTURE(c.sql);
    const Classification got = pgmux::routing::classify_parsed(c.sql, classifier);
    CAPTURE(got.reason);
    CHECK(std::string(to_string(got.kind)) == std::string(to_string(c.kind)));
    CHECK(got.read_only == c.read_only);
    CHECK(got.pins_primary() == c.pins);
    CHECK(got.parsed);
  }
}
