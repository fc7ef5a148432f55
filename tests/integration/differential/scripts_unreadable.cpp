// Messages that frame but whose bodies PostgreSQL cannot read: it answers ERROR 08P01 (and, in an extended batch,
// skips to Sync) and the session goes on. pgmux ended the session with FATAL 08P01 before: these scripts fail there.
#include <string>

#include "protocol/frontend_messages.hpp"
#include "tests/integration/differential/scripts.hpp"

namespace pgmux::difftest {

namespace {

// A tagged message with the given body as it is (no NUL added).
ByteVector raw_message(char tag, std::string_view body) {
  ByteVector m{std::byte(tag)};
  const auto length = static_cast<uint32_t>(body.size() + 4);
  for (int shift = 24; shift >= 0; shift -= 8) m.push_back(std::byte(length >> shift));
  for (const char c : body) m.push_back(std::byte(c));
  return m;
}

std::string with_nul(std::string_view text) { return std::string(text) + '\0'; }

BindParams bind_of(std::string statement) {
  BindParams b;
  b.statement = std::move(statement);
  return b;
}

}  // namespace

// Each refused message on its own, and in batches with readable ones around it: what ran before it stays (a
// statement parsed), what came after it is skipped (a Close, a Parse), and its implicit transaction rolls back.
Script unreadable_messages(const Schema& s) {
  const std::string insert = "INSERT INTO " + s.items + " VALUES (20, 'twenty', 1, NULL, NULL)";
  return ScriptBuilder("unreadable_messages")
      .raw(raw_message('Q', "SELECT 1"), "Q(no NUL)").expect_ready()
      .raw(raw_message('Q', with_nul("SELECT 1") + "x"), "Q(a byte after the NUL)").expect_ready()
      .q("SELECT 'still here' AS alive")
      // A statement parsed before the refused message stays; the INSERT's implicit transaction rolls back.
      .parse("diff_u1", "SELECT 7 AS seven").parse("", insert).bind(bind_of("")).execute("")
      .raw(raw_message('P', with_nul("diff_u9") + with_nul("SELECT 9") + std::string("\0\1\0\0", 4)),
           "P(one type announced, half of it sent)")
      .close('S', "diff_u1").sync().expect_ready()
      .q("SELECT count(*) AS twenties FROM " + s.items + " WHERE id = 20")
      .bind(bind_of("diff_u1")).execute("").sync().expect_ready()  // parsed, and the Close was skipped
      .bind(bind_of("diff_u9")).execute("").sync().expect_ready()  // 26000: never created
      .raw(raw_message('D', with_nul("Xdiff_u1")), "D(kind X)").sync().expect_ready()
      .raw(raw_message('D', with_nul("Sdiff_u1") + "x"), "D(a byte after the name)").sync().expect_ready()
      .raw(raw_message('C', with_nul("Qdiff_u1")), "C(kind Q)").sync().expect_ready()
      .raw(raw_message('C', "Sdiff_u1"), "C(no NUL)").bind(bind_of("diff_u1")).execute("").sync().expect_ready()
      .raw(raw_message('B', with_nul("") + "diff_u1"), "B(statement name without NUL)").execute("")
      .sync().expect_ready()
      // Closed by a Flush: ParseComplete and the error come at once; the Sync then gets ReadyForQuery.
      .parse("", "SELECT 2").raw(raw_message('D', ""), "D(empty)").flush().expect_messages(2)
      .sync().expect_ready()
      // In a transaction block the error fails the block, as any error does.
      .q("BEGIN")
      .raw(raw_message('Q', "SELECT 1"), "Q(no NUL)").expect_ready()
      .q("SELECT 1")  // 25P02
      .q("ROLLBACK")
      // A DEALLOCATE pgmux would answer itself, in a batch PostgreSQL fails: the statement stays.
      .parse("", "DEALLOCATE diff_u1").raw(raw_message('B', std::string(1, '\0')), "B(statement name without NUL)")
      .execute("").sync().expect_ready()
      .parse("", "DEALLOCATE diff_u1").bind(bind_of("")).raw(raw_message('E', ""), "E(empty)").sync().expect_ready()
      .parse("", "DEALLOCATE diff_u1").bind(bind_of("")).raw(raw_message('D', "P"), "D(portal name without NUL)")
      .execute("").sync().expect_ready()
      .bind(bind_of("diff_u1")).execute("").close('S', "diff_u1").sync().expect_ready()
      .build();
}

// A Parse may declare up to 65535 parameter types: PostgreSQL reads the count unsigned (pgmux read 0xFFFF as
// negative and refused the message).
Script parse_many_types(const Schema&) {
  std::string body = with_nul("diff_u_many") + with_nul("SELECT $1::int AS first") + std::string("\xff\xff", 2);
  for (int i = 0; i < 65535; ++i) body += std::string("\0\0\0\x17", 4);  // int4
  BindParams first_only = bind_of("diff_u_many");
  first_only.values = {std::string("5")};
  return ScriptBuilder("parse_many_types")
      .raw(raw_message('P', body), "P(65535 types)").sync().expect_ready()
      .bind(first_only).execute("").sync().expect_ready()  // 08P01: 65535 parameters wanted, 1 given
      .close('S', "diff_u_many").sync().expect_ready()
      .build();
}

}  // namespace pgmux::difftest
