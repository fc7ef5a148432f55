// Session identity in session pooling (issue 10, item 5): the pid in BackendKeyData is the pid of the session's
// primary server connection, so pg_backend_pid(), pg_stat_activity, the pid in NotificationResponse,
// pg_terminate_backend and pg_cancel_backend agree with it as on a direct connection; PQcancel through pgmux
// still cancels, wherever the statement runs. With and without read/write split. Transaction pooling keeps a
// pid of pgmux's own (documented in the README), and cancelling still works there.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;
using Clock = std::chrono::steady_clock;

namespace {

// Session pooling over the primary alone, or over the whole cluster with reads on the standbys.
ProxyUnderTest session_proxy(bool split, const char* pool_mode = "session") {
  const int listen = pick_listen_port();
  nlohmann::json config = split ? routing_config(listen, cluster_ports()) : default_config(listen);
  config["databases"][0]["pool_mode"] = pool_mode;
  return ProxyUnderTest(config.dump(), listen);
}

// A connection of the proxy (or the primary, direct) with an application_name to find it in pg_stat_activity.
PgConn connect_named(const ProxyUnderTest& proxy, const std::string& name) {
  return connect(proxy.app_conninfo() + " application_name=" + name);
}

// With split on, makes the session's last statement a read served by a standby, so its primary connection is
// not the one relaying replies when something arrives there unasked.
void last_read_on_standby(PGconn* conn, bool split) {
  if (!split) return;
  const int primary = cluster_ports().primary;
  CHECK_MESSAGE(wait_until([&] { return server_port(conn) != primary; }, 10), "reads never left the primary");
}

std::string pid_of(PGconn* conn) { return std::to_string(PQbackendPID(conn)); }

// pg_terminate_backend of an idle session's pid, then a query: what the client reads.
std::string terminate_idle(PGconn* conn, const std::string& pid) {
  PgConn admin_conn = admin(cluster_ports().primary);
  REQUIRE(scalar(admin_conn.get(), "SELECT pg_terminate_backend(" + pid + ")") == "t");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the FATAL is on its way to the client
  // The first result is the server's FATAL; PQexec would return libpq's own "server closed the connection".
  if (PQsendQuery(conn, "SELECT 1") != 1) return std::string("send failed: ") + PQerrorMessage(conn);
  const std::string error = await_error(conn, 5);
  CHECK(PQstatus(conn) == CONNECTION_BAD);
  return error;
}

// pg_terminate_backend of a session's pid while it runs a statement on the primary: what the client reads.
std::string terminate_busy(PGconn* conn, const std::string& pid) {
  PgConn admin_conn = admin(cluster_ports().primary);
  REQUIRE(PQsendQuery(conn, "SELECT pg_sleep(30), pg_backend_pid()") == 1);  // pg_backend_pid: the primary
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  REQUIRE(scalar(admin_conn.get(), "SELECT pg_terminate_backend(" + pid + ")") == "t");
  return await_error(conn, 5);
}

// The same while the statement runs on a standby (read/write split): the session's primary connection ends under
// no request of its own, its FATAL held back behind the standby's reply; the session still ends with it.
std::string terminate_while_standby_reads(PGconn* conn, const std::string& pid) {
  // However this ends: the standby's backend sleeps on (nothing reads its socket), and its snapshot must hold back
  // no replay for the tests that follow.
  struct EndStandbySleeper {
    ~EndStandbySleeper() {
      for (int port : {cluster_ports().standby1, cluster_ports().standby2}) {
        PgConn standby = try_connect(conninfo(port, "postgres", "postgres", "app"));  // no throw in a destructor
        PgResult(PQexec(standby.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                                       "'%standby-read-tag%' AND pid <> pg_backend_pid()"));
      }
    }
  } end_standby_sleeper;
  PgConn admin_conn = admin(cluster_ports().primary);
  REQUIRE(PQsendQuery(conn, "SELECT pg_sleep(30) /* standby-read-tag */") == 1);
  bool on_standby = false;
  for (int port : {cluster_ports().standby1, cluster_ports().standby2}) {
    PgConn standby = admin(port);
    on_standby |= wait_until([&] {
      return scalar(standby.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%standby-read-tag%' "
                                   "AND pid <> pg_backend_pid()") == "1";
    }, 2, 0.05);
  }
  REQUIRE_MESSAGE(on_standby, "the read did not run on a standby");
  REQUIRE(scalar(admin_conn.get(), "SELECT pg_terminate_backend(" + pid + ")") == "t");
  return await_error(conn, 10);
}

constexpr const char* kTerminated = "FATAL 57P01 terminating connection due to administrator command";

}  // namespace

TEST_CASE("BackendKeyData's pid is the session's server: pg_backend_pid(), pg_stat_activity, NOTIFY to self") {
  for (bool split : {false, true}) {
    CAPTURE(split);
    ProxyUnderTest proxy = session_proxy(split);
    const std::string name = std::string("identity_") + (split ? "split" : "primary");
    PgConn conn = connect_named(proxy, name);
    const std::string pid = pid_of(conn.get());
    CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == pid);
    last_read_on_standby(conn.get(), split);
    CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == pid);  // routed to the primary, not the standby

    PgConn admin_conn = admin(cluster_ports().primary);
    const std::string backends = "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = '";
    CHECK(scalar(admin_conn.get(), backends + name + "'") == pid);

    exec(conn.get(), "LISTEN identity_self");
    exec(conn.get(), "NOTIFY identity_self, 'hello'");
    PQconsumeInput(conn.get());
    PGnotify* note = PQnotifies(conn.get());
    REQUIRE(note != nullptr);
    CHECK(std::to_string(note->be_pid) == pid);
    CHECK(std::string(note->extra) == "hello");
    PQfreemem(note);
  }
}

TEST_CASE("a NOTIFY from another session reaches an idle listener") {
  for (bool split : {false, true}) {
    CAPTURE(split);
    ProxyUnderTest proxy = session_proxy(split);
    PgConn listener = connect(proxy.app_conninfo());
    exec(listener.get(), "LISTEN identity_other");  // pins the session's reads to the primary too
    CHECK(scalar(listener.get(), "SELECT 'a read'") == "a read");
    PgConn notifier = admin(cluster_ports().primary, "app");
    const std::string notifier_pid = pid_of(notifier.get());
    exec(notifier.get(), "NOTIFY identity_other, 'from afar'");

    PGnotify* note = nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    while (!note && Clock::now() < deadline) {
      wait_readable(listener.get(), 0.2);
      PQconsumeInput(listener.get());
      note = PQnotifies(listener.get());
    }
    REQUIRE_MESSAGE(note != nullptr, "the notification did not arrive within 3 s");
    CHECK(std::to_string(note->be_pid) == notifier_pid);
    CHECK(std::string(note->extra) == "from afar");
    PQfreemem(note);
  }
}

TEST_CASE("pg_terminate_backend of BackendKeyData's pid ends the session with PostgreSQL's 57P01 FATAL") {
  // The oracle: a direct connection, idle and busy.
  {
    PgConn direct = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
    CHECK(terminate_idle(direct.get(), pid_of(direct.get())) == kTerminated);
    PgConn busy = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
    CHECK(terminate_busy(busy.get(), pid_of(busy.get())) == kTerminated);
  }
  for (bool split : {false, true}) {
    CAPTURE(split);
    ProxyUnderTest proxy = session_proxy(split);
    PgConn idle = connect(proxy.app_conninfo());
    last_read_on_standby(idle.get(), split);
    CHECK(terminate_idle(idle.get(), pid_of(idle.get())) == kTerminated);

    PgConn busy = connect(proxy.app_conninfo());
    CHECK(terminate_busy(busy.get(), pid_of(busy.get())) == kTerminated);

    if (split && !proxy.direct()) {
      PgConn reading = connect(proxy.app_conninfo());
      last_read_on_standby(reading.get(), split);
      CHECK(terminate_while_standby_reads(reading.get(), pid_of(reading.get())) == kTerminated);
      CHECK(PQstatus(reading.get()) == CONNECTION_BAD);
    }

    // Other clients go on.
    PgConn other = connect(proxy.app_conninfo());
    CHECK(scalar(other.get(), "SELECT 'fine'") == "fine");
  }
}

TEST_CASE("pg_cancel_backend of BackendKeyData's pid cancels the session's statement; the session goes on") {
  for (bool split : {false, true}) {
    CAPTURE(split);
    ProxyUnderTest proxy = session_proxy(split);
    PgConn conn = connect(proxy.app_conninfo());
    PgConn admin_conn = admin(cluster_ports().primary);
    REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30), pg_backend_pid()") == 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    CHECK(scalar(admin_conn.get(), "SELECT pg_cancel_backend(" + pid_of(conn.get()) + ")") == "t");
    CHECK(await_error(conn.get(), 5) == "ERROR 57014 canceling statement due to user request");
    CHECK(scalar(conn.get(), "SELECT 'after'") == "after");
  }
}

TEST_CASE("PQcancel through pgmux still cancels, on the primary and on a standby; also in transaction pooling") {
  for (const char* mode : {"session", "transaction"}) {
    for (bool split : {false, true}) {
      CAPTURE(mode);
      CAPTURE(split);
      ProxyUnderTest proxy = session_proxy(split, mode);
      PgConn conn = connect(proxy.app_conninfo());
      if (std::string(mode) == "transaction" && !proxy.direct()) {
        // Transaction pooling: a pid of pgmux's own, not any server's (the documented limit).
        CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") != pid_of(conn.get()));
      }
      REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30)") == 1);  // with split on: a read, on a standby
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      PGcancel* cancel = PQgetCancel(conn.get());
      REQUIRE(cancel != nullptr);
      char error[256] = {0};
      const auto t0 = Clock::now();
      CHECK(PQcancel(cancel, error, sizeof error) == 1);
      PQfreeCancel(cancel);
      CHECK(await_error(conn.get(), 5) == "ERROR 57014 canceling statement due to user request");
      CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 2.0);
      CHECK(scalar(conn.get(), "SELECT 'after cancel'") == "after cancel");
    }
  }
}

namespace {

// Terminates, on the standby at `port`, the backend whose last (or running) statement carries `tag`.
bool terminate_on_standby(int port, const std::string& tag) {
  PgConn standby = admin(port);
  const std::string sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%" + tag +
                          "%' AND pid <> pg_backend_pid()";
  return wait_until([&] { return scalar(standby.get(), "SELECT count(*) FROM (" + sql + ") t") == "1"; }, 5, 0.05);
}

}  // namespace

// The client knows the primary connection's pid, not the standby's: a standby connection ending (here by
// pg_terminate_backend, as a standby's restart would) does not end the session. Idle, it is let go and the next
// read finds another; under a read, the client hears that the statement may or may not have run, and goes on.
TEST_CASE("session pooling: the end of a session's standby connection does not end the session") {
  ProxyUnderTest proxy = session_proxy(true);
  if (proxy.direct()) return;
  PgConn conn = connect(proxy.app_conninfo());
  const std::string pid = pid_of(conn.get());
  exec(conn.get(), "SET application_name = 'standby_end'");
  const int primary = cluster_ports().primary;
  int standby_port = 0;
  REQUIRE(wait_until(
      [&] { return (standby_port = server_port(conn.get(), "SELECT inet_server_port() /* idle-tag */")) != primary; },
      10));

  REQUIRE(terminate_on_standby(standby_port, "idle-tag"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the FATAL reaches pgmux, then the end
  CHECK(PQstatus(conn.get()) == CONNECTION_OK);
  CHECK(scalar(conn.get(), "SELECT 'idle standby gone'") == "idle standby gone");
  CHECK(scalar(conn.get(), "SHOW application_name") == "standby_end");

  REQUIRE(wait_until([&] { return (standby_port = server_port(conn.get())) != primary; }, 10));
  REQUIRE(PQsendQuery(conn.get(), "SELECT pg_sleep(30) /* busy-tag */") == 1);
  REQUIRE(terminate_on_standby(standby_port, "busy-tag"));
  CHECK(await_error(conn.get(), 5).rfind("ERROR 08006 server connection lost", 0) == 0);
  CHECK(PQstatus(conn.get()) == CONNECTION_OK);
  CHECK(scalar(conn.get(), "SELECT 'busy standby gone'") == "busy standby gone");
  CHECK(pid_of(conn.get()) == pid);
  CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == pid);  // the session's primary connection is untouched
}
