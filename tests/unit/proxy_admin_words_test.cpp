// The admin console's reading of a command line: its words (double-quoted ones kept whole, as PostgreSQL reads
// identifiers) and their unquoting.
#include <doctest/doctest.h>

#include "proxy/ops/admin/commands.hpp"

using namespace pgmux::proxy::admin;

TEST_CASE("admin console: a double-quoted argument is one word, spaces and doubled quotes included") {
  Input input;
  REQUIRE(find_command("PAUSE \"my db\"", &input) != nullptr);
  REQUIRE(input.args.size() == 1);
  CHECK(unquote_identifier(input.args[0]) == "my db");
  REQUIRE(find_command("pause  \"a \"\"b\"\" c\" ;", &input) != nullptr);
  REQUIRE(input.args.size() == 1);
  CHECK(unquote_identifier(input.args[0]) == "a \"b\" c");
  REQUIRE(find_command("RESUME App", &input) != nullptr);
  REQUIRE(input.args.size() == 1);
  CHECK(unquote_identifier(input.args[0]) == "App");  // unquoted: as typed, case kept
  REQUIRE(find_command("RECONNECT \"x y\" extra", &input) != nullptr);
  CHECK(input.args.size() == 2);  // the command refuses the second word itself (42601)
  REQUIRE(find_command("SHOW POOLS", &input) != nullptr);
  CHECK(input.args.empty());
}
