// DDL that changes a prepared statement's result columns, through pgmux in transaction mode, where server
// connections and their prepared copies are shared: a table queried with a protocol-level prepared `SELECT *`
// gains columns (ALTER TABLE ADD COLUMN). PostgreSQL answers the next execution of a statement prepared before
// the ALTER with 0A000 "cached plan must not change result type"; the client (every driver does) prepares it
// again, and from then on it runs with the new columns. Through pgmux the same must hold on every shared server:
// a statement the client prepared after the ALTER never meets a server's older copy. Each case runs directly
// against the primary too (PGMUX_TEST_DIRECT=1), which is what it asserts.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_ddl";
const int kPoolSize = 4;

struct Fixture {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  PgConn owner;  // direct to the primary, as app: runs the DDL
  // workers: 0 for the default (two); one worker keeps one idle list, whose order a test can steer.
  explicit Fixture(int workers = 0) : proxy((fresh_database(kDb), config(listen, workers).dump()), listen) {
    ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci);
    owner = connect(app_conninfo(cluster_ports().primary, kDb));
    exec(owner.get(),
         "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g");
  }
  ~Fixture() {
    owner.reset();
    drop_database_quietly(kDb);
  }
  static nlohmann::json config(int listen, int workers) {
    nlohmann::json c = txpool_config(listen, kDb, kPoolSize);
    if (workers > 0) c["workers"] = workers;
    return c;
  }
  void log_on_failure(bool failed) {
    if (failed && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
};

// Executes the statement (default "sel") for id; returns "" or the error, and the column count in *fields.
std::string exec_sel(PGconn* conn, int id, int* fields, const std::string& name = "sel") {
  const std::string v = std::to_string(id);
  const char* values[1] = {v.c_str()};
  PgResult res(PQexecPrepared(conn, name.c_str(), 1, values, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != PGRES_TUPLES_OK) return error_text(conn, res.get());
  if (PQntuples(res.get()) != 1 || std::stoi(PQgetvalue(res.get(), 0, 0)) != id) return "wrong row for id " + v;
  *fields = PQnfields(res.get());
  return "";
}

void prepare_sel(PGconn* conn, const std::string& name = "sel") {
  PgResult res(PQprepare(conn, name.c_str(), "SELECT * FROM t WHERE id = $1", 1, nullptr));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    throw std::runtime_error("PQprepare: " + error_text(conn, res.get()));
  }
}

// What a driver does after 0A000: prepare the same text again, here under a new name (libpq 15 has no Close;
// the Close-and-Parse of one name is the drivers' tests' business). Same text: pgmux's shared copy is the same.
std::string reprepare_sel(PGconn* conn, int* generation) {
  const std::string name = "sel_" + std::to_string(++*generation);
  prepare_sel(conn, name);
  return name;
}

// Every server of the pool prepares "sel" (the old shape): kPoolSize clients execute it inside open
// transactions at the same time, so each holds a different server.
void prepare_on_every_server(const std::string& ci) {
  std::vector<PgConn> holders;
  for (int i = 0; i < kPoolSize; ++i) {
    holders.push_back(connect(ci));
    exec(holders.back().get(), "BEGIN");
    prepare_sel(holders.back().get());
    int fields = 0;
    const std::string err = exec_sel(holders.back().get(), 1, &fields);
    if (!err.empty()) throw std::runtime_error("warming server " + std::to_string(i) + ": " + err);
  }
  for (PgConn& holder : holders) exec(holder.get(), "COMMIT");
}

// The parameter-type cases: "ins" inserts (id, v) from two parameters whose types PostgreSQL infers (libpq sends
// type 0 for both), int4 as t's columns are when it is prepared.
const char* const kInsert = "INSERT INTO t (id, v) VALUES ($1, $2)";

void prepare_ins(PGconn* conn) {
  PgResult res(PQprepare(conn, "ins", kInsert, 2, nullptr));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    throw std::runtime_error("PQprepare ins: " + error_text(conn, res.get()));
  }
}

// Executes "ins" with both parameters in binary as int4 (network order), as a driver that knows the statement's
// parameter types does; "" or the error.
std::string insert_binary(PGconn* conn, int32_t id, int32_t v) {
  const uint32_t wire[2] = {htonl(static_cast<uint32_t>(id)), htonl(static_cast<uint32_t>(v))};
  const char* values[2] = {reinterpret_cast<const char*>(&wire[0]), reinterpret_cast<const char*>(&wire[1])};
  const int lengths[2] = {4, 4};
  const int formats[2] = {1, 1};
  PgResult res(PQexecPrepared(conn, "ins", 2, values, lengths, formats, 0));
  return res && PQresultStatus(res.get()) == PGRES_COMMAND_OK ? "" : error_text(conn, res.get());
}

// The parameter types PostgreSQL reports for "ins" (Describe), e.g. "23,23".
std::string ins_parameter_types(PGconn* conn) {
  PgResult res(PQdescribePrepared(conn, "ins"));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) return "describe: " + error_text(conn, res.get());
  std::string types;
  for (int i = 0; i < PQnparams(res.get()); ++i) types += (i ? "," : "") + std::to_string(PQparamtype(res.get(), i));
  return types;
}

// Inserts ids from..from+count-1 with v = 7 through "ins", each in a block beside n % kPoolSize other clients'
// open blocks: the idle list (one worker) hands out the server given back last, so holding the servers the
// client used before sends it to the others. Returns, read directly, the rows of those ids whose v is not 7;
// *servers: how many backends ran the inserts.
std::string insert_sevens(Fixture& f, PGconn* conn, int from, int count, size_t* servers) {
  std::set<std::string> pids;
  for (int n = 0; n < count; ++n) {
    std::vector<PgConn> holders;
    for (int h = 0; h < n % kPoolSize; ++h) {
      holders.push_back(connect(f.ci));
      exec(holders.back().get(), "BEGIN");
      scalar(holders.back().get(), "SELECT 1");
    }
    exec(conn, "BEGIN");
    pids.insert(scalar(conn, "SELECT pg_backend_pid()"));
    const std::string err = insert_binary(conn, from + n, 7);
    if (!err.empty()) return "insert " + std::to_string(from + n) + ": " + err;
    exec(conn, "COMMIT");
    for (PgConn& holder : holders) exec(holder.get(), "COMMIT");
  }
  *servers = pids.size();
  const std::string range = std::to_string(from) + " AND " + std::to_string(from + count - 1);
  return scalar(f.owner.get(), "SELECT coalesce(string_agg(id || '=' || v, ' '), '') FROM t WHERE id BETWEEN " +
                                   range + " AND v IS DISTINCT FROM 7");
}

// Sends what `send` sends in one pipeline with one Sync; each result: its status, and the SQLSTATE of an error,
// joined ("PGRES_COMMAND_OK; PGRES_FATAL_ERROR 0A000; PGRES_PIPELINE_SYNC; ").
template <typename Send>
std::string pipelined(PGconn* conn, Send send) {
  if (PQenterPipelineMode(conn) != 1) return "no pipeline mode";
  if (send(conn) != 1 || PQpipelineSync(conn) != 1) return std::string("send failed: ") + PQerrorMessage(conn);
  std::string all;
  for (int results = 0; results < 8; ++results) {
    PgResult res(PQgetResult(conn));
    if (!res) continue;  // the end of one query's results
    const ExecStatusType status = PQresultStatus(res.get());
    all += std::string(PQresStatus(status)) + (status == PGRES_FATAL_ERROR ? " " + sqlstate(res.get()) : "") + "; ";
    if (status == PGRES_PIPELINE_SYNC) break;
  }
  PQexitPipelineMode(conn);
  return all;
}

// BEGIN and then what `send` sends, as pipelined.
template <typename Send>
std::string begin_then(PGconn* conn, Send send) {
  return pipelined(conn, [&](PGconn* c) {
    return PQsendQueryParams(c, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 ? send(c) : 0;
  });
}

// A client's "sel" prepared before ALTER TABLE on the server given back last, which a holder then keeps in an
// open block: the client's next request goes to a server that prepares "sel" only after the ALTER (other columns).
// One worker (Fixture(1)): one idle list, whose order this relies on.
std::pair<PgConn, PgConn> stale_sel(Fixture& f) {
  {
    std::vector<PgConn> openers;  // kPoolSize servers open, none with "sel"
    for (int i = 0; i < kPoolSize; ++i) {
      openers.push_back(connect(f.ci));
      exec(openers.back().get(), "BEGIN");
      scalar(openers.back().get(), "SELECT 1");
    }
    for (PgConn& opener : openers) exec(opener.get(), "COMMIT");
  }
  PgConn conn = connect(f.ci);
  prepare_sel(conn.get());
  exec(f.owner.get(), "ALTER TABLE t ADD COLUMN extra int DEFAULT 42");
  PgConn holder = connect(f.ci);
  exec(holder.get(), "BEGIN");
  scalar(holder.get(), "SELECT 1");
  return {std::move(conn), std::move(holder)};
}

}  // namespace

TEST_CASE("a statement prepared after ALTER TABLE runs with the new columns on every shared server") {
  Fixture f;
  prepare_on_every_server(f.ci);
  exec(f.owner.get(), "ALTER TABLE t ADD COLUMN extra int DEFAULT 42");
  PgConn conn = connect(f.ci);
  prepare_sel(conn.get());  // after the ALTER: PostgreSQL runs it with 3 columns, always
  std::string failure;
  for (int n = 0; n < 4 * kPoolSize && failure.empty(); ++n) {
    // Alternate idle and in-transaction executions so the client meets different servers.
    if (n % 2) exec(conn.get(), "BEGIN");
    int fields = 0;
    failure = exec_sel(conn.get(), 1 + n, &fields);
    if (failure.empty() && fields != 3)
      failure = "execution " + std::to_string(n) + ": " + std::to_string(fields) + " columns";
    if (n % 2) exec(conn.get(), "COMMIT");
  }
  CHECK_MESSAGE(failure.empty(), failure);
  f.log_on_failure(!failure.empty());
}

TEST_CASE("after 0A000 the statement prepared again gives the new columns, inside a transaction too") {
  Fixture f;
  PgConn conn = connect(f.ci);
  prepare_sel(conn.get());
  int fields = 0;
  REQUIRE(exec_sel(conn.get(), 7, &fields) == "");
  CHECK(fields == 2);
  exec(f.owner.get(), "ALTER TABLE t ADD COLUMN extra int DEFAULT 42");
  exec(conn.get(), "BEGIN");
  const std::string err = exec_sel(conn.get(), 8, &fields);
  std::string name = "sel";
  int generation = 0;
  // Directly: 0A000 (the statement predates the ALTER). Through pgmux the same, or the new columns when the
  // statement reaches a server that had not prepared it yet (README, transaction mode limits); never pgmux's
  // own statement names.
  CHECK_MESSAGE(err.find("pgmux_") == std::string::npos, err);
  if (!err.empty()) {
    CHECK_MESSAGE(err.find("cached plan must not change result type") != std::string::npos, err);
    exec(conn.get(), "ROLLBACK");
    exec(conn.get(), "BEGIN");
    name = reprepare_sel(conn.get(), &generation);  // inside the transaction, as pgjdbc does
  } else {
    CHECK(fields == 3);
  }
  const std::string after = exec_sel(conn.get(), 9, &fields, name);
  CHECK_MESSAGE(after == "", after);
  CHECK(fields == 3);
  exec(conn.get(), "COMMIT");
  f.log_on_failure(!after.empty());
}

TEST_CASE("10 clients executing a prepared SELECT * while columns are added re-prepare once per ALTER at most") {
  Fixture f;
  std::atomic<bool> stop{false};
  std::atomic<bool> altered_all{false};  // the last ALTER has returned
  std::atomic<long> executes{0};
  std::atomic<long> plan_errors{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::thread ddl([&] {
    for (int k = 0; k < 8 && !stop; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      exec(f.owner.get(), "ALTER TABLE t ADD COLUMN c" + std::to_string(k) + " int DEFAULT " + std::to_string(k));
    }
    altered_all = true;
  });
  // Each client runs until one of its executions, begun after the last ALTER, succeeds (bounded: a loaded
  // machine, under ASan, may take more than a few hundred milliseconds for that).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string failure = run_threads(10, [&](int t) {
    PgConn conn = connect(f.ci);
    prepare_sel(conn.get());
    int fields = 0;
    int in_a_row = 0;  // 0A000 since the last success
    std::string name = "sel";
    int generation = 0;
    bool done = false;
    for (int n = 0; !done && !stop && n < 100000 && std::chrono::steady_clock::now() < deadline; ++n) {
      const bool after_all = altered_all;
      const std::string err = exec_sel(conn.get(), 1 + (t * 7 + n) % 100, &fields, name);
      executes++;
      if (err.empty()) {
        in_a_row = 0;
        done = after_all;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      // A statement prepared after the last ALTER never fails: only the first execution after one may (twice when
      // the next ALTER lands between the new Parse and its execution, never three times in a row).
      if (err.find("cached plan must not change result type") == std::string::npos || ++in_a_row > 2) {
        if (errors.size() < 5) errors.push_back(err);
        return;
      }
      ++plan_errors;
      name = reprepare_sel(conn.get(), &generation);
    }
    if (!done) throw std::runtime_error("no execution after the last ALTER succeeded within 30 s");
    if (fields != 10) throw std::runtime_error("last result had " + std::to_string(fields) + " columns, not 10");
  });
  stop = true;
  ddl.join();
  MESSAGE(executes.load() << " executes, " << plan_errors.load() << " 0A000 answered by preparing again");
  for (const std::string& e : errors) MESSAGE(e);
  CHECK(errors.empty());
  CHECK_MESSAGE(failure.empty(), failure);
  f.log_on_failure(!errors.empty() || !failure.empty());
}

// A statement prepared before the ALTER, run after it on a server that prepares it only then (its copy was
// evicted: one statement per server here): PostgreSQL answers 0A000, since the client's statement has the old
// columns; pgmux knows both shapes and answers the same, not rows of the new shape.
TEST_CASE("a statement prepared before ALTER TABLE gets 0A000 on a server that prepares it only afterwards") {
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, kDb, 1);
  config["prepared_statements"] = {{"max_per_server", 1}};
  fresh_database(kDb);
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);
  PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
  exec(owner.get(), "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)");
  PgConn conn = connect(ci);
  prepare_sel(conn.get());
  int fields = 0;
  REQUIRE(exec_sel(conn.get(), 1, &fields) == "");
  CHECK(fields == 2);
  PgResult other(PQprepare(conn.get(), "other", "SELECT 2", 0, nullptr));
  REQUIRE(PQresultStatus(other.get()) == PGRES_COMMAND_OK);
  PgResult ran(PQexecPrepared(conn.get(), "other", 0, nullptr, nullptr, nullptr, 0));  // evicts sel's copy
  REQUIRE(PQresultStatus(ran.get()) == PGRES_TUPLES_OK);
  exec(owner.get(), "ALTER TABLE t ADD COLUMN extra int DEFAULT 42");
  const std::string err = exec_sel(conn.get(), 1, &fields);
  CHECK_MESSAGE(err.find("cached plan must not change result type") != std::string::npos, err);
  CHECK_MESSAGE(err.find("0A000") != std::string::npos, err);
  prepare_sel(conn.get(), "sel_again");  // what a driver does next: the new columns from then on
  const std::string after = exec_sel(conn.get(), 1, &fields, "sel_again");
  CHECK_MESSAGE(after == "", after);
  CHECK(fields == 3);
  if ((err.find("0A000") == std::string::npos || !after.empty()) && proxy.process()) {
    MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
  owner.reset();
  drop_database_quietly(kDb);
}

// Each server keeps at most max_per_server shared statements and closes the least recently used first. A request
// that uses one it already has and needs another prepared there must not have the first closed under it: a
// use counts as recent, so the one closed is the other, older one.
TEST_CASE("a statement the request uses is not the one closed to make room for the one it prepares") {
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, kDb, 1);
  config["prepared_statements"] = {{"max_per_server", 2}};
  fresh_database(kDb);
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);
  PgConn conn = connect(ci);
  for (const char* name : {"used", "older", "new"}) {
    PgResult parsed(PQprepare(conn.get(), name, (std::string("SELECT '") + name + "'::text").c_str(), 0, nullptr));
    REQUIRE(PQresultStatus(parsed.get()) == PGRES_COMMAND_OK);
  }
  for (const char* name : {"used", "older", "used"}) {  // the server has both, "used" the most recently used
    PgResult ran(PQexecPrepared(conn.get(), name, 0, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(ran.get()) == PGRES_TUPLES_OK);
  }
  // One batch: "used" (there) and "new" (prepared there first, closing one of the two).
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  for (const char* name : {"used", "new"}) {
    REQUIRE(PQsendQueryPrepared(conn.get(), name, 0, nullptr, nullptr, nullptr, 0) == 1);
  }
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  for (const char* name : {"used", "new"}) {
    PgResult result(PQgetResult(conn.get()));
    const std::string what = std::string(name) + ": " + sqlstate(result.get());
    CHECK_MESSAGE(PQresultStatus(result.get()) == PGRES_TUPLES_OK, what);
    if (PQresultStatus(result.get()) == PGRES_TUPLES_OK) CHECK(std::string(PQgetvalue(result.get(), 0, 0)) == name);
    PgResult end(PQgetResult(conn.get()));  // the null after each query's results
  }
  PgResult synced(PQgetResult(conn.get()));
  CHECK(PQresultStatus(synced.get()) == PGRES_PIPELINE_SYNC);
  CHECK(PQexitPipelineMode(conn.get()) == 1);
  drop_database_quietly(kDb);
}

// PostgreSQL fixes a statement's parameter types at its Parse. After ALTER COLUMN ... TYPE, another client's Parse
// of the same text infers the new type; through pgmux that Parse makes the shared copy again on each server, and
// the first client's binary int4 was read as the real it now expects there (7 stored as 1e-44). pgmux prepares the
// first client's statement with its own types spelled out instead.
TEST_CASE("a statement keeps its parameter types when another client prepares its text after ALTER COLUMN TYPE") {
  Fixture f(1);
  PgConn conn = connect(f.ci);
  prepare_ins(conn.get());
  REQUIRE(insert_binary(conn.get(), 1001, 7) == "");
  exec(f.owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  std::vector<PgConn> others;  // each in a block, so each prepares the text on another server
  for (int i = 0; i < kPoolSize; ++i) {
    others.push_back(connect(f.ci));
    exec(others.back().get(), "BEGIN");
    prepare_ins(others.back().get());
    CHECK(ins_parameter_types(others.back().get()) == "23,700");  // theirs: int4, real
  }
  for (PgConn& other : others) exec(other.get(), "COMMIT");
  size_t servers = 0;
  const std::string wrong = insert_sevens(f, conn.get(), 2000, 2 * kPoolSize, &servers);
  CHECK_MESSAGE(wrong.empty(), wrong);
  CHECK(servers == (direct_mode() ? 1 : kPoolSize));  // every server, each with the other clients' copy
  CHECK(ins_parameter_types(conn.get()) == "23,23");
  f.log_on_failure(!wrong.empty());
}

// The same, with no other client: a statement prepared before the ALTER, run after it on servers that had no copy
// of it. PostgreSQL keeps the types of the Parse (int4); pgmux prepares it there with them, not inferring anew.
TEST_CASE("a statement prepared before ALTER COLUMN TYPE keeps its parameter types on servers preparing it later") {
  Fixture f(1);
  prepare_on_every_server(f.ci);  // kPoolSize servers open, none with "ins"
  PgConn conn = connect(f.ci);
  prepare_ins(conn.get());
  exec(f.owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  size_t servers = 0;
  const std::string wrong = insert_sevens(f, conn.get(), 3000, 2 * kPoolSize, &servers);
  CHECK_MESSAGE(wrong.empty(), wrong);
  CHECK(servers == (direct_mode() ? 1 : kPoolSize));  // the one with its own Parse's copy, and the others
  CHECK(ins_parameter_types(conn.get()) == "23,23");
  f.log_on_failure(!wrong.empty());
}

// A Parse-only batch (PQprepare) reaches a server like any request while one is free: PostgreSQL checks it there,
// so an invalid statement fails at its Parse and its name stays free.
TEST_CASE("an invalid statement fails at its Parse and leaves the name free") {
  Fixture f;
  PgConn conn = connect(f.ci);
  PgResult bad(PQprepare(conn.get(), "ins", "INSERT INTO no_such_table VALUES ($1)", 1, nullptr));
  CHECK(sqlstate(bad.get()) == "42P01");
  prepare_ins(conn.get());
  CHECK(insert_binary(conn.get(), 4000, 7) == "");
}

// Inside a transaction block too: a statement prepared before ADD COLUMN, run in a block on a server that prepares
// it only then, gets PostgreSQL's 0A000, and the block is failed (25P02 next, COMMIT rolls back), on the server
// as for the client. Before, it ran there with the new columns under the client's old description.
TEST_CASE("in a block, a statement whose columns changed gets 0A000 on a server preparing it; the block fails") {
  Fixture f(1);
  auto [conn, holder] = stale_sel(f);
  exec(conn.get(), "BEGIN");
  int fields = 0;
  const std::string err = exec_sel(conn.get(), 5, &fields);
  CHECK_MESSAGE(err.find("0A000") != std::string::npos, err);
  CHECK_MESSAGE(err.find("cached plan must not change result type") != std::string::npos, err);
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "25P02");  // the block failed
  PgResult commit(PQexec(conn.get(), "COMMIT"));
  CHECK(std::string(PQcmdStatus(commit.get())) == "ROLLBACK");
  CHECK(PQtransactionStatus(conn.get()) == PQTRANS_IDLE);
  exec(holder.get(), "COMMIT");
  prepare_sel(conn.get(), "sel_again");
  CHECK(exec_sel(conn.get(), 6, &fields, "sel_again") == "");
  CHECK(fields == 3);
  f.log_on_failure(err.find("0A000") == std::string::npos);
}

// Two client statements of one text in one request, on a server whose list holds two shared statements: "ins"
// (parsed before ALTER COLUMN TYPE, int4) must be prepared there with its types spelled out, under another shared
// name, while "ins_new" (parsed after, int4 and real) runs on the copy the server has. The room for the first is
// made by closing the least recently used copy: not the one "ins_new" runs on (the pinning client's old copy goes
// first only when no other statement of the request uses it), but "other". PostgreSQL runs both, each with its own
// Parse's types.
TEST_CASE("a request using two statements of one text, one with older parameter types, runs both") {
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, kDb, 1);
  config["workers"] = 1;
  config["prepared_statements"] = {{"max_per_server", 2}};
  fresh_database(kDb);
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);
  PgConn owner = connect(app_conninfo(cluster_ports().primary, kDb));
  exec(owner.get(), "CREATE TABLE t (id int PRIMARY KEY, v int)");
  PgConn conn = connect(ci);
  prepare_ins(conn.get());
  REQUIRE(insert_binary(conn.get(), 4000, 7) == "");  // the server's copy has "ins"'s types: int4, int4
  exec(owner.get(), "ALTER TABLE t ALTER COLUMN v TYPE real");
  PgResult other(PQprepare(conn.get(), "other", "SELECT 'other'::text", 0, nullptr));  // the list is full now
  REQUIRE(PQresultStatus(other.get()) == PGRES_COMMAND_OK);
  PgResult parsed(PQprepare(conn.get(), "ins_new", kInsert, 2, nullptr));  // the copy made again: int4, real
  REQUIRE(PQresultStatus(parsed.get()) == PGRES_COMMAND_OK);
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  const uint32_t wire[2] = {htonl(4001), htonl(7)};
  const char* binary[2] = {reinterpret_cast<const char*>(&wire[0]), reinterpret_cast<const char*>(&wire[1])};
  const int lengths[2] = {4, 4};
  const int formats[2] = {1, 1};
  const char* text[2] = {"4002", "7.5"};
  // "ins_new" first: its copy is found there before "ins" makes room for its own.
  REQUIRE(PQsendQueryPrepared(conn.get(), "ins_new", 2, text, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendQueryPrepared(conn.get(), "ins", 2, binary, lengths, formats, 0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  const std::string results = pipeline_results(conn.get(), 1);
  CHECK(results == "PGRES_COMMAND_OK \nPGRES_COMMAND_OK \nPGRES_PIPELINE_SYNC \n");
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  CHECK(scalar(owner.get(), "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM t") == "4000=7 4001=7 4002=7.5");
  if (results.find("PGRES_FATAL_ERROR") != std::string::npos && proxy.process()) {
    MESSAGE("pgmux log:\n" << proxy.process()->log());
  }
  owner.reset();
  drop_database_quietly(kDb);
}

// pgjdbc with autocommit off sends its BEGIN in the same batch as the Bind of a prepared statement: a Bind that is
// not the request's first message. A server that prepared the statement after the ALTER has the new columns;
// PostgreSQL answers the client's statement (the old columns) with 0A000 at that Bind and skips to the Sync, and
// the block fails. The binary before ran the new statement (pgjdbc's Bind, one result format per old column, got
// 08P01 "bind message has 2 result formats but query has 3 columns", and pgjdbc never prepared it again).
TEST_CASE("a Bind behind a BEGIN in one batch, of a statement whose columns changed, gets 0A000 there") {
  Fixture f(1);
  auto [conn, holder] = stale_sel(f);
  // One batch: Parse/Bind/Describe/Execute of BEGIN, Bind/Describe/Execute of "sel", Sync.
  const std::string all = begin_then(conn.get(), [](PGconn* c) {
    const char* values[1] = {"5"};
    return PQsendQueryPrepared(c, "sel", 1, values, nullptr, nullptr, 0);
  });
  CHECK_MESSAGE(all == "PGRES_COMMAND_OK; PGRES_FATAL_ERROR 0A000; PGRES_PIPELINE_SYNC; ", all);
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "25P02");  // the block failed
  PgResult commit(PQexec(conn.get(), "COMMIT"));
  CHECK(std::string(PQcmdStatus(commit.get())) == "ROLLBACK");
  exec(holder.get(), "COMMIT");
  f.log_on_failure(all.find("0A000") == std::string::npos);
}

// The same server copy: a Parse of the client's own name behind a BEGIN gets 42P05 as on PostgreSQL (a review found
// it going out under the name a stale Bind takes, which made a statement of that name on the shared server), and in
// a failed block a Bind of it gets PostgreSQL's 25P02, which comes before any 0A000 there.
TEST_CASE("a Parse of the name of a statement whose columns changed gets 42P05; in a failed block a Bind gets 25P02") {
  Fixture f(1);
  auto [conn, holder] = stale_sel(f);
  const std::string parse = begin_then(conn.get(), [](PGconn* c) {
    return PQsendPrepare(c, "sel", "SELECT * FROM t WHERE id = $1", 1, nullptr);
  });
  CHECK_MESSAGE(parse == "PGRES_COMMAND_OK; PGRES_FATAL_ERROR 42P05; PGRES_PIPELINE_SYNC; ", parse);
  exec(conn.get(), "ROLLBACK");
  exec(conn.get(), "BEGIN");
  CHECK(exec_sqlstate(conn.get(), "SELECT 1/0") == "22012");
  int fields = 0;
  const std::string failed = exec_sel(conn.get(), 5, &fields);
  CHECK_MESSAGE(failed.find("25P02") != std::string::npos, failed);
  exec(conn.get(), "ROLLBACK");
  exec(holder.get(), "COMMIT");
  f.log_on_failure(parse.find("42P05") == std::string::npos || failed.find("25P02") == std::string::npos);
}

// A Describe of a portal that does not exist, then a Bind of the stale statement, in one batch: PostgreSQL fails
// the Describe (34000) and skips the Bind. pgmux answered the Bind's 0A000 for the whole batch: it took the
// request's first statement step for its first message.
TEST_CASE("a Describe of a missing portal before a Bind of a statement whose columns changed gets PostgreSQL's 34000") {
  Fixture f(1);
  auto [conn, holder] = stale_sel(f);
  const auto describe_then_sel = [](PGconn* c) {
    const char* values[1] = {"5"};
    if (PQsendDescribePortal(c, "no_such_portal") != 1) return 0;
    return PQsendQueryPrepared(c, "sel", 1, values, nullptr, nullptr, 0);
  };
  PgConn direct = connect(app_conninfo(cluster_ports().primary, kDb));
  prepare_sel(direct.get());
  const std::string want = pipelined(direct.get(), describe_then_sel);
  REQUIRE_MESSAGE(want == "PGRES_FATAL_ERROR 34000; PGRES_PIPELINE_ABORTED; PGRES_PIPELINE_SYNC; ", want);
  const std::string got = pipelined(conn.get(), describe_then_sel);
  CHECK(got == want);
  int fields = 0;
  CHECK(exec_sel(conn.get(), 5, &fields).find("0A000") != std::string::npos);  // the Bind alone: PostgreSQL's 0A000
  exec(holder.get(), "COMMIT");
  f.log_on_failure(got != want);
}
