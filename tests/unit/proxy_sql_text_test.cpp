#include <doctest/doctest.h>

#include "protocol/frontend_messages.hpp"
#include "proxy/client/request_scanner.hpp"
#include "proxy/client/sql_text.hpp"

using namespace pgmux::proxy;

TEST_CASE("keywords at the start of SQL, any case, whole words only") {
  CHECK(starts_with_keyword("  show timezone", "SHOW"));
  CHECK(starts_with_keyword("PREPARE p AS SELECT 1", "PREPARE"));
  CHECK_FALSE(starts_with_keyword("SHOWS", "SHOW"));
  CHECK_FALSE(starts_with_keyword("SELECT 1", "SHOW"));
  CHECK(resets_all_settings("reset all"));
  CHECK(resets_all_settings("DISCARD ALL;"));
  CHECK_FALSE(resets_all_settings("RESET search_path"));
  CHECK_FALSE(resets_all_settings("DISCARD PLANS"));
}

TEST_CASE("multi-statement strings that may change session state are noticed") {
  CHECK(may_hold_session_command("SELECT 1; set search_path = x"));
  CHECK(may_hold_session_command("INSERT INTO t VALUES (1);RESET ALL"));
  CHECK(may_hold_session_command("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT"));
  CHECK_FALSE(may_hold_session_command("SELECT offset_value FROM settings; SELECT 2"));
  CHECK_FALSE(may_hold_session_command("INSERT INTO resets VALUES (1); SELECT 1"));
}

TEST_CASE("a Bind of the unnamed statement is flagged") {
  pgmux::protocol::ByteVector bytes;
  pgmux::protocol::build_bind(bytes, "", "", {});
  pgmux::protocol::build_execute(bytes, "", 0);
  pgmux::protocol::build_sync(bytes);
  RequestInfo info;
  REQUIRE(scan_request(bytes, 1 << 20, 1 << 22, info).status == ScanStatus::Complete);
  CHECK(info.binds_unnamed);
  CHECK(info.used.empty());
}
