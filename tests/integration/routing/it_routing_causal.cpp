// Causal reads end to end (routing.consistency): writers commit on some connections through pgmux while readers on
// other connections read through pgmux, with standby1 applying WAL 300 ms late (recovery_min_apply_delay, restored
// at the end) and two workers. Each writer publishes the counter value its commit was acknowledged with; a reader
// notes those values before its query, so a row older than them is a stale read. causal: none, with and without a
// bounded wait (which lets standbys serve reads). session: a writer always sees its own writes, while the readers,
// who wrote nothing, read stale rows on standby1. eventual: stale reads too.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_causal";
constexpr int kWriters = 2;
constexpr int kReaders = 3;
constexpr double kLoadSeconds = 3;

struct LoadResult {
  int reads = 0;           // readers' reads
  int stale = 0;           // ... that missed a commit acknowledged before they were sent
  int own_reads = 0;       // writers reading back their own row on their own connection
  int own_stale = 0;
  std::map<int, int> ports;  // readers' reads by the port that served them
  int standby_reads(const ClusterPorts& p) const {
    int n = 0;
    for (const auto& [port, count] : ports) n += port == p.standby1 || port == p.standby2 ? count : 0;
    return n;
  }
};

// Writers increment their own counter row and publish the value once the commit is acknowledged (and read it
// back on their own connection); readers read both rows on their own connections.
LoadResult run_load(const std::string& ci) {
  std::array<std::atomic<long>, kWriters> acked{};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  LoadResult total;
  auto writer = [&](int w) {
    PgConn conn = connect(ci);
    const std::string id = std::to_string(w);
    int own_reads = 0;
    int own_stale = 0;
    while (!stop.load()) {
      const std::string update = "UPDATE counters SET n = n + 1 WHERE writer = " + id + " RETURNING n";
      const long n = std::atol(scalar(conn.get(), update).c_str());
      acked[static_cast<size_t>(w)].store(n);
      ++own_reads;
      own_stale += std::atol(scalar(conn.get(), "SELECT n FROM counters WHERE writer = " + id).c_str()) < n;
    }
    std::lock_guard lock(mutex);
    total.own_reads += own_reads;
    total.own_stale += own_stale;
  };
  auto reader = [&] {
    PgConn conn = connect(ci);
    LoadResult mine;
    while (!stop.load()) {
      std::array<long, kWriters> must_see{};
      for (size_t w = 0; w < must_see.size(); ++w) must_see[w] = acked[w].load();
      PgResult r = exec(conn.get(), "SELECT (SELECT n FROM counters WHERE writer = 0),"
                                    " (SELECT n FROM counters WHERE writer = 1), inet_server_port()");
      bool stale = false;
      for (int w = 0; w < kWriters; ++w) {
        stale |= std::atol(PQgetvalue(r.get(), 0, w)) < must_see[static_cast<size_t>(w)];
      }
      ++mine.reads;
      mine.stale += stale;
      ++mine.ports[std::atoi(PQgetvalue(r.get(), 0, kWriters))];
    }
    std::lock_guard lock(mutex);
    total.reads += mine.reads;
    total.stale += mine.stale;
    for (const auto& [port, count] : mine.ports) total.ports[port] += count;
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader);
  std::this_thread::sleep_for(std::chrono::duration<double>(kLoadSeconds));
  stop.store(true);
  for (std::thread& t : threads) t.join();
  return total;
}

// pgmux over the cluster with kDb in transaction pooling (each read is routed on its own) and the given routing.
nlohmann::json causal_config(int listen, const ClusterPorts& ports, const std::string& consistency, double wait) {
  nlohmann::json config = routing_config(listen, ports);
  config["databases"].insert(config["databases"].begin(),
                             nlohmann::json::object({{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 10}}));
  // The delayed standby stays in the read set: only consistency keeps reads off it.
  config["routing"] = {{"consistency", consistency}, {"causal_wait", wait}, {"max_lag_seconds", 60}};
  return config;
}

LoadResult load_through_pgmux(const ClusterPorts& ports, const std::string& consistency, double wait, bool* direct) {
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(causal_config(listen, ports, consistency, wait).dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", kDb);
  *direct = proxy.direct();
  if (!proxy.direct()) REQUIRE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20));
  const LoadResult r = run_load(ci);
  MESSAGE(consistency << " (causal_wait " << wait << "): " << r.stale << " stale of " << r.reads
                      << " reads on other connections, served by " << describe(r.ports, ports) << "; "
                      << r.own_stale << " stale of " << r.own_reads << " reads of a writer's own row");
  return r;
}

}  // namespace

TEST_CASE("causal reads: no read misses a commit acknowledged on another connection") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb);
  {
    PgConn p = admin(ports.primary, kDb);
    exec(p.get(), "CREATE TABLE counters (writer int PRIMARY KEY, n bigint NOT NULL)");
    exec(p.get(), "INSERT INTO counters SELECT g, 0 FROM generate_series(0, 1) g");
    exec(p.get(), "ALTER TABLE counters OWNER TO app");
    // The test cluster runs with synchronous_commit off, where WAL reaches the standbys only once the WAL writer
    // flushes it (every 200 ms when little is written): commit as applications usually do.
    exec(p.get(), std::string("ALTER DATABASE ") + kDb + " SET synchronous_commit = on");
  }
  REQUIRE(wait_replayed(ports, 20));
  ApplyDelayReset restore{{ports.standby1}};
  set_apply_delay(ports.standby1, "300ms");

  bool direct = false;
  SUBCASE("causal, no wait: stale reads never; reads that cannot be fresh on a standby go to the primary") {
    const LoadResult r = load_through_pgmux(ports, "causal", 0, &direct);
    CHECK(r.reads > 50);
    CHECK(r.stale == 0);
    CHECK(r.own_stale == 0);
  }
  SUBCASE("causal, reads wait up to 50 ms for a standby: still never stale, and standbys serve reads") {
    const LoadResult r = load_through_pgmux(ports, "causal", 0.05, &direct);
    CHECK(r.reads > 50);
    CHECK(r.stale == 0);
    CHECK(r.own_stale == 0);
    if (!direct) CHECK(r.standby_reads(ports) > 0);
  }
  SUBCASE("session: a writer reads its own writes, other clients may read stale rows") {
    const LoadResult r = load_through_pgmux(ports, "session", 0, &direct);
    CHECK(r.own_stale == 0);
    if (!direct) CHECK(r.stale > 0);  // standby1 is 300 ms behind and serves about half the reads
  }
  SUBCASE("eventual: reads on other connections are stale on the delayed standby") {
    const LoadResult r = load_through_pgmux(ports, "eventual", 0, &direct);
    if (!direct) CHECK(r.stale > 0);
  }
  set_apply_delay(ports.standby1, "");
}

// Two writes pipelined on one connection, each its own transaction, on one server (session pooling): the second
// commit binds other clients' reads as the first does. Both standbys apply WAL 500 ms late and the second write
// takes a second, so a read sent right after the second commit finds both standbys past the first commit but not
// the second. (pgmux once acknowledged only the first: the second write's mark was cleared at the first's end.)
TEST_CASE("causal reads: the second of two pipelined commits, and an extended COPY's, bind the reads sent after") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb, {"CREATE TABLE t (n int)", "ALTER TABLE t OWNER TO app",
                                 std::string("ALTER DATABASE ") + kDb + " SET synchronous_commit = on"});
  ApplyDelayReset restore{{ports.standby1, ports.standby2}};
  set_apply_delay(ports.standby1, "500ms");
  set_apply_delay(ports.standby2, "500ms");
  const int listen = pick_listen_port();
  nlohmann::json config = causal_config(listen, ports, "causal", 0);
  config["databases"][0]["pool_mode"] = "session";
  ProxyUnderTest proxy(config.dump(), listen);
  if (proxy.direct()) return;
  const std::string ci = proxy.conninfo("app", "app", kDb);
  REQUIRE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20));
  PgConn writer = connect(ci);
  PgConn reader = connect(ci);
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    REQUIRE(PQenterPipelineMode(writer.get()) == 1);
    for (const char* sql : {"INSERT INTO t VALUES (1)", "INSERT INTO t SELECT 2 FROM pg_sleep(1)"}) {
      REQUIRE(PQsendQueryParams(writer.get(), sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
      REQUIRE(PQpipelineSync(writer.get()) == 1);
    }
    for (int syncs = 0; syncs < 2;) {
      PgResult r(PQgetResult(writer.get()));
      if (!r) continue;  // the end of one statement's results
      const ExecStatusType status = PQresultStatus(r.get());
      REQUIRE_MESSAGE((status == PGRES_COMMAND_OK || status == PGRES_PIPELINE_SYNC), PQresultErrorMessage(r.get()));
      syncs += status == PGRES_PIPELINE_SYNC;
    }
    REQUIRE(PQexitPipelineMode(writer.get()) == 1);
    PgResult read = exec(reader.get(), "SELECT count(*), inet_server_port() FROM t");
    CHECK_MESSAGE(std::atoi(PQgetvalue(read.get(), 0, 0)) == 2 * round,
                  "served by port " << std::string(PQgetvalue(read.get(), 0, 1)));
  }
  // COPY FROM STDIN with the extended protocol: its batch's entry leaves the reply queue when COPY starts (its
  // Sync is ignored), and the commit comes at the second Sync's ReadyForQuery; it binds reads as well. The
  // standbys first catch up with everything before it.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  PgResult copy(PQexecParams(writer.get(), "COPY t FROM STDIN", 0, nullptr, nullptr, nullptr, nullptr, 0));
  REQUIRE(PQresultStatus(copy.get()) == PGRES_COPY_IN);
  REQUIRE(PQputCopyData(writer.get(), "5\n", 2) == 1);
  REQUIRE(PQputCopyEnd(writer.get(), nullptr) == 1);
  PgResult copied(PQgetResult(writer.get()));
  REQUIRE(PQresultStatus(copied.get()) == PGRES_COMMAND_OK);
  while (PgResult rest{PQgetResult(writer.get())}) {
  }
  PgResult read = exec(reader.get(), "SELECT count(*), inet_server_port() FROM t");
  CHECK_MESSAGE(std::atoi(PQgetvalue(read.get(), 0, 0)) == 5,
                "served by port " << std::string(PQgetvalue(read.get(), 0, 1)));
}

// The unnamed statement parsed on a standby (alone, or with its first execution), then another client's commit,
// then a Bind of it alone: the read must see the commit, as on one server. Both standbys apply WAL 500 ms late, so
// only the primary has it. (pgmux once sent the Bind to the standby that had parsed the statement, in session
// pooling: 0 rows.)
TEST_CASE("causal reads: the unnamed statement used again after a commit sees it") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb, {"CREATE TABLE t (n int)", "ALTER TABLE t OWNER TO app",
                                 std::string("ALTER DATABASE ") + kDb + " SET synchronous_commit = on"});
  REQUIRE(wait_replayed(ports, 20));
  ApplyDelayReset restore{{ports.standby1, ports.standby2}};
  set_apply_delay(ports.standby1, "500ms");
  set_apply_delay(ports.standby2, "500ms");
  for (const std::string mode : {"session", "transaction"}) {
    CAPTURE(mode);
    const int listen = pick_listen_port();
    nlohmann::json config = causal_config(listen, ports, "causal", 0);
    config["databases"][0]["pool_mode"] = mode;
    ProxyUnderTest proxy(config.dump(), listen);
    if (proxy.direct()) return;
    const std::string ci = proxy.conninfo("app", "app", kDb);
    REQUIRE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20));
    PgConn writer = connect(ci);
    for (const bool executed_first : {false, true}) {
      CAPTURE(executed_first);
      std::this_thread::sleep_for(std::chrono::milliseconds(800));  // the standbys catch up: the Parse goes there
      const std::string before = scalar(writer.get(), "SELECT count(*) FROM t /* pgmux:primary */");
      PgConn reader = connect(ci);
      const char* sql = "SELECT count(*), inet_server_port() FROM t";
      PgResult parsed(executed_first ? PQexecParams(reader.get(), sql, 0, nullptr, nullptr, nullptr, nullptr, 0)
                                     : PQprepare(reader.get(), "", sql, 0, nullptr));
      REQUIRE(PQresultStatus(parsed.get()) == (executed_first ? PGRES_TUPLES_OK : PGRES_COMMAND_OK));
      exec(writer.get(), "INSERT INTO t VALUES (1)");
      PgResult read(PQexecPrepared(reader.get(), "", 0, nullptr, nullptr, nullptr, 0));
      REQUIRE_MESSAGE(PQresultStatus(read.get()) == PGRES_TUPLES_OK, PQresultErrorMessage(read.get()));
      CHECK_MESSAGE(std::atoll(PQgetvalue(read.get(), 0, 0)) == std::atoll(before.c_str()) + 1,
                    "served by port " << std::string(PQgetvalue(read.get(), 0, 1)));
    }
  }
}

// A database whose read set is the primary alone (here the only backend, so the replay poller does not run and
// the primary's position is sampled only at each health probe): a read right after another client's commit goes to
// the primary at once, in both pool modes, as it does directly. (pgmux once held it for causal_wait, waiting for a
// standby that could not exist.)
TEST_CASE("causal reads: a read set of the primary alone never waits for a standby") {
  const ClusterPorts ports = cluster_ports();
  recreate_database(ports, kDb, {"CREATE TABLE t (n int)", "ALTER TABLE t OWNER TO app"});
  for (const char* mode : {"session", "transaction"}) {
    CAPTURE(mode);
    const int listen = pick_listen_port();
    nlohmann::json config = default_config(listen);
    config["databases"].insert(config["databases"].begin(),
                               nlohmann::json::object({{"name", kDb}, {"pool_mode", mode}}));
    config["routing"] = {{"consistency", "causal"}, {"causal_wait", 5}};
    config["health_check"] = {{"period", 30}};
    ProxyUnderTest proxy(config.dump(), listen);
    const std::string ci = proxy.conninfo("app", "app", kDb);
    PgConn writer = connect(ci);
    PgConn reader = connect(ci);
    PgConn direct = admin(ports.primary, kDb);
    for (int i = 0; i < 3; ++i) {
      exec(writer.get(), "INSERT INTO t VALUES (1)");
      const auto t0 = std::chrono::steady_clock::now();
      const std::string seen = scalar(reader.get(), "SELECT count(*) FROM t");
      const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      CHECK(seen == scalar(direct.get(), "SELECT count(*) FROM t"));
      CHECK_MESSAGE(took < 1.0, "the read took " << took << " s");
    }
  }
}
