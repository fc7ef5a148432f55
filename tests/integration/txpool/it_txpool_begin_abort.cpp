// An error pgmux answers itself while the BEGIN it answered is still deferred (no server has run it yet: the
// request behind it could not be routed or got no server) aborts the transaction as an error does on PostgreSQL:
// every statement until the block ends gets 25P02, COMMIT answers ROLLBACK, and nothing the client sent in that
// block is written. Each sequence runs directly on the primary (the oracle, with a statement that fails in place of
// the one pgmux refuses) and through pgmux, in transaction pooling and in session pooling, both with read/write
// split (pgmux defers a plain BEGIN only then); every reply is compared: result statuses, SQLSTATEs, command tags,
// the transaction status after each step, and the rows in the table afterwards.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_begin_abort";

// The statement that fails the block. Through pgmux: one pgmux answers with an error of its own (`hold` runs
// before it is sent, `release` once its error came). Directly: one PostgreSQL fails.
struct Trigger {
  std::string sql;       // sent as it is
  std::string sqlstate;  // the error it must get
  std::function<void()> hold = [] {};
  std::function<void()> release = [] {};
};
const Trigger kDirectTrigger{"SELECT 1/0", "22012"};

// With no fallback to the primary and no standby, pgmux serves reads only where they are told to go there.
const char* const kPrimaryRead = "/* pgmux:primary */ SELECT 1";

// One result as the client sees it: its status and SQLSTATE or command tag ("rows" with the first value).
std::string describe(const PGresult* res) {
  switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
      return std::string("rows ") + (PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "none");
    case PGRES_COMMAND_OK:
      return std::string("ok ") + PQcmdStatus(const_cast<PGresult*>(res));
    case PGRES_FATAL_ERROR: {
      const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
      return std::string(severity ? severity : "?") + " " + sqlstate(res);
    }
    case PGRES_PIPELINE_SYNC:
      return "sync";
    case PGRES_PIPELINE_ABORTED:
      return "skipped";
    default:
      return PQresStatus(PQresultStatus(res));
  }
}

char tx_status(PGconn* conn) {
  switch (PQtransactionStatus(conn)) {
    case PQTRANS_IDLE: return 'I';
    case PQTRANS_INTRANS: return 'T';
    case PQTRANS_INERROR: return 'E';
    default: return '?';
  }
}

// The results of the command just sent (PQsend*), up to the end of its results, each waited for 10 s at most.
// The error of a trigger (`trigger` set) is written "trigger error", its SQLSTATE kept in *trigger.
std::string results(PGconn* conn, std::string* trigger = nullptr) {
  std::string line;
  for (;;) {
    while (PQisBusy(conn)) {
      if (!wait_readable(conn, 10)) return line + " | no answer within 10 s";
      if (PQconsumeInput(conn) != 1) return line + " | connection lost";
    }
    PgResult res(PQgetResult(conn));
    if (!res) return line;
    std::string one = describe(res.get());
    if (trigger && PQresultStatus(res.get()) == PGRES_FATAL_ERROR) {
      *trigger = sqlstate(res.get());
      one = "trigger error";
    }
    line += (line.empty() ? "" : ", ") + one;
    if (PQresultStatus(res.get()) == PGRES_PIPELINE_SYNC) return line;  // no end-of-results follows a Sync's
  }
}

// The same, then the transaction status libpq read from the ReadyForQuery.
std::string collect(PGconn* conn, std::string* trigger = nullptr) {
  std::string line = results(conn, trigger);
  return line + " [" + tx_status(conn) + "]";
}

// A step of a sequence: sends its messages on conn and returns its line of the transcript.
using Step = std::function<std::string(PGconn* conn, const Trigger& trigger, std::string* trigger_state)>;

Step query(const std::string& sql) {
  return [sql](PGconn* conn, const Trigger&, std::string*) {
    return sql + ": " + (PQsendQuery(conn, sql.c_str()) == 1 ? collect(conn) : "not sent");
  };
}

// The extended protocol: Parse, Bind, Describe, Execute, Sync of the unnamed statement.
Step extended(const std::string& sql) {
  return [sql](PGconn* conn, const Trigger&, std::string*) {
    const int sent = PQsendQueryParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0);
    return "extended " + sql + ": " + (sent == 1 ? collect(conn) : "not sent");
  };
}

Step prepare(const std::string& name, const std::string& sql) {
  return [name, sql](PGconn* conn, const Trigger&, std::string*) {
    const int sent = PQsendPrepare(conn, name.c_str(), sql.c_str(), 0, nullptr);
    return "prepare " + name + ": " + (sent == 1 ? collect(conn) : "not sent");
  };
}

Step execute(const std::string& name) {
  return [name](PGconn* conn, const Trigger&, std::string*) {
    const int sent = PQsendQueryPrepared(conn, name.c_str(), 0, nullptr, nullptr, nullptr, 0);
    return "execute " + name + ": " + (sent == 1 ? collect(conn) : "not sent");
  };
}

// Run directly on the primary as the table's owner, whatever the connection under test: DDL between steps.
Step on_primary(const std::string& sql) {
  return [sql](PGconn*, const Trigger&, std::string*) {
    PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
    exec(owner.get(), sql);
    return "on the primary: " + sql;
  };
}

// The statement that fails: pgmux's refusal, or PostgreSQL's error directly.
Step trigger() {
  return [](PGconn* conn, const Trigger& trigger, std::string* trigger_state) {
    trigger.hold();
    const std::string line =
        "trigger: " + (PQsendQuery(conn, trigger.sql.c_str()) == 1 ? collect(conn, trigger_state) : "not sent");
    trigger.release();
    return line;
  };
}

// The same in a pipeline, its batch ended by Flush, and the Sync sent afterwards on its own: the error comes
// before the Sync that reports the transaction status.
Step pipelined_trigger() {
  return [](PGconn* conn, const Trigger& trigger, std::string* trigger_state) {
    if (PQenterPipelineMode(conn) != 1) return std::string("pipeline: not entered");
    std::string line = "pipelined trigger: ";
    trigger.hold();
    if (PQsendQueryParams(conn, trigger.sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1 ||
        PQsendFlushRequest(conn) != 1 || PQflush(conn) != 0) {
      return line + "not sent";
    }
    line += results(conn, trigger_state);  // the error, before any Sync
    trigger.release();
    if (PQpipelineSync(conn) != 1) return line + "; sync not sent";
    line += "; " + results(conn);
    PQexitPipelineMode(conn);
    return line + " [" + tx_status(conn) + "]";
  };
}

struct Sequence {
  const char* name;
  std::vector<Step> steps;
};

// Each sequence opens a block with a plain BEGIN and fails it with the trigger.
std::vector<Sequence> sequences() {
  return {
      {"a simple INSERT, a read, COMMIT",
       {query("BEGIN"), trigger(), query("INSERT INTO t VALUES (1)"), query("SELECT count(*) FROM t"),
        query("COMMIT")}},
      {"an extended INSERT, then COMMIT", {query("BEGIN"), trigger(), extended("INSERT INTO t VALUES (2)"),
                                           extended("SELECT 1"), query("COMMIT")}},
      {"a statement prepared before the block, executed in it; one prepared in it",
       {prepare("ins3", "INSERT INTO t VALUES (3)"), query("BEGIN"), trigger(), execute("ins3"),
        prepare("sel", "SELECT 1"), query("COMMIT"), execute("ins3")}},
      // In the failed block, a statement the server must first prepare (pgmux's prepare step), which could not be
      // prepared anyway (its table is gone): PostgreSQL answers 25P02 before it looks at the statement.
      {"a statement whose table was dropped, executed in the block",
       {on_primary("DROP TABLE IF EXISTS gone; CREATE TABLE gone (id int)"),
        prepare("selgone", "/* pgmux:primary */ SELECT count(*) FROM gone"), on_primary("DROP TABLE gone"),
        query("BEGIN"), trigger(), execute("selgone"), query("COMMIT")}},
      {"INSERT and COMMIT in one query string, then ROLLBACK",
       {query("BEGIN"), trigger(), query("INSERT INTO t VALUES (4); COMMIT"), query("ROLLBACK")}},
      {"savepoints, then END",
       {query("BEGIN"), trigger(), query("SAVEPOINT s"), query("ROLLBACK TO SAVEPOINT s"),
        query("INSERT INTO t VALUES (5)"), query("BEGIN"), query("END")}},
      {"a session setting replayed first (the prepare step), then COMMIT",
       {query("SET application_name = 'begin_abort'"), query("BEGIN"), trigger(), query("INSERT INTO t VALUES (6)"),
        query("COMMIT")}},
      {"ROLLBACK, then a block that commits",
       {query("BEGIN"), trigger(), query("ROLLBACK"), query("BEGIN"), query("INSERT INTO t VALUES (7)"),
        query("COMMIT")}},
  };
}

// The rows in the table, read directly on the primary.
std::string rows(PGconn* owner) {
  return scalar(owner, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), 'none') FROM t");
}

// Runs a sequence on a fresh connection through conninfo `ci`: its transcript, then the table's rows (emptied
// again). Every trigger's SQLSTATE goes to *trigger_states.
std::string run(const Sequence& sequence, const std::string& ci, const Trigger& trigger, PGconn* owner,
                std::vector<std::string>* trigger_states) {
  PgConn conn = connect(ci);
  std::string transcript;
  for (const Step& step : sequence.steps) {
    std::string state;
    transcript += step(conn.get(), trigger, &state) + "\n";
    if (!state.empty()) trigger_states->push_back(state);
  }
  conn.reset();
  transcript += "rows afterwards: " + rows(owner) + "\n";
  exec(owner, "TRUNCATE t");
  return transcript;
}

void create_table() {
  PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
  exec(owner.get(), "DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY)");
}

// pgmux on the primary alone with the read/write split on (a plain BEGIN is deferred) and no fallback to the
// primary for reads: the read-only transaction `BEGIN; SET TRANSACTION READ ONLY; SET TRANSACTION ...` asks for a
// standby there is not, and pgmux answers 57P03 itself. (Two in one string: pgmux answers a single SET TRANSACTION
// behind a deferred BEGIN itself and holds it back with the BEGIN.) Eventual consistency: else, after a commit,
// such a read would go to the primary (no standby can show that commit yet).
nlohmann::json split_config(int listen, const std::string& pool_mode, int pool_size) {
  nlohmann::json config = txpool_config(listen, kDb, pool_size);
  database_entry(config)["pool_mode"] = pool_mode;
  config["routing"] = {{"read_write_split", true}, {"fallback_to_primary", false}, {"consistency", "eventual"}};
  config["timeouts"]["query_wait_timeout"] = 1;
  return config;
}

// Each sequence directly and through pgmux (`ci`, `trigger`): the transcripts must be equal.
void compare_sequences(const std::vector<Sequence>& all, const std::string& ci, const Trigger& trigger,
                       ProxyUnderTest& proxy) {
  PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
  bool failed = false;
  for (const Sequence& sequence : all) {
    const std::string name = sequence.name;  // doctest would print the pointer of a const char*
    INFO("sequence: " << name);
    std::vector<std::string> direct_states;
    std::vector<std::string> pgmux_states;
    const std::string direct =
        run(sequence, app_conninfo(cluster_ports().primary, kDb), kDirectTrigger, owner.get(), &direct_states);
    const std::string through_pgmux = run(sequence, ci, trigger, owner.get(), &pgmux_states);
    CHECK(through_pgmux == direct);
    CHECK(direct_states == std::vector<std::string>{kDirectTrigger.sqlstate});  // the trigger fails once
    CHECK(pgmux_states == std::vector<std::string>{trigger.sqlstate});
    failed |= through_pgmux != direct || pgmux_states != std::vector<std::string>{trigger.sqlstate};
  }
  if (failed && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
}

void compare_in_mode(const std::string& pool_mode) {
  if (direct_mode()) return;  // the test compares with a direct connection itself
  fresh_database(kDb);
  create_table();
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(split_config(listen, pool_mode, 2).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci, kPrimaryRead);
  compare_sequences(sequences(), ci,
                    {"SET TRANSACTION READ ONLY; SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "57P03"}, proxy);
  // The same block with its SET TRANSACTION held back by pgmux: the read after it is refused (57P03), and the
  // ROLLBACK / COMMIT that ends the failed block runs on the primary (it asked for the missing standby too, and the
  // session could not leave the block).
  const std::vector<Sequence> held = {
      {"a held SET TRANSACTION READ ONLY, a refused read, ROLLBACK",
       {query("BEGIN"), query("SET TRANSACTION READ ONLY"), trigger(), query("ROLLBACK"), query(kPrimaryRead)}},
      {"the same, ended by COMMIT", {query("BEGIN READ ONLY"), trigger(), query("SELECT 2"), query("COMMIT"),
                                      query("INSERT INTO t VALUES (8)")}},
  };
  compare_sequences(held, ci, {"SELECT 1", "57P03"}, proxy);
  drop_database_quietly(kDb);
}

}  // namespace

TEST_CASE("transaction pooling: an error pgmux answers after a deferred BEGIN aborts the block as on PostgreSQL") {
  compare_in_mode("transaction");
}

TEST_CASE("session pooling: an error pgmux answers after a deferred BEGIN aborts the block as on PostgreSQL") {
  compare_in_mode("session");
}

// The pool's own failure: the only server is held by another client's transaction, and the first statement after
// BEGIN waits for it past query_wait_timeout (53300). The holder commits; the client's next statements find its
// block failed. Also with the waiting statement in an extended batch ended by Flush, its Sync sent once the error
// came (pgmux answers that Sync itself). In transaction pooling, where the holder gives the server back when it
// commits.
TEST_CASE("transaction pooling: no server within query_wait_timeout after a deferred BEGIN aborts the block") {
  if (direct_mode()) return;
  fresh_database(kDb);
  create_table();
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(split_config(listen, "transaction", 1).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci, kPrimaryRead);
  PgConn holder = connect(ci);
  Trigger timeout{"SELECT 1/0", "53300"};
  timeout.hold = [&holder] {
    exec(holder.get(), "BEGIN");
    exec(holder.get(), "SELECT 1");  // the pool's only server is the holder's until it commits
  };
  timeout.release = [&holder] { exec(holder.get(), "COMMIT"); };
  const std::vector<Sequence> waits = {
      {"a simple INSERT, then COMMIT", {query("BEGIN"), trigger(), query("INSERT INTO t VALUES (1)"), query("COMMIT")}},
      {"an extended batch ended by Flush, its Sync later, then COMMIT",
       {query("BEGIN"), pipelined_trigger(), extended("INSERT INTO t VALUES (2)"), query("COMMIT")}},
  };
  compare_sequences(waits, ci, timeout, proxy);
  holder.reset();
  drop_database_quietly(kDb);
}

// A BEGIN PostgreSQL refuses (a syntax error) is not answered by pgmux: it reaches the server, the client gets its
// 42601 and stays outside a block, so the INSERT after it commits on its own and ROLLBACK warns (25P01), as on a
// direct connection. Before, pgmux answered "BEGIN" itself, and the INSERT it sent behind the refused BEGIN got
// 08006 although it had run, in autocommit. One it accepts gets PostgreSQL's own command tag from pgmux.
TEST_CASE("a BEGIN with a syntax error gets PostgreSQL's answer, with the split in both pool modes") {
  if (direct_mode()) return;
  for (const char* mode : {"transaction", "session"}) {
    CAPTURE(mode);
    fresh_database(kDb);
    create_table();
    const int listen = pick_listen_port();
    ProxyUnderTest proxy(split_config(listen, mode, 2).dump(), listen);
    const std::string ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci, kPrimaryRead);
    PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
    for (const char* begin : {"BEGIN ISOLATION LEVEL BOGUS", "START TRANSACTION foo", "BEGIN READ COMMITTED"}) {
      CAPTURE(begin);
      const Sequence sequence{"a refused BEGIN, an INSERT, ROLLBACK",
                              {query(begin), query("INSERT INTO t VALUES (1)"), query("ROLLBACK")}};
      std::vector<std::string> unused;
      const std::string direct =
          run(sequence, app_conninfo(cluster_ports().primary, kDb), kDirectTrigger, owner.get(), &unused);
      CHECK(direct.find("rows afterwards: 1") != std::string::npos);  // the oracle: the INSERT committed alone
      CHECK(run(sequence, ci, kDirectTrigger, owner.get(), &unused) == direct);
    }
    // One PostgreSQL accepts, answered by pgmux: with PostgreSQL's command tag ("START TRANSACTION", not "BEGIN").
    for (const char* begin : {"START TRANSACTION", "start transaction read only", "BEGIN WORK"}) {
      CAPTURE(begin);
      const Sequence sequence{"a deferred BEGIN, a read, ROLLBACK",
                              {query(begin), query(kPrimaryRead), query("ROLLBACK")}};
      std::vector<std::string> unused;
      const std::string direct =
          run(sequence, app_conninfo(cluster_ports().primary, kDb), kDirectTrigger, owner.get(), &unused);
      CHECK(run(sequence, ci, kDirectTrigger, owner.get(), &unused) == direct);
    }
    owner.reset();
    drop_database_quietly(kDb);
  }
}


// timeouts.idle_transaction_timeout counts from the BEGIN pgmux answered, not from the request before it: a client
// idle longer than that between transactions was closed with 25P03 right after its next BEGIN.
TEST_CASE("idle_transaction_timeout counts from a deferred BEGIN, with the split in both pool modes") {
  if (direct_mode()) return;
  for (const char* mode : {"transaction", "session"}) {
    const std::string mode_name(mode);  // CAPTURE keeps a reference
    CAPTURE(mode_name);
    fresh_database(kDb);
    const int listen = pick_listen_port();
    nlohmann::json config = split_config(listen, mode, 2);
    config["timeouts"]["idle_transaction_timeout"] = 1;
    ProxyUnderTest proxy(config.dump(), listen);
    const std::string ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci, kPrimaryRead);
    PgConn conn = connect(ci);
    CHECK(scalar(conn.get(), kPrimaryRead) == "1");
    std::this_thread::sleep_for(std::chrono::milliseconds(1600));  // idle outside a block: no timeout applies
    exec(conn.get(), "BEGIN");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // two ticks of the idle check, under 1 s
    CHECK(scalar(conn.get(), kPrimaryRead) == "1");
    exec(conn.get(), "COMMIT");
    drop_database_quietly(kDb);
  }
}
