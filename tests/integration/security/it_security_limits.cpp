// Nothing for an attacker (issue 11 item 5), the resource side: a login to a database that does not exist leaves
// no pool behind; databases opened through the "*" entry are bounded by max_auto_databases (an error naming the
// setting beyond it) and dropped after auto_database_idle_timeout unused; the metrics listener answers /healthz
// while its connection limit is held by idle connections; a message header that announces a large message commits
// memory only for the bytes that arrive.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "tests/integration/metrics/http_get.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;

namespace {

using Clock = std::chrono::steady_clock;

// The rows of an admin SHOW, by column name.
std::vector<std::map<std::string, std::string>> show(PGconn* admin, const std::string& what) {
  PgResult res = exec(admin, "SHOW " + what);
  std::vector<std::map<std::string, std::string>> rows;
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    auto& row = rows.emplace_back();
    for (int c = 0; c < PQnfields(res.get()); ++c) row[PQfname(res.get(), c)] = PQgetvalue(res.get(), r, c);
  }
  return rows;
}

bool listed(PGconn* admin, const std::string& what, const std::string& column, const std::string& value) {
  for (const auto& row : show(admin, what)) {
    if (row.at(column) == value) return true;
  }
  return false;
}

// Polls (every 100 ms, at most `seconds`) until SHOW POOLS and SHOW DATABASES no longer name the database.
bool gone_within(PGconn* admin, const std::string& database, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    if (!listed(admin, "POOLS", "database", database) && !listed(admin, "DATABASES", "name", database)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

struct AutoDatabases {
  AutoDatabases() {
    nlohmann::json config = default_config(port);
    config["admin_users"] = nlohmann::json::array({"app"});
    config["max_auto_databases"] = 1;
    config["timeouts"]["auto_database_idle_timeout"] = 1;
    proxy = std::make_unique<ProxyUnderTest>(config.dump(2), port);
    admin = connect(conninfo(port, "app", "app", "pgmux"));
  }
  int port = pick_listen_port();
  std::unique_ptr<ProxyUnderTest> proxy;
  PgConn admin;
};

}  // namespace

TEST_CASE_FIXTURE(AutoDatabases, "a login to a database that does not exist leaves no pool behind") {
  // One after the other: a name holds its max_auto_databases slot (1 here) until its pools are gone, which for a
  // database that does not exist is the worker's next tick.
  for (int i = 0; i < 5; ++i) {
    StartupOutcome out = raw_startup(port, "app", "app", "no_such_db_" + std::to_string(i));
    CHECK(out.sqlstate == "3D000");
    CHECK(gone_within(admin.get(), "no_such_db_" + std::to_string(i), 5));
  }
  // Nor do they count against max_auto_databases: a real one still opens.
  PgConn conn = connect(conninfo(port, "postgres", "postgres", "postgres"));
  CHECK(scalar(conn.get(), "SELECT current_database()") == "postgres");
}

TEST_CASE_FIXTURE(AutoDatabases, "\"*\" databases are bounded by max_auto_databases and dropped when unused") {
  PgConn first = connect(conninfo(port, "postgres", "postgres", "postgres"));
  CHECK(scalar(first.get(), "SELECT 1") == "1");
  CHECK(listed(admin.get(), "DATABASES", "name", "postgres"));
  CHECK(listed(admin.get(), "POOLS", "database", "postgres"));

  StartupOutcome refused = raw_startup(port, "postgres", "postgres", "template1");
  CHECK(refused.sqlstate == "53400");
  CHECK(refused.message.find("max_auto_databases (1)") != std::string::npos);
  CHECK(refused.message.find("\"template1\"") != std::string::npos);

  // Unused for auto_database_idle_timeout: its pools (and the name's slot) go; another database fits again.
  first.reset();
  CHECK(gone_within(admin.get(), "postgres", 10));
  PgConn second = connect(conninfo(port, "postgres", "postgres", "template1"));
  CHECK(scalar(second.get(), "SELECT current_database()") == "template1");
  const std::string log = proxy->process()->full_log();
  CHECK(log.find("(auto_database_idle_timeout), dropped") != std::string::npos);
}

TEST_CASE("the metrics listener answers /healthz while idle connections hold its connection limit") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  const int http_port = free_port_from(port + 1);
  nlohmann::json config = default_config(port);
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(http_port);
  ProxyUnderTest proxy(config.dump(2), port);

  constexpr int kLimit = 64;  // metrics_http.cpp kMaxConnections
  std::vector<int> idle;
  for (int i = 0; i < kLimit + 8; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback_address(http_port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all accepted: the limit is reached
  for (int round = 0; round < 3; ++round) {
    const auto start = Clock::now();
    metrics::HttpReply health = metrics::http_raw(
        http_port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 2.0);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    CHECK(health.status == 200);
    CHECK(seconds < 1.0);
    metrics::HttpReply ready = metrics::http_get(http_port, "/readyz");
    CHECK((ready.status == 200 || ready.status == 503));
  }
  for (int fd : idle) close(fd);
}

// A logged-in client sends the 5-byte header of a Query just under max_message_size and a few bytes of it, then
// nothing: PostgreSQL's backend grows by a page. pgmux reserved the announced size at once, and zero-filled it:
// 13 bytes made it hold 64 MiB, so a handful of clients could exhaust the host. Now its buffer grows with what
// arrives, and everyone else is served meanwhile.
TEST_CASE("a message header announcing max_message_size holds no more memory than the bytes that came") {
  if (direct_mode()) return;
  const int port = pick_listen_port();
  nlohmann::json config = default_config(port);
  config["workers"] = 1;
  ProxyUnderTest proxy(config.dump(2), port);
  const std::string ci = conninfo(port, "app", "app", "app");
  std::vector<PgConn> stalled;
  for (int i = 0; i < 8; ++i) stalled.push_back(connect(ci));
  PgConn other = connect(ci);
  CHECK(scalar(other.get(), "SELECT 1") == "1");
  const long before_kb = proxy.process()->peak_rss_kb();
  const uint32_t length = 64u * 1024 * 1024 - 10;  // within max_message_size (64 MiB): a request still arriving
  std::string header = "Q";
  for (int shift = 24; shift >= 0; shift -= 8) header += static_cast<char>((length >> shift) & 0xff);
  header += "select 1";
  for (PgConn& conn : stalled) {
    REQUIRE(send(PQsocket(conn.get()), header.data(), header.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(header.size()));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(scalar(other.get(), "SELECT 2") == "2");  // served meanwhile
  const long grown_kb = proxy.process()->peak_rss_kb() - before_kb;
  MESSAGE("peak RSS grew by " << grown_kb << " kB for 8 clients each announcing a 64 MiB message");
  CHECK(grown_kb < 16 * 1024);  // before: about 8 x 64 MiB
}

