// What the admin console shows and logs of text it did not write: every command is logged with its session's id,
// the refused ones too (an audit trail); rows built from a client's bytes (the user name of a login still in
// progress, never checked) are valid UTF-8 as PostgreSQL's are; the times SHOW SERVERS gives do not move between
// two calls.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;

namespace {

struct Console {
  Console() : listen(pick_listen_port()) {
    nlohmann::json config = default_config(listen);
    config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
    config["users"].push_back({{"name", "watcher"}, {"password", "watcher-secret"}});
    config["admin_users"] = nlohmann::json::array({"admin"});
    config["stats_users"] = nlohmann::json::array({"watcher"});
    proxy = std::make_unique<ProxyUnderTest>(config.dump(), listen);
  }
  PgConn console(const std::string& user = "admin", const std::string& password = "admin-secret") const {
    return connect(proxy->conninfo(user, password, "pgmux"));
  }

  int listen;
  std::unique_ptr<ProxyUnderTest> proxy;
};

// RFC 3629 UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF), as PostgreSQL checks it.
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    size_t n = 0;
    unsigned char low = 0x80, high = 0xbf;
    if (b(i) < 0x80) n = 1;
    else if (b(i) >= 0xc2 && b(i) <= 0xdf) n = 2;
    else if (b(i) >= 0xe0 && b(i) <= 0xef) n = 3, low = b(i) == 0xe0 ? 0xa0 : 0x80, high = b(i) == 0xed ? 0x9f : 0xbf;
    else if (b(i) >= 0xf0 && b(i) <= 0xf4) n = 4, low = b(i) == 0xf0 ? 0x90 : 0x80, high = b(i) == 0xf4 ? 0x8f : 0xbf;
    if (n == 0 || i + n > s.size()) return false;
    if (n > 1 && (b(i + 1) < low || b(i + 1) > high)) return false;
    for (size_t k = 2; k < n; ++k) {
      if (b(i + k) < 0x80 || b(i + k) > 0xbf) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

TEST_CASE("every console command is logged, the refused ones too") {
  Console c;
  PgConn admin = c.console();
  PgConn watcher = c.console("watcher", "watcher-secret");
  for (const char* sql : {"SHOW NOTHING", "PAUSE a b", "SHOW VERSION", "ALTER ROLE app PASSWORD 'sekrit'",
                          "RESUME nosuch; ALTER ROLE app PASSWORD 'sekrit'",
                          "SELECT/**/set_config('k', 'sekrit', false)",
                          "EXPLAIN ROUTE SELECT 'a \" b'"}) {
    PgResult res(PQexec(admin.get(), sql));
  }
  PgResult refused(PQexec(watcher.get(), "SHUTDOWN"));
  CHECK(sqlstate(refused.get()) == "42501");
  const std::string log = c.proxy->process()->log();
  for (const char* line : {"admin user=admin: SHOW ... (the rest is not logged)", "admin user=admin: PAUSE a b",
                           "admin user=admin: SHOW VERSION", "admin user=watcher: SHUTDOWN",
                           "admin user=admin: ALTER ... (the rest is not logged)",
                           "admin user=admin: RESUME nosuch ... (the rest is not logged)",
                           "admin user=admin: EXPLAIN ROUTE SELECT 'a \" b'"}) {
    CHECK_MESSAGE(log.find(line) != std::string::npos, std::string(line));
  }
  CHECK(log.find("sekrit") == std::string::npos);  // nothing past a ';', nor an unknown command's rest
}

// A login that stops after its startup packet (its user name never checked) shows in SHOW CLIENTS: with '?' for
// each byte of invalid UTF-8. psycopg failed the whole command before (UnicodeDecodeError at 0xff).
TEST_CASE("SHOW CLIENTS rows are valid UTF-8 whatever bytes a login sent") {
  Console c;
  const std::string user = std::string("ev\xff\xfeil-caf\xc3\xa9");
  const std::string startup = raw_packet(196608, "user" + std::string(1, '\0') + user + '\0' + "database" +
                                                     std::string(1, '\0') + "app" + '\0' + '\0');
  std::jthread pending([&] { raw_exchange({c.listen, ""}, {{startup, 0}}, 3.0); });  // joined on any exit
  PgConn admin = c.console();
  bool seen = false;
  for (int i = 0; i < 50 && !seen; ++i) {
    PgResult res = exec(admin.get(), "SHOW CLIENTS");
    for (int r = 0; r < PQntuples(res.get()); ++r) {
      for (int f = 0; f < PQnfields(res.get()); ++f) {
        const std::string value = PQgetvalue(res.get(), r, f);
        CAPTURE(value);
        CHECK(valid_utf8(value));
        seen |= value == "ev??il-caf\xc3\xa9";  // valid characters (é) kept
      }
    }
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(seen);
}

// connect_time was the wall clock in whole seconds less a fractional age: it flipped by a second between calls.
TEST_CASE("SHOW SERVERS' connect_time does not move between calls") {
  Console c;
  PgConn app = connect(c.proxy->conninfo("app", "app", "app"));
  exec(app.get(), "SELECT 1");
  PgConn admin = c.console();
  std::string first;
  for (int i = 0; i < 30; ++i) {
    PgResult res = exec(admin.get(), "SHOW SERVERS");
    REQUIRE(PQntuples(res.get()) >= 1);
    const std::string time = PQgetvalue(res.get(), 0, PQfnumber(res.get(), "connect_time"));
    if (i == 0) first = time;
    CHECK(time == first);
    std::this_thread::sleep_for(std::chrono::milliseconds(37));
  }
}

// Quoted names read as PostgreSQL reads identifiers: unterminated, empty or followed by more is its 42601, not a
// database named with the quote (3D000 before).
TEST_CASE("console names in double quotes: unterminated, empty and glued ones get 42601") {
  Console c;
  PgConn admin = c.console();
  // "app"x was read as one name, app"x (3D000).
  const std::vector<std::string> refused = {"PAUSE \"app", "PAUSE \"\"", "RECONNECT \"ap\"\"p", "PAUSE \"app\"x"};
  for (const std::string& sql : refused) {
    CAPTURE(sql);
    PgResult res(PQexec(admin.get(), sql.c_str()));
    CHECK(sqlstate(res.get()) == "42601");
  }
  PgResult quoted(PQexec(admin.get(), "PAUSE \"ap\"\"p\""));  // a closed one with a doubled quote: a name
  CHECK(sqlstate(quoted.get()) == "3D000");
  exec(admin.get(), "PAUSE \"app\"");
  exec(admin.get(), "RESUME \"app\"");
  // Not a name: EXPLAIN ROUTE's SQL may hold a double quote inside a string (refused with 42601 for a while).
  PgResult explain(PQexec(admin.get(), "EXPLAIN ROUTE SELECT 'a \" b'"));
  CHECK_MESSAGE(PQresultStatus(explain.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(explain.get()));
}
