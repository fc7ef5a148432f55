// cursor_ref: which cursor a statement declares WITH HOLD, uses or closes, named as PostgreSQL folds the name.
#include <doctest/doctest.h>

#include "routing/sql_cursor_refs.hpp"

using namespace pgmux::routing;

namespace {
std::string seen(std::string_view sql) {
  const CursorRef r = cursor_ref(sql);
  const char* kinds[] = {"none", "declare-hold", "declare", "use", "close", "close-all"};
  return std::string(kinds[static_cast<int>(r.kind)]) + (r.name.empty() ? "" : " " + r.name);
}
}  // namespace

TEST_CASE("cursor_ref: DECLARE, with and without hold") {
  CHECK(seen("DECLARE hc CURSOR WITH HOLD FOR SELECT 1") == "declare-hold hc");
  CHECK(seen("declare \"Hc\" binary no scroll cursor with hold for select 1;") == "declare-hold Hc");
  CHECK(seen("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1") == "declare c");
  CHECK(seen("DECLARE c CURSOR FOR SELECT 'with hold' AS with, 1 AS hold") == "declare c");  // the query's words
  CHECK(seen("DECLARE C CURSOR FOR SELECT x FROM t WHERE y IN (SELECT 1) FOR UPDATE") == "declare c");
}

TEST_CASE("cursor_ref: FETCH and MOVE in every direction, CLOSE") {
  CHECK(seen("FETCH hc") == "use hc");
  CHECK(seen("FETCH FORWARD ALL FROM \"hc\"") == "use hc");
  CHECK(seen("fetch absolute -3 in HC") == "use hc");
  CHECK(seen("MOVE BACKWARD 2 FROM hc;") == "use hc");
  CHECK(seen("FETCH NEXT FROM \"Odd \"\"name\"") == "use Odd \"name");
  CHECK(seen("CLOSE hc") == "close hc");
  CHECK(seen("CLOSE ALL") == "close-all");
  CHECK(seen("close \"all\"") == "close all");  // a cursor named all
}

TEST_CASE("cursor_ref: anything else, or more than one statement, is none") {
  CHECK(seen("SELECT 1") == "none");
  CHECK(seen("FETCH hc; SELECT 1") == "none");
  CHECK(seen("FETCH") == "none");
  CHECK(seen("CLOSE") == "none");
  CHECK(seen("FETCH 'unterminated") == "none");
}
