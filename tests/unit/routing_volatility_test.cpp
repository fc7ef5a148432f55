// The classifier with a database's function catalog: a read that calls a volatile function or reads a view over
// one, wherever it does so, is a write; STABLE and IMMUTABLE functions stay reads; the parser cache serves every
// catalog; a catalog being reloaded sends reads to the primary; two-phase commands and catalog DDL are flagged.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "routing/classifier.hpp"
#include "routing/function_catalog.hpp"
#include "routing/parse_classifier.hpp"

using pgmux::routing::CatalogState;
using pgmux::routing::Classification;
using pgmux::routing::Classifier;
using pgmux::routing::FunctionCatalog;
using pgmux::routing::FunctionCatalogBuilder;
using pgmux::routing::NameSet;
using pgmux::routing::StatementKind;

namespace {

// What the loader would build for a database with these user objects: write_audit() and nextval-like
// built-ins are volatile, stable_lookup() is not listed (STABLE), audit_view calls write_audit().
FunctionCatalog make_catalog(uint64_t generation = 1) {
  FunctionCatalogBuilder b;
  for (const char* f : {"write_audit", "nextval", "currval", "pg_advisory_lock", "MixedCase", "plpgsql_insert"}) {
    b.add_row("f", f);
  }
  b.add_row("v", "audit_view");
  b.add_row("v", "Quoted View");
  b.add_row("u", "scratch");  // an unlogged table
  b.add_row("u", "Scratch Parent");
  b.add_row("x", "ignored");
  return std::move(b).build(generation);
}

StatementKind kind_of(Classifier& c, std::string_view sql, const FunctionCatalog& catalog) {
  return c.classify(sql, CatalogState{&catalog, false}).kind;
}

}  // namespace

TEST_CASE("name set: transparent lookups, the filter never hides a member") {
  std::vector<std::string> names;
  for (int i = 0; i < 500; ++i) names.push_back("fn_" + std::to_string(i));
  names.push_back("");
  NameSet set(names);
  CHECK(set.size() == 501);
  for (const std::string& n : names) CHECK(set.contains(n));
  CHECK_FALSE(set.contains("fn_500"));
  CHECK_FALSE(set.contains("FN_1"));
  CHECK_FALSE(NameSet().contains("x"));
}

TEST_CASE("function catalog builder: kinds, system views, generation") {
  const FunctionCatalog catalog = make_catalog(7);
  CHECK(catalog.generation() == 7);
  CHECK(catalog.volatile_function("write_audit"));
  CHECK_FALSE(catalog.volatile_function("ignored"));
  CHECK_FALSE(catalog.volatile_function("stable_lookup"));
  CHECK(catalog.volatile_view("audit_view"));
  CHECK(catalog.volatile_view("pg_locks"));           // the fixed list of system views
  CHECK(catalog.volatile_view("pg_prepared_xacts"));
  CHECK_FALSE(catalog.volatile_view("pg_stat_activity"));
  CHECK(catalog.function_count() == 6);
  CHECK(std::string_view(pgmux::routing::function_catalog_query()).find("provolatile = 'v'") != std::string_view::npos);
  CHECK(std::string_view(pgmux::routing::function_catalog_query()).find("'random'") != std::string_view::npos);
}

TEST_CASE("volatile function: a write wherever the read calls it") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog();
  for (const char* sql : {
           "SELECT write_audit()",                                              // select list
           "SELECT * FROM write_audit()",                                       // FROM
           "SELECT * FROM t WHERE id = write_audit()",                          // WHERE
           "WITH x AS (SELECT write_audit()) SELECT * FROM x",                  // a CTE
           "VALUES (write_audit())",                                            // VALUES
           "SELECT * FROM t WHERE a IN (SELECT write_audit() FROM u)",          // a subquery
           "SELECT 1; SELECT write_audit()",                                    // a multi-statement string
           "SELECT 1; SELECT 2; SELECT * FROM t WHERE a = write_audit()",       // ... its last statement
           "BEGIN; SELECT write_audit(); COMMIT",                               // a transaction block of reads
           "SELECT public.write_audit()",                                       // schema-qualified
           "SELECT WRITE_AUDIT()",                                              // unquoted names fold
           "SELECT \"MixedCase\"()",                                            // quoted names do not
           "SELECT plpgsql_insert(1) AS x ORDER BY 1",
           "SELECT nextval('s')",                                               // sequences
           "SELECT currval('s')",
           "SELECT count(*) FROM (SELECT write_audit()) s",
           "EXPLAIN ANALYZE SELECT write_audit()",                              // runs it
           "COPY (SELECT write_audit()) TO STDOUT",
           "SELECT CASE WHEN a THEN write_audit() END FROM t",
       }) {
    CAPTURE(sql);
    const Classification got = c.classify(sql, CatalogState{&catalog, false});
    CHECK(got.kind == StatementKind::Write);
    CHECK(got.write_function);
    CHECK(got.catalog_stamp == 1);
  }
  CHECK(std::string_view(c.classify("SELECT write_audit()", CatalogState{&catalog, false}).reason) ==
        "volatile function");
}

TEST_CASE("volatile function: what stays a read") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog();
  for (const char* sql : {
           "SELECT stable_lookup(1)",                   // STABLE / IMMUTABLE: not in the catalog
           "SELECT now(), random(), clock_timestamp()",  // random & co. are left out by the catalog query
           "SELECT write_audit FROM t",                  // a column, not a call
           "SELECT 'write_audit()'",                     // a literal
           "SELECT $$ write_audit() $$",
           "SELECT 1 -- write_audit()",
           "EXPLAIN SELECT write_audit()",               // plans only
           "SELECT * FROM audit_log",                    // a table of a similar name
           "SELECT * FROM t WHERE a IN (1, 2)",
           "SELECT x.write_audit FROM t x",
       }) {
    CAPTURE(sql);
    CHECK(kind_of(c, sql, catalog) == StatementKind::Read);
  }
  // Without a catalog, only the built-in list and write_functions count.
  CHECK(c.classify("SELECT write_audit()").kind == StatementKind::Read);
  CHECK(c.classify("SELECT nextval('s')").kind == StatementKind::Write);
}

TEST_CASE("view over a volatile function: a write wherever it is read") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog();
  for (const char* sql : {
           "SELECT * FROM audit_view",
           "SELECT n FROM public.audit_view",
           "SELECT * FROM t JOIN audit_view v ON v.id = t.id",
           "SELECT * FROM t, audit_view",
           "SELECT * FROM t WHERE a IN (SELECT n FROM audit_view)",
           "WITH x AS (SELECT * FROM audit_view) SELECT * FROM x",
           "TABLE audit_view",
           "SELECT * FROM ONLY audit_view",
           "SELECT * FROM \"Quoted View\"",
           "SELECT 1; SELECT * FROM audit_view",
           "SELECT * FROM pg_locks",
           "SELECT * FROM pg_catalog.pg_prepared_xacts",
       }) {
    CAPTURE(sql);
    const Classification got = c.classify(sql, CatalogState{&catalog, false});
    CHECK(got.kind == StatementKind::Write);
    CHECK(std::string_view(got.reason) == "view over a volatile function");
  }
  CHECK(kind_of(c, "SELECT * FROM \"quoted view\"", catalog) == StatementKind::Read);
  CHECK(kind_of(c, "SELECT audit_view.n FROM t audit_view", catalog) == StatementKind::Read);  // the parser knows
  CHECK(kind_of(c, "EXPLAIN SELECT * FROM audit_view", catalog) == StatementKind::Read);
}

TEST_CASE("unlogged relation: a read of it stays a read that needs the primary") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog();
  CHECK(catalog.unlogged_count() == 2);
  CHECK(catalog.unlogged_relation("scratch"));
  CHECK_FALSE(catalog.volatile_view("scratch"));
  CHECK(std::string_view(pgmux::routing::function_catalog_query()).find("relpersistence = 'u'") !=
        std::string_view::npos);
  for (const char* sql : {
           "SELECT count(*) FROM scratch",
           "SELECT * FROM public.scratch WHERE id = 1",
           "SELECT * FROM t JOIN scratch s ON s.id = t.id",
           "SELECT * FROM t WHERE a IN (SELECT id FROM SCRATCH)",
           "TABLE scratch",
           "SELECT * FROM \"Scratch Parent\"",
           "SELECT 1; SELECT * FROM scratch",
           "BEGIN; SELECT * FROM scratch; COMMIT",
           "EXPLAIN SELECT * FROM scratch",  // a standby refuses to plan it too
           "COPY scratch TO STDOUT",         // a standby cannot read its files (58P01, no refusal to retry)
           "COPY public.scratch (id) TO STDOUT",
           "SELECT * FROM (scratch JOIN items USING (id))",
           "SELECT * FROM ((scratch s JOIN items i ON s.id = i.id))",
       }) {
    CAPTURE(sql);
    const Classification got = c.classify(sql, CatalogState{&catalog, false});
    CHECK(got.kind == StatementKind::Read);
    CHECK(got.reads_unlogged);
    CHECK(got.read_needs_primary());
    CHECK_FALSE(got.write_function);
  }
  // A write stays a write; a volatile call wins (it may write).
  CHECK(kind_of(c, "INSERT INTO scratch SELECT * FROM scratch", catalog) == StatementKind::Write);
  const Classification both = c.classify("SELECT write_audit() FROM scratch", CatalogState{&catalog, false});
  CHECK(both.kind == StatementKind::Write);
  CHECK(std::string_view(both.reason) == "volatile function");
  for (const char* sql : {"SELECT * FROM scratch_log", "SELECT scratch.id FROM t scratch", "SELECT 'scratch'",
                          "SELECT * FROM \"scratch parent\""}) {
    CAPTURE(sql);
    CHECK_FALSE(c.classify(sql, CatalogState{&catalog, false}).reads_unlogged);
  }
  const FunctionCatalog without = FunctionCatalogBuilder().build(2);
  CHECK_FALSE(c.classify("SELECT count(*) FROM scratch", CatalogState{&without, false}).reads_unlogged);
  CHECK_FALSE(c.classify("COPY items TO STDOUT", CatalogState{&catalog, false}).reads_unlogged);
  CHECK(kind_of(c, "COPY scratch FROM STDIN", catalog) == StatementKind::Write);
}

TEST_CASE("learned from a standby's refusal: a read that needs the primary, or a write, by literal shape") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog();
  const CatalogState state{&catalog, false};
  c.learn_primary_read("SELECT * FROM late WHERE id = 1");  // an unlogged table the catalog does not list yet
  Classification got = c.classify("SELECT * FROM late WHERE id = 2", state);
  CHECK(got.kind == StatementKind::Read);
  CHECK(got.reads_unlogged);
  CHECK_FALSE(c.classify("SELECT * FROM other WHERE id = 2", state).reads_unlogged);
  c.learn_write("SELECT * FROM late WHERE id = 3");  // a write outranks it
  CHECK(kind_of(c, "SELECT * FROM late WHERE id = 4", catalog) == StatementKind::Write);
  c.learn_primary_read("SELECT * FROM late WHERE id = 5");  // and is not taken back
  CHECK(kind_of(c, "SELECT * FROM late WHERE id = 6", catalog) == StatementKind::Write);
}

TEST_CASE("volatile function: one cache entry serves every catalog and database") {
  Classifier c;
  const FunctionCatalog with = make_catalog(1);
  const FunctionCatalog without = FunctionCatalogBuilder().build(2);
  const std::string_view sql = "WITH x AS (SELECT write_audit()) SELECT * FROM x";
  CHECK(kind_of(c, sql, with) == StatementKind::Write);
  CHECK(kind_of(c, sql, without) == StatementKind::Read);
  CHECK(kind_of(c, sql, with) == StatementKind::Write);
  CHECK(c.parser_calls() == 1);
  CHECK(c.cache_hits() == 2);
  // The lexer hands a volatile call to the parser; a stable one it settles alone.
  CHECK(kind_of(c, "SELECT write_audit()", with) == StatementKind::Write);
  CHECK(c.parser_calls() == 2);
  CHECK(kind_of(c, "SELECT stable_lookup()", with) == StatementKind::Read);
  CHECK(c.parser_calls() == 2);
  CHECK(kind_of(c, "SELECT write_audit()", without) == StatementKind::Read);
  CHECK(c.parser_calls() == 2);  // not even the cache: the lexer saw nothing volatile
}

TEST_CASE("catalog reloading: reads go to the primary, the rest is unchanged") {
  Classifier c;
  const FunctionCatalog catalog = make_catalog(3);
  const CatalogState refreshing{&catalog, true};
  const Classification read = c.classify("SELECT stable_lookup()", refreshing);
  CHECK(read.kind == StatementKind::Write);
  CHECK(std::string_view(read.reason) == "function catalog reloading");
  CHECK(read.catalog_stamp == CatalogState::kRefreshingStamp);
  CHECK(c.classify("SELECT 1", CatalogState{nullptr, true}).kind == StatementKind::Write);
  CHECK(c.classify("BEGIN READ ONLY", refreshing).kind == StatementKind::TxBegin);  // a read-only transaction
                                                                                    // can't write
  CHECK(c.classify("SET a = 1", refreshing).kind == StatementKind::Session);
  CHECK(c.classify("", refreshing).kind == StatementKind::Empty);
  CHECK(c.classify("SELECT 1", CatalogState{&catalog, false}).catalog_stamp == 3);
  CHECK(c.classify("SELECT 1").catalog_stamp == 0);
}

TEST_CASE("write_functions add to the catalog, schema qualifiers dropped") {
  Classifier c({"app.Stable_Writer"});
  const FunctionCatalog catalog = make_catalog();
  CHECK(kind_of(c, "SELECT stable_writer()", catalog) == StatementKind::Write);
  CHECK(kind_of(c, "SELECT other.stable_writer()", catalog) == StatementKind::Write);
  CHECK(kind_of(c, "SELECT write_audit()", catalog) == StatementKind::Write);
  CHECK(c.classify("SELECT stable_writer()").kind == StatementKind::Write);
  CHECK(c.is_write_function("currval"));  // session state of nextval, which ran on the primary
  CHECK(c.is_write_function("lastval"));
}

TEST_CASE("two-phase commands need the primary wherever they are") {
  Classifier c;
  for (const char* sql : {"PREPARE TRANSACTION 'g'", "COMMIT PREPARED 'g'", "ROLLBACK PREPARED 'g'"}) {
    CAPTURE(sql);
    const Classification got = c.classify(sql);
    CHECK(got.kind == StatementKind::TxEnd);
    CHECK(got.primary_only);
    CHECK(pgmux::routing::classify_parsed(sql, c).primary_only);
  }
  for (const char* sql : {
           "BEGIN; SELECT 1; PREPARE TRANSACTION 'g'",
           "BEGIN READ ONLY; SELECT * FROM t; PREPARE TRANSACTION 'g'",
           "SELECT 1; COMMIT PREPARED 'g'",
           "SELECT 1; ROLLBACK PREPARED 'g'",
           "WITH x AS (SELECT 1) SELECT * FROM x; PREPARE TRANSACTION 'g'",  // through the parser
       }) {
    CAPTURE(sql);
    const Classification got = c.classify(sql);
    CHECK(got.kind == StatementKind::Write);
    CHECK(got.primary_only);
    CHECK(pgmux::routing::classify_parsed(sql, c).kind == StatementKind::Write);
  }
  CHECK_FALSE(c.classify("COMMIT").primary_only);
  CHECK_FALSE(c.classify("PREPARE p AS SELECT 1").primary_only);
  CHECK(c.classify("BEGIN; SELECT 1; COMMIT").kind == StatementKind::Read);
}

TEST_CASE("catalog DDL is flagged by both paths") {
  Classifier c;
  for (const char* sql : {
           "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
           "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1'",
           "CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$",
           "ALTER FUNCTION f() STABLE",
           "ALTER FUNCTION f() RENAME TO g",
           "ALTER ROUTINE f() VOLATILE",
           "DROP FUNCTION f()",
           "DROP FUNCTION IF EXISTS f(int), g(text)",
           "CREATE VIEW v AS SELECT 1",
           "CREATE OR REPLACE VIEW v AS SELECT 1",
           "CREATE OR REPLACE RECURSIVE VIEW v (n) AS SELECT 1",
           "ALTER VIEW v RENAME TO w",
           "DROP VIEW v",
           "CREATE AGGREGATE a (int) (SFUNC = int4pl, STYPE = int)",
           "DROP AGGREGATE a (int)",
           "CREATE EXTENSION pgcrypto",
           "ALTER EXTENSION pgcrypto UPDATE",
           "DROP EXTENSION pgcrypto",
           "CREATE SCHEMA s",
           "DROP SCHEMA s CASCADE",
           "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING",
           "DO $$ BEGIN EXECUTE 'CREATE FUNCTION f() RETURNS int AS ''SELECT 1'' LANGUAGE sql'; END $$",
           "CREATE LANGUAGE plperl",
       }) {
    CAPTURE(sql);
    CHECK(c.classify(sql).catalog_change);
    CHECK(pgmux::routing::classify_parsed(sql, c).catalog_change);
  }
  for (const char* sql : {"CREATE TABLE t (a int)", "DROP TABLE t", "ALTER TABLE t ADD COLUMN b int", "SELECT 1",
                          "INSERT INTO t VALUES (1)", "CREATE INDEX i ON t (a)", "CREATE SEQUENCE s"}) {
    CAPTURE(sql);
    CHECK_FALSE(c.classify(sql).catalog_change);
    CHECK_FALSE(pgmux::routing::classify_parsed(sql, c).catalog_change);
  }
  // Among other statements, and through the parser.
  CHECK(c.classify("SELECT 1; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").catalog_change);
  CHECK(c.classify("WITH x AS (SELECT 1) SELECT * FROM x; DROP VIEW v").catalog_change);
}

TEST_CASE("a call of a function that changes the session: DO-like effect, a write, in every statement kind") {
  using pgmux::routing::SessionEffect;
  FunctionCatalogBuilder b;
  b.add_row("f", "become_bob");  // volatile, and changes the session
  b.add_row("s", "become_bob");
  b.add_row("s", "use_schema");  // STABLE, yet changes the session: not among the volatile ones
  const FunctionCatalog catalog = std::move(b).build(3);
  CHECK(catalog.session_function("use_schema"));
  CHECK_FALSE(catalog.volatile_function("use_schema"));
  CHECK(catalog.session_function_count() == 2);
  Classifier c;
  const CatalogState state{&catalog, false};
  for (const char* sql : {"SELECT become_bob()", "SELECT p.use_schema()", "select * from USE_SCHEMA()",
                          "VALUES (1), (use_schema())", "SELECT 1 WHERE use_schema() IS NOT NULL",
                          "WITH x AS (SELECT use_schema()) SELECT * FROM x", "SELECT 1; SELECT use_schema()",
                          "CALL use_schema()", "INSERT INTO t SELECT use_schema()", "UPDATE t SET a = become_bob()"}) {
    CAPTURE(sql);
    const Classification got = c.classify(sql, state);
    CHECK(got.kind == StatementKind::Write);
    CHECK(got.effects.has(SessionEffect::Opaque));
    CHECK(got.effects.may_change_session());
  }
  // Without the catalog, or for other names, nothing is assumed.
  CHECK_FALSE(c.classify("SELECT use_schema()").effects.has(SessionEffect::Opaque));
  CHECK(c.classify("SELECT use_schema()").kind == StatementKind::Read);
  CHECK_FALSE(c.classify("SELECT use_schemas()", state).effects.has(SessionEffect::Opaque));
  CHECK(c.classify("SELECT use_schemas()", state).kind == StatementKind::Read);
  // A quoted name is case-sensitive: "Use_Schema" is another function.
  CHECK_FALSE(c.classify("SELECT \"Use_Schema\"()", state).effects.has(SessionEffect::Opaque));
}
