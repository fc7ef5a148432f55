// The prober against the real cluster (primary on $PGMUX_TEST_BASEPORT, standbys on +1 and +2).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>

#include "proxy/control/prober.hpp"
#include "routing/read_your_writes.hpp"

using namespace pgmux;
using routing::BackendsView;
using routing::Role;

namespace {

int base_port() {
  const char* env = std::getenv("PGMUX_TEST_BASEPORT");
  return env != nullptr ? std::atoi(env) : 25433;
}

conf::Backend backend(const std::string& name, const std::string& host, int port) {
  conf::Backend b;
  b.name = name;
  b.host = host;
  b.port = static_cast<uint16_t>(port);
  return b;
}

conf::Config cluster_config() {
  conf::Config c;
  const int base = base_port();
  c.backends = {backend("primary", "127.0.0.1", base), backend("standby1", "127.0.0.1", base + 1),
                backend("standby2", "localhost", base + 2)};  // a name: resolved off the loop
  conf::User u;
  u.name = "postgres";
  u.password = "postgres";
  c.users.push_back(u);
  c.health_check.period = 0.2;
  c.health_check.timeout = 1;
  c.health_check.max_retries = 1;
  return c;
}

// A control loop for one test.
struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_NOWAIT);  // close callbacks
    uv_loop_close(&loop);
  }
  // Runs until pred(view) holds or `seconds` pass.
  bool run_until(proxy::Prober& p, const std::function<bool(const BackendsView&)>& pred, double seconds) {
    const double deadline = proxy::monotonic_seconds() + seconds;
    while (proxy::monotonic_seconds() < deadline) {
      uv_run(&loop, UV_RUN_ONCE);
      if (pred(*p.view())) return true;
    }
    return false;
  }
};

struct Pg {
  PGconn* conn;
  explicit Pg(int port) {
    const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port) +
                                 " user=postgres password=postgres dbname=postgres connect_timeout=5";
    conn = PQconnectdb(conninfo.c_str());
    REQUIRE_MESSAGE(PQstatus(conn) == CONNECTION_OK, PQerrorMessage(conn));
  }
  ~Pg() { PQfinish(conn); }
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    std::string out = ok && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    if (!ok) FAIL_CHECK(sql << ": " << std::string(PQresultErrorMessage(r)));
    PQclear(r);
    return out;
  }
};

bool discovered(const BackendsView& v) {
  return v.primary == 0 && v.backends[1].readable && v.backends[2].readable;
}

}  // namespace

TEST_CASE("prober: discovers the primary and the standbys") {
  Loop l;
  int changes = 0;
  uint64_t last_generation = 0;
  bool increasing = true;
  proxy::Prober p(&l.loop, cluster_config(), [&](proxy::Prober::View v) {
    ++changes;
    increasing = increasing && v->generation > last_generation;
    last_generation = v->generation;
  });
  p.start();
  REQUIRE(l.run_until(p, discovered, 10));
  l.run_until(p, [](const BackendsView& v) { return v.primary_lsn_history.size() >= 3; }, 5);
  auto v = p.view();
  CHECK(v->backends[0].role == Role::Primary);
  CHECK(v->backends[1].role == Role::Standby);
  CHECK(v->backends[2].role == Role::Standby);
  CHECK(v->backends[0].last.system_identifier != 0);
  CHECK(v->backends[1].last.system_identifier == v->backends[0].last.system_identifier);
  CHECK(v->backends[0].last.timeline >= 1);
  CHECK(v->backends[1].last.timeline == v->backends[0].last.timeline);
  CHECK(v->backends[0].last.current_lsn > 0);
  CHECK(v->backends[1].last.replay_lsn > 0);
  CHECK(v->primary_lsn_history.size() >= 3);
  CHECK(v->alarm.empty());
  CHECK(changes >= 2);
  CHECK(increasing);
  // Asynchronous streaming replication, as the test cluster runs it, seen through the primary's WAL senders
  // (their application_name is the standbys' cluster_name, which the backend names match).
  CHECK(v->backends[1].sync_state == "async");
  CHECK(v->backends[2].sync_state == "async");
  CHECK(v->backends[0].sync_state.empty());
  p.stop();
}

TEST_CASE("prober: synchronous_standby_names names the synchronous standby") {
  const int base = base_port();
  Pg primary(base);
  primary.value("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1, standby2)'");
  primary.value("SELECT pg_reload_conf()");
  Loop l;
  proxy::Prober p(&l.loop, cluster_config(), [](proxy::Prober::View) {});
  p.start();
  const bool seen = l.run_until(
      p,
      [](const BackendsView& v) {
        return v.backends[1].sync_state == "sync" && v.backends[2].sync_state == "potential";
      },
      10);
  auto v = p.view();
  primary.value("ALTER SYSTEM RESET synchronous_standby_names");
  primary.value("SELECT pg_reload_conf()");
  CHECK(seen);
  CHECK(v->backends[1].sync_state == "sync");
  CHECK(v->backends[2].sync_state == "potential");
  CHECK(v->backends[0].last.synchronous_standby_names == "FIRST 1 (standby1, standby2)");
  p.stop();
}

TEST_CASE("prober: refused, unresolvable and silent backends go down; the others are unaffected") {
  // A port nobody listens on, and a listener that never answers (connect completes into the backlog).
  const int closed = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(bind(closed, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(getsockname(closed, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int closed_port = ntohs(addr.sin_port);
  close(closed);
  const int silent = socket(AF_INET, SOCK_STREAM, 0);
  addr.sin_port = 0;
  REQUIRE(bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(silent, 16) == 0);
  len = sizeof addr;
  REQUIRE(getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int silent_port = ntohs(addr.sin_port);

  conf::Config c = cluster_config();
  c.health_check.timeout = 0.5;
  c.backends.push_back(backend("refused", "127.0.0.1", closed_port));
  c.backends.push_back(backend("nxdomain", "pgmux-no-such-host.invalid", 5432));
  c.backends.push_back(backend("silent", "127.0.0.1", silent_port));
  Loop l;
  proxy::Prober p(&l.loop, c, nullptr);
  p.start();
  const bool all_down = l.run_until(p, [](const BackendsView& v) {
    return discovered(v) && v.backends[3].role == Role::Down && v.backends[4].role == Role::Down &&
           v.backends[5].role == Role::Down;
  }, 15);
  auto v = p.view();
  for (const auto& b : v->backends) INFO(b.spec.name << ": " << routing::to_string(b.role) << " " << b.last_error);
  CHECK(all_down);
  CHECK(v->backends[3].last_error.find("refused") != std::string::npos);
  CHECK(v->backends[4].last_error.find("cannot resolve pgmux-no-such-host.invalid") == 0);
  CHECK(v->backends[5].last_error == "no answer within 0.5 s");
  CHECK(v->backends[5].excluded_reason == "down: no answer within 0.5 s");
  p.stop();
  close(silent);
}

TEST_CASE("prober: paused replay takes a standby out of the read set; it returns after the hysteresis") {
  conf::Config c = cluster_config();
  c.backends[1].max_lag_bytes = 64 * 1024;
  c.routing.lag_hysteresis = 1;
  Loop l;
  proxy::Prober p(&l.loop, c, nullptr);
  p.start();
  REQUIRE(l.run_until(p, discovered, 10));

  Pg primary(base_port());
  Pg standby1(base_port() + 1);
  standby1.value("SELECT pg_wal_replay_pause()");
  struct Resume {
    Pg& s;
    ~Resume() { s.value("SELECT pg_wal_replay_resume()"); }
  } resume{standby1};
  primary.value("DROP TABLE IF EXISTS prober_lag");
  primary.value("CREATE TABLE prober_lag AS SELECT g AS x, repeat('x', 100) AS pad FROM generate_series(1, 20000) g");
  const bool excluded = l.run_until(p, [](const BackendsView& v) {
    return !v.backends[1].readable && v.backends[1].excluded_reason.rfind("lag ", 0) == 0;
  }, 10);
  auto v = p.view();
  INFO(v->backends[1].excluded_reason);
  CHECK(excluded);
  CHECK(v->backends[1].lag_bytes > 64 * 1024);
  CHECK(v->backends[1].excluded_reason.find("> max_lag_bytes 64.0 KiB") != std::string::npos);
  CHECK(v->backends[2].readable);

  standby1.value("SELECT pg_wal_replay_resume()");
  bool saw_hysteresis = false;
  const bool back = l.run_until(p, [&](const BackendsView& w) {
    saw_hysteresis = saw_hysteresis || w.backends[1].excluded_reason.rfind("hysteresis", 0) == 0;
    return w.backends[1].readable;
  }, 10);
  CHECK(back);
  CHECK(saw_hysteresis);
  primary.value("DROP TABLE prober_lag");
  p.stop();
}

TEST_CASE("prober: read-your-writes: a standby past the required LSN has the row") {
  Loop l;
  proxy::Prober p(&l.loop, cluster_config(), nullptr);
  p.start();
  REQUIRE(l.run_until(p, discovered, 10));
  Pg primary(base_port());
  Pg standby1(base_port() + 1);
  Pg standby2(base_port() + 2);
  primary.value("DROP TABLE IF EXISTS prober_ryw");
  primary.value("CREATE TABLE prober_ryw (k int)");
  for (int k = 1; k <= 20; ++k) {
    primary.value("INSERT INTO prober_ryw VALUES (" + std::to_string(k) + ")");
    const double commit_time = proxy::monotonic_seconds();
    int standby = -1;
    l.run_until(p, [&](const BackendsView& v) {
      const auto lsn = routing::required_lsn(v, commit_time);
      if (!lsn) return false;
      for (int i : {1, 2}) {
        if (routing::standby_caught_up(v, i, *lsn)) standby = i;
      }
      return standby > 0;
    }, 30);  // returns as soon as one has; the margin is for a loaded machine (once seen to miss 10 s)
    REQUIRE(standby > 0);
    Pg& s = standby == 1 ? standby1 : standby2;
    // What the decision was based on, shown on failure.
    std::string why = "standby" + std::to_string(standby) + ", samples (time after commit: lsn):";
    for (const auto& smp : p.view()->primary_lsn_history) {
      why += " " + std::to_string(smp.time - commit_time) + ": " + std::to_string(smp.lsn);
    }
    INFO(why);
    CHECK(s.value("SELECT count(*) FROM prober_ryw WHERE k = " + std::to_string(k)) == "1");
  }
  primary.value("DROP TABLE prober_ryw");
  p.stop();
}
