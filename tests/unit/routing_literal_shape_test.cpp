// The lexical cache by literal shape (routing/literal_shape.hpp): texts that differ only in numeric literals share
// a class; texts that differ in anything a rule reads (a name with digits, a quoted identifier, the catalog) never
// do.
#include <doctest/doctest.h>

#include <cctype>
#include <optional>
#include <random>
#include <string>

#include "routing/classifier.hpp"
#include "routing/function_catalog.hpp"
#include "routing/literal_shape.hpp"

using namespace pgmux::routing;

namespace {

std::string shape_of(std::string_view sql) {
  std::string buffer;
  const std::optional<Shape> shape = literal_shape(sql, buffer);
  return shape ? std::string(shape->text) : "<none>";
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
  const std::optional<Shape> one = literal_shape("SELECT 1", a);
  const std::optional<Shape> twenty_two = literal_shape("SELECT 22", b);
  REQUIRE(one);
  REQUIRE(twenty_two);
  CHECK(one->text == twenty_two->text);
  CHECK(one->hash == twenty_two->hash);
  // The hash reads whole words of the buffer: what an earlier, longer text left past the shape must not count.
  for (size_t length = 0; length < 40; ++length) {
    CAPTURE(length);
    const std::string text(length, 'k');
    std::string reused, fresh;
    REQUIRE(literal_shape("SELECT zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", reused));
    const std::optional<Shape> again = literal_shape(text, reused);
    const std::optional<Shape> first = literal_shape(text, fresh);
    REQUIRE(again);
    REQUIRE(first);
    CHECK(again->text == text);
    CHECK(again->hash == first->hash);
    if (length > 0) {
      std::string other;
      const std::optional<Shape> last_differs = literal_shape(text.substr(0, length - 1) + "j", other);
      REQUIRE(last_differs);
      CHECK(last_differs->hash != first->hash);  // the last byte counts
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

namespace {

// The shape as its definition reads, a byte at a time: what the block scan must agree with.
std::string reference_shape(std::string_view sql) {
  const auto word_byte = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; };
  const bool hides = sql.find_first_of("'$") != std::string_view::npos || sql.find("--") != std::string_view::npos ||
                     sql.find("/*") != std::string_view::npos;
  if (sql.size() > 8192 || (sql.find('"') != std::string_view::npos && hides)) return "<none>";
  std::string shape;
  bool in_quotes = false;
  for (size_t i = 0; i < sql.size();) {
    if (!std::isdigit(static_cast<unsigned char>(sql[i]))) {
      if (sql[i] == '"') in_quotes = !in_quotes;
      shape += sql[i++];
      continue;
    }
    size_t end = i;
    while (end < sql.size() && std::isdigit(static_cast<unsigned char>(sql[end]))) ++end;
    const bool literal = !in_quotes && (i == 0 || !word_byte(static_cast<unsigned char>(sql[i - 1])));
    shape += literal ? std::string("#") : std::string(sql.substr(i, end - i));
    i = end;
  }
  return shape;
}

}  // namespace

// Random texts of every length up to a few blocks, made of the bytes the scan tells apart (digits, quotes, word
// bytes, blanks, the bytes that can hide a quote): digit runs across block edges, texts ending inside a run, a
// quote in the last bytes. One buffer for all of them, as a worker uses it.
TEST_CASE("literal shape: the block scan agrees with the byte-at-a-time definition") {
  const std::string alphabet = "aZ_ .0123456789\"$'-/*,\x80\xff";
  std::mt19937 random(20261204);
  std::string buffer;
  for (int round = 0; round < 20000; ++round) {
    std::string text(random() % 70, ' ');
    const size_t kinds = random() % 2 == 0 ? alphabet.size() : 16;  // half without '$', '\'', '-', '/', '*'...
    for (char& c : text) c = alphabet[random() % kinds];
    CAPTURE(text);
    const std::optional<Shape> shape = literal_shape(text, buffer);
    CHECK((shape ? std::string(shape->text) : "<none>") == reference_shape(text));
  }
  // The longest text that has a shape, ending in a literal, and one byte more (none).
  const std::string longest = std::string(8192 - 2, 'x') + " 7";
  CHECK(shape_of(longest) == reference_shape(longest));
  CHECK(shape_of(longest).back() == '#');
  CHECK(shape_of(longest + "7") == "<none>");
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
