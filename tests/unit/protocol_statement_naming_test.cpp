#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

#include "protocol/backend_messages.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_naming.hpp"

using namespace pgmux::protocol;

TEST_CASE("server-side statement names depend on text and parameter types, not the client's name") {
  ByteVector a, b, c;
  build_parse(a, "s1", "SELECT $1", {23});
  build_parse(b, "other", "SELECT $1", {23});
  build_parse(c, "s1", "SELECT $1", {25});
  CHECK(server_statement_name(a) == server_statement_name(b));
  CHECK(server_statement_name(a) != server_statement_name(c));
  CHECK(server_statement_name(a).rfind("pgmux_", 0) == 0);
  CHECK(server_statement_name(a).size() == 6 + 16);
}

TEST_CASE("ParseComplete is a tag and a length, nothing else") {
  ByteVector out;
  build_parse_complete(out);
  CHECK(out == ByteVector{std::byte{'1'}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}});
}

TEST_CASE("result shape: columns and types count, source tables and format codes do not") {
  auto body = [](std::vector<std::tuple<std::string, uint32_t, int16_t>> columns, uint32_t table = 16384) {
    ByteVector out;  // a RowDescription body: count, then name, table, column, type, size, modifier, format
    auto be16 = [&](uint16_t v) { out.push_back(std::byte(v >> 8)); out.push_back(std::byte(v)); };
    auto be32 = [&](uint32_t v) { be16(uint16_t(v >> 16)); be16(uint16_t(v)); };
    be16(uint16_t(columns.size()));
    for (const auto& [name, type, format] : columns) {
      for (char c : name) out.push_back(std::byte(c));
      out.push_back(std::byte{0});
      be32(table);
      be16(1);
      be32(type);
      be16(4);
      be32(0xffffffff);
      be16(uint16_t(format));
    }
    return out;
  };
  const uint64_t two = result_shape(body({{"id", 23, 0}, {"name", 25, 0}}));
  CHECK(two != 0);
  CHECK(result_shape(body({{"id", 23, 1}, {"name", 25, 1}})) == two);  // binary results: same statement
  CHECK(result_shape(body({{"id", 23, 0}, {"name", 25, 0}, {"extra", 23, 0}})) != two);  // ADD COLUMN
  CHECK(result_shape(body({{"id", 20, 0}, {"name", 25, 0}})) != two);                    // ALTER TYPE
  CHECK(result_shape(body({{"ident", 23, 0}, {"name", 25, 0}})) != two);                 // RENAME COLUMN
  // The same text under another search_path, or over a table dropped and made again alike: PostgreSQL runs it.
  CHECK(result_shape(body({{"id", 23, 0}, {"name", 25, 0}}, 24576)) == two);
  CHECK(result_shape(ByteView()) != 0);  // NoData
  CHECK(result_shape(ByteView()) != two);
}
