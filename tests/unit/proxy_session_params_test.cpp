#include <doctest/doctest.h>

#include "proxy/session_params.hpp"

using pgmux::proxy::build_sync_sql;
using pgmux::proxy::is_connection_key;
using pgmux::proxy::parse_options_parameter;
using pgmux::proxy::SessionParams;

TEST_CASE("SessionParams keeps first-seen order and matches names case-insensitively") {
  SessionParams p;
  p.set("TimeZone", "UTC");
  p.set("application_name", "a");
  p.set("timezone", "Europe/Paris");
  REQUIRE(p.entries().size() == 2);
  CHECK(p.entries()[0].first == "TimeZone");
  CHECK(p.entries()[0].second == "Europe/Paris");
  CHECK(*p.find("TIMEZONE") == "Europe/Paris");
  CHECK(p.find("search_path") == nullptr);
}

TEST_CASE("connection keys are not replayed") {
  CHECK(is_connection_key("user"));
  CHECK(is_connection_key("database"));
  CHECK(is_connection_key("options"));
  CHECK(is_connection_key("replication"));
  CHECK_FALSE(is_connection_key("application_name"));
}

TEST_CASE("options parameter: -c forms, --name=value, escapes") {
  SessionParams p;
  REQUIRE(parse_options_parameter("-c statement_timeout=5s  -csearch_path=a,b --lock-timeout=1s", p));
  CHECK(*p.find("statement_timeout") == "5s");
  CHECK(*p.find("search_path") == "a,b");
  CHECK(*p.find("lock_timeout") == "1s");

  SessionParams escaped;
  REQUIRE(parse_options_parameter(R"(-c application_name=my\ app)", escaped));
  CHECK(*escaped.find("application_name") == "my app");

  SessionParams bad;
  CHECK_FALSE(parse_options_parameter("-x", bad));
  CHECK_FALSE(parse_options_parameter("-c novalue", bad));
  CHECK_FALSE(parse_options_parameter("-c =x", bad));
  CHECK_FALSE(parse_options_parameter("plainword", bad));
  SessionParams empty;
  CHECK(parse_options_parameter("", empty));
  CHECK(empty.entries().empty());
}

TEST_CASE("sync SQL sets only what differs, quoting names and values") {
  SessionParams wanted;
  wanted.set("application_name", "it's");
  wanted.set("TimeZone", "UTC");
  wanted.set("search_path", "x");
  SessionParams server;
  server.set("timezone", "UTC");
  server.set("application_name", "");
  CHECK(build_sync_sql(wanted, server) ==
        "SET \"application_name\" = 'it''s';SET \"search_path\" = 'x';");
  CHECK(build_sync_sql(SessionParams{}, server).empty());

  SessionParams sneaky;
  sneaky.set("a\"b", "v");
  CHECK(build_sync_sql(sneaky, server) == "SET \"a\"\"b\" = 'v';");
}
