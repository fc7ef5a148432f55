// A read a hot standby cancels for a conflict with its recovery (its replay of the primary's WAL needs a lock the
// read holds) would have run on the primary, where the conflicting LOCK just waits for it. Before any of its reply
// reached the client and outside a transaction, pgmux runs it again on the primary: the client sees the primary's
// answer, in both pool modes, whether the standby canceled the statement (ERROR 40001) or, the read holding a
// subtransaction, ended the connection (FATAL 40001). The binary before passed both on (the FATAL disconnected the
// client). The standbys cancel after 100 ms here (max_standby_streaming_delay; put back when the test ends).
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

constexpr const char* kDb = "rt_conflict";

// The standbys' max_standby_streaming_delay, 100 ms while it lives (PostgreSQL's default waits 30 s).
struct FastConflicts {
  ClusterPorts ports;
  explicit FastConflicts(const ClusterPorts& p) : ports(p) {
    set("ALTER SYSTEM SET max_standby_streaming_delay = 100");
  }
  ~FastConflicts() {
    set("ALTER SYSTEM RESET max_standby_streaming_delay");
    wait_for("30s");  // the tests after this one see the default again
  }
  void set(const std::string& command) const {
    for (const int port : {ports.standby1, ports.standby2}) {
      PgConn conn = admin(port);
      exec(conn.get(), command);
      exec(conn.get(), "SELECT pg_reload_conf()");
    }
  }
  bool in_effect() const { return wait_for("100ms"); }
  bool wait_for(const std::string& value) const {
    return wait_until(
        [&] {
          for (const int port : {ports.standby1, ports.standby2}) {
            PgConn conn = admin(port);
            if (scalar(conn.get(), "SHOW max_standby_streaming_delay") != value) return false;
          }
          return true;
        },
        10);
  }
};

// On the primary, once a session on one of `watched` (the nodes the read may run on) holds its lock on table t: a
// transaction that takes t's ACCESS EXCLUSIVE lock and commits. Replaying it, a standby must cancel the read (after
// 100 ms); on the primary the LOCK waits for the read.
// False when no such lock was seen within 10 s (the LOCK is taken anyway).
std::future<bool> lock_table_once_read(const ClusterPorts& ports, std::vector<int> watched) {
  return std::async(std::launch::async, [ports, watched] {
    const auto read_holds_lock = [&] {
      for (const int port : watched) {
        PgConn node = admin(port, kDb);
        if (scalar(node.get(), "SELECT count(*) FROM pg_locks WHERE relation = 't'::regclass AND granted AND "
                               "mode = 'AccessShareLock' AND pid <> pg_backend_pid()") != "0") {
          return true;
        }
      }
      return false;
    };
    const bool seen = wait_until(read_holds_lock, 10, 0.02);
    PgConn conn = admin(ports.primary, kDb);
    exec(conn.get(), "SET lock_timeout = '20s'");
    exec(conn.get(), "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT");
    return seen;
  });
}

// The read on `conn` with a LOCK of t replayed while it runs: "<port> <count>", or the error.
std::string read_under_conflict(PGconn* conn, const ClusterPorts& ports, std::vector<int> watched,
                                const std::string& count_expression) {
  auto locker = lock_table_once_read(ports, std::move(watched));
  PgResult res(PQexec(conn, ("SELECT inet_server_port(), " + count_expression).c_str()));
  CHECK_MESSAGE(locker.get(), "the read's lock on t never showed in pg_locks");
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    return std::string("error ") + (state ? state : "-") + ": " + PQerrorMessage(conn);
  }
  return std::string(PQgetvalue(res.get(), 0, 0)) + " " + PQgetvalue(res.get(), 0, 1);
}

struct Read {
  const char* name;
  const char* count_expression;
  const char* logged;  // pgmux's line for the read it ran again
};

// The statement holds t's lock for 2 s; in slow_count() it runs in a subtransaction (the EXCEPTION block), which
// PostgreSQL cannot cancel alone: the standby ends the connection.
const Read kReads[] = {
    {"a canceled statement (ERROR 40001)", "(SELECT count(*) FROM t, pg_sleep(2) s)",
     "canceled a read for a conflict with its recovery"},
    {"an ended connection (FATAL 40001)", "slow_count()", "was lost before it answered"},
};

}  // namespace

TEST_CASE("a read a standby cancels for a recovery conflict runs again on the primary, as it would have run there") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb,
                    {"CREATE TABLE t (i int)", "INSERT INTO t SELECT generate_series(1, 1000)",
                     "CREATE FUNCTION slow_count() RETURNS bigint STABLE LANGUAGE plpgsql AS $$ DECLARE n bigint; "
                     "BEGIN BEGIN SELECT count(*) INTO n FROM t, pg_sleep(2) s; EXCEPTION WHEN division_by_zero THEN "
                     "n := -1; END; RETURN n; END $$",
                     "GRANT ALL ON t TO app"});
  FastConflicts conflicts(ports);
  REQUIRE(conflicts.in_effect());
  for (const Read& read : kReads) {
    CAPTURE(read.name);
    PgConn direct = connect(conninfo(ports.primary, "app", "app", kDb));
    const std::string want = read_under_conflict(direct.get(), ports, {ports.primary}, read.count_expression);
    REQUIRE(want == std::to_string(ports.primary) + " 1000");  // on the primary the LOCK waits for the read
    if (direct_mode()) continue;
    for (const char* mode : {"session", "transaction"}) {
      const std::string mode_name(mode);  // CAPTURE keeps a reference
      CAPTURE(mode_name);
      const int listen = pick_listen_port();
      nlohmann::json config = routing_config(listen, ports);
      for (nlohmann::json& database : config["databases"]) database["pool_mode"] = mode;
      ProxyUnderTest proxy(config.dump(2), listen);
      const std::string ci = proxy.conninfo("app", "app", kDb);
      REQUIRE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20));
      REQUIRE(wait_replayed(ports, 10));
      PgConn client = connect(ci);
      CHECK(read_under_conflict(client.get(), ports, {ports.standby1, ports.standby2}, read.count_expression) == want);
      CHECK(scalar(client.get(), "SELECT 'still here'") == "still here");  // the session goes on
      const std::string log = proxy.process()->full_log();
      CHECK_MESSAGE(log.find(read.logged) != std::string::npos, log);
    }
  }
}
