// The catalog of differential scripts and the SQL that prepares, resets and removes the objects they use.
// Object names carry a per-process suffix so concurrent runs against the same database do not collide.
#pragma once
#include <string>
#include <vector>
#include "tests/integration/differential/script.hpp"

namespace pgmux::difftest {

struct Schema {
  std::string items;   // table: id int PK, name text, price numeric(10,2), created date, flag bool
  std::string copies;  // table: id int, note text (COPY target)
  std::string notice;  // function notice(int) -> int, RAISE NOTICE per call

  explicit Schema(const std::string& suffix)
      : items("diff_items_" + suffix), copies("diff_copy_" + suffix), notice("diff_notice_" + suffix) {}

  std::string setup_sql() const;     // CREATE ... (once, before all scripts: table OIDs must stay fixed)
  std::string reset_sql() const;     // TRUNCATE + seed rows (before every run of every script)
  std::string teardown_sql() const;  // DROP ... IF EXISTS
};

std::vector<Script> all_scripts(const Schema& s);

// scripts_unreadable.cpp: messages that frame but whose bodies PostgreSQL cannot read.
Script unreadable_messages(const Schema& s);
Script parse_many_types(const Schema& s);

// scripts_copy.cpp: COPY data and its end sent before PostgreSQL asks for them, a request pipelined behind.
Script copy_ended_ahead(const Schema& s);
Script copy_ignores_sync(const Schema& s);
Script copy_fails_in_open_sequence(const Schema& s);

// scripts_transaction.cpp: SET TRANSACTION statements behind a BEGIN pgmux holds back.
Script set_transaction_held(const Schema& s);

}  // namespace pgmux::difftest
