// The prepare step (ClientConn::prepare): before a request runs on a server, pgmux brings that server up to date
// with the client's session (the session log replayed, statements prepared, the BEGIN pgmux answered sent). When
// that fails, the client must see what a direct connection to the primary shows (the oracle), or a clear error:
// never its request run with the server's own settings, or outside the transaction it was told it is in.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

constexpr const char* kRole = "txp_replay_role";

// The role the client sets, granted to app: a session may SET ROLE to it until the grant is revoked.
void grant_fresh_role() {
  PgConn admin = routing::admin(cluster_ports().primary);
  exec(admin.get(), std::string("DROP ROLE IF EXISTS ") + kRole);
  exec(admin.get(), std::string("CREATE ROLE ") + kRole + " NOLOGIN");
  exec(admin.get(), std::string("GRANT ") + kRole + " TO app");
}

void revoke_role() {
  PgConn admin = routing::admin(cluster_ports().primary);
  exec(admin.get(), std::string("REVOKE ") + kRole + " FROM app");
}

// pgmux in transaction mode on the primary alone, one worker with one server (each request of a client runs on
// a server just handed to it, which replays the session log first), the read/write split on so that pgmux answers
// a plain BEGIN itself.
nlohmann::json replay_config(int listen, const std::string& db) {
  nlohmann::json config = txpool_config(listen, db, 1);
  config["workers"] = 1;
  config["routing"]["read_write_split"] = true;
  config["timeouts"]["query_wait_timeout"] = 10;  // a server never given back fails the test, not hangs it
  return config;
}

// The first result of `sql`: "row <its first value>", "ok <command tag>", or the error as "SEVERITY SQLSTATE
// message". After a FATAL, PQexec would keep only libpq's own "server closed the connection unexpectedly".
std::string first_outcome(PGconn* conn, const std::string& sql) {
  if (PQsendQuery(conn, sql.c_str()) != 1) return "not sent";
  std::string first;
  bool have_first = false;
  while (PGresult* raw = PQgetResult(conn)) {
    PgResult res(raw);
    if (have_first) continue;
    have_first = true;
    if (PQresultStatus(raw) == PGRES_TUPLES_OK) {
      first = std::string("row ") + (PQntuples(raw) > 0 ? PQgetvalue(raw, 0, 0) : "");
      continue;
    }
    if (PQresultStatus(raw) == PGRES_COMMAND_OK) {
      first = std::string("ok ") + PQcmdStatus(raw);
      continue;
    }
    auto field = [&](int code) {
      const char* v = PQresultErrorField(raw, code);
      return std::string(v ? v : "");
    };
    first = field(PG_DIAG_SEVERITY_NONLOCALIZED) + " " + field(PG_DIAG_SQLSTATE) + " " +
            field(PG_DIAG_MESSAGE_PRIMARY);
  }
  return first;
}

// The client's request after the revoke: PostgreSQL runs it as the role still (shown on `direct`); through
// pgmux it must not run at all (above all not as app): FATAL with the replay's own SQLSTATE (permission denied
// to set role) and a message naming the command.
void check_refused_replay(PGconn* direct, PGconn* client) {
  CHECK(scalar(direct, "SELECT current_user") == kRole);
  const std::string outcome = first_outcome(client, "SELECT current_user");
  INFO(outcome);
  CHECK(outcome.rfind("row", 0) != 0);
  CHECK(outcome.rfind(std::string("FATAL 42501 could not restore session setting \"SET ROLE ") + kRole +
                          "\" on server S-", 0) == 0);
  CHECK(outcome.find(std::string(": permission denied to set role \"") + kRole + "\"") != std::string::npos);
  CHECK(PQstatus(client) == CONNECTION_BAD);  // the session's settings cannot be restored anywhere
}

// Both run SET ROLE and a setting replayed after it (partial state on a server where the role fails).
void set_role(PGconn* direct, PGconn* client) {
  for (PGconn* conn : {direct, client}) {
    exec(conn, std::string("SET ROLE ") + kRole);
    exec(conn, "SET search_path = replay_schema, public");
  }
}

void drop_role() {
  PgConn admin = routing::admin(cluster_ports().primary);
  exec(admin.get(), std::string("DROP ROLE IF EXISTS ") + kRole);
}

// pgmux logged the refused replay; then the direct connection, the database and the role go.
void check_logged_then_clean_up(ProxyUnderTest& proxy, PgConn& direct, const std::string& db) {
  if (proxy.process()) {
    const std::string log = proxy.process()->full_log();
    INFO(log);
    CHECK(log.find("could not restore session setting") != std::string::npos);
  }
  direct.reset();
  drop_database_quietly(db);
  drop_role();
}
}  // namespace

// The session ran SET ROLE; another session revoked the role from the login user. On a direct connection the
// session goes on as that role (PostgreSQL checks membership at SET time only). pgmux cannot set it on the next
// server, and must not run the request as the login user instead (other privileges): the request fails with the
// replay's SQLSTATE and a message naming the command, the connection ends, and that server never serves again.
TEST_CASE("a session command that no longer replays fails the request; it never runs as the login user") {
  if (direct_mode()) return;
  const std::string db = "txp_replay_role";
  fresh_database(db);
  grant_fresh_role();
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(replay_config(listen, db).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", db));
  PgConn client = connect(ci);
  set_role(direct.get(), client.get());
  const std::string server_pid = scalar(client.get(), "SELECT pg_backend_pid()");
  revoke_role();
  bool in_block = false;
  SUBCASE("outside a transaction") {}
  SUBCASE("inside the transaction pgmux answered BEGIN for") { in_block = true; }
  for (PGconn* conn : {direct.get(), client.get()}) {
    if (in_block) exec(conn, "BEGIN");
  }
  check_refused_replay(direct.get(), client.get());

  // The next client gets a new server, with none of the first one's settings.
  client.reset();
  PgConn next = connect(ci);
  CHECK(scalar(next.get(), "SELECT pg_backend_pid()") != server_pid);
  CHECK(scalar(next.get(), "SELECT current_user") == "app");
  CHECK(scalar(next.get(), "SHOW search_path").find("replay_schema") == std::string::npos);
  check_logged_then_clean_up(proxy, direct, db);
}

// Session pooling with the read/write split: the session's settings live on its primary connection and are
// replayed on a standby connection when a read first goes there.
TEST_CASE("session pooling: a read on a standby where the session's role no longer replays fails; never as app") {
  if (direct_mode()) return;
  const std::string db = "txp_replay_session";
  fresh_database(db, true);
  grant_fresh_role();
  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, db, 2, true);
  database_entry(config)["pool_mode"] = "session";
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", db));
  PgConn client = connect(ci);
  set_role(direct.get(), client.get());
  revoke_role();
  REQUIRE(routing::wait_replayed(cluster_ports(), 10));  // the standbys refuse the role too
  check_refused_replay(direct.get(), client.get());
  check_logged_then_clean_up(proxy, direct, db);
}

namespace {

// What a client sees of a transaction block in which a statement failed: that statement's SQLSTATE, the
// transaction status after it, what a read and a write after it get, COMMIT's command tag, the status after
// COMMIT and whether that write was kept.
struct BlockOutcome {
  std::string failed, status_after, next_read, next_write, commit_tag, status_end, kept;
  bool operator==(const BlockOutcome&) const = default;
};

std::string show(const BlockOutcome& o) {
  return o.failed + " / " + o.status_after + " / read " + o.next_read + " / write " + o.next_write + " / " +
         o.commit_tag + " / " + o.status_end + " / rows kept: " + o.kept;
}

std::string tx_status(PGconn* conn) {
  switch (PQtransactionStatus(conn)) {
    case PQTRANS_IDLE: return "idle";
    case PQTRANS_INTRANS: return "in transaction";
    case PQTRANS_INERROR: return "failed transaction";
    default: return "other";
  }
}

// BEGIN, then `failing` (a statement that must fail), then a read, a write tagged `who` and COMMIT.
template <typename Run>
BlockOutcome run_block(PGconn* conn, const std::string& who, Run failing) {
  BlockOutcome o;
  exec(conn, "BEGIN");
  PgResult failed(failing(conn));
  o.failed = sqlstate(failed.get());
  o.status_after = tx_status(conn);
  o.next_read = exec_sqlstate(conn, "SELECT 1");  // outside a block a standby's; here the block's server's
  o.next_write = exec_sqlstate(conn, "INSERT INTO replay_kept VALUES ('" + who + "')");
  PgResult commit(PQexec(conn, "COMMIT"));
  o.commit_tag = PQcmdStatus(commit.get());
  o.status_end = tx_status(conn);
  o.kept = scalar(conn, "SELECT count(*) FROM replay_kept WHERE who = '" + who + "'");
  return o;
}

// pgmux over the primary and both standbys (a read outside a block may go to a standby; a plain BEGIN is answered
// by pgmux), one worker with one server per backend.
struct SplitProxy {
  explicit SplitProxy(const std::string& db) : listen(pick_listen_port()), proxy(config(db), listen) {
    ci = app_conninfo(proxy.port(), db);
    wait_serving(ci);
  }
  std::string config(const std::string& db) const {
    nlohmann::json c = txpool_config(listen, db, 1, true);
    c["workers"] = 1;
    return c.dump();
  }
  int listen;
  ProxyUnderTest proxy;
  std::string ci;
};

}  // namespace

// A plain BEGIN is answered by pgmux and sent in front of the next statement, with what the server lacks of the
// session (here: the statement the request executes, which no longer analyzes since its table was dropped).
// PostgreSQL fails the EXECUTE inside the transaction and aborts it: a read and a write after it get 25P02 and
// COMMIT rolls back. Through pgmux the same, whatever the prepare step had to send.
TEST_CASE("a statement that cannot be prepared inside the transaction pgmux answered BEGIN for aborts it") {
  if (direct_mode()) return;
  const std::string db = "txp_replay_begin";
  fresh_database(db, true);
  SplitProxy split(db);
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", db));
  PgConn client = connect(split.ci);
  exec(direct.get(), "CREATE TABLE replay_gone (v int)");
  exec(direct.get(), "CREATE TABLE replay_kept (who text)");
  std::string kind;
  SUBCASE("protocol-level prepared statement") { kind = "protocol"; }
  SUBCASE("SQL prepared statement") { kind = "sql"; }
  SUBCASE("SQL prepared statement, settings changed since") { kind = "sql, settings"; }
  // The simple-Query BEGIN destroys the unnamed statement: 26000, never a copy prepared behind the BEGIN.
  SUBCASE("the unnamed statement parsed before the BEGIN") { kind = "unnamed"; }
  for (PGconn* conn : {direct.get(), client.get()}) {
    if (kind == "unnamed") {
      PgResult unnamed(PQprepare(conn, "", "INSERT INTO replay_kept VALUES ('unnamed')", 0, nullptr));
      REQUIRE(PQresultStatus(unnamed.get()) == PGRES_COMMAND_OK);
    } else if (kind == "protocol") {
      // pgmux answers PQprepare (Parse, Sync) itself: the statement's Parse goes to the server in the prepare
      // step of the first request that uses it.
      PgResult gone(PQprepare(conn, "s_gone", "INSERT INTO replay_gone VALUES (1)", 0, nullptr));
      REQUIRE(PQresultStatus(gone.get()) == PGRES_COMMAND_OK);
    } else {
      exec(conn, "PREPARE q_gone AS INSERT INTO replay_gone VALUES (1)");
      // Prepared again under the settings it was made with (a savepoint in the block) when the log grew since.
      if (kind == "sql, settings") exec(conn, "SET application_name = 'replay_later'");
    }
  }
  exec(direct.get(), "DROP TABLE replay_gone");
  auto failing = [&](PGconn* conn) {
    if (kind == "unnamed") return PQexecPrepared(conn, "", 0, nullptr, nullptr, nullptr, 0);
    return kind == "protocol" ? PQexecPrepared(conn, "s_gone", 0, nullptr, nullptr, nullptr, 0)
                              : PQexec(conn, "EXECUTE q_gone");
  };
  const BlockOutcome expected = run_block(direct.get(), "direct", failing);
  REQUIRE(expected.failed == (kind == "unnamed" ? "26000" : "42P01"));
  const BlockOutcome got = run_block(client.get(), "pgmux", failing);
  INFO(kind << ": through pgmux " << show(got) << ", directly " << show(expected));
  CHECK(got == expected);
  CHECK(scalar(client.get(), "SELECT 'still serving'") == "still serving");
  if (!(got == expected) && split.proxy.process()) MESSAGE("pgmux log:\n" << split.proxy.process()->log());
  direct.reset();
  drop_database_quietly(db);
}

// pgmux answers a plain BEGIN itself, without asking a server (PostgreSQL refuses this one at once: 42601), and
// sends it with the session log ahead of the next request. When the server refuses it there, that request must
// not run outside the transaction the client was told it is in (its write would commit on its own): the session
// ends with the BEGIN's own SQLSTATE, and nothing the client sent after the BEGIN ran.
TEST_CASE("a BEGIN pgmux answered that fails ahead of the next request: that request never runs outside it") {
  if (direct_mode()) return;
  const std::string db = "txp_replay_bad_begin";
  fresh_database(db);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(replay_config(listen, db).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", db));
  exec(direct.get(), "CREATE TABLE replay_kept (who text)");
  const std::string begin = "BEGIN ISOLATION LEVEL replay_bogus";
  REQUIRE(exec_sqlstate(direct.get(), begin) == "42601");
  PgConn client = connect(ci);
  exec(client.get(), "SET application_name = 'replay_bad_begin'");  // a session log: the BEGIN goes with it
  if (exec_sqlstate(client.get(), begin) == "42601") return;  // refused at once, as PostgreSQL does: nothing else
  const std::string outcome = first_outcome(client.get(), "INSERT INTO replay_kept VALUES ('pgmux')");
  INFO(outcome);
  CHECK(outcome.rfind("FATAL 42601 could not start the transaction \"" + begin + "\" on server S-", 0) == 0);
  CHECK(PQstatus(client.get()) == CONNECTION_BAD);
  CHECK(scalar(direct.get(), "SELECT count(*) FROM replay_kept") == "0");
  direct.reset();
  drop_database_quietly(db);
}
