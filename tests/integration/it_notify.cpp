// LISTEN/NOTIFY between two clients: the notification reaches a listener that is idle (no query running), so
// pgmux must forward asynchronous server messages outside a request.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

struct Notification {
  std::string channel;
  std::string payload;
  int be_pid = 0;
};

// Waits up to `seconds` for one notification on an idle connection.
bool next_notification(PGconn* conn, double seconds, Notification& out) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    if (PQconsumeInput(conn) == 0) return false;
    if (PGnotify* n = PQnotifies(conn)) {
      out = Notification{n->relname, n->extra, n->be_pid};
      PQfreemem(n);
      return true;
    }
    double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    wait_readable(conn, left);
  }
}

}  // namespace

TEST_CASE("LISTEN/NOTIFY between two clients") {
  ProxyUnderTest target;
  PgConn listener = connect(target.app_conninfo());
  PgConn notifier = connect(target.app_conninfo());
  exec(listener.get(), "LISTEN it_notify_channel");
  std::string notifier_pid = scalar(notifier.get(), "SELECT pg_backend_pid()");

  SUBCASE("plain NOTIFY with a payload arrives while the listener is idle") {
    exec(notifier.get(), "NOTIFY it_notify_channel, 'hello listener'");
    Notification n;
    REQUIRE(next_notification(listener.get(), 5.0, n));
    CHECK(n.channel == "it_notify_channel");
    CHECK(n.payload == "hello listener");
    CHECK(std::to_string(n.be_pid) == notifier_pid);
  }

  SUBCASE("pg_notify inside a transaction is delivered at commit, in order") {
    exec(notifier.get(), "BEGIN");
    exec(notifier.get(), "SELECT pg_notify('it_notify_channel', 'first')");
    exec(notifier.get(), "SELECT pg_notify('it_notify_channel', 'second')");
    Notification early;
    CHECK_FALSE(next_notification(listener.get(), 0.3, early));  // nothing before COMMIT
    exec(notifier.get(), "COMMIT");
    Notification a, b;
    REQUIRE(next_notification(listener.get(), 5.0, a));
    REQUIRE(next_notification(listener.get(), 5.0, b));
    CHECK(a.payload == "first");
    CHECK(b.payload == "second");
  }

  SUBCASE("a notification that arrives during the listener's own query is delivered with it") {
    exec(notifier.get(), "NOTIFY it_notify_channel, 'during query'");
    // The listener runs a query; the notification is read along with (or before) its result.
    CHECK(scalar(listener.get(), "SELECT 42") == "42");
    Notification n;
    REQUIRE(next_notification(listener.get(), 5.0, n));
    CHECK(n.payload == "during query");
  }

  SUBCASE("UNLISTEN stops delivery") {
    exec(listener.get(), "UNLISTEN it_notify_channel");
    exec(notifier.get(), "NOTIFY it_notify_channel, 'nobody hears this'");
    Notification n;
    CHECK_FALSE(next_notification(listener.get(), 0.5, n));
  }

  SUBCASE("many notifications in a burst all arrive") {
    exec(notifier.get(), "SELECT pg_notify('it_notify_channel', 'n' || g) FROM generate_series(1, 500) g");
    int got = 0;
    Notification n;
    while (got < 500 && next_notification(listener.get(), 5.0, n)) {
      if (n.payload != "n" + std::to_string(got + 1)) break;
      ++got;
    }
    CHECK(got == 500);
  }
}
