// RECONNECT (PgBouncer's console command): a pool's server connections are replaced, idle ones at once and busy
// ones when their client gives them back. PostgreSQL reads ALTER ROLE / ALTER DATABASE ... SET defaults at login,
// so a server that logged in before such a change keeps the old ones: RECONNECT is how they reach every client.
// Also how the console reads what names a database (RECONNECT, PAUSE, RESUME) and what it refuses at once.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "adm_reconnect";

struct Fixture {
  ClusterPorts ports = cluster_ports();
  int listen = pick_listen_port();
  std::unique_ptr<ProxyUnderTest> proxy;
  PgConn owner;  // direct to the primary, as a superuser

  explicit Fixture(const char* pool_mode = "session") {
    recreate_database(ports, kDb);
    owner = admin(ports.primary, kDb);
    nlohmann::json config = default_config(listen);
    config["workers"] = 1;  // one pool: the next client gets the server the last one gave back
    config["databases"].push_back({{"name", kDb}, {"pool_mode", pool_mode}, {"pool_size", 4}});
    config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
    config["admin_users"] = nlohmann::json::array({"admin"});
    proxy = std::make_unique<ProxyUnderTest>(config.dump(), listen);
  }
  ~Fixture() {
    try {
      exec(owner.get(), std::string("ALTER ROLE app IN DATABASE ") + kDb + " RESET statement_timeout");
      owner.reset();
      drop_database(ports, kDb);
    } catch (...) {
    }
  }
  std::string app() const { return proxy->conninfo("app", "app", kDb); }
  std::string timeout_seen() const {
    PgConn conn = connect(app());
    return scalar(conn.get(), "SELECT current_setting('statement_timeout')");
  }
};

}  // namespace

TEST_CASE("RECONNECT replaces the servers, so a role's new defaults reach every new session") {
  if (direct_mode()) return;  // a command of pgmux's console
  Fixture f;
  PgConn busy = connect(f.app());  // keeps its server (session pooling), in a transaction at the RECONNECT
  exec(busy.get(), "BEGIN");
  const std::string busy_pid = scalar(busy.get(), "SELECT pg_backend_pid()");
  CHECK(f.timeout_seen() == "0");  // another server logs in, then goes back idle
  exec(f.owner.get(), std::string("ALTER ROLE app IN DATABASE ") + kDb + " SET statement_timeout = '1234ms'");
  CHECK(f.timeout_seen() == "0");  // the idle server logged in before the ALTER (PgBouncer's limit too)
  PgConn console = connect(f.proxy->conninfo("admin", "admin-secret", "pgmux"));
  PgResult done = exec(console.get(), std::string("RECONNECT ") + kDb);
  CHECK(std::string(PQcmdStatus(done.get())) == "RECONNECT");
  CHECK(f.timeout_seen() == "1234ms");
  exec(busy.get(), "COMMIT");  // the busy server goes on to the end of its client's session...
  CHECK(scalar(busy.get(), "SELECT pg_backend_pid()") == busy_pid);
  busy.reset();  // ...and closes when given back
  const std::string alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = " + busy_pid;
  CHECK(wait_until([&] { return scalar(f.owner.get(), alive) == "0"; }, 5.0));
  CHECK(f.timeout_seen() == "1234ms");
  PgResult wrong(PQexec(console.get(), "RECONNECT one two"));
  CHECK(sqlstate(wrong.get()) == "42601");
  for (const char* every : {"RECONNECT", "RECONNECT *", "RECONNECT \"*\""}) {  // every pool
    CHECK(f.timeout_seen() == "1234ms");  // a server logs in and goes back idle...
    PgResult all = exec(console.get(), every);
    CHECK(std::string(PQcmdStatus(all.get())) == "RECONNECT");
    // ...and is closed (each worker is told after the answer)
    CHECK(wait_until([&] { return PQntuples(exec(console.get(), "SHOW SERVERS").get()) == 0; }, 5.0));
  }
}

// Transaction pooling: a server busy at the RECONNECT (its client inside a block) closes when the block ends, while
// its client stays: the client's next transaction runs on a server that logged in after the ALTER.
TEST_CASE("transaction pooling: RECONNECT closes a busy server when its client's transaction ends") {
  if (direct_mode()) return;
  Fixture f("transaction");
  PgConn client = connect(f.app());
  exec(client.get(), "BEGIN");
  const std::string busy_pid = scalar(client.get(), "SELECT pg_backend_pid()");
  exec(f.owner.get(), std::string("ALTER ROLE app IN DATABASE ") + kDb + " SET statement_timeout = '1234ms'");
  PgConn console = connect(f.proxy->conninfo("admin", "admin-secret", "pgmux"));
  exec(console.get(), std::string("RECONNECT ") + kDb);
  CHECK(scalar(client.get(), "SELECT current_setting('statement_timeout')") == "0");  // the block's server
  exec(client.get(), "COMMIT");
  const std::string alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = " + busy_pid;
  CHECK(wait_until([&] { return scalar(f.owner.get(), alive) == "0"; }, 5.0));
  CHECK(scalar(client.get(), "SELECT current_setting('statement_timeout')") == "1234ms");
  CHECK(f.timeout_seen() == "1234ms");
}

// Transaction pooling logs clients in with what a server reported at its login (ParameterStatus): after
// RECONNECT, a new client is told the defaults the new servers read, as on a direct connection, not the old ones.
TEST_CASE("transaction pooling: after RECONNECT, clients log in with the defaults the new servers read") {
  if (direct_mode()) return;
  Fixture f("transaction");
  const auto told_timezone = [&] {
    PgConn conn = connect(f.app());
    const char* told = PQparameterStatus(conn.get(), "TimeZone");
    const std::string shown = scalar(conn.get(), "SHOW TimeZone");
    CHECK(shown == (told ? told : ""));
    return shown;
  };
  const std::string before = told_timezone();
  REQUIRE(before != "Asia/Tokyo");
  exec(f.owner.get(), std::string("ALTER ROLE app IN DATABASE ") + kDb + " SET TimeZone = 'Asia/Tokyo'");
  PgConn console = connect(f.proxy->conninfo("admin", "admin-secret", "pgmux"));
  exec(console.get(), std::string("RECONNECT ") + kDb);
  CHECK(told_timezone() == "Asia/Tokyo");
  CHECK(told_timezone() == "Asia/Tokyo");  // and from the login parameters pgmux keeps
  PgConn direct = connect(conninfo(f.ports.primary, "app", "app", kDb));
  CHECK(std::string(PQparameterStatus(direct.get(), "TimeZone")) == "Asia/Tokyo");
  exec(f.owner.get(), std::string("ALTER ROLE app IN DATABASE ") + kDb + " RESET TimeZone");
}

// Names are case-sensitive; "*" matching any name no longer makes PAUSE of a misspelled one a silent no-op. A name
// in double quotes is an identifier, as PostgreSQL reads it. A command that takes nothing refuses what follows it
// (a second command behind a ';' was dropped unanswered). The extended protocol is refused at its first message,
// as PostgreSQL answers: a batch closed by Flush (asyncpg's Parse, Describe, Flush) waited for a Sync.
TEST_CASE("the console reads database names as configured and refuses what it cannot run, at once") {
  if (direct_mode()) return;
  Fixture f;
  PgConn console = connect(f.proxy->conninfo("admin", "admin-secret", "pgmux"));
  auto state_of = [&](const char* command) { return sqlstate(PgResult(PQexec(console.get(), command)).get()); };
  CHECK(state_of("PAUSE APP") == "3D000");
  CHECK(state_of("RECONNECT no_such_db") == "3D000");
  CHECK(state_of("PAUSE \"app\"") == "");
  CHECK(state_of("RESUME app") == "");  // so the quoted name paused app
  CHECK(state_of("SHOW VERSION garbage") == "42601");
  CHECK(state_of("SHOW POOLS ; SHOW VERSION") == "42601");
  REQUIRE(PQenterPipelineMode(console.get()) == 1);
  REQUIRE(PQsendPrepare(console.get(), "", "SHOW VERSION", 0, nullptr) == 1);
  REQUIRE(PQsendFlushRequest(console.get()) == 1);
  REQUIRE(PQflush(console.get()) == 0);
  CHECK(wait_readable(console.get(), 3.0));
  CHECK(sqlstate(PgResult(PQgetResult(console.get())).get()) == "0A000");
  REQUIRE(PQpipelineSync(console.get()) == 1);
  for (int i = 0; i < 10; ++i) {  // up to the Sync's ReadyForQuery
    PgResult next(PQgetResult(console.get()));
    if (next && PQresultStatus(next.get()) == PGRES_PIPELINE_SYNC) break;
  }
  REQUIRE(PQexitPipelineMode(console.get()) == 1);
  CHECK(state_of("SHOW VERSION") == "");
}
