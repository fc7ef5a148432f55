#include <doctest/doctest.h>

#include <string>

#include "routing/session_sql.hpp"

using namespace pgmux::routing;

TEST_CASE("SET and RESET quote the name as an identifier and the value as a literal") {
  CHECK(set_statement("application_name", "it's") == "SET \"application_name\" = 'it''s'");
  CHECK(set_statement("a\"b", "v") == "SET \"a\"\"b\" = 'v'");
  CHECK(set_statement("TimeZone", "") == "SET \"TimeZone\" = ''");
  std::string sql = "x;";
  append_reset_statement(sql, "search_path");
  sql += ';';
  append_set_statement(sql, "a", "b");
  CHECK(sql == "x;RESET \"search_path\";SET \"a\" = 'b'");
}

TEST_CASE("split_statements cuts a multi-statement string where PostgreSQL would") {
  using V = std::vector<std::string>;
  CHECK(split_statements("SELECT 1; SET application_name = 'a;b'; RESET TimeZone;") ==
        V{"SELECT 1", "SET application_name = 'a;b'", "RESET TimeZone"});
  CHECK(split_statements("SET search_path = \"x;y\" ; /* ; */ SELECT $$;$$") ==
        V{"SET search_path = \"x;y\"", "/* ; */ SELECT $$;$$"});
  CHECK(split_statements("  ;; ").empty());
  CHECK(split_statements("SELECT 1") == V{"SELECT 1"});
}
