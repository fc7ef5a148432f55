// PostgreSQL reads a prepared statement's literals under the TimeZone and DateStyle of its Parse and keeps what
// they meant, whatever the session sets afterwards. Where pgmux prepares a client's statement again on another
// server (transaction pooling; session pooling with the read/write split), that server must go back to the
// settings of the Parse while it does, and its copy, shared under the name of those settings, must serve the other
// clients of those settings as theirs. Each case runs directly against the primary first (the oracle), then
// through pgmux in transaction pooling with and without the split and in session pooling with the split; one
// server per backend and one shared statement per server, so that another client's statement pushes the copy out.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_parse_settings";

struct Mode {
  std::string pool_mode;
  bool split;
};

const std::vector<Mode> kModes = {{"transaction", false}, {"transaction", true}, {"session", true}};

struct Fixture {
  int listen = pick_listen_port();
  ProxyUnderTest proxy;
  std::string ci;
  explicit Fixture(const Mode& mode) : proxy((fresh_database(kDb, true), config(listen, mode).dump()), listen) {
    ci = app_conninfo(proxy.port(), kDb);
    wait_serving(ci);
  }
  ~Fixture() { drop_database_quietly(kDb); }
  static nlohmann::json config(int listen, const Mode& mode) {
    // Session pooling: a server per client (its statements are the session's, none shared).
    nlohmann::json c = txpool_config(listen, kDb, mode.pool_mode == "session" ? 4 : 1, mode.split);
    database_entry(c)["pool_mode"] = mode.pool_mode;
    c["workers"] = 1;
    c["timeouts"]["query_wait_timeout"] = 5;
    c["prepared_statements"] = {{"max_per_server", 1}};
    return c;
  }
};

std::string prepare(PGconn* conn, const std::string& name, const std::string& sql) {
  return prepare_named(conn, name, sql);
}
std::string run(PGconn* conn, const std::string& name) { return run_named(conn, name); }

// Another client parses and runs a statement of its own: on a server that holds one shared statement, the
// copies the other clients' statements had there are closed.
void push_out(const std::string& ci) {
  PgConn other = connect(ci);
  REQUIRE(prepare(other.get(), "pusher", "SELECT 'pushed'") == "");
  REQUIRE(run(other.get(), "pusher") == "pushed");
}

const std::string kDates = "SELECT '01/02/2024'::date::text || ' ' || '2024-01-01 00:00'::timestamptz::text";
const std::string kStamp = "SELECT '2024-01-01 00:00'::timestamptz::text";

// What one scenario saw, in order: compared between a direct connection and pgmux.
using Seen = std::vector<std::string>;

std::string lines(const Seen& seen) {
  std::string text;
  for (const std::string& line : seen) text += line + "\n";
  return text;
}

Seen settings_changed_after_parse(const std::string& ci) {
  Seen seen;
  PgConn a = connect(ci + " options='-c TimeZone=UTC -c DateStyle=ISO,DMY'");
  PgConn c = connect(ci + " options='-c TimeZone=UTC -c DateStyle=ISO,DMY'");
  REQUIRE(prepare(a.get(), "st", kDates) == "");
  REQUIRE(prepare(c.get(), "st", kDates) == "");
  seen.push_back(run(c.get(), "st"));
  exec(a.get(), "SET TimeZone = 'Asia/Tokyo'");
  exec(a.get(), "SET DateStyle = 'ISO, MDY'");
  push_out(ci);
  seen.push_back(run(a.get(), "st"));  // prepared again for a: under UTC and DMY, shown in Tokyo
  seen.push_back(scalar(a.get(), "SELECT current_setting('TimeZone') || ' ' || current_setting('DateStyle')"));
  seen.push_back(run(c.get(), "st"));  // c's copy: the one made for a, under the same settings
  push_out(ci);
  exec(a.get(), "BEGIN");  // and inside a block (behind a savepoint there)
  seen.push_back(run(a.get(), "st"));
  seen.push_back(scalar(a.get(), "SELECT current_setting('TimeZone') || ' ' || current_setting('DateStyle')"));
  exec(a.get(), "COMMIT");
  return seen;
}

Seen parsed_under_set_local(const std::string& ci) {
  Seen seen;
  PgConn a = connect(ci + " options='-c TimeZone=UTC'");
  exec(a.get(), "BEGIN");
  exec(a.get(), "SET LOCAL TimeZone = 'Asia/Tokyo'");
  REQUIRE(prepare(a.get(), "local", kStamp) == "");
  seen.push_back(run(a.get(), "local"));
  exec(a.get(), "SAVEPOINT s");
  exec(a.get(), "SET LOCAL TimeZone = 'America/New_York'");
  exec(a.get(), "ROLLBACK TO SAVEPOINT s");
  REQUIRE(prepare(a.get(), "after_rollback_to", kStamp) == "");  // Tokyo again
  exec(a.get(), "COMMIT");
  REQUIRE(prepare(a.get(), "after_commit", kStamp) == "");  // UTC
  push_out(ci);
  seen.push_back(run(a.get(), "local"));
  push_out(ci);
  seen.push_back(run(a.get(), "after_rollback_to"));
  push_out(ci);
  seen.push_back(run(a.get(), "after_commit"));
  PgConn b = connect(ci + " options='-c TimeZone=UTC'");  // the session's settings, without the block's
  REQUIRE(prepare(b.get(), "b", kStamp) == "");
  seen.push_back(run(b.get(), "b"));
  return seen;
}

// An SQL PREPARE whose text names a setting (here "role") is not a setting: the server that prepares a statement
// again under the settings of its Parse must not run it again (42P05 in session pooling with the split, where the
// log keeps PREPAREs). From a black-box hunt.
Seen sql_prepare_beside(const std::string& ci) {
  Seen seen;
  PgConn a = connect(ci + " options='-c TimeZone=UTC'");
  exec(a.get(), "PREPARE sx AS SELECT rolname FROM pg_roles WHERE rolname = current_user");
  exec(a.get(), "SET TimeZone = 'America/New_York'");
  REQUIRE(prepare(a.get(), "st", kStamp) == "");
  exec(a.get(), "SET TimeZone = 'Asia/Tokyo'");
  push_out(ci);
  seen.push_back(run(a.get(), "st"));
  seen.push_back(scalar(a.get(), "EXECUTE sx"));
  return seen;
}

}  // namespace

TEST_CASE("a statement prepared again under the settings of its Parse runs no SQL PREPARE of the session again") {
  Seen direct;
  {
    Fixture unused(kModes.front());
    direct = sql_prepare_beside(conninfo(cluster_ports().primary, "app", "app", kDb));
  }
  REQUIRE(lines(direct) == lines(Seen{"2024-01-01 14:00:00+09", "app"}));
  for (const Mode& mode : kModes) {
    CAPTURE(mode.pool_mode);
    CAPTURE(mode.split);
    Fixture f(mode);
    CHECK(lines(sql_prepare_beside(f.ci)) == lines(direct));
  }
}

// A set_config of a parameter ($1, as drivers send it) in the block around a Parse cannot be run again elsewhere:
// the statement keeps the session's settings (README), and is prepared again without an error.
TEST_CASE("a statement parsed behind a set_config with parameters is prepared again without an error") {
  for (const Mode& mode : kModes) {
    CAPTURE(mode.pool_mode);
    CAPTURE(mode.split);
    Fixture f(mode);
    PgConn a = connect(f.ci + " options='-c TimeZone=UTC'");
    exec(a.get(), "BEGIN");
    const char* zone = "Asia/Tokyo";
    PgResult set(PQexecParams(a.get(), "SELECT set_config('TimeZone', $1, true)", 1, nullptr, &zone, nullptr, nullptr,
                              0));
    REQUIRE(PQresultStatus(set.get()) == PGRES_TUPLES_OK);
    REQUIRE(prepare(a.get(), "local", kStamp) == "");
    exec(a.get(), "COMMIT");
    push_out(f.ci);
    CHECK(run(a.get(), "local").rfind("error", 0) == std::string::npos);
  }
}

TEST_CASE("a statement keeps what its Parse read after the session changes TimeZone and DateStyle") {
  Seen direct;
  {
    Fixture unused(kModes.front());  // the database
    direct = settings_changed_after_parse(conninfo(cluster_ports().primary, "app", "app", kDb));
  }
  REQUIRE(lines(direct) == lines(Seen{"2024-02-01 2024-01-01 00:00:00+00", "2024-02-01 2024-01-01 09:00:00+09",
                         "Asia/Tokyo ISO, MDY", "2024-02-01 2024-01-01 00:00:00+00",
                         "2024-02-01 2024-01-01 09:00:00+09", "Asia/Tokyo ISO, MDY"}));
  for (const Mode& mode : kModes) {
    CAPTURE(mode.pool_mode);
    CAPTURE(mode.split);
    Fixture f(mode);
    CHECK(lines(settings_changed_after_parse(f.ci)) == lines(direct));
  }
}

TEST_CASE("a statement parsed under SET LOCAL keeps that setting after its block") {
  Seen direct;
  {
    Fixture unused(kModes.front());
    direct = parsed_under_set_local(conninfo(cluster_ports().primary, "app", "app", kDb));
  }
  REQUIRE(lines(direct) == lines(Seen{"2024-01-01 00:00:00+09", "2023-12-31 15:00:00+00", "2023-12-31 15:00:00+00",
                         "2024-01-01 00:00:00+00", "2024-01-01 00:00:00+00"}));
  for (const Mode& mode : kModes) {
    CAPTURE(mode.pool_mode);
    CAPTURE(mode.split);
    Fixture f(mode);
    CHECK(lines(parsed_under_set_local(f.ci)) == lines(direct));
  }
}
