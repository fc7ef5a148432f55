#include <doctest/doctest.h>
#include <unistd.h>

#include "proxy/server/session_params.hpp"

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
  SessionParams applied;
  CHECK(build_sync_sql(wanted, server, applied) ==
        "SET \"application_name\" = 'it''s';SELECT pg_catalog.set_config('search_path', 'x', false);");
  // pgmux remembers everything it applied (search_path is not even reported by the server).
  REQUIRE(applied.find("search_path"));
  CHECK(applied.entries().size() == 3);
  CHECK(build_sync_sql(wanted, server, applied) == "SET \"application_name\" = 'it''s';");

  SessionParams none;
  CHECK(build_sync_sql(SessionParams{}, server, none).empty());

  // The next client wants none of them: each one pgmux set is RESET (TimeZone too, though reported).
  CHECK(build_sync_sql(SessionParams{}, server, applied) ==
        "RESET \"application_name\";RESET \"TimeZone\";RESET \"search_path\";");

  SessionParams sneaky;
  sneaky.set("a\"b", "v");
  SessionParams applied_sneaky;
  CHECK(build_sync_sql(sneaky, server, applied_sneaky) == "SET \"a\"\"b\" = 'v';");
}

TEST_CASE("sync SQL resets unreported parameters the previous client set and this one does not want") {
  SessionParams reported;
  reported.set("application_name", "");
  SessionParams applied;
  applied.set("statement_timeout", "5s");
  applied.set("search_path", "a");
  SessionParams wanted;
  wanted.set("search_path", "a");
  CHECK(build_sync_sql(wanted, reported, applied) == "RESET \"statement_timeout\";");
  CHECK(applied.find("statement_timeout") == nullptr);
  CHECK(*applied.find("search_path") == "a");
  CHECK(build_sync_sql(SessionParams{}, reported, applied) == "RESET \"search_path\";");
  CHECK(applied.entries().empty());
}

#include "proxy/client/pin_counters.hpp"

TEST_CASE("pin counters are indexed by the classifier's pin reasons; the summary names each but none") {
  using pgmux::routing::PinReason;
  pgmux::proxy::PinCounters counters;
  counters.add(PinReason::Listen);
  counters.add(PinReason::Listen);
  counters.add(PinReason::SqlPrepare);
  CHECK(counters.get(PinReason::Listen) == 2);
  CHECK(counters.get(PinReason::TempTable) == 0);
  const std::string summary = counters.summary();
  CHECK(summary ==
        "temporary table=0, session advisory lock=0, LISTEN=2, WITH HOLD cursor=0, SQL PREPARE=1, "
        "session state unknown=0");
}

// The server does not report search_path: what pgmux applied for the previous client is what it has. A client
// that wants another value gets it (before, the comparison ran after the applied value was overwritten, so the
// previous client's search_path stayed on the server).
TEST_CASE("sync SQL sets an unreported parameter the previous client set to another value") {
  SessionParams reported;
  SessionParams applied;
  SessionParams first;
  first.set("search_path", "s1,public");
  CHECK(build_sync_sql(first, reported, applied) == "SELECT pg_catalog.set_config('search_path', 's1,public', false);");
  SessionParams second;
  second.set("search_path", "\"$user\",s1");
  CHECK(build_sync_sql(second, reported, applied) ==
        "SELECT pg_catalog.set_config('search_path', '\"$user\",s1', false);");
  CHECK(*applied.find("search_path") == "\"$user\",s1");
  CHECK(build_sync_sql(second, reported, applied).empty());
}


// A check-out remembers that it found nothing to send for these (wanted, reported) sets; any change to either, or
// to what was applied, makes the next one compare again.
TEST_CASE("sync SQL: a comparison that found nothing to send is remembered until a set changes") {
  SessionParams wanted;
  wanted.set("application_name", "a");
  SessionParams server;
  server.set("application_name", "x");
  SessionParams applied;
  CHECK(build_sync_sql(wanted, server, applied) == "SET \"application_name\" = 'a';");
  server.set("application_name", "a");  // the server's ParameterStatus after the SET
  CHECK(build_sync_sql(wanted, server, applied).empty());
  CHECK(build_sync_sql(wanted, server, applied).empty());  // remembered
  server.set("application_name", "b");  // the previous client's SET, reported
  CHECK(build_sync_sql(wanted, server, applied) == "SET \"application_name\" = 'a';");
  server.set("application_name", "a");
  CHECK(build_sync_sql(wanted, server, applied).empty());
  const SessionParams copy = wanted;  // same entries, same stamp: still nothing to send
  CHECK(copy.stamp() == wanted.stamp());
  CHECK(build_sync_sql(copy, server, applied).empty());
  SessionParams other;  // another client, other wishes
  other.set("application_name", "c");
  CHECK(build_sync_sql(other, server, applied) == "SET \"application_name\" = 'c';");
  applied.set("search_path", "s");  // what pgmux applied changed: compared again, and RESET
  server.set("application_name", "a");
  CHECK(build_sync_sql(wanted, server, applied) == "RESET \"search_path\";");
  wanted.set("application_name", "d");  // the client's own set changed
  CHECK(build_sync_sql(wanted, server, applied) == "SET \"application_name\" = 'd';");
}

// What PostgreSQL reports for a startup value (checked against PostgreSQL 15 by it_txpool_set's login test).
TEST_CASE("startup values in PostgreSQL's spelling") {
  using pgmux::proxy::postgres_spelling;
  const std::string iso_mdy = "ISO, MDY";
  CHECK(postgres_spelling("DateStyle", "iso,dmy", &iso_mdy) == "ISO, DMY");
  CHECK(postgres_spelling("datestyle", "sql", &iso_mdy) == "SQL, MDY");
  CHECK(postgres_spelling("DateStyle", "european", &iso_mdy) == "ISO, DMY");
  CHECK(postgres_spelling("DateStyle", "german", &iso_mdy) == "German, DMY");
  CHECK(postgres_spelling("DateStyle", "german, ymd", &iso_mdy) == "German, YMD");
  CHECK(postgres_spelling("DateStyle", "ISO, MDY", &iso_mdy) == "ISO, MDY");
  CHECK(postgres_spelling("DateStyle", "bogus", &iso_mdy) == "bogus");        // the server refuses it
  CHECK(postgres_spelling("DateStyle", "iso, sql", &iso_mdy) == "iso, sql");  // conflicting: likewise
  CHECK(postgres_spelling("client_encoding", "utf8", nullptr) == "UTF8");
  CHECK(postgres_spelling("client_encoding", "Unicode", nullptr) == "UTF8");
  CHECK(postgres_spelling("client_encoding", "LATIN1", nullptr) == "LATIN1");
  // Its own name for an alias, compared as clean_encoding_name does (case and punctuation aside).
  CHECK(postgres_spelling("client_encoding", "latin1", nullptr) == "LATIN1");
  CHECK(postgres_spelling("client_encoding", "euc-jp", nullptr) == "EUC_JP");
  CHECK(postgres_spelling("client_encoding", "iso-8859-1", nullptr) == "LATIN1");
  CHECK(postgres_spelling("client_encoding", "koi8", nullptr) == "KOI8R");
  CHECK(postgres_spelling("client_encoding", "sql_ascii", nullptr) == "SQL_ASCII");
  CHECK(postgres_spelling("client_encoding", "Windows-1252", nullptr) == "WIN1252");
  CHECK(postgres_spelling("client_encoding", "windows950", nullptr) == "BIG5");
  CHECK(postgres_spelling("client_encoding", "bogus", nullptr) == "bogus");  // refused there: as given
  CHECK(postgres_spelling("client_encoding", "--", nullptr) == "--");
  // The reported booleans as parse_bool reads them, "on" / "off" (libpq compares standard_conforming_strings).
  for (const char* on : {"ON", "true", "t", "Yes", "1", "on"}) {
    CAPTURE(std::string(on));
    CHECK(postgres_spelling("standard_conforming_strings", on, nullptr) == "on");
  }
  for (const char* off : {"OFF", "of", "false", "f", "no", "0"}) {
    CAPTURE(std::string(off));
    CHECK(postgres_spelling("default_transaction_read_only", off, nullptr) == "off");
  }
  CHECK(postgres_spelling("standard_conforming_strings", "o", nullptr) == "o");  // ambiguous: refused there
  CHECK(postgres_spelling("application_name", std::string(70, 'x'), nullptr) == std::string(63, 'x'));
  CHECK(postgres_spelling("application_name", "caf\xc3\xa9 \x01", nullptr) == "caf?? ?");
  // A zone as its file is named in this host's zone directory (tzdata comes with PostgreSQL); an offset as given.
  if (access("/usr/share/zoneinfo/Europe/Paris", R_OK) == 0) {
    CHECK(postgres_spelling("TimeZone", "europe/paris", nullptr) == "Europe/Paris");
  }
  CHECK(postgres_spelling("timezone", "+03", nullptr) == "+03");
}
