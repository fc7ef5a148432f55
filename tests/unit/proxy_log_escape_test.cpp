// escape_for_log: text a client chose cannot start a log line of its own or hide bytes.
#include <doctest/doctest.h>

#include <string>

#include "proxy/net/log.hpp"

using pgmux::proxy::escape_for_log;

TEST_CASE("printable ASCII stays; control bytes, non-ASCII and backslashes are escaped") {
  CHECK(escape_for_log("_pq_.option") == "_pq_.option");
  CHECK(escape_for_log("a\nINFO fake line") == "a\\x0aINFO fake line");
  CHECK(escape_for_log(std::string("nul\0byte", 8)) == "nul\\x00byte");
  CHECK(escape_for_log("back\\slash") == "back\\\\slash");
  CHECK(escape_for_log("\xc3\xa9t\xc3\xa9") == "\\xc3\\xa9t\\xc3\\xa9");
  CHECK(escape_for_log("\x7f") == "\\x7f");
}

TEST_CASE("long text is cut after max bytes, and says so") {
  CHECK(escape_for_log(std::string(300, 'x'), 10) == "xxxxxxxxxx...");
  CHECK(escape_for_log("exactly", 7) == "exactly");
  CHECK(escape_for_log("", 5).empty());
}
