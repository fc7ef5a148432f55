// synchronous_standby_names as PostgreSQL reads it, and which standbys every commit waits for.
#include <doctest/doctest.h>

#include "routing/sync_standby_names.hpp"

using pgmux::routing::parse_sync_standby_names;

TEST_CASE("synchronous_standby_names: the three forms") {
  auto first = parse_sync_standby_names("FIRST 2 (s1, \"S 2\", s3)");
  REQUIRE(first);
  CHECK_FALSE(first->quorum);
  CHECK(first->num_sync == 2);
  CHECK(first->names == std::vector<std::string>{"s1", "S 2", "s3"});
  CHECK_FALSE(first->all_required());

  auto any = parse_sync_standby_names("  any 2(s1,s2)  ");
  REQUIRE(any);
  CHECK(any->quorum);
  CHECK(any->all_required());

  auto count_only = parse_sync_standby_names("1 (standby1)");
  REQUIRE(count_only);
  CHECK_FALSE(count_only->quorum);
  CHECK(count_only->all_required());

  auto bare = parse_sync_standby_names("standby1, standby2");
  REQUIRE(bare);
  CHECK(bare->num_sync == 1);
  CHECK_FALSE(bare->all_required());  // FIRST 1 of two: the second waits only when the first is gone
  CHECK(parse_sync_standby_names("standby1")->all_required());
}

TEST_CASE("synchronous_standby_names: names compare ignoring case; a star or a repeated name requires less") {
  auto s = parse_sync_standby_names("FIRST 1 (Standby1)");
  REQUIRE(s);
  CHECK(s->lists("standby1"));
  CHECK(s->lists("STANDBY1"));
  CHECK_FALSE(s->lists("standby2"));
  CHECK_FALSE(parse_sync_standby_names("ANY 1 (*)")->all_required());
  CHECK_FALSE(parse_sync_standby_names("FIRST 2 (s1, *)")->all_required());
  CHECK_FALSE(parse_sync_standby_names("FIRST 2 (s1, S1, s2, s3)")->all_required());
  CHECK(parse_sync_standby_names("FIRST 2 (s1, S1, s2)")->all_required());  // two standbys, both needed
  CHECK(parse_sync_standby_names("FIRST 2 (s1, S1)")->all_required());
  CHECK(parse_sync_standby_names("\"a\"\"b\"")->names == std::vector<std::string>{"a\"b"});
}

TEST_CASE("synchronous_standby_names: empty or malformed is none") {
  for (const char* text : {"", "   ", "FIRST 1 (", "FIRST 1 ()", "ANY 0 (s1)", "s1,", "(s1)", "FIRST 1 (s1) extra",
                           "\"unterminated", "s1 s2"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_sync_standby_names(text));
  }
}

TEST_CASE("synchronous_commit or client_min_messages named in a statement, in any case") {
  using pgmux::routing::names_commit_wait_setting;
  CHECK(names_commit_wait_setting("SET LOCAL synchronous_commit = off"));
  CHECK(names_commit_wait_setting("set Synchronous_Commit to local"));
  CHECK(names_commit_wait_setting("SELECT set_config('SYNCHRONOUS_COMMIT', 'off', true)"));
  CHECK_FALSE(names_commit_wait_setting("SET application_name = 'synchronous'"));
  CHECK_FALSE(names_commit_wait_setting("synchronous_commi"));
  CHECK(names_commit_wait_setting("SET client_min_messages = error"));
}
