#include <doctest/doctest.h>

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
