// routing::is_well_formed_begin: the BEGIN texts pgmux may answer itself are exactly those PostgreSQL accepts.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "routing/begin_syntax.hpp"
#include "routing/classifier.hpp"

using pgmux::routing::is_well_formed_begin;
using pgmux::routing::well_formed_begin_tag;

TEST_CASE("BEGIN texts PostgreSQL accepts") {
  for (const char* sql :
       {"BEGIN", "begin;", "BEGIN WORK", "BEGIN TRANSACTION;", "START TRANSACTION", "start transaction ;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE",
        "BEGIN ISOLATION LEVEL READ UNCOMMITTED READ ONLY DEFERRABLE", "BEGIN NOT DEFERRABLE",
        "START TRANSACTION READ WRITE, ISOLATION LEVEL SERIALIZABLE, NOT DEFERRABLE",
        "BEGIN READ WRITE READ ONLY", "/* app */ BEGIN -- trailing\n", "BEGIN /* a ; b */ READ WRITE ;  "}) {
    CAPTURE(sql);
    CHECK(is_well_formed_begin(sql));
  }
}

TEST_CASE("BEGIN texts PostgreSQL refuses (42601), or that are not a BEGIN alone") {
  for (const char* sql :
       {"BEGIN ISOLATION LEVEL BOGUS", "START TRANSACTION foo", "BEGIN ISOLATION LEVEL", "BEGIN ISOLATION",
        "BEGIN ISOLATION LEVEL REPEATABLE", "BEGIN READ", "BEGIN READ COMMITTED", "BEGIN NOT", "BEGIN , READ ONLY",
        "BEGIN READ ONLY,", "BEGIN READ ONLY,, READ WRITE", "BEGIN WORK TRANSACTION", "START", "START WORK",
        "\"begin\"", "BEGIN 'x'", "BEGIN;;", "BEGIN; SELECT 1", "BEGIN /* unterminated", "BEGINS", "",
        "SELECT 1", "COMMIT"}) {
    CAPTURE(sql);
    CHECK_FALSE(is_well_formed_begin(sql));
  }
}

TEST_CASE("the command tag PostgreSQL answers a BEGIN with") {
  CHECK(std::string(well_formed_begin_tag("begin work")) == "BEGIN");
  CHECK(std::string(well_formed_begin_tag("BEGIN TRANSACTION READ ONLY")) == "BEGIN");
  CHECK(std::string(well_formed_begin_tag("START TRANSACTION")) == "START TRANSACTION");
  CHECK(std::string(well_formed_begin_tag("start transaction isolation level serializable;")) == "START TRANSACTION");
  CHECK(well_formed_begin_tag("START TRANSACTION foo") == nullptr);
}

// The classifier works the tag out once per text (cached with the class), for a BEGIN alone only.
TEST_CASE("the classifier carries the tag of a BEGIN PostgreSQL accepts, also from its cache") {
  pgmux::routing::Classifier classifier(std::vector<std::string>{});
  for (int i = 0; i < 2; ++i) {
    CHECK(std::string(classifier.classify("START TRANSACTION").held_tag) == "START TRANSACTION");
    CHECK(std::string(classifier.classify("begin read only").held_tag) == "BEGIN");
    CHECK(classifier.classify("BEGIN ISOLATION LEVEL BOGUS").held_tag == nullptr);
    CHECK(classifier.classify("BEGIN; SELECT 1").held_tag == nullptr);
    CHECK(classifier.classify("SELECT 1").held_tag == nullptr);
  }
}


// SET TRANSACTION texts pgmux may answer itself behind a BEGIN it holds back: transaction modes alone, as
// PostgreSQL's grammar takes them (one at least); SNAPSHOT (which may fail: no such snapshot) is not one.
TEST_CASE("SET TRANSACTION texts of modes PostgreSQL accepts, and others") {
  using pgmux::routing::well_formed_set_transaction_tag;
  for (const char* sql :
       {"SET TRANSACTION READ ONLY", "set transaction isolation level repeatable read, read only;",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", "SET /* x */ TRANSACTION READ WRITE",
        "SET TRANSACTION NOT DEFERRABLE -- c\n"}) {
    CAPTURE(sql);
    CHECK(std::string(well_formed_set_transaction_tag(sql)) == "SET");
  }
  for (const char* sql :
       {"SET TRANSACTION", "SET TRANSACTION;", "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
        "SET TRANSACTION ISOLATION LEVEL BOGUS", "SET TRANSACTION READ ONLY,", "SET TRANSACTION , READ ONLY",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET transaction_read_only = on",
        "SET TRANSACTION READ ONLY; SELECT 1", "SET TRANSACTION READ ONLY /* open", "BEGIN", "SET search_path = x"}) {
    CAPTURE(sql);
    CHECK(well_formed_set_transaction_tag(sql) == nullptr);
  }
  pgmux::routing::Classifier classifier(std::vector<std::string>{});
  for (int i = 0; i < 2; ++i) {  // also from the cache
    CHECK(std::string(classifier.classify("SET TRANSACTION READ ONLY").held_tag) == "SET");
    CHECK(classifier.classify("SET TRANSACTION SNAPSHOT 'x'").held_tag == nullptr);
    CHECK(classifier.classify("SET TRANSACTION READ ONLY; SELECT 1").held_tag == nullptr);
    CHECK(classifier.classify("SET work_mem = '4MB'").held_tag == nullptr);
  }
}
