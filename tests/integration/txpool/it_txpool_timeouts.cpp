// Client-facing limits and timeouts in transaction mode (issue 4 item 4, docs/CONFIG.md), each firing with its
// error: max_client_conn (53300 at login), query_wait_timeout (53300 naming the pool), idle_transaction_timeout
// (client closed, transaction rolled back), client_idle_timeout (client closed), server_connect_timeout (a
// backend that accepts TCP but never answers). SQLSTATEs as documented in README.md ("Limits and timeouts").
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "tests/integration/txpool/txpool_support.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;
using routing::now_seconds;

namespace {

const char* const kDb = "txp_timeouts";

struct Fixture : TweakedProxy {
  Fixture(int pool_size, const std::function<void(nlohmann::json&)>& tweak, bool wait = true)
      : TweakedProxy(kDb, pool_size, tweak, wait, [] {
          PgConn p = connect(app_conninfo(cluster_ports().primary, kDb));
          exec(p.get(), "CREATE TABLE marks (v text)");
        }) {}
};

}  // namespace

TEST_CASE("max_client_conn: one more client is refused with 53300, a freed slot is reused") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) { c["max_client_conn"] = 5; });
  std::vector<PgConn> held;
  for (int i = 0; i < 5; ++i) held.push_back(connect(f.ci));
  const StartupOutcome extra = raw_startup(f.proxy.port(), "app", "app", kDb, 5.0);
  CHECK_FALSE(extra.ok);
  CHECK_MESSAGE(extra.sqlstate == "53300", "got [" << extra.sqlstate << "] " << extra.message);
  MESSAGE("6th client: [" << extra.sqlstate << "] " << extra.message);
  for (PgConn& c : held) CHECK(scalar(c.get(), "SELECT 1") == "1");  // the others are untouched
  // As PostgreSQL: the SSLRequest libpq sends first (sslmode=prefer) gets its answer, and the 53300 comes after the
  // startup packet, where libpq shows it (before, an error in place of 'N' read as "error during SSL exchange").
  PgConn prefer = try_connect(f.ci + " sslmode=prefer");
  CHECK_MESSAGE(std::string(PQerrorMessage(prefer.get())).find("sorry, too many clients already") != std::string::npos,
                PQerrorMessage(prefer.get()));
  // A cancel request is not a client: it goes through at the limit.
  REQUIRE(PQsendQuery(held[0].get(), "SELECT pg_sleep(30)") == 1);
  CHECK_FALSE(wait_readable(held[0].get(), 0.3));
  PGcancel* cancel = PQgetCancel(held[0].get());
  char error[256] = {0};
  CHECK(PQcancel(cancel, error, sizeof error) == 1);
  PQfreeCancel(cancel);
  CHECK(wait_readable(held[0].get(), 5.0));
  PgResult cancelled(PQgetResult(held[0].get()));
  CHECK(sqlstate(cancelled.get()) == "57014");
  while (PgResult rest{PQgetResult(held[0].get())}) {
  }
  held.pop_back();
  bool back = routing::wait_until([&] { return raw_startup(f.proxy.port(), "app", "app", kDb, 5.0).ok; }, 3.0, 0.1);
  CHECK_MESSAGE(back, "a freed slot was not reusable within 3 s");
  f.log_if(extra.sqlstate != "53300" || !back);
}

// Connections that send nothing crowd pgmux past twice max_client_conn: a client that comes meanwhile still gets
// its SSLRequest answered before the 53300, as from PostgreSQL (before, past twice the limit pgmux wrote the FATAL
// at once, in place of the SSLRequest's answer, and Debian's libpq shows none of it); silent ones past twice the
// limit are closed within about a second.
TEST_CASE("max_client_conn: crowded by silent connections, an SSLRequest is answered and they are closed") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) { c["max_client_conn"] = 2; });
  std::vector<PgConn> held;
  for (int i = 0; i < 2; ++i) held.push_back(connect(f.ci));
  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) {  // 5 connections: past twice the limit
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(f.proxy.port()));
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    silent.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // accepted by now
  PgConn prefer = try_connect(f.ci + " sslmode=prefer");
  const std::string refusal = PQerrorMessage(prefer.get());
  CHECK_MESSAGE(refusal.find("sorry, too many clients already") != std::string::npos, refusal);
  // Back to at most twice the limit: at least one of the three is closed (0: EOF; -1 with EAGAIN: still open after
  // the wait), the rest wait client_login_timeout as PostgreSQL's wait authentication_timeout.
  int closed = 0;
  for (int fd : silent) {
    timeval wait{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    char byte = 0;
    closed += recv(fd, &byte, 1, 0) == 0;
    close(fd);
  }
  CHECK(closed >= 1);
  for (PgConn& c : held) CHECK(scalar(c.get(), "SELECT 1") == "1");
}

// The largest max_client_conn the config takes ("no limit"): its accept-time cap (twice the limit) must not
// overflow into refusing everyone.
TEST_CASE("max_client_conn at its largest lets clients in") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) { c["max_client_conn"] = 2147483647; });
  PgConn conn = connect(f.ci);
  CHECK(scalar(conn.get(), "SELECT 1") == "1");
}

TEST_CASE("query_wait_timeout: a client waiting for a busy pool gets 53300 naming the pool") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) { c["timeouts"]["query_wait_timeout"] = 1; });
  // Both log in first: pgmux's login itself needs a server connection (it would be the one to time out).
  PgConn holder = connect(f.ci);
  PgConn waiter = connect(f.ci);
  exec(holder.get(), "BEGIN");
  exec(holder.get(), "SELECT 1");  // the pool's only server is now this transaction's
  const double t0 = now_seconds();
  PgResult res(PQexec(waiter.get(), "SELECT 1"));
  const double waited = now_seconds() - t0;
  CHECK(PQresultStatus(res.get()) == PGRES_FATAL_ERROR);
  const std::string text = error_text(waiter.get(), res.get());
  MESSAGE("after " << waited << " s: " << text);
  CHECK(sqlstate(res.get()) == "53300");
  CHECK(text.find(kDb) != std::string::npos);
  CHECK(waited >= 0.9);
  CHECK(waited < 3.5);
  // The holder is unaffected and, once it commits, the pool serves again.
  exec(holder.get(), "COMMIT");
  PgConn again = connect(f.ci);
  CHECK(scalar(again.get(), "SELECT 2") == "2");
  f.log_if(sqlstate(res.get()) != "53300");
}

TEST_CASE("idle_transaction_timeout: a client idle in a transaction is closed, its work rolled back") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) { c["timeouts"]["idle_transaction_timeout"] = 1; });
  PgConn conn = connect(f.ci);
  NoticeCapture notice;
  notice.install(conn.get());
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "INSERT INTO marks VALUES ('idle-in-tx')");
  const double t0 = now_seconds();
  const bool closed = wait_closed_by_proxy(conn.get(), 4.0);
  const double after = now_seconds() - t0;
  MESSAGE("closed=" << closed << " after " << after << " s; message: [" << notice.sqlstate << "] " << notice.message);
  CHECK(closed);
  CHECK(after >= 0.9);
  CHECK(notice.sqlstate == "25P03");  // an ErrorResponse says why before the close (README: 25P03)
  // Rolled back, and the pool keeps serving others.
  PgConn other = connect(f.ci);
  CHECK(scalar(other.get(), "SELECT count(*) FROM marks WHERE v = 'idle-in-tx'") == "0");
  // An active transaction (statements every 0.3 s) is not idle and survives.
  PgConn busy = connect(f.ci);
  exec(busy.get(), "BEGIN");
  for (int i = 0; i < 7; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(exec_sqlstate(busy.get(), "SELECT 1") == "");
  }
  CHECK(exec_sqlstate(busy.get(), "COMMIT") == "");
  // Idle outside a transaction is fine.
  PgConn quiet = connect(f.ci);
  exec(quiet.get(), "SELECT 1");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(exec_sqlstate(quiet.get(), "SELECT 1") == "");
  f.log_if(!closed);
}

// A client that went silent after part of a message (its network died mid-send) is idle as PostgreSQL counts it:
// pgmux waited for the rest for good, the server held idle in its transaction (from a black-box hunt).
TEST_CASE("idle_transaction_timeout: also for a client silent in the middle of a message") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) { c["timeouts"]["idle_transaction_timeout"] = 1; });
  PgConn conn = connect(f.ci);
  NoticeCapture notice;
  notice.install(conn.get());
  exec(conn.get(), "BEGIN");
  exec(conn.get(), "INSERT INTO marks VALUES ('half-sent')");
  const char partial[] = {'Q', 0, 0};  // a Query's type and half its length
  REQUIRE(send(PQsocket(conn.get()), partial, sizeof partial, 0) == static_cast<ssize_t>(sizeof partial));
  const bool closed = wait_closed_by_proxy(conn.get(), 4.0);
  CHECK(closed);
  CHECK(notice.sqlstate == "25P03");
  PgConn other = connect(f.ci);
  CHECK(scalar(other.get(), "SELECT count(*) FROM marks WHERE v = 'half-sent'") == "0");
  f.log_if(!closed);
}

TEST_CASE("client_idle_timeout: a client silent outside a transaction is closed") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) { c["timeouts"]["client_idle_timeout"] = 1; });
  PgConn conn = connect(f.ci);
  NoticeCapture notice;
  notice.install(conn.get());
  exec(conn.get(), "SELECT 1");
  const double t0 = now_seconds();
  const bool closed = wait_closed_by_proxy(conn.get(), 4.0);
  const double after = now_seconds() - t0;
  MESSAGE("closed=" << closed << " after " << after << " s; message: [" << notice.sqlstate << "] " << notice.message);
  CHECK(closed);
  CHECK(after >= 0.9);
  CHECK(notice.sqlstate == "57P05");  // README: 57P05
  // A client with a query every 0.3 s stays.
  PgConn chatty = connect(f.ci);
  for (int i = 0; i < 7; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(exec_sqlstate(chatty.get(), "SELECT 1") == "");
  }
  f.log_if(!closed);
}

TEST_CASE("server_connect_timeout: a backend that never answers the startup fails the client in time") {
  if (direct_mode()) return;
  // A listening socket nobody accepts from: the kernel completes the TCP handshake, nothing ever answers.
  const int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(silent >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(silent, 64) == 0);
  socklen_t len = sizeof addr;
  getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len);
  const int silent_port = ntohs(addr.sin_port);

  Fixture f(2, [&](nlohmann::json& c) {
    c["backends"][0]["port"] = silent_port;
    c["timeouts"]["server_connect_timeout"] = 1;
    c["timeouts"]["query_wait_timeout"] = 10;
    c["health_check"] = {{"period", 5}, {"timeout", 4}, {"max_retries", 3}};  // the prober must not decide first
  }, false);
  const double t0 = now_seconds();
  PgConn conn = try_connect(f.ci);
  std::string text;
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    text = PQerrorMessage(conn.get());
  } else {
    PgResult res(PQexec(conn.get(), "SELECT 1"));
    CHECK(PQresultStatus(res.get()) == PGRES_FATAL_ERROR);
    text = error_text(conn.get(), res.get());
  }
  const double waited = now_seconds() - t0;
  MESSAGE("after " << waited << " s: " << text);
  CHECK(waited >= 0.9);
  CHECK(waited < 4.0);
  CHECK(text.find("server_connect_timeout") != std::string::npos);
  close(silent);
}

// What transaction pooling is for: a new client needs no free server just to log in (pgmux answers the startup
// with the parameters its pool learned from the first server login).
TEST_CASE("a client logs in at once while every server is busy") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) { c["timeouts"]["query_wait_timeout"] = 2; });
  PgConn holder = connect(f.ci);
  exec(holder.get(), "BEGIN");
  exec(holder.get(), "SELECT 1");
  const double t0 = now_seconds();
  PgConn late = try_connect(f.ci);
  const double took = now_seconds() - t0;
  MESSAGE("login took " << took << " s: " << (PQstatus(late.get()) == CONNECTION_OK ? std::string("ok")
                                                                                 : PQerrorMessage(late.get())));
  CHECK(PQstatus(late.get()) == CONNECTION_OK);
  CHECK(took < 0.5);
  exec(holder.get(), "COMMIT");
}
