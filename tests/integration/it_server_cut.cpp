// A server connection that vanishes without a word (a network cut, a crashed host: no FATAL, just a closed
// socket) under a client inside a transaction: the client is told its transaction did not commit (08006), or, when
// its COMMIT was running, that the outcome is unknown (08007). pgmux reaches the primary through a relay of the
// test's own, which cuts every connection it carries on demand. A deferred constraint trigger keeps COMMIT
// running for a second, so the cut falls inside it. A client between transactions whose BEGIN is on its way when
// the server vanishes hears nothing of it: the BEGIN goes to the next server.
#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/tcp_relay.hpp"
#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using pgmux::test::routing::wait_until;

namespace {

// "ok", or the SQLSTATE and message of the first result: a FATAL that came while the client was idle is that
// result (PQexec would report libpq's own "server closed the connection" instead).
std::string outcome_of(PGconn* conn, const char* sql) {
  if (PQsendQuery(conn, sql) != 1) return std::string("send failed: ") + PQerrorMessage(conn);
  PgResult first(PQgetResult(conn));
  while (PgResult rest{PQgetResult(conn)}) {
  }
  const ExecStatusType status = PQresultStatus(first.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return "ok";
  return first ? sqlstate(first.get()) + " " + PQresultErrorMessage(first.get()) : std::string("no result");
}

}  // namespace

TEST_CASE("a server cut inside a transaction: 08006 it did not commit; during COMMIT: 08007 outcome unknown") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  {
    PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
    exec(admin.get(),
         "DROP TABLE IF EXISTS cut_t; CREATE TABLE cut_t (id int); ALTER TABLE cut_t OWNER TO app;"
         "CREATE OR REPLACE FUNCTION cut_slow_commit() RETURNS trigger LANGUAGE plpgsql"
         " AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;"
         "CREATE CONSTRAINT TRIGGER cut_slow AFTER INSERT ON cut_t DEFERRABLE INITIALLY DEFERRED"
         " FOR EACH ROW EXECUTE FUNCTION cut_slow_commit()");
  }
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["backends"][0]["port"] = relay.port();
  config["routing"] = {{"failover_timeout", 0}};  // nothing to wait for: the relay stays, the servers are gone
  ProxyUnderTest proxy(config.dump(2), listen);
  // With failover_timeout 0 a statement fails until the first probe round has found the primary (a loaded
  // machine takes a while): wait for that first.
  bool primary_known = false;
  for (int i = 0; i < 200 && !primary_known; ++i) {
    PgConn probe = try_connect(proxy.conninfo("app", "app", "app"));
    primary_known = probe && PQstatus(probe.get()) == CONNECTION_OK && outcome_of(probe.get(), "BEGIN") == "ok" &&
                    outcome_of(probe.get(), "SELECT 1") == "ok";
    if (!primary_known) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE_MESSAGE(primary_known, "pgmux found no primary within 10 s");

  // Idle inside a transaction when the cut comes.
  PgConn idle = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(idle.get(), "BEGIN") == "ok");
  CHECK(outcome_of(idle.get(), "SELECT 1") == "ok");
  relay.cut();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string idle_outcome = outcome_of(idle.get(), "SELECT 2");
  CAPTURE(idle_outcome);
  CHECK(idle_outcome.rfind("08006 FATAL:  server connection lost (backend \"primary\") inside a transaction: the "
                           "transaction did not commit", 0) == 0);

  // COMMIT running (the deferred trigger sleeps) when the cut comes.
  PgConn committing = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(committing.get(), "BEGIN") == "ok");
  CHECK(outcome_of(committing.get(), "INSERT INTO cut_t VALUES (1)") == "ok");
  REQUIRE(PQsendQuery(committing.get(), "COMMIT") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  relay.cut();
  PgResult commit(PQgetResult(committing.get()));
  REQUIRE(commit);
  CHECK(sqlstate(commit.get()) == "08007");
  CHECK(std::string(PQresultErrorMessage(commit.get())).find("may or may not have committed") != std::string::npos);
  while (PgResult rest{PQgetResult(committing.get())}) {
  }

  // Others go on: a new client gets a new server through the relay.
  PgConn after = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(after.get(), "SELECT 1") == "ok");
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
  exec(admin.get(), "DROP TABLE cut_t; DROP FUNCTION cut_slow_commit()");
}

// A client between transactions sends BEGIN just as its server goes (a crash, a failover, a network cut): the
// BEGIN ran nowhere or opened a transaction that died with the connection, so pgmux sends it again over a new
// connection and the client's transaction goes on (the old binary answered 08006 "may or may not have been
// executed"). The relay frozen, the BEGIN reaches neither PostgreSQL nor its answer pgmux; then it is cut.
TEST_CASE("a BEGIN lost with its server is sent again: the client's transaction starts on the next server") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  {
    PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
    exec(admin.get(), "DROP TABLE IF EXISTS cut_resend; CREATE TABLE cut_resend (id int); ALTER TABLE cut_resend "
                      "OWNER TO app");
  }
  int row = 0;
  for (const std::string pool_mode : {"session", "transaction"}) {
    for (const bool extended : {false, true}) {
      CAPTURE(pool_mode);
      CAPTURE(extended);
      TcpRelay relay("127.0.0.1", 0, ports.primary);
      const int listen = pick_listen_port();
      nlohmann::json config = default_config(listen);
      config["backends"][0]["port"] = relay.port();
      config["databases"][0]["pool_mode"] = pool_mode;
      config["databases"][0]["pool_size"] = 1;  // transaction pooling: the BEGIN goes to the frozen server
      // A simple-protocol BEGIN is answered by pgmux itself under read/write split: off, so it goes out. No probe
      // while the relay is frozen (its bytes would look like the BEGIN's).
      config["routing"] = {{"read_write_split", false}, {"failover_timeout", 20}};
      config["health_check"] = {{"period", 30}};
      config["logging"]["level"] = "debug";  // the function catalog's load is logged at debug
      ProxyUnderTest proxy(config.dump(2), listen);
      PgConn client = connect(proxy.conninfo("app", "app", "app"));
      // The login starts loading the database's function catalog over a connection of its own through the relay:
      // loaded before the freeze, or its bytes would be taken for the BEGIN's (and the cut would end the load).
      REQUIRE(wait_until([&] { return proxy.process()->full_log().find("volatile function names") !=
                                      std::string::npos; }, 10));
      // Session pooling: session state the new server must be given. (Transaction pooling would sync a shared
      // server's parameters before the BEGIN, and that sync, not the BEGIN, would meet the cut.)
      const bool session = pool_mode == "session";
      if (session) REQUIRE(outcome_of(client.get(), "SET application_name = 'resent'") == "ok");
      REQUIRE(outcome_of(client.get(), "SELECT 1") == "ok");
      relay.freeze();
      const size_t before = relay.frozen_bytes();
      const int sent = extended ? PQsendQueryParams(client.get(), "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0)
                                : PQsendQuery(client.get(), "BEGIN");
      REQUIRE(sent == 1);
      REQUIRE(wait_until([&] { return relay.frozen_bytes() > before; }, 10));  // pgmux sent it on
      relay.cut();
      PgResult begin(PQgetResult(client.get()));
      REQUIRE(begin);
      CHECK_MESSAGE(PQresultStatus(begin.get()) == PGRES_COMMAND_OK, PQresultErrorMessage(begin.get()));
      while (PgResult rest{PQgetResult(client.get())}) {
      }
      ++row;
      CHECK(outcome_of(client.get(), ("INSERT INTO cut_resend VALUES (" + std::to_string(row) + ")").c_str()) == "ok");
      CHECK(outcome_of(client.get(), "COMMIT") == "ok");
      // The session's state came along (replayed on the new server).
      PgResult name(PQexec(client.get(), "SHOW application_name"));
      if (session) CHECK(std::string(PQgetvalue(name.get(), 0, 0)) == "resent");
      CHECK_MESSAGE(proxy.process()->full_log().find("sending it again") != std::string::npos, proxy.process()->log());
    }
  }
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
  PgResult count(PQexec(admin.get(), "SELECT count(*) FROM cut_resend"));
  CHECK(std::string(PQgetvalue(count.get(), 0, 0)) == std::to_string(row));
  exec(admin.get(), "DROP TABLE cut_resend");
}

// Not everything that starts with BEGIN may go again: an extended batch BEGIN; INSERT; COMMIT whose server is lost
// after it committed, before its answer came, is ambiguous as on a direct connection (08006), and runs once.
TEST_CASE("a batch that committed is not sent again when its server is lost before its answer") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
  exec(admin.get(), "DROP TABLE IF EXISTS cut_once; CREATE TABLE cut_once (id int); ALTER TABLE cut_once OWNER TO app");
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["backends"][0]["port"] = relay.port();
  config["databases"][0]["pool_mode"] = "transaction";
  config["routing"] = {{"read_write_split", false}, {"failover_timeout", 20}};
  config["health_check"] = {{"period", 30}};
  ProxyUnderTest proxy(config.dump(2), listen);
  PgConn client = connect(proxy.conninfo("app", "app", "app"));
  REQUIRE(outcome_of(client.get(), "SELECT 1") == "ok");
  relay.freeze(/*replies_only=*/true);
  REQUIRE(PQenterPipelineMode(client.get()) == 1);
  for (const char* sql : {"BEGIN", "INSERT INTO cut_once VALUES (1)", "COMMIT"}) {
    REQUIRE(PQsendQueryParams(client.get(), sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  }
  REQUIRE(PQpipelineSync(client.get()) == 1);
  REQUIRE(wait_until([&] { return scalar(admin.get(), "SELECT count(*) FROM cut_once") == "1"; }, 10));
  relay.cut();
  PgResult first(PQgetResult(client.get()));
  REQUIRE(first);
  CHECK(sqlstate(first.get()) == "08006");
  CHECK(std::string(PQresultErrorMessage(first.get())).find("may or may not have been executed") != std::string::npos);
  CHECK(proxy.process()->full_log().find("sending it again") == std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(scalar(admin.get(), "SELECT count(*) FROM cut_once") == "1");
  exec(admin.get(), "DROP TABLE cut_once");
}

// A read on a standby whose server vanishes before its reply began goes to another server: the client gets its
// rows (the old binary: 08006 "may or may not have been executed").
TEST_CASE("a read lost with its standby before its reply began is sent again") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.standby1);
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["backends"].push_back({{"name", "standby1"}, {"host", "127.0.0.1"}, {"port", relay.port()}});
  config["routing"] = {{"read_write_split", true}, {"consistency", "eventual"}, {"failover_timeout", 20}};
  config["health_check"] = {{"period", 30}};
  ProxyUnderTest proxy(config.dump(2), listen);
  PgConn client = connect(proxy.conninfo("app", "app", "app"));
  // The first read finds standby1 (once the prober has: until then reads go to the primary).
  const std::string standby1 = std::to_string(ports.standby1);
  REQUIRE(wait_until([&] { return scalar(client.get(), "SELECT inet_server_port()") == standby1; }, 10));
  relay.freeze();
  const size_t before = relay.frozen_bytes();
  REQUIRE(PQsendQuery(client.get(), "SELECT 42") == 1);
  REQUIRE(wait_until([&] { return relay.frozen_bytes() > before; }, 10));
  relay.cut();
  PgResult read(PQgetResult(client.get()));
  REQUIRE(read);
  CHECK_MESSAGE(PQresultStatus(read.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(read.get()));
  if (PQresultStatus(read.get()) == PGRES_TUPLES_OK) CHECK(std::string(PQgetvalue(read.get(), 0, 0)) == "42");
  while (PgResult rest{PQgetResult(client.get())}) {
  }
  CHECK(proxy.process()->full_log().find("sending it again") != std::string::npos);
  CHECK(scalar(client.get(), "SELECT 7") == "7");  // the session goes on
}

// A BEGIN sent again after its server closed without a word must not go to another connection to the same backend
// that is just as gone but whose end the loop has not read yet (a crashed primary's connections all end, one read
// at a time): the idle ones are closed at the first such end, and the BEGIN opens a new connection. Here the
// second connection is frozen and never ends: the old binary sent the BEGIN to it and the client hung.
TEST_CASE("a BEGIN sent again after a silent close does not go to another idle connection to the same backend") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  // One worker, so both server connections are in the one pool.
  const nlohmann::json config = routing::lost_server_config(listen, relay.port());
  ProxyUnderTest proxy(config.dump(2), listen);
  PgConn first = connect(proxy.conninfo("app", "app", "app"));
  PgConn second = connect(proxy.conninfo("app", "app", "app"));
  // Two transactions at once: the pool opens its second connection, and both are idle afterwards.
  REQUIRE(outcome_of(first.get(), "BEGIN") == "ok");
  REQUIRE(outcome_of(second.get(), "BEGIN") == "ok");
  REQUIRE(outcome_of(first.get(), "COMMIT") == "ok");
  REQUIRE(outcome_of(second.get(), "COMMIT") == "ok");
  relay.freeze();
  const size_t before = relay.frozen_bytes();
  REQUIRE(PQsendQueryParams(first.get(), "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(wait_until([&] { return relay.frozen_bytes() > before; }, 10));
  relay.cut_carrying();  // the BEGIN's server ends without a word; the idle one stays open and silent
  const std::string begin = routing::await_command_ok(first.get(), 8);
  if (begin == routing::kNoAnswer) relay.cut();  // the BEGIN went to the silent connection: let the client go
  REQUIRE_MESSAGE(begin.empty(), begin << "\n" << proxy.process()->log());
  CHECK(outcome_of(first.get(), "COMMIT") == "ok");
  const std::string log = proxy.process()->full_log();
  CHECK(log.find("sending it again") != std::string::npos);
  CHECK_MESSAGE(log.find("closing this worker's 1 idle connections") != std::string::npos, log);
}

// The other way round: one connection terminated alone (pg_terminate_backend, a FATAL 57P01 that transaction
// pooling absorbs under the request) says nothing of the backend's other connections, which stay in the pool.
TEST_CASE("a server terminated alone leaves the other idle connections to its backend open") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["workers"] = 1;
  config["databases"][0]["pool_mode"] = "transaction";
  config["databases"][0]["pool_size"] = 2;
  config["routing"] = {{"read_write_split", false}};
  ProxyUnderTest proxy(config.dump(2), listen);
  PgConn first = connect(proxy.conninfo("app", "app", "app"));
  PgConn second = connect(proxy.conninfo("app", "app", "app"));
  REQUIRE(outcome_of(first.get(), "BEGIN") == "ok");
  REQUIRE(outcome_of(second.get(), "BEGIN") == "ok");
  const std::set<std::string> pids{scalar(first.get(), "SELECT pg_backend_pid()"),
                                   scalar(second.get(), "SELECT pg_backend_pid()")};
  REQUIRE(pids.size() == 2);
  REQUIRE(outcome_of(first.get(), "COMMIT") == "ok");
  REQUIRE(outcome_of(second.get(), "COMMIT") == "ok");
  REQUIRE(PQsendQuery(first.get(), "SELECT pg_sleep(30) /* terminated alone */") == 1);
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
  const char* find =
      "SELECT pid FROM pg_stat_activity WHERE query LIKE '%terminated alone%' AND pid <> pg_backend_pid()";
  REQUIRE(wait_until([&] { return !scalar(admin.get(), find).empty(); }, 10));
  const std::string terminated = scalar(admin.get(), find);
  REQUIRE(pids.count(terminated) == 1);
  exec(admin.get(), "SELECT pg_terminate_backend(" + terminated + ")");
  while (PgResult rest{PQgetResult(first.get())}) {
  }
  // The other connection, idle meanwhile, serves the next transaction; the log never says it was closed.
  CHECK(pids.count(scalar(second.get(), "SELECT pg_backend_pid()")) == 1);
  CHECK(scalar(second.get(), "SELECT pg_backend_pid()") != terminated);
  CHECK_MESSAGE(proxy.process()->full_log().find("closing this worker's") == std::string::npos,
                proxy.process()->log());
}
