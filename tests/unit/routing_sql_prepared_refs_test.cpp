#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "routing/sql_prepared_refs.hpp"

using namespace pgmux::routing;

namespace {

// "kind:name" per reference, and "|statement" after a PREPARE's.
std::vector<std::string> refs_of(std::string_view sql) {
  std::vector<std::string> out;
  for (const PreparedRef& r : prepared_statement_refs(sql)) {
    const char* kind = r.kind == PreparedRefKind::Prepare         ? "prepare"
                       : r.kind == PreparedRefKind::Execute       ? "execute"
                       : r.kind == PreparedRefKind::Deallocate    ? "deallocate"
                       : r.kind == PreparedRefKind::DeallocateAll ? "deallocate_all"
                                                                  : "list";
    std::string s = std::string(kind) + ":" + r.name;
    if (r.kind == PreparedRefKind::Prepare) s += "|" + std::string(r.statement);
    out.push_back(s);
  }
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("PREPARE, EXECUTE and DEALLOCATE name their statements as PostgreSQL folds them") {
  CHECK(refs_of("PREPARE Foo (int) AS SELECT $1; EXECUTE foo(1); DEALLOCATE foo") ==
        V{"prepare:foo|PREPARE Foo (int) AS SELECT $1", "execute:foo", "deallocate:foo"});
  CHECK(refs_of("prepare \"Mixed\"\"q\" as select ';'") == V{"prepare:Mixed\"q|prepare \"Mixed\"\"q\" as select ';'"});
  CHECK(refs_of("DEALLOCATE PREPARE x; DEALLOCATE ALL; deallocate prepare all") ==
        V{"deallocate:x", "deallocate_all:", "deallocate_all:"});
}

TEST_CASE("EXECUTE is found inside EXPLAIN and CREATE TABLE AS, not in GRANT or triggers") {
  CHECK(refs_of("EXPLAIN (ANALYZE, COSTS off) EXECUTE q(1, 'a')") == V{"execute:q"});
  CHECK(refs_of("CREATE TABLE t AS EXECUTE q") == V{"execute:q"});
  CHECK(refs_of("GRANT EXECUTE ON FUNCTION f() TO r").empty());
  CHECK(refs_of("CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()").empty());
  CHECK(refs_of("CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE PROCEDURE f()").empty());
  // Dynamic SQL in a function body is a string: its EXECUTE is not one of the session's statements.
  CHECK(refs_of("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'x'; END$$").empty());
}

TEST_CASE("PREPARE TRANSACTION is not a prepared statement; pg_prepared_statements lists them all") {
  CHECK(refs_of("PREPARE TRANSACTION 'gid'").empty());
  CHECK(refs_of("SELECT name FROM pg_catalog.pg_prepared_statements") == V{"list:"});
  CHECK(refs_of("SELECT 1; ; SELECT 2").empty());
  CHECK(refs_of("").empty());
  CHECK(refs_of("SELECT 'unterminated").empty());
}

TEST_CASE("a name is exact unless it has U& escapes, or bytes beyond ASCII in a client encoding other than UTF8") {
  auto exact = [](std::string_view sql, bool utf8) {
    const std::vector<PreparedRef> refs = prepared_statement_refs(sql);
    REQUIRE(refs.size() == 1);
    return refs.front().name_exact(utf8);
  };
  CHECK(exact("PREPARE Plain AS SELECT 1", false));
  CHECK(exact("EXECUTE \"Quoted\"", false));
  CHECK(exact("DEALLOCATE caf\xc3\xa9", true));
  CHECK_FALSE(exact("DEALLOCATE caf\xc3\xa9", false));
  CHECK_FALSE(exact("EXECUTE \x83\x41", false));  // SJIS: the A is a second byte, not a letter to fold
  CHECK_FALSE(exact("PREPARE u&\"d\\0061t\" AS SELECT 1", true));
  CHECK_FALSE(exact("EXECUTE U&\"x\"", true));
}

TEST_CASE("identifiers fold and truncate as NAMEDATALEN does") {
  CHECK(fold_identifier("AbC") == "abc");
  CHECK(fold_identifier("\"AbC\"") == "AbC");
  CHECK(fold_identifier(std::string(70, 'x')) == std::string(63, 'x'));
  // 62 ASCII bytes then a 2-byte character: the character does not fit whole and is dropped.
  CHECK(fold_identifier(std::string(62, 'x') + "\xc3\xa9") == std::string(62, 'x'));
}

TEST_CASE("a PREPARE without a type list gets the types PostgreSQL inferred spelled out after its name") {
  CHECK(with_parameter_types("PREPARE q AS SELECT $1", "integer") == "PREPARE q (integer) AS SELECT $1");
  CHECK(with_parameter_types("  prepare \"Q x\"as insert into t values ($1, $2)", "integer, \"my type\"") ==
        "  prepare \"Q x\" (integer, \"my type\")as insert into t values ($1, $2)");
  CHECK(with_parameter_types("/* c */ PREPARE q AS SELECT $1;", "text") == "/* c */ PREPARE q (text) AS SELECT $1;");
  // Types the client listed stay; no parameters, nothing to add; not a lone PREPARE, left alone.
  CHECK(with_parameter_types("PREPARE q (int) AS SELECT $1", "integer") == "PREPARE q (int) AS SELECT $1");
  CHECK(with_parameter_types("PREPARE q AS SELECT 1", "") == "PREPARE q AS SELECT 1");
  CHECK(with_parameter_types("PREPARE q AS SELECT $1; PREPARE r AS SELECT $1", "integer") ==
        "PREPARE q AS SELECT $1; PREPARE r AS SELECT $1");
  CHECK(with_parameter_types("EXECUTE q(1)", "integer") == "EXECUTE q(1)");
}

TEST_CASE("the query reading a statement's parameter types dollar-quotes its name with a tag it cannot end early") {
  const auto literal_of = [](const std::string& sql) { return sql.substr(sql.rfind("OPERATOR(pg_catalog.=) ") + 23); };
  CHECK(literal_of(parameter_types_query("q")) == "$pgmux$q$pgmux$");
  CHECK(literal_of(parameter_types_query("it's a \\ name")) == "$pgmux$it's a \\ name$pgmux$");
  CHECK(literal_of(parameter_types_query("a$pgmux$b")) == "$pgmux0$a$pgmux$b$pgmux0$");
  CHECK(literal_of(parameter_types_query("ends $pgmux")) == "$pgmux0$ends $pgmux$pgmux0$");
  CHECK(literal_of(parameter_types_query("x$pgmux$ $pgmux0$")) == "$pgmux1$x$pgmux$ $pgmux0$$pgmux1$");
}
