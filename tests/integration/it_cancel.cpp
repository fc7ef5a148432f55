// Query cancellation through pgmux: PQcancel goes to pgmux's port with pgmux's BackendKeyData and must reach
// the right server quickly, without touching other clients.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include <unistd.h>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/tcp_relay.hpp"

using namespace pgmux::test;
using Clock = std::chrono::steady_clock;

namespace {

bool cancel(PGconn* conn, std::string& error) {
  PGcancel* c = PQgetCancel(conn);
  if (!c) {
    error = "PQgetCancel returned null";
    return false;
  }
  char buf[256] = {0};
  bool ok = PQcancel(c, buf, sizeof buf) == 1;
  PQfreeCancel(c);
  error = buf;
  return ok;
}

// Waits (bounded) for the outcome of a PQsendQuery; returns the first result's SQLSTATE ("" if it succeeded)
// and the number of rows; drains the remaining results.
struct Outcome {
  bool finished = false;
  std::string sqlstate;
  int rows = 0;
};

Outcome await(PGconn* conn, double seconds) {
  Outcome out;
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  bool first = true;
  while (true) {
    while (PQisBusy(conn)) {
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0 || PQconsumeInput(conn) == 0) return out;
      if (PQisBusy(conn)) wait_readable(conn, left);
    }
    PgResult res(PQgetResult(conn));
    if (!res) break;
    if (first) {
      out.sqlstate = sqlstate(res.get());
      out.rows = PQntuples(res.get());
      first = false;
    }
  }
  out.finished = true;
  return out;
}

// Transaction pooling, pool_size servers to the primary.
nlohmann::json transaction_pooling(int listen, int pool_size) {
  nlohmann::json config = default_config(listen);
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "transaction";
    database["pool_size"] = pool_size;
  }
  return config;
}

// Transaction pooling on two servers and one worker (one idle list, whose order steers a client onto the server
// without a statement), with two app clients: `holder` keeps one server busy while `client` parses on the other.
struct TwoServerClients {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  PgConn holder, client;
  TwoServerClients() : proxy(one_worker(transaction_pooling(listen, 2)).dump(), listen) {
    holder = connect(proxy.app_conninfo());
    client = connect(proxy.app_conninfo());
  }
  static nlohmann::json one_worker(nlohmann::json config) {
    config["workers"] = 1;
    return config;
  }
};

// Transaction pooling with one server, reached through the relay (one worker: one pool).
nlohmann::json one_relayed_server(int listen, const TcpRelay& relay) {
  nlohmann::json config = default_config(listen);
  config["workers"] = 1;
  config["backends"][0]["port"] = relay.port();
  for (auto& database : config["databases"]) {
    database["pool_mode"] = "transaction";
    database["pool_size"] = 1;
  }
  return config;
}

}  // namespace

TEST_CASE("PQcancel of pg_sleep(30) returns 57014 within 1 s") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let it reach the server

  auto t0 = Clock::now();
  std::string err;
  REQUIRE_MESSAGE(cancel(conn.get(), err), err);
  Outcome out = await(conn.get(), 5.0);
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  REQUIRE(out.finished);
  CHECK(out.sqlstate == "57014");
  CHECK(elapsed < 1.0);

  // The session is still usable afterwards.
  CHECK(scalar(conn.get(), "SELECT 'after cancel'") == "after cancel");
}

TEST_CASE("a cancel affects only its own client") {
  ProxyUnderTest target;
  PgConn victim = connect(target.app_conninfo());
  PgConn bystander = connect(target.app_conninfo());
  REQUIRE(PQsendQuery(victim.get(), "SELECT pg_sleep(30)") == 1);
  REQUIRE(PQsendQuery(bystander.get(), "SELECT pg_sleep(2)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  std::string err;
  REQUIRE_MESSAGE(cancel(victim.get(), err), err);
  Outcome v = await(victim.get(), 5.0);
  REQUIRE(v.finished);
  CHECK(v.sqlstate == "57014");

  Outcome b = await(bystander.get(), 10.0);
  REQUIRE(b.finished);
  CHECK(b.sqlstate == "");
  CHECK(b.rows == 1);
}

TEST_CASE("cancel of an extended-protocol query") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  const char* params[] = {"30"};
  REQUIRE(PQsendQueryParams(conn.get(), "SELECT pg_sleep($1::float8)", 1, nullptr, params, nullptr, nullptr, 0) == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto t0 = Clock::now();
  std::string err;
  REQUIRE_MESSAGE(cancel(conn.get(), err), err);
  Outcome out = await(conn.get(), 5.0);
  REQUIRE(out.finished);
  CHECK(out.sqlstate == "57014");
  CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 1.0);
  CHECK(scalar(conn.get(), "SELECT 1") == "1");
}

// A cancel request takes time to reach its server. When the query it was for has ended meanwhile and the server
// went to another client (transaction pooling, one server), the cancel must not cancel that client's query: on
// PostgreSQL a late cancel finds its own session idle and does nothing. A relay in front of the primary holds
// the cancel on its way until the other client's query runs.
TEST_CASE("transaction pooling: a cancel still on its way when its query ends never cancels the next client's") {
  if (direct_mode()) return;
  TcpRelay relay("127.0.0.1", 0, cluster_ports().primary);
  const int listen = pick_listen_port();
  const nlohmann::json config = one_relayed_server(listen, relay);
  ProxyUnderTest proxy(config.dump(), listen);
  PgConn first = connect(proxy.conninfo("app", "app", "app"));
  PgConn next = connect(proxy.conninfo("app", "app", "app"));
  CHECK(scalar(next.get(), "SELECT 'ready'") == "ready");

  relay.hold_cancel_requests(true);
  REQUIRE(PQsendQuery(first.get(), "SELECT pg_sleep(0.5)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string err;
  REQUIRE_MESSAGE(cancel(first.get(), err), err);
  const Outcome ended = await(first.get(), 5.0);  // the cancel is held: the sleep ends as if it came too late
  REQUIRE(ended.finished);
  CHECK(ended.sqlstate == "");

  REQUIRE(PQsendQuery(next.get(), "SELECT pg_sleep(1)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  relay.hold_cancel_requests(false);  // the cancel reaches the backend it was sent to
  const Outcome other = await(next.get(), 5.0);
  REQUIRE(other.finished);
  CHECK_MESSAGE(other.sqlstate == "", "the next client's query was cancelled");
  CHECK(scalar(first.get(), "SELECT 'still serving'") == "still serving");
}

// A host that accepts a cancel request's connection and never answers (the relay holds it) must not keep pgmux's
// end of it open for ever: server_connect_timeout closes it, with a warning naming the server. The request may
// still reach the backend when the host wakes, so the server it was for serves no other client: the next
// client's query is not cancelled when the relay finally lets the request through.
TEST_CASE("transaction pooling: a cancel request's connection its host never closes is given up after the timeout") {
  if (direct_mode()) return;
  TcpRelay relay("127.0.0.1", 0, cluster_ports().primary);
  const int listen = pick_listen_port();
  nlohmann::json config = one_relayed_server(listen, relay);
  config["timeouts"]["server_connect_timeout"] = 0.5;
  ProxyUnderTest proxy(config.dump(), listen);
  PgConn first = connect(proxy.conninfo("app", "app", "app"));
  PgConn next = connect(proxy.conninfo("app", "app", "app"));
  CHECK(scalar(next.get(), "SELECT 'ready'") == "ready");
  const std::string backend_pid = scalar(first.get(), "SELECT pg_backend_pid()");

  relay.hold_cancel_requests(true);
  REQUIRE(PQsendQuery(first.get(), "SELECT pg_sleep(1.5)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string err;
  REQUIRE_MESSAGE(cancel(first.get(), err), err);
  const Outcome ended = await(first.get(), 5.0);  // held: the sleep ends as if the cancel never came
  REQUIRE(ended.finished);
  CHECK(ended.sqlstate == "");
  const std::string warning = "at 127.0.0.1:" + std::to_string(relay.port()) + " (backend pid " + backend_pid +
                              ") did not close the cancel request's connection within 0.5 s";
  bool warned = false;
  for (int i = 0; i < 40 && !warned; ++i) {
    warned = proxy.process()->full_log().find(warning) != std::string::npos;
    if (!warned) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK_MESSAGE(warned, proxy.process()->log());

  REQUIRE(PQsendQuery(next.get(), "SELECT pg_sleep(1)") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  relay.hold_cancel_requests(false);  // the host wakes: the request reaches the backend it was sent to
  const Outcome other = await(next.get(), 5.0);
  REQUIRE(other.finished);
  CHECK_MESSAGE(other.sqlstate == "", "the next client's query was cancelled");
  CHECK(scalar(first.get(), "SELECT 'still serving'") == "still serving");
}

// A request still waiting for a server has reached none: a cancel must fail it with PostgreSQL's 57014 at once,
// and it must never run (a direct connection would have cancelled it as it ran). Transaction pooling, one server
// held by another client's transaction. Two workers: the cancel's own connection lands on either, and a few
// rounds make both the client's worker and the other one take it.
TEST_CASE("transaction pooling: a cancel of a request waiting for a server fails it with 57014; it never runs") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(transaction_pooling(listen, 1).dump(), listen);
  PgConn holder = connect(proxy.app_conninfo());
  PgConn waiter = connect(proxy.app_conninfo());
  const std::string table = "cancel_waiting_" + std::to_string(getpid());
  exec(holder.get(), "CREATE TABLE " + table + " (id int)");
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    exec(holder.get(), "BEGIN");
    exec(holder.get(), "SELECT 1");  // the pool's only server, held
    REQUIRE(PQsendQuery(waiter.get(), ("INSERT INTO " + table + " VALUES (1)").c_str()) == 1);
    CHECK_FALSE(wait_readable(waiter.get(), 0.3));  // waiting for the server
    const auto t0 = Clock::now();
    std::string err;
    REQUIRE_MESSAGE(cancel(waiter.get(), err), err);
    const Outcome out = await(waiter.get(), 5.0);
    REQUIRE(out.finished);
    CHECK(out.sqlstate == "57014");
    CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 1.0);
    exec(holder.get(), "COMMIT");
    CHECK(scalar(waiter.get(), "SELECT 'after'") == "after");
  }
  CHECK(scalar(holder.get(), "SELECT count(*) FROM " + table) == "0");
  exec(holder.get(), "DROP TABLE " + table);
}

// Session pooling: the client holds its server, idle, while PAUSE holds its next request. The cancel is for that
// request, not for the idle server: 57014, and the request never runs, also after RESUME.
TEST_CASE("session pooling: a cancel of a request held by PAUSE fails it with 57014; it never runs after RESUME") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
  config["admin_users"] = nlohmann::json::array({"admin"});
  ProxyUnderTest proxy(config.dump(), listen);
  PgConn client = connect(proxy.app_conninfo());
  PgConn console = connect(proxy.conninfo("admin", "admin-secret", "pgmux"));
  const std::string table = "cancel_paused_" + std::to_string(getpid());
  exec(client.get(), "CREATE TABLE " + table + " (id int)");
  exec(console.get(), "PAUSE app");
  REQUIRE(PQsendQuery(client.get(), ("INSERT INTO " + table + " VALUES (1)").c_str()) == 1);
  CHECK_FALSE(wait_readable(client.get(), 0.3));  // held
  std::string err;
  REQUIRE_MESSAGE(cancel(client.get(), err), err);
  const Outcome out = await(client.get(), 2.0);
  exec(console.get(), "RESUME app");
  REQUIRE(out.finished);
  CHECK(out.sqlstate == "57014");
  CHECK(scalar(client.get(), "SELECT count(*) FROM " + table) == "0");
  exec(client.get(), "DROP TABLE " + table);
}

// Transaction pooling: the request lands on a server that must prepare its statement first, and that Parse waits
// for a lock another session holds. A cancel then is for the request, which has not run: it fails with 57014 once
// the server is ready, and never runs (on PostgreSQL the waiting execution is cancelled: the same answer, and no
// row). Inside a block (its BEGIN goes out with the preparation) the block fails too: 25P02 next, as directly.
TEST_CASE("transaction pooling: a cancel while pgmux prepares the request's server fails it with 57014 unsent") {
  if (direct_mode()) return;
  TwoServerClients f;
  PgConn& holder = f.holder;
  PgConn& client = f.client;
  PgConn locker = connect(conninfo(cluster_ports().primary, "app", "app", "app"));  // directly
  const std::string table = "cancel_preparing_" + std::to_string(getpid());
  exec(locker.get(), "CREATE TABLE " + table + " (id int)");
  for (const bool in_block : {false, true}) {
    CAPTURE(in_block);
    const std::string name = in_block ? "ins_in_block" : "ins";
    exec(holder.get(), "BEGIN");
    exec(holder.get(), "SELECT 1");  // one server, held: the client's Parse goes to the other one
    PgResult prepared(PQprepare(client.get(), name.c_str(), ("INSERT INTO " + table + " VALUES (1)").c_str(), 0,
                                nullptr));
    REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
    exec(holder.get(), "COMMIT");  // given back last: the client's next request gets the server without it
    exec(locker.get(), "BEGIN");
    exec(locker.get(), "LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
    if (in_block) exec(client.get(), "BEGIN");
    REQUIRE(PQsendQueryPrepared(client.get(), name.c_str(), 0, nullptr, nullptr, nullptr, 0) == 1);
    CHECK_FALSE(wait_readable(client.get(), 0.5));  // pgmux's Parse of it there waits for the lock
    std::string err;
    REQUIRE_MESSAGE(cancel(client.get(), err), err);
    CHECK_FALSE(wait_readable(client.get(), 0.3));  // it waits on: the preparation is pgmux's, not cancelled
    exec(locker.get(), "ROLLBACK");
    const Outcome out = await(client.get(), 5.0);
    REQUIRE(out.finished);
    CHECK(out.sqlstate == "57014");
    if (in_block) {
      CHECK(exec_sqlstate(client.get(), "SELECT 1") == "25P02");  // the block failed, on the server too
      exec(client.get(), "ROLLBACK");
    }
    CHECK(scalar(locker.get(), "SELECT count(*) FROM " + table) == "0");
  }
  PgResult again(PQexecPrepared(client.get(), "ins", 0, nullptr, nullptr, nullptr, 0));
  CHECK(PQresultStatus(again.get()) == PGRES_COMMAND_OK);  // the statement is there, and runs now
  CHECK(scalar(locker.get(), "SELECT count(*) FROM " + table) == "1");
  exec(locker.get(), "DROP TABLE " + table);
}

// Transaction pooling: the client's server still runs pgmux's query behind the client's SQL PREPARE (here it waits
// for a lock on pg_prepared_statements), and the client's next request must first have a statement prepared there,
// so it is held until that query ends. A cancel then is for the held request, which has not run: it fails with
// 57014 at once, never runs, and pgmux's query is not hit (the PREPARE's types are still learned). pgmux's own
// query: nothing to compare directly.
TEST_CASE("transaction pooling: a cancel of a request held behind pgmux's query behind a PREPARE fails it unsent") {
  if (direct_mode()) return;
  TwoServerClients f;
  PgConn& holder = f.holder;
  PgConn& client = f.client;
  PgConn owner = connect(conninfo(cluster_ports().primary, "app", "app", "app"));  // directly
  PgConn locker = connect(conninfo(cluster_ports().primary, "postgres", "postgres", "app"));
  const std::string table = "cancel_held_" + std::to_string(getpid());
  exec(owner.get(), "CREATE TABLE " + table + " (id int, v int)");
  exec(holder.get(), "BEGIN");
  exec(holder.get(), "SELECT 1");  // one server, held: the client's Parse goes to the other one
  PgResult prepared(PQprepare(client.get(), "ins", ("INSERT INTO " + table + " VALUES (1, 1)").c_str(), 0, nullptr));
  REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
  exec(holder.get(), "COMMIT");  // given back last: the client's PREPARE gets the server without "ins"
  exec(locker.get(), "BEGIN");
  exec(locker.get(), "LOCK TABLE pg_catalog.pg_prepared_statements IN ACCESS EXCLUSIVE MODE");
  exec(client.get(), "PREPARE put AS INSERT INTO " + table + " VALUES ($1, $2)");  // answered; pgmux's query waits
  REQUIRE(PQsendQueryPrepared(client.get(), "ins", 0, nullptr, nullptr, nullptr, 0) == 1);
  CHECK_FALSE(wait_readable(client.get(), 0.5));  // held: "ins" is prepared there only after pgmux's query
  std::string err;
  REQUIRE_MESSAGE(cancel(client.get(), err), err);
  const Outcome out = await(client.get(), 2.0);  // at once, while the lock is still held
  REQUIRE(out.finished);
  CHECK(out.sqlstate == "57014");
  exec(locker.get(), "ROLLBACK");
  CHECK(exec_sqlstate(client.get(), "SELECT pg_sleep(0.1)") == "");
  CHECK(scalar(owner.get(), "SELECT count(*) FROM " + table) == "0");  // the held request never ran
  // pgmux's query was not cancelled: put's parameters stay int4 after the column's type changes (10.4 -> 10).
  exec(owner.get(), "ALTER TABLE " + table + " ALTER COLUMN v TYPE real");
  exec(client.get(), "EXECUTE put(2, 10.4)");
  PgResult again(PQexecPrepared(client.get(), "ins", 0, nullptr, nullptr, nullptr, 0));
  CHECK(PQresultStatus(again.get()) == PGRES_COMMAND_OK);
  CHECK(scalar(owner.get(), "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM " + table) == "1=1 2=10");
  exec(owner.get(), "DROP TABLE " + table);
}
