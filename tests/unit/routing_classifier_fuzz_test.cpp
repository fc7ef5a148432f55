// Robustness: random bytes and random SQL-ish fragment soups never crash the classifier, and whenever
// PostgreSQL's parser finds a write in valid text, the classifier never answers Read, and whatever the parser
// finds may change the session, the classifier finds too.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "routing/classifier.hpp"
#include "routing/parse_classifier.hpp"

using pgmux::routing::Classification;
using pgmux::routing::Classifier;
using pgmux::routing::StatementKind;

TEST_CASE("classifier fuzz: random bytes never crash") {
  std::mt19937 rng(12345);
  Classifier c({}, 64);
  std::uniform_int_distribution<int> len(0, 120);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 20000; ++i) {
    std::string s(static_cast<size_t>(len(rng)), '\0');
    for (char& ch : s) ch = static_cast<char>(byte(rng));
    const Classification r = c.classify(s);
    REQUIRE(r.reason != nullptr);
  }
  CHECK(c.parser_calls() + c.cache_hits() <= 20000);
}

TEST_CASE("classifier fuzz: fragment soups never hide a write") {
  static constexpr std::string_view kFragments[] = {
      "SELECT ", "select 1", " FROM t", " WHERE a = ", "INSERT INTO t VALUES (1)", "DELETE FROM t", "UPDATE t SET a=1",
      "'", "''", "'x'", "\"", "\"q\"", "$$", "$a$", "$1", "--", "\n", "/*", "*/", ";", "(", ")", "E'", "\\",
      " FOR UPDATE", " INTO t2", "nextval('s')", "pg_advisory_lock(1)", "WITH x AS (", "SELECT 1)", " ", "x", "e",
      "U&'", "1e", "BEGIN", "COMMIT", "SET a = 1", "EXPLAIN ", "ANALYZE ", "COPY t FROM STDIN", "COPY t TO STDOUT",
      "/* pgmux:primary */", ",", "VALUES (2)", "TABLE t", "CREATE TEMP TABLE z (a int)", "LISTEN c",
      "RESET ALL", "RESET a", "SET LOCAL b = 2", "SET c TO DEFAULT", "SHOW d", "DISCARD ALL", "DEALLOCATE ALL",
      "set_config('a', 'b', false)", "set_config('a', 'b', true)", "PREPARE p AS ", "DECLARE k CURSOR WITH HOLD FOR ",
  };
  constexpr size_t kCount = sizeof(kFragments) / sizeof(kFragments[0]);
  std::mt19937 rng(777);
  std::uniform_int_distribution<size_t> pick(0, kCount - 1);
  std::uniform_int_distribution<int> parts(1, 10);
  Classifier c({}, 256);
  int checked = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const int n = parts(rng);
    for (int k = 0; k < n; ++k) s += kFragments[pick(rng)];
    CAPTURE(s);
    const Classification got = c.classify(s);
    REQUIRE(got.reason != nullptr);
    const Classification parsed = pgmux::routing::classify_parsed(s, c);
    if (std::string_view(parsed.reason) != "unparsable" && parsed.effects.may_change_session()) {
      CHECK(got.effects.may_change_session());
    }
    if (parsed.kind == StatementKind::Write && std::string_view(parsed.reason) != "unparsable") {
      ++checked;
      CHECK(got.kind != StatementKind::Read);
      if (parsed.pins_primary()) CHECK(got.pins_primary());
    }
  }
  CHECK(checked > 100);
}
