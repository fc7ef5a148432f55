// SET isolation in transaction mode: 50 clients, each with its own application_name / search_path / TimeZone
// (half of them also give application_name at startup), run many autocommit statements and transactions
// interleaved over a pool of 5 and must always see only their own values. Also: SET LOCAL stays in its
// transaction, RESET (and SET ... TO DEFAULT) returns to the client's startup value (not the server
// connection's), RESET ALL to the defaults, and a later SET takes effect. Once with the primary alone, once with
// the read/write split on (autocommit reads run on standbys, where the settings must be replayed too).
#include <doctest/doctest.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

constexpr int kClients = 50;
constexpr int kRounds = 40;

struct Expected {
  std::string app, path, tz;
};

// The three settings as seen by `sql` (a SELECT or a transaction's SELECT).
Expected observe(PGconn* conn) {
  PgResult res = exec(conn,
                      "SELECT current_setting('application_name'), current_setting('search_path'), "
                      "current_setting('TimeZone')");
  return {PQgetvalue(res.get(), 0, 0), PQgetvalue(res.get(), 0, 1), PQgetvalue(res.get(), 0, 2)};
}

std::string show(const Expected& e) { return "(" + e.app + " | " + e.path + " | " + e.tz + ")"; }

// Mismatches by phase ("after login", "autocommit", ...): counted, first one kept, and the client goes on, so
// one broken phase does not hide the others.
struct Tally {
  std::mutex mu;
  std::map<std::string, std::pair<int, std::string>> by_phase;
  void add(const std::string& phase, const std::string& text) {
    std::lock_guard<std::mutex> lock(mu);
    auto& [count, first] = by_phase[phase];
    if (count++ == 0) first = text;
  }
};

void expect(PGconn* conn, const Expected& want, int client, int round, const char* phase, Tally& tally) {
  const Expected got = observe(conn);
  if (got.app != want.app || got.path != want.path || got.tz != want.tz) {
    tally.add(phase, "client " + std::to_string(client) + " round " + std::to_string(round) + ": saw " + show(got) +
                         ", expected " + show(want));
  }
}

void client_body(const std::string& ci, int i, const std::vector<std::string>& zones, const Expected& defaults,
                 Tally& tally) {
  const bool startup_name = i % 2 == 0;
  const std::string start_app = "start_" + std::to_string(i);
  PgConn conn = connect(startup_name ? ci + " application_name=" + start_app : ci);
  PGconn* c = conn.get();
  Expected want{startup_name ? start_app : defaults.app, defaults.path, defaults.tz};
  expect(c, want, i, -1, "after login (startup parameters or defaults)", tally);

  want = {"app_" + std::to_string(i), "s_" + std::to_string(i) + ", public", zones[static_cast<size_t>(i)]};
  exec(c, "SET application_name = '" + want.app + "'");
  exec(c, "SET search_path = s_" + std::to_string(i) + ", public");
  exec(c, "SET TimeZone = '" + want.tz + "'");
  for (int r = 0; r < kRounds; ++r) {
    switch (r % 4) {
      case 0:
        expect(c, want, i, r, "autocommit", tally);
        break;
      case 1:
        exec(c, "BEGIN");
        expect(c, want, i, r, "in a transaction", tally);
        exec(c, "SET LOCAL application_name = 'local_" + std::to_string(i) + "'");
        if (scalar(c, "SELECT current_setting('application_name')") != "local_" + std::to_string(i)) {
          tally.add("SET LOCAL inside its transaction", "client " + std::to_string(i));
        }
        exec(c, "COMMIT");
        break;
      case 2:
        expect(c, want, i, r, "after SET LOCAL's transaction", tally);
        break;
      case 3:
        exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ");
        expect(c, want, i, r, "repeatable read transaction", tally);
        exec(c, "ROLLBACK");
        break;
    }
    if (r == kRounds / 2) {
      if (startup_name) {
        // RESET goes back to the value this client gave at startup, whichever server runs it.
        exec(c, "RESET application_name");
        want.app = start_app;
        expect(c, want, i, r, "right after RESET application_name (back to the startup value)", tally);
      } else {
        exec(c, "RESET ALL");
        want = defaults;
        expect(c, want, i, r, "right after RESET ALL", tally);
        want.tz = zones[static_cast<size_t>(kClients + i)];
        want.path = "t_" + std::to_string(i) + ", public";
        exec(c, "SET TimeZone = '" + want.tz + "'");
        exec(c, "SET search_path = t_" + std::to_string(i) + ", public");
      }
    }
    if (r == 3 * kRounds / 4 && startup_name) {
      // SET ... TO DEFAULT is a RESET, whatever comment comes first.
      exec(c, "SET application_name = 'again_" + std::to_string(i) + "'");
      exec(c, "/* back */ SET application_name TO DEFAULT");
      want.app = start_app;
      expect(c, want, i, r, "right after SET application_name TO DEFAULT (the startup value too)", tally);
    }
  }
}

void run_isolation(bool split) {
  const std::string db = split ? "txp_set_split" : "txp_set";
  fresh_database(db, split);
  std::vector<std::string> zones;
  Expected defaults;
  {
    PgConn p = routing::admin(cluster_ports().primary, db);
    PgResult res = exec(p.get(),
                        "SELECT name FROM pg_timezone_names WHERE name LIKE 'America/%' AND name NOT LIKE '%/%/%' "
                        "ORDER BY name LIMIT " + std::to_string(2 * kClients));
    for (int r = 0; r < PQntuples(res.get()); ++r) zones.push_back(PQgetvalue(res.get(), r, 0));
    REQUIRE(zones.size() == 2 * kClients);
    PgResult d = exec(p.get(), "SELECT reset_val FROM pg_settings WHERE name IN ('search_path', 'TimeZone') "
                               "ORDER BY name = 'TimeZone'");
    defaults = {"", PQgetvalue(d.get(), 0, 0), PQgetvalue(d.get(), 1, 0)};
  }
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 5, split).dump(), listen);
  const std::string ci = app_conninfo(proxy.port(), db);
  wait_serving(ci);
  if (split && !proxy.direct()) {
    REQUIRE_MESSAGE(routing::wait_ports_serving(ci, {cluster_ports().standby1, cluster_ports().standby2}, 20),
                    "standbys never served reads");
  }
  Tally tally;
  const std::string failure = run_threads(kClients, [&](int i) { client_body(ci, i, zones, defaults, tally); });
  if (!failure.empty() && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  CHECK_MESSAGE(failure.empty(), failure);
  for (const auto& by_phase : tally.by_phase) {
    // Named members, not a structured binding: CHECK_MESSAGE's lambda cannot capture one under clang 14.
    const auto& phase = by_phase.first;
    const auto& entry = by_phase.second;
    CHECK_MESSAGE(entry.first == 0, phase << ": " << entry.first << " mismatches; first: " << entry.second);
  }
  drop_database_quietly(db);
}

}  // namespace

TEST_CASE("50 clients keep their own SET values over a transaction pool of 5") { run_isolation(false); }

TEST_CASE("the same with the read/write split on (reads on standbys)") { run_isolation(true); }

namespace {

// What a login shows: the parameters PostgreSQL respells, as reported, and a date as the session writes it.
std::string login_view(const std::string& ci) {
  PgConn conn = connect(ci);
  std::string view;
  for (const char* name : {"DateStyle", "client_encoding", "application_name", "TimeZone"}) {
    const char* value = PQparameterStatus(conn.get(), name);
    view += std::string(name) + "=" + (value ? value : "(none)") + "; ";
  }
  return view +
         scalar(conn.get(), "SELECT '2024-03-05'::date::text || ' ' || '2024-03-05 12:00+00'::timestamptz::text");
}

}  // namespace

// Transaction pooling logs clients in without a server; their startup values must still come back as PostgreSQL
// spells them (psycopg refuses a DateStyle of "iso,dmy"), and a date must read as it does directly. Before, the
// values came back as the client sent them.
TEST_CASE("startup values come back as PostgreSQL spells them") {
  const std::string db = "txp_startup_values";
  fresh_database(db);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 2).dump(), listen);
  wait_serving(app_conninfo(proxy.port(), db));
  const std::vector<std::string> extras = {
      "options='-c datestyle=iso,dmy'",
      "options='-c datestyle=sql'",
      "options='-c datestyle=german'",
      "client_encoding=utf8 application_name=startup_values",
      "application_name='" + std::string(70, 'x') + "'",
      "application_name='caf\xc3\xa9 \x01'",
      "options='-c timezone=europe/paris'",  // psycopg read times as UTC when the name came back in this case
      "options='-c TimeZone=utc'",
  };
  for (const std::string& extra : extras) {
    CAPTURE(extra);
    const std::string direct = login_view(app_conninfo(cluster_ports().primary, db, extra));
    CHECK(login_view(app_conninfo(proxy.port(), db, extra)) == direct);
  }
  drop_database_quietly(db);
}

namespace {

// Each statement of `script`, then what libpq believes of `parameter` (PQparameterStatus) and what the session
// says (SHOW); and how libpq escapes a backslash and a quote for the session (standard_conforming_strings).
std::string reported_after(const std::string& ci, const std::string& parameter,
                           const std::vector<std::string>& script) {
  PgConn conn = connect(ci);
  std::string out;
  for (const std::string& sql : script) {
    exec(conn.get(), sql);
    const char* told = PQparameterStatus(conn.get(), parameter.c_str());
    out += sql + ": told " + (told ? told : "(none)") + ", SHOW " + scalar(conn.get(), "SHOW " + parameter);
    char escaped[16];
    int error = 0;
    PQescapeStringConn(conn.get(), escaped, "\\'", 2, &error);
    out += std::string(", escaped ") + escaped + "\n";
  }
  return out;
}

}  // namespace

// A RESET of a parameter the client had SET to the shared server's login value: the server changes nothing and
// reports nothing, while PostgreSQL reports the client's startup value coming back. libpq went on with the old
// one: with standard_conforming_strings off at startup, SET on, RESET, PQescapeStringConn no longer doubled a
// backslash that the session reads as an escape (a quote escaped so ended the literal: SQL injection).
TEST_CASE("RESET back to a startup value the server does not change is reported as PostgreSQL does") {
  const std::string db = "txp_silent_reset";
  fresh_database(db, true);  // also on the standbys: the second pgmux reads there
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 1).dump(), listen);
  wait_serving(app_conninfo(proxy.port(), db));
  const int split_listen = pick_listen_port();
  ProxyUnderTest split(txpool_config(split_listen, db, 1, true).dump(), split_listen);  // read/write split on
  wait_serving(app_conninfo(split.port(), db));
  struct Case {
    std::string extra, parameter;
    std::vector<std::string> script;
  };
  const std::vector<Case> cases = {
      {"options='-c standard_conforming_strings=off'", "standard_conforming_strings",
       {"SET standard_conforming_strings = on", "RESET standard_conforming_strings"}},
      {"options='-c standard_conforming_strings=off'", "standard_conforming_strings",
       {"SET standard_conforming_strings = on", "RESET ALL"}},
      {"options='-c standard_conforming_strings=off'", "standard_conforming_strings",
       {"SET standard_conforming_strings = on", "SET standard_conforming_strings TO DEFAULT"}},
      {"options='-c datestyle=sql,dmy'", "DateStyle", {"SET DateStyle = 'ISO, MDY'", "DISCARD ALL"}},
      {"client_encoding=LATIN1", "client_encoding", {"SET client_encoding = UTF8", "RESET client_encoding"}},
      // Reported once, not twice: the server's own report (rewritten) where its value does change.
      {"options='-c datestyle=sql,dmy'", "DateStyle", {"SET DateStyle = 'German'", "RESET DateStyle"}},
      // Another parameter's RESET leaves this one as the client set it.
      {"options='-c datestyle=sql,dmy'", "DateStyle", {"SET DateStyle = 'ISO, MDY'", "RESET TimeZone"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.extra);
    CAPTURE(c.script.back());
    const std::string direct = reported_after(app_conninfo(cluster_ports().primary, db, c.extra), c.parameter,
                                              c.script);
    CHECK(reported_after(app_conninfo(proxy.port(), db, c.extra), c.parameter, c.script) == direct);
    CHECK(reported_after(app_conninfo(split.port(), db, c.extra), c.parameter, c.script) == direct);
  }
  drop_database_quietly(db);
}

namespace {

// libpq's pipeline mode: `first` alone (Sync, or Flush when `flush`), then `second` with a Sync, both sent before
// any reply is read; then what libpq believes of standard_conforming_strings, and what SHOW says.
std::string pipelined_after(const std::string& ci, const char* first, bool flush, const char* second) {
  PgConn conn = connect(ci);
  exec(conn.get(), "SET standard_conforming_strings = on");
  REQUIRE(PQenterPipelineMode(conn.get()) == 1);
  REQUIRE(PQsendQueryParams(conn.get(), first, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE((flush ? PQsendFlushRequest(conn.get()) : PQpipelineSync(conn.get())) == 1);
  REQUIRE(PQsendQueryParams(conn.get(), second, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn.get()) == 1);
  REQUIRE(PQflush(conn.get()) == 0);
  const std::string results = pipeline_results(conn.get(), flush ? 1 : 2);
  REQUIRE(PQexitPipelineMode(conn.get()) == 1);
  const char* told = PQparameterStatus(conn.get(), "standard_conforming_strings");
  return results + " | told " + (told ? told : "(none)") + ", SHOW " +
         scalar(conn.get(), "SHOW standard_conforming_strings");
}

}  // namespace

// A RESET with a request pipelined behind it (its own Sync, or the same sequence continued after a Flush) is not
// reported by pgmux: the request behind it runs with the server's value, not the client's (README), and a report
// told the client the opposite of what its SET then did (it believed "off" with the session at "on"). A startup
// value spelled otherwise ("ON") is reported as PostgreSQL spells it, and only where it reports one.
TEST_CASE("RESET reports: pipelined behind, continued after a Flush, a startup value spelled otherwise") {
  const std::string db = "txp_reset_pipelined";
  fresh_database(db);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 1).dump(), listen);
  wait_serving(app_conninfo(proxy.port(), db));
  const std::string startup_off = "options='-c standard_conforming_strings=off'";
  for (const bool flush : {false, true}) {
    CAPTURE(flush);
    const char* const reset = "RESET standard_conforming_strings";
    const char* const set_on = "SET standard_conforming_strings = on";
    const std::string direct = pipelined_after(app_conninfo(cluster_ports().primary, db, startup_off), reset,
                                               flush, set_on);
    CHECK(direct.find("told on, SHOW on") != std::string::npos);  // the oracle: the SET came last
    CHECK(pipelined_after(app_conninfo(proxy.port(), db, startup_off), reset, flush, set_on) == direct);
  }
  for (const std::string spelled : {"ON", "true", "Off", "0"}) {
    CAPTURE(spelled);
    const std::string extra = "options='-c standard_conforming_strings=" + spelled + "'";
    const std::vector<std::string> script = {"SET standard_conforming_strings = off", "RESET ALL",
                                             "RESET standard_conforming_strings"};
    const std::string direct =
        reported_after(app_conninfo(cluster_ports().primary, db, extra), "standard_conforming_strings", script);
    CHECK(reported_after(app_conninfo(proxy.port(), db, extra), "standard_conforming_strings", script) == direct);
  }
  // A pool's first login goes through a server, which keeps the client's spelling of its startup value: the
  // server's report at RESET was rewritten to "true" (libpq reads anything but "on" as off).
  const int fresh_listen = pick_listen_port();
  ProxyUnderTest fresh(txpool_config(fresh_listen, db, 1).dump(), fresh_listen);
  const std::string extra = "options='-c standard_conforming_strings=true'";
  const std::vector<std::string> script = {"SET standard_conforming_strings = off",
                                           "RESET standard_conforming_strings"};
  const std::string direct =
      reported_after(app_conninfo(cluster_ports().primary, db, extra), "standard_conforming_strings", script);
  CHECK(reported_after(app_conninfo(fresh.port(), db, extra), "standard_conforming_strings", script) == direct);
  drop_database_quietly(db);
}

namespace {

// Each statement of `script` on one connection: its status and first value, one line each.
std::string block_run(const std::string& ci, const std::vector<std::string>& script) {
  PgConn conn = connect(ci);
  std::string out;
  for (const std::string& sql : script) {
    PgResult r(PQexec(conn.get(), sql.c_str()));
    out += sql + ": " + PQresStatus(PQresultStatus(r.get()));
    if (PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) > 0) {
      out += " " + std::string(PQgetvalue(r.get(), 0, 0));
    }
    out += "\n";
  }
  return out;
}

}  // namespace

// A RESET of a startup parameter inside a block brought the shared server to its own login value for the rest of
// the block, where PostgreSQL brings back the client's: SHOW said so, and an INSERT naming its table without a
// schema wrote to another schema's table (search_path). The client's value comes back before its next request in
// the block; a ROLLBACK TO SAVEPOINT undoes both, and after a rolled-back block the session's own SET stands.
TEST_CASE("RESET of a startup parameter inside a block: the rest of the block runs with the client's value") {
  const std::string db = "txp_block_reset";
  fresh_database(db, true);
  {
    PgConn p = routing::admin(cluster_ports().primary, db);
    exec(p.get(), "CREATE SCHEMA own AUTHORIZATION app");
    exec(p.get(), "CREATE TABLE own.t (v int); ALTER TABLE own.t OWNER TO app");
    exec(p.get(), "CREATE TABLE public.t (v int); ALTER TABLE public.t OWNER TO app");
  }
  REQUIRE(routing::wait_replayed(cluster_ports(), 20));
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(txpool_config(listen, db, 1).dump(), listen);
  wait_serving(app_conninfo(proxy.port(), db));  // the pool's server logs in with the default search_path
  const int split_listen = pick_listen_port();
  ProxyUnderTest split(txpool_config(split_listen, db, 1, true).dump(), split_listen);
  wait_serving(app_conninfo(split.port(), db));
  const std::string extra = "options='-c search_path=own,public -c TimeZone=Asia/Tokyo'";
  // The schema it wrote to (a table's regclass leaves out a schema on the search_path: "t" either way).
  const std::string insert =
      "INSERT INTO t VALUES (1) RETURNING (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = tableoid)";
  const std::vector<std::vector<std::string>> scripts = {
      {"BEGIN", "RESET search_path", "SHOW search_path", insert, "COMMIT", "SHOW search_path", insert},
      {"SET search_path = public", "BEGIN", "SAVEPOINT s", "RESET search_path", "SHOW search_path",
       "ROLLBACK TO SAVEPOINT s", "SHOW search_path", "COMMIT", "SHOW search_path"},
      {"SET search_path = public", "BEGIN", "RESET search_path", "ROLLBACK", "SHOW search_path", insert},
      {"SET TimeZone = 'UTC'", "BEGIN", "RESET ALL", "SHOW TimeZone", "SHOW search_path", "COMMIT", "SHOW TimeZone"},
      // Undone or overridden later in the same request: nothing is set back (the client's value was overwritten).
      {"BEGIN", "RESET search_path; SET search_path = public", "SHOW search_path", insert, "COMMIT"},
      {"SET search_path = public", "BEGIN", "SAVEPOINT s; RESET search_path; ROLLBACK TO SAVEPOINT s", insert,
       "COMMIT"},
      {"SET search_path = public", "BEGIN", "RESET search_path; SELECT set_config('search_path', 'public', true)",
       insert, "COMMIT"},
      {"BEGIN", "RESET search_path; SET LOCAL search_path = public", "SHOW search_path", insert, "COMMIT"},
  };
  for (const std::vector<std::string>& script : scripts) {
    CAPTURE(script[1]);
    const std::string direct = block_run(app_conninfo(cluster_ports().primary, db, extra), script);
    CHECK(block_run(app_conninfo(proxy.port(), db, extra), script) == direct);
    CHECK(block_run(app_conninfo(split.port(), db, extra), script) == direct);
  }
  drop_database_quietly(db);
}
