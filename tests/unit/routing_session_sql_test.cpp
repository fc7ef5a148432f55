#include <doctest/doctest.h>

#include <string>

#include "routing/session_sql.hpp"

using namespace pgmux::routing;

TEST_CASE("SET, set_config and RESET quote the name and the value") {
  CHECK(set_statement("application_name", "it's") == "SET \"application_name\" = 'it''s'");
  CHECK(set_statement("a\"b", "v") == "SET \"a\"\"b\" = 'v'");
  CHECK(set_statement("TimeZone", "") == "SET \"TimeZone\" = ''");
  // A list as a startup parameter gives it (set_config parses it so; SET 'a,b' would be one element "a,b").
  CHECK(set_statement("search_path", "\"$user\", public") ==
        "SELECT pg_catalog.set_config('search_path', '\"$user\", public', false)");
  std::string sql = "x;";
  append_reset_statement(sql, "search_path");
  sql += ';';
  append_set_statement(sql, "a", "b");
  CHECK(sql == "x;RESET \"search_path\";SET \"a\" = 'b'");
  CHECK(set_statement("Search_Path", "a'b") == "SELECT pg_catalog.set_config('Search_Path', 'a''b', false)");
  CHECK(set_statement("temp_tablespaces", "t1,t2") ==
        "SELECT pg_catalog.set_config('temp_tablespaces', 't1,t2', false)");
}

TEST_CASE("split_statements cuts a multi-statement string where PostgreSQL would") {
  using V = std::vector<std::string>;
  CHECK(split_statements("SELECT 1; SET application_name = 'a;b'; RESET TimeZone;") ==
        V{"SELECT 1", "SET application_name = 'a;b'", "RESET TimeZone"});
  CHECK(split_statements("SET search_path = \"x;y\" ; /* ; */ SELECT $$;$$") ==
        V{"SET search_path = \"x;y\"", "/* ; */ SELECT $$;$$"});
  CHECK(split_statements("  ;; ").empty());
  CHECK(split_statements("SELECT 1") == V{"SELECT 1"});
}

TEST_CASE("parameters that change what a statement means when it is parsed") {
  for (const char* name : {"search_path", "TimeZone", "DateStyle", "role", "standard_conforming_strings"}) {
    CAPTURE(name);
    CHECK(affects_statement_analysis(name));
  }
  for (const char* name : {"application_name", "statement_timeout", "work_mem", "search"}) {
    CAPTURE(name);
    CHECK_FALSE(affects_statement_analysis(name));
  }
  CHECK(may_affect_statement_analysis("SELECT pg_catalog.set_config('search_path', 'a', false)"));
  CHECK(may_affect_statement_analysis("SET ROLE reader"));
  CHECK_FALSE(may_affect_statement_analysis("SET statement_timeout = 5"));
}

TEST_CASE("settings a prepared statement keeps from its parse, and those PostgreSQL checks at each execution") {
  CHECK(fixed_at_parse("TimeZone"));
  CHECK(fixed_at_parse("datestyle"));
  CHECK_FALSE(fixed_at_parse("search_path"));
  CHECK_FALSE(fixed_at_parse("role"));
  CHECK_FALSE(fixed_at_parse("statement_timeout"));
}

// Encoding names compare as PostgreSQL compares them (case and punctuation aside): 'Shift-JIS' and 'BIG-5' are
// SJIS and BIG5, whose characters may end in a backslash byte.
TEST_CASE("session sql: the settings under which the server may read text otherwise than the lexer") {
  using pgmux::routing::lexer_may_misread;
  using pgmux::routing::may_change_text_reading;
  CHECK(lexer_may_misread("standard_conforming_strings", "off"));
  CHECK_FALSE(lexer_may_misread("standard_conforming_strings", "on"));
  for (const char* encoding : {"SJIS", "Shift-JIS", "shift_jis", "BIG-5", "big5", "GB-18030", "WIN-932", "gbk"}) {
    CAPTURE(encoding);
    CHECK(lexer_may_misread("client_encoding", encoding));
  }
  for (const char* encoding : {"UTF8", "utf-8", "LATIN1", "EUC_JP", "EUC-TW", "UHC", "SQL_ASCII"}) {
    CAPTURE(encoding);
    CHECK_FALSE(lexer_may_misread("client_encoding", encoding));
  }
  CHECK_FALSE(lexer_may_misread("application_name", "sjis"));
  for (const char* command : {"SET standard_conforming_strings = on", "set local STANDARD_CONFORMING_STRINGS to off",
                              "SET NAMES 'Shift-JIS'", "SET client_encoding = 'BIG-5'",
                              "SELECT set_config('client_encoding', 'win932', true)",
                              "RESET standard_conforming_strings"}) {
    CAPTURE(command);
    CHECK(may_change_text_reading(command));
  }
  for (const char* command : {"SET client_encoding = 'UTF8'", "SET NAMES 'LATIN1'", "SET search_path = sjis"}) {
    CAPTURE(command);
    CHECK_FALSE(may_change_text_reading(command));
  }
}

TEST_CASE("commands that only set settings, comments in front included, can be run again elsewhere") {
  using pgmux::routing::replayable_setting_command;
  CHECK(replayable_setting_command("SET TimeZone = 'UTC'"));
  CHECK(replayable_setting_command("  reset search_path"));
  CHECK(replayable_setting_command("/* app:x */ SET TimeZone = 'Asia/Tokyo'"));
  CHECK(replayable_setting_command("-- tag\nSET DateStyle = 'ISO, DMY'"));
  CHECK(replayable_setting_command("/* outer /* nested */ */ SELECT set_config('TimeZone', 'UTC', false)"));
  CHECK_FALSE(replayable_setting_command("PREPARE user_roles AS SELECT rolname FROM pg_roles"));
  CHECK_FALSE(replayable_setting_command("SETTLE"));
  CHECK_FALSE(replayable_setting_command("SELECT current_setting('TimeZone')"));
  CHECK_FALSE(replayable_setting_command("/* SET TimeZone */ DEALLOCATE q"));
  CHECK_FALSE(replayable_setting_command("/* unterminated SET"));
}
