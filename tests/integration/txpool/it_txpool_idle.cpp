// Scale in transaction mode: 10 000 client connections held open (trust auth, 2 workers, pool 10) while 50 of
// them run queries; none of the idle ones is dropped, every query is answered correctly, and pgmux's memory
// per idle client is printed (target <= 4 KiB, issue 4 item 5). env TXPOOL_IDLE_CLIENTS changes the count
// (bench/idle_clients.sh uses it). Also checks that pgmux can hold that many sockets when started with a low
// soft RLIMIT_NOFILE (it should raise its own limit).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "tests/integration/txpool/idle_clients.hpp"
#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;

namespace {

const char* const kDb = "txp_idle";
constexpr int kActive = 50;
double g_bytes_per_idle_client = -1;  // measured by the first test case, judged by the second

int client_count() {
  const char* v = std::getenv("TXPOOL_IDLE_CLIENTS");
  return v && *v ? std::atoi(v) : 10000;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("10000 connections held open while 50 run queries") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: PostgreSQL's max_connections is far below this; nothing to check");
    return;
  }
  const int total = client_count();
  const int idle_wanted = total - kActive;
  const long nofile = raise_nofile(total + 1000);  // pgmux inherits it
  REQUIRE_MESSAGE(nofile >= total + 200, "RLIMIT_NOFILE hard limit too low for " << total << " sockets: " << nofile);
  fresh_database(kDb);

  const int listen = pick_listen_port();
  nlohmann::json config = txpool_config(listen, kDb, 10);
  config["max_client_conn"] = total + 100;
  config["logging"]["level"] = "warn";  // 10 000 login lines would dominate the run
  ProxyUnderTest proxy(config.dump(), listen);
  REQUIRE(proxy.process());
  const pid_t pid = proxy.process()->pid();
  const std::string ci = app_conninfo(proxy.port(), kDb);
  wait_serving(ci);
  MESSAGE("pgmux open-files limit: " << process_nofile_limit(pid));

  // The active clients log in first and warm the pool, so the RSS baseline includes the servers.
  std::vector<PgConn> active;
  for (int i = 0; i < kActive; ++i) {
    active.push_back(connect(ci));
    exec(active.back().get(), "SELECT 1");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long rss_before = rss_kb(pid);

  IdleClients idle;
  std::string error;
  const auto t0 = std::chrono::steady_clock::now();
  const int opened = idle.open(proxy.port(), "app", kDb, idle_wanted, 40.0, &error);
  const double login_s = seconds_since(t0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let pgmux settle (freed login buffers)
  const long rss_after = rss_kb(pid);
  const double per_client = opened > 0 ? (rss_after - rss_before) * 1024.0 / opened : 0;
  MESSAGE(opened << " idle clients logged in in " << login_s << " s; pgmux RSS " << rss_before << " kB -> "
                 << rss_after << " kB");
  MESSAGE("bytes per idle client: " << static_cast<long>(per_client) << " (target <= 4096)");
  std::printf("bytes per idle client: %ld\n", static_cast<long>(per_client));
  CHECK_MESSAGE(opened == idle_wanted, "only " << opened << " of " << idle_wanted << " logged in: " << error);

  // The 50 active clients, one thread each, query while the others sit idle.
  const auto t1 = std::chrono::steady_clock::now();
  const std::string failure = run_threads(kActive, [&](int t) {
    PGconn* c = active[static_cast<size_t>(t)].get();
    for (int n = 0; n < 100; ++n) {
      const std::string want = std::to_string(t * 1000 + n);
      if (n % 10 == 0) {
        exec(c, "BEGIN");
        if (scalar(c, "SELECT " + want) != want) throw std::runtime_error("wrong answer");
        exec(c, "COMMIT");
      } else if (scalar(c, "SELECT " + want + " FROM pg_class LIMIT 1") != want) {
        throw std::runtime_error("wrong answer");
      }
    }
  });
  MESSAGE(kActive << " x 100 queries in " << seconds_since(t1) << " s with " << idle.size() << " idle clients");
  CHECK_MESSAGE(failure.empty(), failure);
  CHECK(idle.count_quiet() == idle.size());
  CHECK(kill(pid, 0) == 0);

  // A late client still gets in and works.
  PgConn late = connect(ci);
  CHECK(scalar(late.get(), "SELECT 42") == "42");
  if (opened != idle_wanted || !failure.empty()) MESSAGE("pgmux log:\n" << proxy.process()->log());
  if (opened == idle_wanted) g_bytes_per_idle_client = per_client;
  idle.close_all();
  drop_database_quietly(kDb);
}

// Issue 4 item 5: the target is 4 KiB (README: about 1.3 KiB).
TEST_CASE("an idle client costs pgmux at most 4 KiB") {
  if (direct_mode()) return;
  if (sanitized_pgmux()) {
    MESSAGE("sanitizer build: " << g_bytes_per_idle_client << " bytes per idle client, not checked");
    return;
  }
  REQUIRE_MESSAGE(g_bytes_per_idle_client >= 0, "not measured (the 10000-client case failed or did not run)");
  CHECK(g_bytes_per_idle_client <= 4096);
}

// With the common default soft limit of 1024, pgmux could not accept max_client_conn (10000) clients.
TEST_CASE("pgmux raises its open-files soft limit to the hard limit") {
  if (direct_mode()) return;
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max <= 1024) {
    MESSAGE("hard limit is " << saved.rlim_max << "; nothing to raise to");
    return;
  }
  rlimit low = saved;
  low.rlim_cur = 1024;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  const int listen = pick_listen_port();
  std::unique_ptr<ProxyUnderTest> proxy;
  try {
    proxy = std::make_unique<ProxyUnderTest>(txpool_config(listen, kDb, 2).dump(), listen);
  } catch (...) {
    setrlimit(RLIMIT_NOFILE, &saved);
    throw;
  }
  setrlimit(RLIMIT_NOFILE, &saved);
  const long limit = process_nofile_limit(proxy->process()->pid());
  MESSAGE("pgmux started with soft limit 1024 now has " << limit << " (hard " << saved.rlim_max << ")");
  CHECK((limit >= 10100 || limit == static_cast<long>(saved.rlim_max)));
}
