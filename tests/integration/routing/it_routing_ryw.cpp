// Read-your-writes end to end (routing.consistency session): both standbys apply WAL 2 s late
// (recovery_min_apply_delay), so a read there right after a commit cannot see it; a client's insert-then-select
// through pgmux must see its row 1000 times out of 1000, while a client that wrote nothing still reads from
// (stale) standbys. Settings are restored at the end.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_ryw";

}  // namespace

TEST_CASE("a client always reads its own writes") {
  const ClusterPorts ports = cluster_ports();
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["routing"] = {{"consistency", "session"}, {"max_lag_seconds", 60}};
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", kDb);

  recreate_database(ports, kDb);
  {
    PgConn p = admin(ports.primary, kDb);
    exec(p.get(), "CREATE TABLE ryw (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())");
    exec(p.get(), "ALTER TABLE ryw OWNER TO app");
  }
  REQUIRE(wait_replayed(ports, 20));
  if (!proxy.direct()) {
    REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  }

  ApplyDelayReset restore{{ports.standby1, ports.standby2}};
  for (int port : {ports.standby1, ports.standby2}) set_apply_delay(port, "2s");

  // The standbys really are behind: a row committed on the primary is not visible there right away.
  {
    PgConn p = admin(ports.primary, kDb);
    exec(p.get(), "INSERT INTO ryw (id) VALUES (-1)");
    PgConn s1 = admin(ports.standby1, kDb);
    CHECK(scalar(s1.get(), "SELECT count(*) FROM ryw WHERE id = -1") == "0");
  }

  constexpr int kRounds = 1000;
  int seen = 0;
  std::map<int, int> read_ports;
  PgConn conn = connect(ci);
  // A standby connection first, so the session has one to be sticky about.
  CHECK((proxy.direct() || server_port(conn.get()) != ports.primary));
  const double t0 = now_seconds();
  for (int i = 0; i < kRounds; ++i) {
    exec(conn.get(), "INSERT INTO ryw (id) VALUES (" + std::to_string(i) + ")");
    PgResult r = exec(conn.get(), "SELECT count(*), inet_server_port() FROM ryw WHERE id = " + std::to_string(i));
    seen += std::string(PQgetvalue(r.get(), 0, 0)) == "1";
    ++read_ports[std::atoi(PQgetvalue(r.get(), 0, 1))];
  }
  const double elapsed = now_seconds() - t0;
  MESSAGE(seen << " of " << kRounds << " reads saw their own insert in " << elapsed
               << " s; reads served by: " << describe(read_ports, ports));
  CHECK(seen == kRounds);

  if (!proxy.direct()) {
    // Another client, no writes of its own: it reads from a standby that does not have the rows yet.
    PgConn other = connect(ci);
    PgResult r = exec(other.get(), "SELECT count(*), inet_server_port() FROM ryw WHERE id >= 0");
    const int port = std::atoi(PQgetvalue(r.get(), 0, 1));
    const int rows = std::atoi(PQgetvalue(r.get(), 0, 0));
    MESSAGE("a client without writes read " << rows << " of " << kRounds << " rows on port " << port);
    CHECK(port != ports.primary);
    CHECK(rows < kRounds);  // the standby really is behind: only read-your-writes kept the writer correct

    // Once the standbys have applied the writes, the writer's reads go back to a standby.
    double back_after = -1;
    const double t1 = now_seconds();
    CHECK(wait_until(
        [&] {
          if (server_port(conn.get()) == ports.primary) return false;
          back_after = now_seconds() - t1;
          return true;
        },
        15, 0.1));
    MESSAGE("the writer's reads back on a standby " << back_after << " s after its last write");
    CHECK(scalar(conn.get(), "SELECT count(*) FROM ryw WHERE id >= 0") == std::to_string(kRounds));
  }

  // With the writer's reads back on a standby (still 2 s behind): a write in one extended batch behind a SHOW or a
  // SET (the batch's class was the session command's, and its commit started no read-your-writes). From a
  // black-box hunt.
  int batched_seen = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string id = std::to_string(-100 - i);  // not counted among the rounds' rows
    REQUIRE(PQenterPipelineMode(conn.get()) == 1);
    const char* first = i % 2 == 0 ? "SHOW search_path" : "SET application_name = 'ryw'";
    REQUIRE(PQsendQueryParams(conn.get(), first, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    const std::string insert = "INSERT INTO ryw (id) VALUES (" + id + ")";
    REQUIRE(PQsendQueryParams(conn.get(), insert.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    CHECK(pipeline_results(conn.get(), 1).find("FATAL") == std::string::npos);
    REQUIRE(PQexitPipelineMode(conn.get()) == 1);
    batched_seen += scalar(conn.get(), "SELECT count(*) FROM ryw WHERE id = " + id) == "1";
  }
  CHECK(batched_seen == 20);

  if (!proxy.direct()) {
    // A statement prepared as asyncpg prepares one (Parse and Describe closed by a Flush, then Bind, Execute, Sync)
    // writes nothing: it starts no read-your-writes, and the next read stays on a standby behind the primary. The
    // binary before took such a sequence for a write: the reads after it waited for the standbys' replay.
    REQUIRE(wait_until([&] { return server_port(conn.get()) != ports.primary; }, 15, 0.1));
    {
      PgConn p = admin(ports.primary, kDb);
      exec(p.get(), "INSERT INTO ryw (id) VALUES (-1000)");  // the standbys are 2 s behind the primary again
    }
    REQUIRE(PQenterPipelineMode(conn.get()) == 1);
    REQUIRE(PQsendPrepare(conn.get(), "flushed", "SELECT count(*) FROM ryw", 0, nullptr) == 1);
    REQUIRE(PQsendDescribePrepared(conn.get(), "flushed") == 1);
    REQUIRE(PQsendFlushRequest(conn.get()) == 1);
    REQUIRE(PQsendQueryPrepared(conn.get(), "flushed", 0, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(conn.get()) == 1);
    const std::string results = pipeline_results(conn.get(), 1);
    CHECK_MESSAGE(results.find("FATAL") == std::string::npos, results);
    REQUIRE(PQexitPipelineMode(conn.get()) == 1);
    CHECK(server_port(conn.get()) != ports.primary);
  }

  conn.reset();
  for (int port : {ports.standby1, ports.standby2}) set_apply_delay(port, "");
  drop_database(ports, kDb);
}
