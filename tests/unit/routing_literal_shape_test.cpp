// The lexical cache by literal shape (routing/literal_shape.hpp): texts that differ only in numeric literals share
// a class; texts that differ in anything a rule reads (a name with digits, a quoted identifier, the catalog) never
// do.
#include <doctest/doctest.h>

#include <string>

#include "routing/classifier.hpp"
#include "routing/function_catalog.hpp"
#include "routing/literal_shape.hpp"

using namespace pgmux::routing;

namespace {

std::string shape_of(std::string_view sql) {
  std::string out;
  uint64_t hash = 0;
  return literal_shape(sql, out, hash) ? out : "<none>";
}

FunctionCatalog catalog_with(std::initializer_list<const char*> volatile_views, uint64_t generation) {
  FunctionCatalogBuilder b;
  b.add_row("f", "write_audit");
  for (const char* v : volatile_views) b.add_row("v", v);
  return std::move(b).build(generation);
}

}  // namespace

TEST_CASE("literal shape: numbers become '#', words and quoted names keep their digits") {
  CHECK(shape_of("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;") ==
        "SELECT abalance FROM pgbench_accounts WHERE aid = #;");
  CHECK(shape_of("SELECT 1.5e10, -7, x1, t_2, $1, $tag1$") == "SELECT #.#e10, -#, x1, t_2, $1, $tag1$");
  CHECK(shape_of("UPDATE t SET v = 'a1' WHERE id IN (1,2,3)") == "UPDATE t SET v = 'a1' WHERE id IN (#,#,#)");
  CHECK(shape_of(R"(SELECT * FROM "view 1" WHERE id = 2)") == R"(SELECT * FROM "view 1" WHERE id = #)");
  CHECK(shape_of(R"(SELECT * FROM "a""1" WHERE id = 2)") == R"(SELECT * FROM "a""1" WHERE id = #)");
  // A '"' that a string, a comment or a dollar quote could hold: no shape (classified afresh each time).
  CHECK(shape_of(R"(SELECT 'x"', * FROM "v 1")") == "<none>");
  CHECK(shape_of(R"(SELECT 1 /* " */ FROM "v 1")") == "<none>");
  CHECK(shape_of(R"(SELECT $$"$$ FROM "v 1")") == "<none>");
  CHECK(shape_of(std::string(9000, ' ')) == "<none>");
  std::string a, b;
  uint64_t ha = 0, hb = 0;
  REQUIRE(literal_shape("SELECT 1", a, ha));
  REQUIRE(literal_shape("SELECT 22", b, hb));
  CHECK(a == b);
  CHECK(ha == hb);
  // The hash reads whole words of the buffer: what an earlier, longer text left past the shape must not count.
  for (size_t length = 0; length < 40; ++length) {
    CAPTURE(length);
    const std::string text(length, 'k');
    std::string reused, fresh;
    uint64_t h_reused = 0, h_fresh = 0;
    REQUIRE(literal_shape("SELECT zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", reused, h_reused));
    REQUIRE(literal_shape(text, reused, h_reused));
    REQUIRE(literal_shape(text, fresh, h_fresh));
    CHECK(reused == text);
    CHECK(h_reused == h_fresh);
    if (length > 0) {
      uint64_t h_other = 0;
      std::string other;
      REQUIRE(literal_shape(text.substr(0, length - 1) + "j", other, h_other));
      CHECK(h_other != h_fresh);  // the last byte counts
    }
  }
}

// The scan for digits and quotes goes 16 bytes at a time: a stop byte at every offset around the block edges, and
// the bytes next to '0' and '9' (and high bytes) that must not stop it, against the same text built by hand.
TEST_CASE("literal shape: the block scan finds every digit and quote, and nothing else") {
  for (size_t at = 0; at < 40; ++at) {
    CAPTURE(at);
    std::string text(48, 'x');
    text[at] = ' ';
    text.insert(at + 1, "7");
    std::string expected = text;
    expected[at + 1] = '#';
    CHECK(shape_of(text) == expected);
    std::string quoted(48, 'y');
    quoted.insert(at, "\"q1\"");
    CHECK(shape_of(quoted) == quoted);  // digits in a quoted name stay
  }
  const std::string neighbours = "SELECT ///:::///:::/// \x7f\x80\xb0\xb9\xff FROM t /:/:/:/:/:/:/:/:/:";
  CHECK(shape_of(neighbours) == neighbours);
  CHECK(shape_of(neighbours + " 0123456789") == neighbours + " #");
}

TEST_CASE("classifier: one class per shape, never across names, quoted names or catalogs") {
  Classifier classifier;
  const FunctionCatalog catalog = catalog_with({"v1", "view 1"}, 1);
  const CatalogState state{&catalog, false};
  for (int round = 0; round < 2; ++round) {  // the second round answers from the cache
    CHECK(classifier.classify("SELECT * FROM v1 WHERE id = " + std::to_string(round), state).kind ==
          StatementKind::Write);
    CHECK(classifier.classify("SELECT * FROM v2 WHERE id = " + std::to_string(round), state).kind ==
          StatementKind::Read);
    CHECK(classifier.classify(R"(SELECT * FROM "view 1" WHERE id = )" + std::to_string(round), state).kind ==
          StatementKind::Write);
    CHECK(classifier.classify(R"(SELECT * FROM "view 2" WHERE id = )" + std::to_string(round), state).kind ==
          StatementKind::Read);
    CHECK(classifier.classify("SELECT write_audit(" + std::to_string(round) + ")", state).kind ==
          StatementKind::Write);
  }
  // The same text under another catalog (v2 became a view over a volatile function): classified again.
  const FunctionCatalog later = catalog_with({"v2"}, 2);
  CHECK(classifier.classify("SELECT * FROM v2 WHERE id = 5", CatalogState{&later, false}).kind ==
        StatementKind::Write);
  CHECK(classifier.classify("SELECT * FROM v1 WHERE id = 5", CatalogState{&later, false}).kind ==
        StatementKind::Read);
  // Session facts survive the cache: a SET of another value is the same SET.
  const Classification set = classifier.classify("SET statement_timeout = 100", state);
  const Classification again = classifier.classify("SET statement_timeout = 250", state);
  CHECK(again.kind == set.kind);
  CHECK(again.effects.has(SessionEffect::Set));
}

TEST_CASE("classifier: a text a standby rejected as a write makes its whole shape a write") {
  Classifier classifier;
  CHECK(classifier.classify("SELECT stable_but_writes(1)").kind == StatementKind::Read);
  classifier.learn_write("SELECT stable_but_writes(1)");
  CHECK(classifier.classify("SELECT stable_but_writes(1)").kind == StatementKind::Write);
  CHECK(classifier.classify("SELECT stable_but_writes(42)").kind == StatementKind::Write);
  CHECK(classifier.classify("SELECT stable_but_writes2(1)").kind == StatementKind::Read);
}
