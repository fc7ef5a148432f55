// Failover follow on a cluster of its own (PGMUX_TEST_FAILOVER_BASEPORT, default base port + 100): a write loop
// runs through pgmux, the primary is stopped (pg_ctl stop -m fast), standby1 is promoted (pg_ctl promote), and the
// loop's writes resume on standby1 without restarting pgmux. Prints failed writes and write-unavailable time.
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

// The whole scenario in one pool mode, on a cluster of its own.
void check_failover(const char* pool_mode) {
  CAPTURE(pool_mode);
  OwnCluster cluster("rt-failover");
  const ClusterPorts& ports = cluster.ports;

  int listen = pick_listen_port();
  if (listen >= ports.primary && listen <= ports.standby2) listen = free_port_from(ports.standby2 + 1);
  nlohmann::json config = routing_config(listen, ports);
  config["routing"] = {{"failover_timeout", 30}};
  for (nlohmann::json& database : config["databases"]) database["pool_mode"] = pool_mode;
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

  std::atomic<bool> stop{false};
  const double hard_deadline = now_seconds() + 90;
  std::mutex mu;
  std::vector<Attempt> writes;
  std::vector<Attempt> reads;
  int connect_failures = 0;

  std::thread writer([&] {
    PgConn conn;
    for (int id = 0; !stop && now_seconds() < hard_deadline; ++id) {
      if (!conn) {
        conn = try_connect(ci);
        if (PQstatus(conn.get()) != CONNECTION_OK) {
          std::lock_guard<std::mutex> lock(mu);
          ++connect_failures;
          conn.reset();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
      }
      PgResult r(PQexec(conn.get(),
                        ("INSERT INTO fo (id) VALUES (" + std::to_string(id) + ") RETURNING inet_server_port()").c_str()));
      Attempt a{now_seconds(), PQresultStatus(r.get()) == PGRES_TUPLES_OK, -1, ""};
      if (a.ok) {
        a.port = std::atoi(PQgetvalue(r.get(), 0, 0));
      } else {
        a.error = r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn.get());
        conn.reset();  // reconnect: the session may be closed or stuck on the dead server
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        writes.push_back(a);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(a.ok ? 10 : 50));
    }
  });
  // A client per write, as a web request would: it must never see the failover, only wait for it.
  std::vector<Attempt> fresh_writes;
  std::thread fresh_writer([&] {
    for (int id = 1000000; !stop && now_seconds() < hard_deadline; ++id) {
      PgConn conn = try_connect(ci);
      Attempt a{now_seconds(), false, -1, ""};
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        a.error = std::string("connect: ") + PQerrorMessage(conn.get());
      } else {
        PgResult r(PQexec(conn.get(), ("INSERT INTO fo (id) VALUES (" + std::to_string(id) +
                                       ") RETURNING inet_server_port()").c_str()));
        a.ok = PQresultStatus(r.get()) == PGRES_TUPLES_OK;
        if (a.ok) a.port = std::atoi(PQgetvalue(r.get(), 0, 0));
        if (!a.ok) a.error = r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn.get());
      }
      a.done = now_seconds();
      {
        std::lock_guard<std::mutex> lock(mu);
        fresh_writes.push_back(a);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::thread reader([&] {
    while (!stop && now_seconds() < hard_deadline) {
      const int port = fresh_read_port(ci);
      {
        std::lock_guard<std::mutex> lock(mu);
        reads.push_back(Attempt{now_seconds(), port > 0, port, ""});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  auto count_ok_on = [&](int port) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const Attempt& a : writes) n += a.ok && a.port == port;
    return n;
  };
  CHECK(wait_until([&] { return count_ok_on(ports.primary) >= 50; }, 20));

  const double t_stop = now_seconds();
  CHECK(run_cmd(cluster_sh() + " stop-node " + cluster.dir + " primary") == 0);
  const double t_stopped = now_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // no primary for a while: reads must go on
  const double t_promote = now_seconds();
  CHECK(run_cmd(as_pg("/usr/lib/postgresql/15/bin/pg_ctl promote -w -t 30 -D " + cluster.dir + "/standby1") +
                " >/dev/null") == 0);
  const double t_promoted = now_seconds();
  const bool resumed = wait_until([&] { return count_ok_on(ports.standby1) >= 50; }, 40);
  stop = true;
  writer.join();
  fresh_writer.join();
  reader.join();
  CHECK_MESSAGE(resumed, "writes did not resume on the promoted standby1");

  // Failed writes, and the gap between the last write on the old primary and the first on the new one.
  int failed = 0;
  double last_old = -1, first_new = -1;
  std::string first_error;
  for (const Attempt& a : writes) {
    if (!a.ok) {
      ++failed;
      if (first_error.empty()) first_error = a.error;
    }
    if (a.ok && a.port == ports.primary) last_old = a.t;
    if (a.ok && a.port == ports.standby1 && first_new < 0) first_new = a.t;
  }
  const double unavailable = first_new > 0 && last_old > 0 ? first_new - last_old : -1;
  int reads_without_primary = 0, read_failures = 0, orphan_reads = 0;
  for (const Attempt& a : reads) {
    if (a.t > t_stopped + 0.5 && a.t < t_promote) reads_without_primary += a.ok;
    if (a.t > t_stop && !a.ok) ++read_failures;
    // standby2 still follows the stopped primary on the old timeline: no reads once the promotion is known.
    if (a.t > t_promoted + 0.5 && a.ok && a.port == ports.standby2) ++orphan_reads;
  }
  // Only a write in flight when the primary stopped may fail (it may or may not have run: PostgreSQL's own
  // stop killed it); one that starts later waits for the new primary.
  int fresh_failed = 0, fresh_in_flight_failed = 0;
  double fresh_first_new = -1;
  std::string fresh_error;
  for (const Attempt& a : fresh_writes) {
    if (!a.ok && fresh_error.empty()) fresh_error = a.error;
    if (!a.ok) ++(a.t < t_stopped ? fresh_in_flight_failed : fresh_failed);
    if (a.ok && a.port == ports.standby1 && (fresh_first_new < 0 || a.done < fresh_first_new)) fresh_first_new = a.done;
  }
  MESSAGE("stop took " << t_stopped - t_stop << " s, promote " << t_promoted - t_promote << " s");
  MESSAGE("writes: " << writes.size() << " attempts, " << failed << " failed (first: " << first_error
                     << "), " << connect_failures << " failed connects; write-unavailable time " << unavailable
                     << " s (last write on the old primary to the first on standby1; "
                     << (first_new > 0 ? first_new - t_promoted : -1) << " s after pg_ctl promote returned)");
  MESSAGE("reads: " << reads.size() << " total, " << reads_without_primary
                    << " served while there was no primary, " << read_failures << " failed after the stop");

  MESSAGE("a connection per write: " << fresh_writes.size() << " attempts, " << fresh_failed
                                     << " failed after the stop, " << fresh_in_flight_failed
                                     << " in flight at the stop (first: " << fresh_error << "); first write on standby1 "
                                     << (fresh_first_new > 0 ? fresh_first_new - t_promoted : -1)
                                     << " s after pg_ctl promote returned; " << orphan_reads
                                     << " reads served by the orphaned standby2 after the promotion");
  // The persistent session (session pooling, idle between its writes) is not ended by the fast shutdown: it
  // moves to the new primary. Only a write in flight at the stop may fail.
  CHECK(failed <= 1);
  CHECK(fresh_failed == 0);  // held during the failover, never failed
  // Started before pg_ctl stop returned: the one running at the stop, and at most one more that reached a backend
  // the fast shutdown was terminating (0.4 s here, 20 ms between writes): its statement may or may not have run.
  CHECK(fresh_in_flight_failed <= 2);
  CHECK(orphan_reads == 0);
  CHECK(fresh_first_new > 0);
  CHECK(fresh_first_new - t_promoted < 2.0);  // promotion seen within the failover probing period, plus load
  CHECK(first_new > 0);
  CHECK(unavailable > 0);
  CHECK(unavailable < 30);  // failover_timeout
  CHECK(reads_without_primary > 0);
  CHECK(proxy.process() != nullptr);
  CHECK_FALSE(proxy.process()->wait_exit(0));  // the same pgmux, still running

  // Every write the new primary acknowledged is there.
  PgConn np = admin(ports.standby1, "app");
  CHECK(std::atoi(scalar(np.get(), "SELECT count(*) FROM fo WHERE id >= 0").c_str()) >= count_ok_on(ports.standby1));
  CHECK(scalar(np.get(), "SELECT pg_is_in_recovery()") == "f");
}

}  // namespace

TEST_CASE("writes follow a promoted standby without restarting pgmux: session pooling") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: failover follow is pgmux's; nothing to check against a bare server");
    return;
  }
  check_failover("session");
}

// Idle clients hold no server here: only the failover hold (a refused connect, a probe round now, PrimaryWait)
// stands between them and an error.
TEST_CASE("writes follow a promoted standby without restarting pgmux: transaction pooling") {
  if (direct_mode()) return;
  check_failover("transaction");
}
