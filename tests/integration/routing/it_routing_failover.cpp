// Failover follow on a cluster of its own (PGMUX_TEST_FAILOVER_BASEPORT, default base port + 100): writes and reads
// run through pgmux, the primary is stopped (pg_ctl stop -m fast, or -m immediate as a crash), standby1 is
// promoted (pg_ctl promote), and the writes resume on standby1 without restarting pgmux. Prints failed writes and
// write-unavailable time. Also: a standby stopped under reads loses them at its first refusal.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

struct Attempt {
  double t;  // when it started
  bool ok;
  int port;  // server that took the write, when ok
  std::string error;
  double done = -1;  // when it ended (a held request ends long after it started)
};

// How the primary goes away and how long the cluster stays without one.
struct Scenario {
  const char* pool_mode;
  bool immediate;        // pg_ctl stop -m immediate (a crash: connections refused at once), else -m fast
  int promote_after_ms;  // from pg_ctl stop returning to pg_ctl promote
};

// Three clients through pgmux until stopped: a persistent writer (reconnects after an error), a writer with a new
// connection per INSERT (as a web request would: it must never see the failover, only wait for it), and a reader
// with a new connection per read. Every attempt is recorded with its time and the server that took it.
struct Load {
  explicit Load(std::string conninfo) : ci(std::move(conninfo)) {}
  ~Load() { stop_and_join(); }

  void start() {
    threads.emplace_back([this] { persistent_writer(); });
    threads.emplace_back([this] { fresh_writer(); });
    threads.emplace_back([this] { reader(); });
  }
  void stop_and_join() {
    stop = true;
    for (std::thread& t : threads) t.join();
    threads.clear();
  }
  int count_ok_on(int port) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const Attempt& a : writes) n += a.ok && a.port == port;
    return n;
  }

  const std::string ci;
  std::atomic<bool> stop{false};
  const double hard_deadline = now_seconds() + 90;
  std::mutex mu;
  std::vector<Attempt> writes, fresh_writes, reads;
  int connect_failures = 0;
  std::vector<std::thread> threads;

 private:
  void record(std::vector<Attempt>& list, const Attempt& a) {
    std::lock_guard<std::mutex> lock(mu);
    list.push_back(a);
  }
  static Attempt insert(PGconn* conn, int id, double started) {
    const std::string sql = "INSERT INTO fo (id) VALUES (" + std::to_string(id) + ") RETURNING inet_server_port()";
    PgResult r(PQexec(conn, sql.c_str()));
    Attempt a{started, PQresultStatus(r.get()) == PGRES_TUPLES_OK, -1, ""};
    if (a.ok) a.port = std::atoi(PQgetvalue(r.get(), 0, 0));
    if (!a.ok) a.error = r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn);
    return a;
  }
  void persistent_writer() {
    PgConn conn;
    for (int id = 0; !stop && now_seconds() < hard_deadline; ++id) {
      if (!conn) {
        conn = try_connect(ci);
        if (PQstatus(conn.get()) != CONNECTION_OK) {
          {
            std::lock_guard<std::mutex> lock(mu);
            ++connect_failures;
          }
          conn.reset();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
      }
      Attempt a = insert(conn.get(), id, now_seconds());
      a.done = now_seconds();
      if (!a.ok) conn.reset();  // reconnect: the session may be closed or stuck on the dead server
      record(writes, a);
      std::this_thread::sleep_for(std::chrono::milliseconds(a.ok ? 10 : 50));
    }
  }
  void fresh_writer() {
    for (int id = 1000000; !stop && now_seconds() < hard_deadline; ++id) {
      const double started = now_seconds();
      PgConn conn = try_connect(ci);
      Attempt a{started, false, -1, ""};
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        a.error = std::string("connect: ") + PQerrorMessage(conn.get());
      } else {
        a = insert(conn.get(), id, started);
      }
      a.done = now_seconds();
      record(fresh_writes, a);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void reader() {
    while (!stop && now_seconds() < hard_deadline) {
      const double started = now_seconds();
      const int port = fresh_read_port(ci);
      record(reads, Attempt{started, port > 0, port, "", now_seconds()});
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
};

// When each step of the failover happened.
struct Timeline {
  double stop = 0, stopped = 0, promote = 0, promoted = 0;
};

Timeline stop_primary_then_promote(const OwnCluster& cluster, const Scenario& scenario) {
  Timeline at;
  const std::string pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl";
  at.stop = now_seconds();
  if (scenario.immediate) {
    CHECK(run_cmd(as_pg(pg_ctl + " stop -m immediate -w -t 30 -D " + cluster.dir + "/primary") + " >/dev/null") == 0);
  } else {
    CHECK(run_cmd(cluster_sh() + " stop-node " + cluster.dir + " primary") == 0);
  }
  at.stopped = now_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(scenario.promote_after_ms));
  at.promote = now_seconds();
  CHECK(run_cmd(as_pg(pg_ctl + " promote -w -t 30 -D " + cluster.dir + "/standby1") + " >/dev/null") == 0);
  at.promoted = now_seconds();
  return at;
}

// What the load saw, against what failover follow promises (issue 12, item 1).
void check_outcome(const Scenario& scenario, Load& load, const Timeline& at, const ClusterPorts& ports) {
  std::lock_guard<std::mutex> lock(load.mu);
  int failed = 0;
  double last_old = -1, first_new = -1;
  std::string first_error;
  for (const Attempt& a : load.writes) {
    if (!a.ok && failed++ == 0) first_error = a.error;
    if (a.ok && a.port == ports.primary) last_old = a.t;
    if (a.ok && a.port == ports.standby1 && first_new < 0) first_new = a.t;
  }
  const double unavailable = first_new > 0 && last_old > 0 ? first_new - last_old : -1;
  // pgmux knew of the promotion once it had a write acknowledged on standby1, by either writer.
  double promotion_known = -1;
  for (const std::vector<Attempt>* list : {&load.writes, &load.fresh_writes}) {
    for (const Attempt& a : *list) {
      if (a.ok && a.port == ports.standby1 && (promotion_known < 0 || a.done < promotion_known)) {
        promotion_known = a.done;
      }
    }
  }
  int reads_without_primary = 0, read_failures = 0, orphan_reads = 0;
  for (const Attempt& a : load.reads) {
    if (a.t > at.stopped + 0.5 && a.t < at.promote) reads_without_primary += a.ok;
    if (a.t > at.stop && !a.ok) ++read_failures;
    // standby2 still follows the stopped primary on the old timeline: it may serve reads until pgmux sees the
    // promotion (nothing newer was acknowledged yet), never a read that starts after a write on the new primary
    // was acknowledged. (Counted from the promotion plus a fixed 0.5 s before: a slow ASan build took 0.75 s to
    // see it, and reads it served in between, rightly, failed the check.)
    const bool after_promotion_known = promotion_known > 0 && a.t > promotion_known;
    if (after_promotion_known && a.ok && a.port == ports.standby2) ++orphan_reads;
  }
  // Only a write in flight when the primary stopped may fail (it may or may not have run: PostgreSQL's own
  // stop killed it); one that starts later waits for the new primary.
  int fresh_failed = 0, fresh_in_flight_failed = 0;
  double fresh_first_new = -1;
  std::string fresh_error;
  for (const Attempt& a : load.fresh_writes) {
    if (!a.ok && fresh_error.empty()) fresh_error = a.error;
    if (!a.ok) ++(a.t < at.stopped ? fresh_in_flight_failed : fresh_failed);
    const bool earlier = fresh_first_new < 0 || a.done < fresh_first_new;
    if (a.ok && a.port == ports.standby1 && earlier) fresh_first_new = a.done;
  }
  MESSAGE("stop took " << at.stopped - at.stop << " s, promote " << at.promoted - at.promote << " s");
  MESSAGE("writes: " << load.writes.size() << " attempts, " << failed << " failed (first: " << first_error << "), "
                     << load.connect_failures << " failed connects; write-unavailable time " << unavailable
                     << " s (last write on the old primary to the first on standby1; "
                     << (first_new > 0 ? first_new - at.promoted : -1) << " s after pg_ctl promote returned)");
  MESSAGE("reads: " << load.reads.size() << " total, " << reads_without_primary
                    << " served while there was no primary, " << read_failures << " failed after the stop");
  MESSAGE("a connection per write: " << load.fresh_writes.size() << " attempts, " << fresh_failed
                                     << " failed after the stop, " << fresh_in_flight_failed
                                     << " in flight at the stop (first: " << fresh_error
                                     << "); first write on standby1 "
                                     << (fresh_first_new > 0 ? fresh_first_new - at.promoted : -1)
                                     << " s after pg_ctl promote returned; " << orphan_reads
                                     << " reads served by the orphaned standby2 after the promotion");
  // The persistent client between its writes is not ended by the stop: it moves to the new primary (in session
  // pooling, its session with it). Only a write in flight at the stop may fail.
  CHECK(failed <= 1);
  CHECK(fresh_failed == 0);  // held during the failover, never failed
  // Started before pg_ctl stop returned: the one running at the stop, and at most one more that reached a backend
  // the stop was terminating (a fast stop takes 0.4 s here, 20 ms between writes): it may or may not have run.
  CHECK(fresh_in_flight_failed <= 2);
  CHECK(orphan_reads == 0);
  CHECK(fresh_first_new > 0);
  CHECK(fresh_first_new - at.promoted < 2.0);  // promotion seen within the failover probing period, plus load
  // After a crash, the old primary's refused connections count as failed probes at once: the promoted standby is
  // the primary as soon as a probe round sees it (rounds every 0.1 s without a primary), not once the old
  // primary's probe has timed out (2 s). pg_ctl promote itself polls every 0.1 s, so writes may resume before it
  // returns.
  if (scenario.immediate) CHECK(fresh_first_new - at.promoted < 1.0);
  CHECK(first_new > 0);
  CHECK(unavailable > 0);
  CHECK(unavailable < 30);  // failover_timeout
  // Without a primary for a while, reads go on (a crash followed by a quick promotion leaves no while).
  if (scenario.promote_after_ms >= 1000) CHECK(reads_without_primary > 0);
}

// The whole scenario, on a cluster of its own.
void check_failover(const Scenario& scenario) {
  const std::string pool_mode = scenario.pool_mode;  // a string: CAPTURE prints a const char* as a pointer
  CAPTURE(pool_mode);
  CAPTURE(scenario.immediate);
  OwnCluster cluster("rt-failover");
  const ClusterPorts& ports = cluster.ports;

  int listen = pick_listen_port();
  if (listen >= ports.primary && listen <= ports.standby2) listen = free_port_from(ports.standby2 + 1);
  nlohmann::json config = routing_config(listen, ports);
  config["routing"] = {{"failover_timeout", 30}};
  for (nlohmann::json& database : config["databases"]) database["pool_mode"] = scenario.pool_mode;
  config["health_check"]["period"] = 0.2;
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");
  {
    PgConn p = admin(ports.primary, "app");
    exec(p.get(), "CREATE TABLE fo (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())");
    exec(p.get(), "ALTER TABLE fo OWNER TO app");
  }
  REQUIRE(wait_replayed(ports, 20));
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");

  Load load(ci);
  load.start();
  CHECK(wait_until([&] { return load.count_ok_on(ports.primary) >= 50; }, 20));
  const Timeline at = stop_primary_then_promote(cluster, scenario);
  const bool resumed = wait_until([&] { return load.count_ok_on(ports.standby1) >= 50; }, 40);
  load.stop_and_join();
  CHECK_MESSAGE(resumed, "writes did not resume on the promoted standby1");
  check_outcome(scenario, load, at, ports);
  CHECK(proxy.process() != nullptr);
  CHECK_FALSE(proxy.process()->wait_exit(0));  // the same pgmux, still running

  // Every write the new primary acknowledged is there.
  PgConn np = admin(ports.standby1, "app");
  const int rows = std::atoi(scalar(np.get(), "SELECT count(*) FROM fo WHERE id >= 0").c_str());
  CHECK(rows >= load.count_ok_on(ports.standby1));
  CHECK(scalar(np.get(), "SELECT pg_is_in_recovery()") == "f");
}

}  // namespace

TEST_CASE("writes follow a promoted standby without restarting pgmux: session pooling") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: failover follow is pgmux's; nothing to check against a bare server");
    return;
  }
  check_failover({"session", false, 2000});
}

// Idle clients hold no server here: only the failover hold (a refused connect, a probe round now, PrimaryWait)
// stands between them and an error.
TEST_CASE("writes follow a promoted standby without restarting pgmux: transaction pooling") {
  if (direct_mode()) return;
  check_failover({"transaction", false, 2000});
}

// The experiment: the primary crashes (pg_ctl stop -m immediate) and standby1 is promoted 70 ms later.
// The crashed primary's refused connections count as failed probes at once, so the promoted standby (on a newer
// timeline) is taken as the primary as soon as a probe sees it, not after the old primary's probes time out.
TEST_CASE("writes follow a standby promoted 70 ms after the primary crashed: transaction pooling") {
  if (direct_mode()) return;
  check_failover({"transaction", true, 70});
}

// Readers with a connection each, while standby1 stops (pg_ctl stop -m fast). Reads running
// on it, or pooled connections it closed, fail as they would on PostgreSQL; after the first new connection it
// refuses (or answers 57P03, shutting down), no read is sent there until a probe answers again. Before, reads kept
// going to it until the probes had failed health_check.max_retries + 1 times (about 2 s): over a hundred failed
// reads that never ran anywhere, with standby2 and the primary healthy.
static void check_standby_stop(const std::string& pool_mode) {
  CAPTURE(pool_mode);
  OwnCluster cluster("rt-standby-stop");
  const ClusterPorts& ports = cluster.ports;
  int listen = pick_listen_port();
  if (listen >= ports.primary && listen <= ports.standby2) listen = free_port_from(ports.standby2 + 1);
  nlohmann::json config = routing_config(listen, ports);
  for (nlohmann::json& database : config["databases"]) database["pool_mode"] = pool_mode;
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");

  std::atomic<bool> stop{false};
  std::atomic<int> failed_after_stop{0}, served_after_stop{0};
  std::atomic<bool> stopped{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      PgConn conn;
      const double deadline = now_seconds() + 60;
      while (!stop && now_seconds() < deadline) {
        if (!conn) conn = try_connect(ci);
        PgResult r(PQexec(conn.get(), "SELECT inet_server_port()"));
        const bool ok = PQresultStatus(r.get()) == PGRES_TUPLES_OK;
        if (stopped) (ok ? served_after_stop : failed_after_stop)++;
        if (!ok) conn.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stopped = true;
  CHECK(run_cmd(cluster_sh() + " stop-node " + cluster.dir + " standby1") == 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (std::thread& t : readers) t.join();
  MESSAGE(failed_after_stop.load() << " reads failed and " << served_after_stop.load()
                                   << " were served from the stop of standby1 on");
  CHECK(served_after_stop > 100);
  CHECK(failed_after_stop <= 12);  // those running on it, and each pooled connection it closed under a read
}

TEST_CASE("reads leave a standby at its first refused connection: session pooling") {
  if (direct_mode()) return;
  check_standby_stop("session");
}

TEST_CASE("reads leave a standby at its first refused connection: transaction pooling") {
  if (direct_mode()) return;
  check_standby_stop("transaction");
}


// A smart shutdown of standby1: it refuses every new connection (57P03) while its open sessions (pgmux's prober
// among them) go on, so the prober may see it up between refusals. A read routed there whose pool cannot open a
// connection never reached a server: it runs on the primary. Before, each such read failed with 57P03 (about half
// of them in a black-box review), though the primary and standby2 were healthy.
TEST_CASE("a read whose standby refuses new connections runs on the primary") {
  if (direct_mode()) return;
  OwnCluster cluster("rt-standby-smart");
  const ClusterPorts& ports = cluster.ports;
  int listen = pick_listen_port();
  if (listen >= ports.primary && listen <= ports.standby2) listen = free_port_from(ports.standby2 + 1);
  nlohmann::json config = routing_config(listen, ports);
  for (nlohmann::json& database : config["databases"]) database["pool_mode"] = "session";
  ProxyUnderTest proxy(config.dump(), listen);
  const std::string ci = proxy.conninfo("app", "app", "app");
  REQUIRE_MESSAGE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20), "standbys never served reads");
  PgConn held = connect(conninfo(ports.standby1, "app", "app", "app"));  // keeps the smart shutdown going
  REQUIRE(run_cmd(as_pg("/usr/lib/postgresql/15/bin/pg_ctl stop -D " + cluster.dir + "/standby1 -m smart -W")) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int failed = 0;
  std::string first_error;
  for (int i = 0; i < 60; ++i) {  // a new session each time: session pooling opens a server for it
    PgConn conn = try_connect(ci);
    PgResult r(conn ? PQexec(conn.get(), "SELECT inet_server_port()") : nullptr);
    if (r && PQresultStatus(r.get()) == PGRES_TUPLES_OK) continue;
    if (first_error.empty()) first_error = conn ? PQerrorMessage(conn.get()) : "no connection";
    ++failed;
  }
  CHECK_MESSAGE(failed == 0, failed << " of 60 reads failed; first: " << first_error);
  held.reset();
}
