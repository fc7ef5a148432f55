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
