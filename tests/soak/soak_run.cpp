#include "tests/soak/soak_run.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/soak/soak_churn.hpp"
#include "tests/soak/soak_driver.hpp"
#include "tests/soak/soak_log.hpp"
#include "tests/soak/soak_observe.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::soak {
namespace {

constexpr double kQuietTimeoutS = 30;      // server_idle_timeout is 1 s: idle servers close within ~2 s
constexpr size_t kTopUpClients = 1000;     // clients per extra round while the server target is not met

struct Checks {
  std::vector<std::string> failures;
  void expect(bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
  }
};

std::vector<std::string> soak_databases(const SoakOptions& o) {
  if (o.mode == "session") return {"app"};
  if (o.mode == "transaction") return {"app_tx"};
  return {"app", "app_tx"};
}

// Small server_idle_timeout so the quiet state (no server open) comes soon after the clients; a short
// server_lifetime adds churn of its own; no "*" entry, so an unknown database leaves no pool behind.
std::string soak_config(int port, int metrics_port) {
  nlohmann::json config = test::default_config(port);
  config["databases"] = nlohmann::json::array(
      {{{"name", "app"}, {"pool_size", 40}, {"pool_mode", "session"}},
       {{"name", "app_tx"}, {"server_database", "app"}, {"pool_size", 16}, {"pool_mode", "transaction"}}});
  config["admin_users"] = nlohmann::json::array({"postgres"});
  config["timeouts"]["server_idle_timeout"] = 1;
  config["timeouts"]["server_lifetime"] = 5;
  config["timeouts"]["query_wait_timeout"] = 30;
  config["timeouts"]["client_login_timeout"] = 20;
  config["timeouts"]["shutdown_timeout"] = 5;
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(metrics_port);
  return config.dump(2);
}

struct Round {
  DriverResult clients;
  size_t extra_clients = 0;  // top-up clients run until the server target was met
  double servers_opened = 0;
  size_t servers_killed = 0;
  size_t clients_killed = 0;
  double seconds = 0;
};

// Runs `clients` clients while the churn thread keeps pgmux's server connects on pace for `servers`; then more
// clients (bounded by the time limit) while the target is still not met.
Round run_round(SoakDriver& driver, ChurnOptions churn_options, size_t clients, size_t servers, double time_limit_s) {
  const auto begin = std::chrono::steady_clock::now();
  const size_t finished_before = driver.finished().load();
  churn_options.server_target = servers;
  churn_options.clients = clients;
  churn_options.progress = [&driver, finished_before, clients] {
    return static_cast<double>(driver.finished().load() - finished_before) / static_cast<double>(clients);
  };
  ServerChurn churn(churn_options);
  churn.start();
  Round round;
  round.clients = driver.run(clients);
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count(); };
  // Bounded: no more top-up clients than the round had, and none once a client failed.
  while (churn.opened() < static_cast<double>(servers) && elapsed() < time_limit_s && round.clients.failed == 0 &&
         round.extra_clients < clients) {
    DriverResult more = driver.run(kTopUpClients);
    round.extra_clients += more.finished;
    round.clients.failed += more.failed;
    for (const auto& [key, n] : more.outcomes) round.clients.outcomes[key] += n;
    for (auto& f : more.failure_samples) round.clients.failure_samples.push_back(std::move(f));
  }
  churn.stop();
  round.servers_opened = churn.opened();
  round.servers_killed = churn.killed();
  round.clients_killed = churn.clients_killed();
  round.seconds = elapsed();
  return round;
}

// A plain query through pgmux in every database the soak used.
bool serves_queries(int port, const std::vector<std::string>& databases, std::string* error) {
  for (const auto& db : databases) {
    test::PgConn conn = test::try_connect(test::conninfo(port, "app", "app", db));
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      *error = db + ": " + PQerrorMessage(conn.get());
      return false;
    }
    if (test::exec_sqlstate(conn.get(), "SELECT 1") != "") {
      *error = db + ": SELECT 1 failed: " + PQerrorMessage(conn.get());
      return false;
    }
  }
  return true;
}

void print_round(const char* name, const Round& r) {
  std::printf("%s: %zu clients (+%zu top-up) in %.1f s (%.0f clients/s), %zu unexpected; "
              "%.0f server connections opened, %zu killed; %zu clients killed from the console\n",
              name, r.clients.finished, r.extra_clients, r.seconds,
              static_cast<double>(r.clients.finished + r.extra_clients) / std::max(r.seconds, 0.001),
              r.clients.failed, r.servers_opened, r.servers_killed, r.clients_killed);
  std::fflush(stdout);  // progress shows while the next round runs
}

void check_round(Checks& checks, const char* name, const Round& r, size_t clients, size_t servers) {
  checks.expect(r.clients.failed == 0, std::string(name) + ": " + std::to_string(r.clients.failed) +
                                           " clients ended unexpectedly");
  checks.expect(r.clients.finished >= clients && !r.clients.time_limit_hit,
                std::string(name) + ": only " + std::to_string(r.clients.finished) + " of " +
                    std::to_string(clients) + " clients ran");
  checks.expect(r.servers_opened >= static_cast<double>(servers),
                std::string(name) + ": pgmux opened " + std::to_string(static_cast<long>(r.servers_opened)) +
                    " server connections, want >= " + std::to_string(servers));
  for (const auto& f : r.clients.failure_samples) std::printf("  unexpected: %s\n", f.c_str());
}

void check_quiet(Checks& checks, const QuietState& q, const char* when) {
  checks.expect(q.reached, std::string("pgmux did not get quiet ") + when + " (" + q.last_metrics_note + ")");
}

void check_resources(Checks& checks, const SoakOptions& o, const QuietState& before, const QuietState& after,
                     bool sanitized) {
  checks.expect(after.fds <= before.fds + o.fd_tolerance,
                "open descriptors " + std::to_string(before.fds) + " -> " + std::to_string(after.fds));
  if (sanitized) {
    std::printf("RSS not checked: pgmux is built with a sanitizer, whose allocator quarantines freed memory\n");
    return;
  }
  const double slack_mib = std::max(o.rss_slack_mib, o.rss_slack_ratio * (before.rss_kb / 1024.0));
  checks.expect(after.rss_kb <= before.rss_kb + static_cast<long>(slack_mib * 1024),
                "RSS " + std::to_string(before.rss_kb) + " kB -> " + std::to_string(after.rss_kb) +
                    " kB (allowed +" + std::to_string(static_cast<long>(slack_mib * 1024)) + " kB)");
}

// SIGTERM, and pgmux must exit 0 within shutdown_timeout (5 s) and a margin: with no client left it stops at
// once. A sanitizer build reports leaks at exit (LeakSanitizer), into the log and as a non-zero status.
void check_clean_exit(Checks& checks, test::PgmuxProcess& pgmux) {
  pgmux.send_signal(SIGTERM);
  int status = 0;
  const bool exited = pgmux.wait_exit(15, &status);
  checks.expect(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                exited ? "pgmux exited with status " + std::to_string(status) + " on SIGTERM"
                       : std::string("pgmux did not exit within 15 s of SIGTERM"));
}

}  // namespace

int run_soak(const SoakOptions& o) {
  // The churn thread kills server connections as a superuser: never against a cluster picked by default.
  if (!std::getenv("PGMUX_TEST_BASEPORT")) {
    std::fprintf(stderr, "pgmux_soak: set PGMUX_TEST_BASEPORT to the test cluster's primary port\n");
    return 2;
  }
  const int port = test::pick_listen_port();
  const int metrics_port = test::free_port_from(port + 1);
  test::PgmuxProcess pgmux(soak_config(port, metrics_port), port);
  std::printf("soak: pgmux pid %d on %d (metrics %d); %zu clients, %zu server connections, mode %s, %zu at once\n",
              static_cast<int>(pgmux.pid()), port, metrics_port, o.clients, o.servers, o.mode.c_str(),
              o.concurrency);
  std::fflush(stdout);
  DriverOptions driver_options;
  driver_options.port = port;
  driver_options.databases = soak_databases(o);
  driver_options.concurrency = o.concurrency;
  driver_options.time_limit_s = o.time_limit_s;
  SoakDriver driver(driver_options);
  ChurnOptions churn;
  churn.pgmux_port = port;
  churn.metrics_port = metrics_port;
  churn.primary_port = test::cluster_ports().primary;

  Checks checks;
  // Warm-up: pools, caches (SCRAM secrets, statement names) and allocator arenas exist before the baseline.
  const Round warm = run_round(driver, churn, o.warmup, std::max<size_t>(10, o.warmup / 20), o.time_limit_s);
  print_round("warm-up", warm);
  check_round(checks, "warm-up", warm, o.warmup, 0);
  const QuietState before = wait_quiet(pgmux.pid(), metrics_port, kQuietTimeoutS);
  check_quiet(checks, before, "after the warm-up");

  const Round main_round = run_round(driver, churn, o.clients, o.servers, o.time_limit_s);
  const long peak_kb = status_kb(pgmux.pid(), "VmHWM");
  print_round("run", main_round);
  check_round(checks, "run", main_round, o.clients, o.servers);
  std::printf("outcomes (scenario outcome: count):\n%s", format_outcomes(main_round.clients).c_str());
  const QuietState after = wait_quiet(pgmux.pid(), metrics_port, kQuietTimeoutS);
  check_quiet(checks, after, "after the run");

  std::printf("fds: baseline %ld, after %ld\n", before.fds, after.fds);
  std::printf("RSS: baseline %.1f MiB, peak %.1f MiB, after %.1f MiB (quiet after %.1f s)\n", before.rss_kb / 1024.0,
              peak_kb / 1024.0, after.rss_kb / 1024.0, after.waited_s);
  check_resources(checks, o, before, after, sanitized_executable(pgmux.pid()));
  std::string query_error;
  checks.expect(serves_queries(port, driver_options.databases, &query_error), "no query at the end: " + query_error);
  checks.expect(!pgmux.wait_exit(0), "pgmux exited");
  check_clean_exit(checks, pgmux);

  const LogSummary log = summarize_log(pgmux.full_log());
  std::printf("pgmux log:\n%s", format_log_summary(log).c_str());
  checks.expect(log.unexpected_errors == 0, "ERROR lines in pgmux's log");
  checks.expect(log.crash_lines.empty(), "crash signs in pgmux's log");
  for (const auto& f : checks.failures) std::printf("FAILED: %s\n", f.c_str());
  std::printf("%s\n", checks.failures.empty() ? "soak: PASSED" : "soak: FAILED");
  return checks.failures.empty() ? 0 : 1;
}

}  // namespace pgmux::soak
