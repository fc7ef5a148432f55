// libpq pipeline mode through pgmux in transaction mode: 100 queued statements (SELECTs and INSERTs) in one
// pipeline, all results in order; with one Sync at the end and with a Sync after every statement (100 Syncs in
// flight, so the server connection may go back to the pool between them); 8 clients at once over a pool of 2.
// A DISCARD ALL pipelined before a Parse, in both pool modes and with the split, compared with the primary.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_pipeline";
constexpr int kStatements = 100;

void must(bool ok, PGconn* conn, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + PQerrorMessage(conn));
}

// Statement i: even = SELECT echoing (client, i); odd = INSERT ... RETURNING the same pair.
void send_statement(PGconn* conn, int client, int i) {
  const std::string c = std::to_string(client), n = std::to_string(i);
  const char* values[2] = {c.c_str(), n.c_str()};
  const char* sql = (i % 2 == 0) ? "SELECT $1::int AS client, $2::int AS i"
                                 : "INSERT INTO items (client, i) VALUES ($1::int, $2::int) RETURNING client, i";
  must(PQsendQueryParams(conn, sql, 2, nullptr, values, nullptr, nullptr, 0) == 1, conn, "PQsendQueryParams");
}

// Reads statement i's result (and the NULL that ends it); throws unless it is (client, i).
void expect_result(PGconn* conn, int client, int i) {
  PgResult res(PQgetResult(conn));
  if (!res) throw std::runtime_error("no result for statement " + std::to_string(i));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    throw std::runtime_error("statement " + std::to_string(i) + ": " + error_text(conn, res.get()));
  }
  if (PQntuples(res.get()) != 1 || std::stoi(PQgetvalue(res.get(), 0, 0)) != client ||
      std::stoi(PQgetvalue(res.get(), 0, 1)) != i) {
    throw std::runtime_error("statement " + std::to_string(i) + " got someone else's result: (" +
                             PQgetvalue(res.get(), 0, 0) + ", " + PQgetvalue(res.get(), 0, 1) + ")");
  }
  PgResult end(PQgetResult(conn));
  if (end) throw std::runtime_error("extra result after statement " + std::to_string(i));
}

void expect_sync(PGconn* conn, int after) {
  PgResult res(PQgetResult(conn));
  if (!res || PQresultStatus(res.get()) != PGRES_PIPELINE_SYNC) {
    throw std::runtime_error("expected the Sync after statement " + std::to_string(after) + ", got " +
                             (res ? PQresStatus(PQresultStatus(res.get())) : std::string("nothing")));
  }
}

// One pipeline of kStatements; a Sync after every `sync_every` statements (and at the end).
void run_pipeline(const std::string& ci, int client, int sync_every) {
  PgConn conn = connect(ci);
  PGconn* c = conn.get();
  must(PQenterPipelineMode(c) == 1, c, "PQenterPipelineMode");
  for (int i = 0; i < kStatements; ++i) {
    send_statement(c, client, i);
    if ((i + 1) % sync_every == 0 || i + 1 == kStatements) must(PQpipelineSync(c) == 1, c, "PQpipelineSync");
  }
  must(PQflush(c) == 0, c, "PQflush");
  for (int i = 0; i < kStatements; ++i) {
    expect_result(c, client, i);
    if ((i + 1) % sync_every == 0 || i + 1 == kStatements) expect_sync(c, i);
  }
  must(PQexitPipelineMode(c) == 1, c, "PQexitPipelineMode");
  // Every INSERT committed exactly once.
  const std::string rows =
      scalar(c, "SELECT count(*) FROM items WHERE client = " + std::to_string(client));
  if (rows != std::to_string(kStatements / 2)) {
    throw std::runtime_error("client " + std::to_string(client) + " has " + rows + " rows, expected " +
                             std::to_string(kStatements / 2));
  }
}

// A statement parsed before the DISCARD ALL is gone; one parsed in a request pipelined behind it exists (for
// PostgreSQL its Parse came after the command), also when run again once the pipeline is over. The transcript
// of what each step answered, to compare with the primary's.
std::string discard_then_parse(const std::string& ci) {
  PgConn conn = connect(ci);
  PGconn* c = conn.get();
  std::string transcript;
  auto note = [&](PGresult* raw) {
    PgResult res(raw);
    const char* state = res ? PQresultErrorField(res.get(), PG_DIAG_SQLSTATE) : nullptr;
    transcript += res ? PQresStatus(PQresultStatus(res.get())) : std::string("(none)");
    if (state) transcript += std::string(" ") + state;
    if (res && PQresultStatus(res.get()) == PGRES_TUPLES_OK) {
      transcript += " " + std::string(PQgetvalue(res.get(), 0, 0));
    }
    transcript += "; ";
  };
  note(PQprepare(c, "old", "SELECT 1", 0, nullptr));
  must(PQenterPipelineMode(c) == 1, c, "PQenterPipelineMode");
  must(PQsendQueryParams(c, "DISCARD ALL", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1, c, "DISCARD ALL");
  must(PQpipelineSync(c) == 1, c, "PQpipelineSync");
  must(PQsendPrepare(c, "fresh", "SELECT 41 + 1", 0, nullptr) == 1, c, "PQsendPrepare");
  must(PQpipelineSync(c) == 1, c, "PQpipelineSync");
  must(PQsendQueryPrepared(c, "fresh", 0, nullptr, nullptr, nullptr, 0) == 1, c, "PQsendQueryPrepared");
  must(PQpipelineSync(c) == 1, c, "PQpipelineSync");
  must(PQflush(c) == 0, c, "PQflush");
  for (int step = 0; step < 3; ++step) {
    note(PQgetResult(c));
    PgResult end(PQgetResult(c));  // the NULL after a result
    note(PQgetResult(c));          // the Sync
  }
  must(PQexitPipelineMode(c) == 1, c, "PQexitPipelineMode");
  note(PQexecPrepared(c, "fresh", 0, nullptr, nullptr, nullptr, 0));
  note(PQexecPrepared(c, "old", 0, nullptr, nullptr, nullptr, 0));
  note(PQexec(c, "SELECT 1"));  // the session goes on
  return transcript;
}

struct Fixture {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  Fixture() : proxy((fresh_database(kDb), txpool_config(listen, kDb, 2).dump()), listen) {
    ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci);
    PgConn conn = connect(ci);
    exec(conn.get(), "CREATE TABLE items (id serial PRIMARY KEY, client int, i int)");
  }
  ~Fixture() { drop_database_quietly(kDb); }
  void check(const std::string& failure) {
    if (!failure.empty() && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
    CHECK_MESSAGE(failure.empty(), failure);
  }
};

}  // namespace

TEST_CASE("pipeline of 100 statements, one Sync") {
  Fixture f;
  f.check(run_threads(1, [&](int) { run_pipeline(f.ci, 0, kStatements); }));
}

TEST_CASE("pipeline of 100 statements, a Sync after each") {
  Fixture f;
  f.check(run_threads(1, [&](int) { run_pipeline(f.ci, 0, 1); }));
}

TEST_CASE("8 clients, pipelines with a Sync every 1, 7 or 100 statements, over a pool of 2") {
  Fixture f;
  const int every[3] = {1, 7, kStatements};
  f.check(run_threads(8, [&](int t) {
    for (int round = 0; round < 5; ++round) run_pipeline(f.ci, t * 10 + round, every[(t + round) % 3]);
  }));
}

TEST_CASE("a DISCARD ALL pipelined before a Parse leaves the new statement, as on the primary") {
  fresh_database(kDb, true);  // the split reads on standbys
  const std::string direct = discard_then_parse(app_conninfo(cluster_ports().primary, kDb));
  CHECK(direct.find("PGRES_TUPLES_OK 42; PGRES_FATAL_ERROR 26000") != std::string::npos);
  for (const std::string mode : {"transaction", "session"}) {
    for (bool split : {false, true}) {
      CAPTURE(mode);
      CAPTURE(split);
      const int listen = pick_listen_port();
      nlohmann::json config = txpool_config(listen, kDb, 2, split);
      database_entry(config)["pool_mode"] = mode;
      ProxyUnderTest proxy(config.dump(), listen);
      const std::string ci = app_conninfo(proxy.port(), kDb);
      wait_serving(ci);
      const std::string through = discard_then_parse(ci);
      if (through != direct && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
      CHECK(through == direct);
    }
  }
  drop_database_quietly(kDb);
}
