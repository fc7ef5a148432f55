#include "tests/integration/differential/scripts.hpp"

namespace pgmux::difftest {

namespace {

constexpr int32_t kInt4 = 23;
constexpr int32_t kInt8 = 20;
constexpr int32_t kText = 25;

BindParams bind_text(std::string portal, std::string statement, std::vector<std::optional<std::string>> values) {
  BindParams b;
  b.portal = std::move(portal);
  b.statement = std::move(statement);
  b.values = std::move(values);
  return b;
}

Script simple_select_types(const Schema& s) {
  return ScriptBuilder("simple_select_types")
      .q("SELECT 1::int4 AS i4, 9000000000::int8 AS i8, 'txt'::text AS t, 3.14159::numeric AS n, true AS b, "
         "NULL::text AS nul, '2024-01-02'::date AS d, '{1,2,3}'::int[] AS arr, '\\xdeadbeef'::bytea AS by, "
         "1.5::float8 AS f8, '12:34:56'::time AS tm, '{\"k\": [1, 2]}'::jsonb AS js, "
         "'2024-01-02 03:04:05+00'::timestamptz AS ts")
      .q("SELECT * FROM " + s.items + " ORDER BY id")
      .q("SELECT id, name FROM " + s.items + " WHERE id > 100")  // zero rows
      .build();
}

Script multi_statement(const Schema& s) {
  return ScriptBuilder("multi_statement")
      .q("SELECT 1; SELECT 'two' AS word, 2 AS num; UPDATE " + s.items + " SET flag = NOT flag WHERE id <= 2; "
         "SELECT id, flag FROM " + s.items + " ORDER BY id; INSERT INTO " + s.items +
         " VALUES (10, 'ten', 10, NULL, NULL); DELETE FROM " + s.items + " WHERE id = 10")
      .build();
}

Script simple_error(const Schema& s) {
  return ScriptBuilder("simple_error")
      .q("SELECT 1; SELECT 1/0; SELECT 3")  // the batch stops at the error
      .q("SELECT * FROM " + s.items + "_missing")
      .q("SELCT 1")
      .q("INSERT INTO " + s.items + " VALUES (1, 'duplicate', 0, NULL, NULL)")
      .q("SELECT 'after errors' AS still_alive")
      .build();
}

Script empty_query(const Schema&) {
  return ScriptBuilder("empty_query").q("").q(";").q("   ").q("-- only a comment").q("SELECT 1; ;").build();
}

Script extended_basic(const Schema& s) {
  BindParams typed = bind_text("", "", {"40", "2", "answer"});
  BindParams named = bind_text("p1", "diff_sel", {"3"});
  named.result_formats = {1};  // every column in binary
  BindParams named_again = bind_text("", "diff_sel", {"1"});
  BindParams binary_param = bind_text("", "diff_bin", {binary_int4(7), std::nullopt});
  binary_param.param_formats = {1, 0};
  return ScriptBuilder("extended_basic")
      // Unnamed statement with declared types, unnamed portal, text results.
      .parse("", "SELECT $1::int + $2::int AS sum, $3::text AS label", {kInt4, kInt4, kText})
      .bind(typed).describe('P', "").execute("").sync().expect_ready()
      // Named statement, described before use; inferred parameter type.
      .parse("diff_sel", "SELECT id, name, price, created, flag FROM " + s.items + " WHERE id >= $1 ORDER BY id")
      .describe('S', "diff_sel").sync().expect_ready()
      // Named portal with binary results, then the unnamed portal from the same statement.
      .bind(named).describe('P', "p1").execute("p1").bind(named_again).execute("").sync().expect_ready()
      // A binary parameter and a NULL.
      .parse("diff_bin", "SELECT $1::int4 * 6 AS product, $2::int8 IS NULL AS was_null", {kInt4, kInt8})
      .bind(binary_param).describe('S', "diff_bin").execute("").sync().expect_ready()
      // Statement without a result set: Describe answers NoData.
      .parse("", "UPDATE " + s.items + " SET price = price + 1 WHERE id = $1").bind(bind_text("", "", {"2"}))
      .describe('P', "").execute("").sync().expect_ready()
      .close('S', "diff_sel").close('S', "diff_bin").sync().expect_ready()
      .build();
}

Script pipeline_error(const Schema& s) {
  return ScriptBuilder("pipeline_error")
      // Three Sync groups in one write; the middle one fails at Execute, the rest of it is skipped.
      .parse("", "INSERT INTO " + s.items + " VALUES (20, 'twenty', 20, NULL, NULL)").bind(bind_text("", "", {}))
      .execute("").sync()
      .parse("", "SELECT 1/0 AS boom").bind(bind_text("", "", {})).execute("")
      .parse("", "INSERT INTO " + s.items + " VALUES (21, 'skipped', 21, NULL, NULL)").bind(bind_text("", "", {}))
      .execute("").sync()
      .parse("", "SELECT count(*) AS n, max(id) AS top FROM " + s.items).bind(bind_text("", "", {}))
      .execute("").sync()
      .expect_ready(3)
      // An error at Parse: the Bind that follows must be skipped, not answered.
      .parse("diff_bad", "SELEC nonsense").bind(bind_text("", "diff_bad", {})).execute("").sync()
      .parse("", "SELECT 'recovered' AS state").bind(bind_text("", "", {})).execute("").sync()
      .expect_ready(2)
      .build();
}

Script flush_without_sync(const Schema& s) {
  return ScriptBuilder("flush_without_sync")
      .parse("diff_fl", "SELECT $1::text || '!' AS shout", {kText}).flush()
      .expect_messages(1)  // ParseComplete
      .bind(bind_text("", "diff_fl", {"hey"})).describe('P', "").execute("").flush()
      .expect_messages(4)  // BindComplete RowDescription DataRow CommandComplete
      .parse("", "SELECT name FROM " + s.items + " WHERE id = $1", {kInt4})
      .bind(bind_text("", "", {"1"})).execute("").flush()
      .expect_messages(4)  // ParseComplete BindComplete DataRow CommandComplete
      .sync().expect_ready()
      .close('S', "diff_fl").flush()
      .expect_messages(1)  // CloseComplete
      .sync().expect_ready()
      .build();
}

Script portal_suspension(const Schema& s) {
  ScriptBuilder b("portal_suspension");
  // Batched: seven rows fetched two at a time in one Sync group.
  b.parse("", "SELECT g AS n, repeat('x', g) AS xs FROM generate_series(1, 7) g").bind(bind_text("", "", {}))
      .describe('P', "");
  for (int i = 0; i < 4; ++i) b.execute("", 2);
  b.sync().expect_ready();
  // Interactive: Execute + Flush, reading each batch before asking for the next.
  b.parse("diff_ps", "SELECT id, name FROM " + s.items + " ORDER BY id").bind(bind_text("", "diff_ps", {}))
      .execute("", 2).flush().expect_messages(5);  // ParseComplete BindComplete DataRow DataRow PortalSuspended
  b.execute("", 2).flush().expect_messages(3);     // DataRow DataRow PortalSuspended
  b.execute("", 2).flush().expect_messages(2);     // DataRow CommandComplete (5 rows)
  b.sync().expect_ready();
  // A named portal kept open across Syncs inside an explicit transaction.
  b.q("BEGIN");
  b.bind(bind_text("cur", "diff_ps", {})).execute("cur", 3).sync().expect_ready();
  b.execute("cur", 3).sync().expect_ready();
  b.execute("cur", 3).sync().expect_ready();
  b.close('P', "cur").close('S', "diff_ps").sync().expect_ready();
  b.q("COMMIT");
  return b.build();
}

Script copy_in(const Schema& s) {
  return ScriptBuilder("copy_in")
      .query("COPY " + s.copies + " FROM STDIN").expect_messages(1, std::chrono::milliseconds(200))
      .copy_data("1\tone\n").copy_data("2\ttwo\n3\t").copy_data("three\n4\t\\N\n").copy_done().expect_ready()
      .query("COPY " + s.copies + " (id, note) FROM STDIN WITH (FORMAT csv)")
      .expect_messages(1, std::chrono::milliseconds(200))
      .copy_data("5,\"five, with comma\"\n6,six\n").copy_done().expect_ready()
      .q("SELECT * FROM " + s.copies + " ORDER BY id")
      // Bad data: the server reports the error after CopyDone (or on the bad row).
      .query("COPY " + s.copies + " FROM STDIN").expect_messages(1, std::chrono::milliseconds(200))
      .copy_data("seven\tnot a number\n").copy_done().expect_ready()
      .build();
}

// The server rejects a row while the next CopyData is only partly sent: it answers at once, then reads the rest of
// that message and drops it, as it drops any COPY message after the error. pgmux read the rest as messages of their
// own (08P01, the client closed), and the server, still waiting for it, stayed in the pool, stuck.
Script copy_error_mid_message(const Schema& s) {
  std::string rows;
  for (int i = 0; i < 20000; ++i) rows += std::to_string(i) + "\tmany\n";
  ByteVector big;
  build_copy_data(big, rows);
  const auto middle = big.begin() + 1000;
  return ScriptBuilder("copy_error_mid_message")
      .query("COPY " + s.copies + " FROM STDIN").expect_messages(1, std::chrono::milliseconds(200))
      .copy_data("seven\tnot a number\n").raw(ByteVector(big.begin(), middle), "d(first 1000 bytes)")
      .expect_ready()  // ErrorResponse ReadyForQuery
      .raw(ByteVector(middle, big.end()), "d(the rest)").copy_done().expect_messages(0)
      .q("SELECT count(*) FROM " + s.copies)
      .build();
}

// COPY FROM STDIN in an extended batch, as libpq sends it (PQsendQueryParams, then PQputCopyData and
// PQputCopyEnd): the batch's Sync reaches the server in COPY IN, which ignores it; the Sync after CopyDone ends the
// COPY. The unnamed statement holds the COPY afterwards: a second Bind "" runs it again.
Script copy_in_extended(const Schema& s) {
  ScriptBuilder b("copy_in_extended");
  b.parse("", "COPY " + s.copies + " FROM STDIN").bind(bind_text("", "", {})).describe('P', "").execute("").sync()
      .expect_messages(4);  // ParseComplete BindComplete NoData CopyInResponse; no ReadyForQuery for the Sync
  b.copy_data("1\tone\n").copy_done().sync().expect_ready();  // CommandComplete ReadyForQuery
  b.bind(bind_text("", "", {})).execute("").sync().expect_messages(2);  // BindComplete CopyInResponse
  b.copy_data("2\ttwo\n").copy_done().sync().expect_ready();
  b.q("SELECT * FROM " + s.copies + " ORDER BY id");
  return b.build();
}

Script copy_fail(const Schema& s) {
  return ScriptBuilder("copy_fail")
      .query("COPY " + s.copies + " FROM STDIN").expect_messages(1, std::chrono::milliseconds(200))
      .copy_data("9\tnine\n").copy_fail("client gave up").expect_ready()
      .q("SELECT count(*) FROM " + s.copies)
      .build();
}

Script copy_out(const Schema& s) {
  return ScriptBuilder("copy_out")
      .q("COPY (SELECT * FROM " + s.items + " ORDER BY id) TO STDOUT")
      .q("COPY " + s.items + " (id, name) TO STDOUT WITH (FORMAT csv, HEADER)")
      .q("COPY (SELECT g FROM generate_series(1, 2000) g) TO STDOUT WITH (FORMAT binary)")
      .build();
}

Script notice_mid_result(const Schema& s) {
  return ScriptBuilder("notice_mid_result")
      .q("SELECT " + s.notice + "(g) AS tenfold FROM generate_series(1, 3) g")
      .parse("", "SELECT " + s.notice + "(id) FROM " + s.items + " WHERE id <= $1 ORDER BY id", {kInt4})
      .bind(bind_text("", "", {"2"})).execute("").sync().expect_ready()
      .q("DO $$ BEGIN RAISE WARNING 'careful'; RAISE NOTICE 'done' USING DETAIL = 'some detail'; END $$")
      .q("DROP TABLE IF EXISTS " + s.items + "_never_existed")  // NOTICE ... does not exist, skipping
      .build();
}

Script parameter_status_mid(const Schema&) {
  return ScriptBuilder("parameter_status_mid")
      .q("SELECT 1 AS before; SET application_name = 'diff_changed'; SELECT 2 AS middle; "
         "SET TimeZone = 'America/New_York'; SELECT '2024-01-02 03:04:05+00'::timestamptz AS ts")
      .q("SHOW application_name")
      .q("SELECT '2024-06-01 12:00:00+00'::timestamptz AS still_new_york")
      .q("SET DateStyle = 'SQL, DMY'; SELECT '2024-01-02'::date AS d")
      .q("SET application_name = 'pgmux_diff'; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'")
      .build();
}

Script reset_parameters(const Schema&) {
  // RESET returns to the value the client's startup packet set, whatever server connection answers.
  return ScriptBuilder("reset_parameters")
      .q("SET application_name = 'temporary'; SET TimeZone = 'Asia/Tokyo'")
      .q("RESET application_name; RESET TimeZone")
      .q("SHOW application_name")
      .q("SET extra_float_digits = 1; RESET ALL; SHOW extra_float_digits")
      .build();
}

Script transaction_error(const Schema& s) {
  return ScriptBuilder("transaction_error")
      .q("BEGIN")
      .q("INSERT INTO " + s.items + " VALUES (30, 'lime', 1, NULL, NULL)")
      .q("SELECT count(*) FROM " + s.items)
      .q("INSERT INTO " + s.items + " VALUES (1, 'duplicate', 0, NULL, NULL)")  // status 'E' from here
      .q("SELECT 1")                                                             // in failed transaction
      .parse("", "SELECT 2").bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .q("ROLLBACK")
      .q("SELECT count(*) FROM " + s.items)
      // The same in the extended protocol: the error in an explicit transaction keeps status 'E' after Sync.
      .q("BEGIN")
      .parse("", "SELECT 1/0").bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .q("COMMIT")  // answers ROLLBACK
      .q("BEGIN; SAVEPOINT sp; SELECT 1/0")
      .q("ROLLBACK TO SAVEPOINT sp; SELECT 'saved' AS state; COMMIT")
      .build();
}

Script close_and_reparse(const Schema& s) {
  return ScriptBuilder("close_and_reparse")
      .parse("diff_cr", "SELECT 1 AS a").sync().expect_ready()
      .bind(bind_text("", "diff_cr", {})).execute("").sync().expect_ready()
      .close('S', "diff_cr").sync().expect_ready()
      .parse("diff_cr", "SELECT 'x'::text AS b, count(*) AS c FROM " + s.items).describe('S', "diff_cr")
      .bind(bind_text("", "diff_cr", {})).execute("").sync().expect_ready()
      .parse("diff_cr", "SELECT 3").sync().expect_ready()  // 42P05: already exists
      .bind(bind_text("", "diff_gone", {})).execute("").sync().expect_ready()  // 26000: does not exist
      .close('S', "diff_never").close('P', "diff_no_portal").sync().expect_ready()  // not errors
      .close('S', "diff_cr").sync().expect_ready()
      .q("PREPARE diff_sql_prep (int) AS SELECT $1 * 2; EXECUTE diff_sql_prep(21); DEALLOCATE diff_sql_prep")
      .build();
}

Script statement_order(const Schema& s) {
  // The messages of a batch act in order: a Bind before a Close uses the old statement, a Parse after it makes the
  // new one; unknown names get 26000 from Describe and Bind; the unnamed statement outlives its Sync (on whichever
  // server the next request lands) until a simple Query or a Close ends it, and a Parse of it skipped after an
  // error leaves the one before.
  return ScriptBuilder("statement_order")
      .parse("diff_so", "SELECT 1 AS old_one").sync().expect_ready()
      .bind(bind_text("", "diff_so", {})).execute("").close('S', "diff_so")
      .parse("diff_so", "SELECT 'new' AS new_one, count(*) AS n FROM " + s.items)
      .bind(bind_text("", "diff_so", {})).describe('P', "").execute("").sync().expect_ready()
      .bind(bind_text("", "diff_so", {})).execute("").sync().expect_ready()
      .describe('S', "diff_so_missing").sync().expect_ready()
      .parse("diff_so2", "SELECT 2").bind(bind_text("", "diff_so_missing", {})).execute("").sync().expect_ready()
      .parse("diff_so2", "SELECT 3").sync().expect_ready()  // the batch before failed after parsing it: it exists
      .parse("", "SELECT 42 AS kept").sync().expect_ready()
      .bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .q("SELECT 'a simple query ends the unnamed statement'")
      .bind(bind_text("", "", {})).execute("").sync().expect_ready()  // 26000
      // The 26000 comes in its place in the batch: the Parse before it succeeded.
      .parse("diff_so3", "SELECT 3").bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .parse("diff_so3", "SELECT 3").sync().expect_ready()  // 42P05: it exists
      .close('S', "diff_so3").sync().expect_ready()
      // Closed, it is gone (26000) on whichever server the Bind lands.
      .parse("", "SELECT 43 AS closed").sync().expect_ready()
      .close('S', "").sync().expect_ready()
      .bind(bind_text("", "", {})).execute("").sync().expect_ready()
      // A Parse of it skipped after an error earlier in its batch leaves the earlier one: alone, then pipelined.
      .parse("", "SELECT 44 AS earlier").sync().expect_ready()
      .bind(bind_text("", "diff_so_missing", {})).parse("", "SELECT 45 AS skipped").sync().expect_ready()
      .bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .bind(bind_text("", "diff_so_missing", {})).parse("", "SELECT 46 AS skipped_too").sync()
      .bind(bind_text("", "", {})).execute("").sync().expect_ready(2)
      .close('S', "diff_so").close('S', "diff_so2").sync().expect_ready()
      .build();
}

Script shared_statement_mid_sequence(const Schema& s) {
  // Transaction pooling shares a statement's server copy by its text: a second name for the same text, parsed in
  // the middle of an extended sequence left open by Flush (what asyncpg does around type introspection), on the
  // server that already has that copy. pgmux replaces the copy without a round trip of its own, and the client
  // sees exactly PostgreSQL's messages (no stray CloseComplete, no stall).
  const std::string text = "SELECT count(*) AS n FROM " + s.items + " WHERE id > $1";
  return ScriptBuilder("shared_statement_mid_sequence")
      .parse("diff_sh1", text, {kInt4}).bind(bind_text("", "diff_sh1", {"1"})).execute("").sync().expect_ready()
      .parse("diff_sh0", "SELECT 5 AS five").describe('S', "diff_sh0").flush()
      .expect_messages(3)  // ParseComplete ParameterDescription RowDescription
      .parse("diff_sh2", text, {kInt4}).bind(bind_text("", "diff_sh2", {"2"})).execute("")
      .bind(bind_text("", "diff_sh0", {})).execute("").sync().expect_ready()
      .close('S', "diff_sh0").close('S', "diff_sh1").close('S', "diff_sh2").sync().expect_ready()
      .build();
}

Script duplicate_parse_mid_batch(const Schema&) {
  // A Parse of a name that exists, after other messages of its batch: 42P05 from there, the rest skipped.
  return ScriptBuilder("duplicate_parse_mid_batch")
      .parse("diff_dup", "SELECT 1 AS first").sync().expect_ready()
      .bind(bind_text("", "diff_dup", {})).execute("").parse("diff_dup", "SELECT 2").sync().expect_ready()
      .bind(bind_text("", "diff_dup", {})).execute("").sync().expect_ready()  // still the first one
      .close('S', "diff_dup").sync().expect_ready()
      .build();
}

Script close_skipped_after_error(const Schema&) {
  // A Close behind an error in its batch is skipped, like everything up to the Sync: the statement still exists and
  // a later Bind runs it (alone, then pipelined behind the failing batch), and a Parse of its name gets 42P05.
  // (Transaction pooling and the split forgot the statement at the Close: a later Bind got 26000.)
  return ScriptBuilder("close_skipped_after_error")
      .parse("diff_cs", "SELECT 7 AS still_there").sync().expect_ready()
      .bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs").sync().expect_ready()
      .bind(bind_text("", "diff_cs", {})).execute("").sync().expect_ready()
      .parse("diff_cs", "SELECT 8").sync().expect_ready()
      .bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs").sync()
      .bind(bind_text("", "diff_cs", {})).execute("").sync().expect_ready(2)
      // Closed and parsed again behind the error (pgjdbc's order): both skipped, the first statement stays.
      .bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs").parse("diff_cs", "SELECT 9 AS skipped")
      .sync().expect_ready()
      .bind(bind_text("", "diff_cs", {})).execute("").sync().expect_ready()
      // Parsed, then closed behind the error: the Parse ran, the Close did not.
      .parse("diff_cs2", "SELECT 10 AS parsed").bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs2")
      .sync().expect_ready()
      .bind(bind_text("", "diff_cs2", {})).execute("").sync().expect_ready()
      .close('S', "diff_cs").close('S', "diff_cs2").sync().expect_ready()
      .bind(bind_text("", "diff_cs", {})).execute("").sync().expect_ready()  // 26000: closed now
      // A Parse skipped behind an error, then pipelined behind it a Close skipped too: never made (26000).
      .bind(bind_text("", "diff_cs_missing", {})).parse("diff_cs3", "SELECT 11").sync()
      .bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs3").sync().expect_ready(2)
      .bind(bind_text("", "diff_cs3", {})).execute("").sync().expect_ready()
      // DISCARD ALL, then pipelined behind it a Close skipped behind an error: the DISCARD dropped it (26000).
      .parse("diff_cs4", "SELECT 12").sync().expect_ready()
      .query("DISCARD ALL").bind(bind_text("", "diff_cs_missing", {})).close('S', "diff_cs4").sync()
      .expect_ready(2)
      .bind(bind_text("", "diff_cs4", {})).execute("").sync().expect_ready()
      .build();
}

Script close_behind_refused_read(const Schema& s) {
  // With the split, a read calling a STABLE function that writes (nextval) is refused by the standby (25006) and run
  // again on the primary; a Close behind it in its batch, which the standby skipped, runs with the retry (before,
  // pgmux had dropped the statement at the first attempt, and the retry's Bind got 26000).
  return ScriptBuilder("close_behind_refused_read")
      .parse("diff_rr", "SELECT " + s.items + "_stable_next() AS n").sync().expect_ready()
      .bind(bind_text("", "diff_rr", {})).execute("").close('S', "diff_rr").sync().expect_ready()
      .bind(bind_text("", "diff_rr", {})).execute("").sync().expect_ready()  // 26000: closed by the retry
      .build();
}

Script query_while_skipping_to_sync(const Schema&) {
  // After an error in an extended batch PostgreSQL skips every message up to the Sync, a simple Query too: it is
  // not run and not answered (pgmux answers the duplicate Parse itself where it keeps the statements).
  return ScriptBuilder("query_while_skipping_to_sync")
      .parse("diff_skip", "SELECT 1").sync().expect_ready()
      .parse("diff_skip", "SELECT 2").query("SELECT 'not run'").sync().expect_ready()
      .close('S', "diff_skip").sync().expect_ready()
      .build();
}

Script sql_prepare(const Schema& s) {
  // SQL-level prepared statements across requests (transaction pooling prepares them again on whichever server
  // runs a statement naming them): duplicates, unknown names, PREPARE is not transactional, EXPLAIN EXECUTE and the
  // extended protocol, DEALLOCATE of a statement whose table is gone, DEALLOCATE ALL; last, a failed string that
  // prepared a statement (pgmux keeps that client on its server).
  const std::string gone = s.items + "_sp_gone";
  return ScriptBuilder("sql_prepare")
      .q("PREPARE diff_sp (int) AS SELECT $1 * 2 AS doubled")
      .q("EXECUTE diff_sp(21)")
      .q("PREPARE diff_sp AS SELECT 1")  // 42P05
      .q("PREPARE DIFF_SP AS SELECT 1")  // the same name, folded: 42P05
      .q("EXECUTE diff_sp_missing")      // 26000
      .q("DEALLOCATE diff_sp_missing")   // 26000
      .q("BEGIN").q("PREPARE diff_tx AS SELECT 'kept' AS k").q("ROLLBACK").q("EXECUTE diff_tx")
      .q("BEGIN").q("EXECUTE diff_sp(2)").q("SELECT 1/0").q("EXECUTE diff_sp(3)").q("ROLLBACK")
      .q("EXPLAIN (COSTS off) EXECUTE diff_sp(1)")
      .q("SELECT name, parameter_types::text FROM pg_prepared_statements WHERE from_sql ORDER BY name")
      .parse("", "EXECUTE diff_sp(5)").bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .q("CREATE TABLE " + gone + " (v int)")
      .q("PREPARE diff_gone AS SELECT v FROM " + gone)
      .q("DROP TABLE " + gone)
      .q("EXECUTE diff_gone")     // 42P01
      .q("DEALLOCATE diff_gone")  // succeeds: the statement still exists
      .q("DEALLOCATE diff_sp").q("EXECUTE diff_sp(1)")  // 26000
      .q("PREPARE diff_a AS SELECT 1").q("PREPARE diff_b AS SELECT 2").q("DEALLOCATE ALL").q("EXECUTE diff_a")
      // Analyzed with the settings of its time: the literal is read under DMY, whatever the session says later.
      .q("SET datestyle = 'ISO, DMY'").q("PREPARE diff_ds AS SELECT '01/02/2024'::date AS d")
      .q("SET datestyle = 'ISO, MDY'").q("EXECUTE diff_ds")
      .q("BEGIN").q("SELECT 1").q("EXECUTE diff_ds").q("COMMIT").q("RESET datestyle")
      .q("PREPARE diff_pa AS SELECT 'survived' AS s; SELECT 1/0")
      .q("EXECUTE diff_pa")
      .build();
}

Script sql_commands_on_parsed(const Schema&) {
  // SQL DEALLOCATE and PREPARE naming a statement made with Parse (one name space on PostgreSQL; pgmux answers
  // some of these itself): a syntax error comes before anything else and leaves the statement as it was.
  return ScriptBuilder("sql_commands_on_parsed")
      .parse("diff_pc", "SELECT 7 AS seven").sync().expect_ready()
      .q("DEALLOCATE diff_pc junk")     // 42601
      .q("PREPARE diff_pc AS SELEC 1")  // 42601, not 42P05
      .q("PREPARE diff_pc AS SELECT 1")  // 42P05
      .bind(bind_text("", "diff_pc", {})).execute("").sync().expect_ready()  // still the first one
      .q("DEALLOCATE PREPARE diff_pc")
      .bind(bind_text("", "diff_pc", {})).execute("").sync().expect_ready()  // 26000
      // A DEALLOCATE among other statements (psycopg's pipeline mode evicts its cache so): it ran on the server,
      // where transaction pooling knows the statement by another name (26000 there, the batch skipped).
      .parse("diff_pc2", "SELECT 8 AS eight").parse("diff_pc3", "SELECT 9 AS nine").sync().expect_ready()
      .bind(bind_text("", "diff_pc3", {})).execute("")
      .parse("", "DEALLOCATE diff_pc2").bind(bind_text("", "", {})).execute("")
      .parse("", "SELECT 3").bind(bind_text("", "", {})).execute("").sync().expect_ready()
      .bind(bind_text("", "diff_pc2", {})).execute("").sync().expect_ready()  // 26000: gone
      .q("SELECT 4; DEALLOCATE diff_pc3")
      .bind(bind_text("", "diff_pc3", {})).execute("").sync().expect_ready()  // 26000: gone
      .build();
}

Script bind_parameter_count(const Schema&) {
  // A Bind with too few parameters: PostgreSQL's 08P01 names the statement, by the client's name (transaction
  // pooling knows it under pgmux's), alone and in the Parse's own batch.
  return ScriptBuilder("bind_parameter_count")
      .parse("diff_bc", "SELECT $1::int + $2", {kInt4, kInt4}).sync().expect_ready()
      .bind(bind_text("", "diff_bc", {"1"})).execute("").sync().expect_ready()
      .parse("diff_bc2", "SELECT $1::int * 2", {kInt4}).bind(bind_text("", "diff_bc2", {})).execute("").sync()
      .expect_ready()
      .close('S', "diff_bc").close('S', "diff_bc2").sync().expect_ready()
      .build();
}

Script long_statement_names(const Schema&) {
  // PostgreSQL keys a prepared statement by the first 63 bytes of its name: a Bind of that prefix finds a statement
  // parsed under a longer name, a Parse of another name alike up to there gets 42P05 (quoting the name it was
  // given), and a Close of a third such name closes it.
  const std::string stem = "diff_" + std::string(58, 'n');
  return ScriptBuilder("long_statement_names")
      .parse(stem + "_first", "SELECT 1 AS one").sync().expect_ready()
      .bind(bind_text("", stem, {})).execute("").sync().expect_ready()
      .parse(stem + "_second", "SELECT 2 AS two").sync().expect_ready()
      .describe('S', stem + "_other").close('S', stem + "_third").sync().expect_ready()
      .bind(bind_text("", stem + "_first", {})).execute("").sync().expect_ready()
      .build();
}

Script close_one_of_same_text(const Schema&) {
  // Two statements of one text (one shared statement on servers in transaction pooling): closing one leaves the
  // other, also when its Bind follows the Close in the same batch (pgjdbc does so), in and out of a block.
  const std::string text = "SELECT $1::int + 1 AS next";
  return ScriptBuilder("close_one_of_same_text")
      .parse("diff_c2", text, {kInt4}).bind(bind_text("", "diff_c2", {"1"})).execute("").sync().expect_ready()
      .parse("diff_c5", text, {kInt4}).describe('S', "diff_c5").sync().expect_ready()
      .close('S', "diff_c2").bind(bind_text("", "diff_c5", {"41"})).execute("").sync().expect_ready()
      .q("BEGIN")
      .parse("diff_c2", text, {kInt4}).sync().expect_ready()
      .close('S', "diff_c5").bind(bind_text("", "diff_c2", {"6"})).execute("").sync().expect_ready()
      .q("COMMIT")
      .bind(bind_text("", "diff_c5", {"1"})).execute("").sync().expect_ready()  // 26000: closed
      .bind(bind_text("", "diff_c2", {"2"})).execute("").close('S', "diff_c2").sync().expect_ready()
      .build();
}

Script search_path_switch(const Schema& s) {
  // One text over two schemas' tables alike: PostgreSQL analyses a prepared statement again under the new
  // search_path and runs it (its columns are the same), in transaction pooling too (the shared statement's shape
  // is compared without its source table). Also after the table is dropped and made again alike.
  return ScriptBuilder("search_path_switch")
      .q("SET search_path = " + s.items + "_sa")
      .parse("diff_sp", "SELECT v FROM t").describe('S', "diff_sp").bind(bind_text("", "diff_sp", {}))
      .execute("").sync().expect_ready()
      .q("SET search_path = " + s.items + "_sb")
      .bind(bind_text("", "diff_sp", {})).execute("").sync().expect_ready()
      .q("DROP TABLE t; CREATE TABLE t (v text); INSERT INTO t VALUES ('b again')")
      .bind(bind_text("", "diff_sp", {})).execute("").sync().expect_ready()
      .q("DROP TABLE t; CREATE TABLE t (v text); INSERT INTO t VALUES ('b')")  // as setup made it, for a rerun
      .q("RESET search_path")
      .build();
}

Script backslash_literals(const Schema& s) {
  // A string ending in a backslash: one that standard_conforming_strings = off would read otherwise. Read as this
  // session does (the default), the SET and the temp table beside it last, on whichever server runs what follows.
  return ScriptBuilder("backslash_literals")
      .q("SET search_path = " + s.items + "_sa, public; SELECT 'C:\\' AS root")
      .q("SELECT v FROM t")
      .q("CREATE TEMP TABLE diff_root AS SELECT 'C:\\' AS root")
      .q("SELECT root || '', replace('C:\\tmp', '\\', '/') FROM diff_root")  // no table oid: a new one each run
      .q("DROP TABLE diff_root")
      .q("RESET search_path")
      .build();
}

Script listen_notify(const Schema& s) {
  // The notification comes back to this same session; its sender pid is zeroed by normalize().
  const std::string channel = s.items + "_chan";
  return ScriptBuilder("listen_notify")
      .q("LISTEN " + channel)
      .q("NOTIFY " + channel + ", 'first payload'")
      .q("SELECT pg_notify('" + channel + "', 'second payload')")
      .q("UNLISTEN *")
      .q("NOTIFY " + channel + ", 'not delivered'")
      .build();
}

}  // namespace

std::string Schema::setup_sql() const {
  return "CREATE TABLE " + items +
         " (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), created date, flag bool); "
         "CREATE TABLE " + copies + " (id int, note text); "
         "CREATE FUNCTION " + notice + "(i int) RETURNS int LANGUAGE plpgsql AS "
         "$$ BEGIN RAISE NOTICE 'row %', i; RETURN i * 10; END $$; "
         "CREATE SCHEMA " + items + "_sa; CREATE TABLE " + items + "_sa.t (v text); INSERT INTO " + items +
         "_sa.t VALUES ('a'); CREATE SCHEMA " + items + "_sb; CREATE TABLE " + items + "_sb.t (v text); "
         "INSERT INTO " + items + "_sb.t VALUES ('b'); CREATE SEQUENCE " + items + "_seq; CREATE FUNCTION " + items +
         "_stable_next() RETURNS bigint STABLE LANGUAGE sql AS $$ SELECT nextval('" + items + "_seq') $$";
}

std::string Schema::reset_sql() const {
  return "TRUNCATE " + items + ", " + copies + "; INSERT INTO " + items +
         " VALUES (1, 'apple', 1.50, '2024-01-02', true), (2, 'pear', 2.25, '2024-02-03', false), "
         "(3, 'plum', NULL, NULL, NULL), (4, 'fig', 4.00, '2024-04-05', true), (5, 'kiwi', 0.99, '2024-05-06', false); "
         "ALTER SEQUENCE " + items + "_seq RESTART";
}

std::string Schema::teardown_sql() const {
  return "DROP TABLE IF EXISTS " + items + ", " + copies + ", " + items + "_sp_gone; DROP FUNCTION IF EXISTS " +
         notice + "(int), " + items + "_stable_next(); DROP SEQUENCE IF EXISTS " + items + "_seq; DROP SCHEMA IF EXISTS " +
         items + "_sa, " + items + "_sb CASCADE";
}

std::vector<Script> all_scripts(const Schema& s) {
  return {simple_select_types(s), multi_statement(s),   empty_query(s),          simple_error(s),
          extended_basic(s),      pipeline_error(s),    flush_without_sync(s),   portal_suspension(s),
          copy_in(s),             copy_in_extended(s),  copy_fail(s),            copy_out(s),
          copy_error_mid_message(s), copy_ended_ahead(s), copy_ignores_sync(s), copy_fails_in_open_sequence(s),
          notice_mid_result(s),   parameter_status_mid(s), reset_parameters(s), transaction_error(s),
          close_and_reparse(s),
          statement_order(s),     duplicate_parse_mid_batch(s), close_skipped_after_error(s),
          close_behind_refused_read(s), query_while_skipping_to_sync(s), shared_statement_mid_sequence(s),
          listen_notify(s),       sql_prepare(s),       sql_commands_on_parsed(s), bind_parameter_count(s),
          close_one_of_same_text(s), search_path_switch(s), backslash_literals(s), long_statement_names(s),
          unreadable_messages(s), parse_many_types(s), set_transaction_held(s)};
}

}  // namespace pgmux::difftest
