// PgBouncer's tooling unchanged (issue 14 item 2): Debian's prometheus-pgbouncer-exporter, configured as for a
// PgBouncer (it opens the console as database "pgbouncer", user and port from its options, the password from
// libpq's PGPASSWORD), pointed at pgmux's console, exports its usual metrics with the values pgmux has.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/integration/metrics/http_get.hpp"
#include "tests/integration/routing/routing_support.hpp"

namespace pgmux::test {
namespace {

using nlohmann::json;
using routing::wait_until;

const char* const kExporter = "/usr/bin/prometheus-pgbouncer-exporter";
const char* const kDb = "exporter_it";

// The exporter as a child process, stopped by pid when the test ends.
class Exporter {
 public:
  Exporter(int console_port, int http_port, const std::string& user, const std::string& password) {
    const std::string log = "/tmp/pgmux-exporter-" + std::to_string(getpid()) + ".log";
    log_path_ = log;
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      FILE* out = std::freopen(log.c_str(), "w", stderr);
      if (out) dup2(fileno(stderr), STDOUT_FILENO);
      setenv("PGPASSWORD", password.c_str(), 1);
      setenv("PGCONNECT_TIMEOUT", "5", 1);
      const std::string port = std::to_string(console_port), http = std::to_string(http_port);
      execl(kExporter, kExporter, "--pgbouncer-host", "127.0.0.1", "--pgbouncer-port", port.c_str(),
            "--pgbouncer-user", user.c_str(), "--host", "127.0.0.1", "--port", http.c_str(), nullptr);
      _exit(127);
    }
  }
  ~Exporter() {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(100000);
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    std::remove(log_path_.c_str());
  }
  std::string log() const {
    std::string text;
    if (FILE* f = std::fopen(log_path_.c_str(), "r")) {
      char buffer[4096];
      size_t n = 0;
      while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
      std::fclose(f);
    }
    return text.size() > 6000 ? text.substr(text.size() - 6000) : text;
  }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

TEST_CASE("Debian's prometheus-pgbouncer-exporter reads pgmux's console as it reads PgBouncer's") {
  REQUIRE_MESSAGE(access(kExporter, X_OK) == 0, kExporter << " is missing: scripts/install-deps.sh installs it");
  const ClusterPorts ports = cluster_ports();
  const int listen_port = pick_listen_port();
  routing::recreate_database(ports, kDb);
  json config = routing::routing_config(listen_port, ports);
  config["users"].push_back({{"name", "watcher"}, {"password", "watcher-secret"}});
  config["stats_users"] = json::array({"watcher"});
  config["databases"].push_back({{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 7},
                                 {"reserve_pool_size", 2}});
  ProxyUnderTest proxy(config.dump(), listen_port);

  // Traffic to count: 25 queries, and a client that stays connected.
  PgConn client = connect(conninfo(listen_port, "app", "app", kDb));
  for (int i = 0; i < 25; ++i) exec(client.get(), "SELECT 1");

  const int http_port = free_port_from(listen_port + 50);
  Exporter exporter(listen_port, http_port, "watcher", "watcher-secret");
  std::string text;
  const bool scraped = wait_until(
      [&] {
        const metrics::HttpReply reply = metrics::http_get(http_port, "/metrics");
        if (reply.status == 200 && reply.body.find("pgbouncer_") != std::string::npos) text = reply.body;
        return !text.empty();
      },
      20, 0.2);
  INFO("exporter log:\n" << exporter.log());
  REQUIRE(scraped);
  INFO("metrics:\n" << text);

  const std::string db = "{database=\"" + std::string(kDb) + "\"}";
  const std::string pool = "{database=\"" + std::string(kDb) + "\",user=\"app\"}";
  // SHOW STATS: the queries above (the exporter reads PgBouncer's total_requests), bytes both ways.
  CHECK(metrics::sample(text, "pgbouncer_requests_total" + db) >= 25);
  CHECK(metrics::sample(text, "pgbouncer_received_bytes_total" + db) > 0);
  CHECK(metrics::sample(text, "pgbouncer_sent_bytes_total" + db) > 0);
  CHECK(metrics::sample(text, "pgbouncer_query_microseconds_total" + db) > 0);
  // SHOW POOLS: one row per (database, user); the connected client counts as active.
  CHECK(metrics::sample(text, "pgbouncer_active_clients" + pool) == 1);
  CHECK(metrics::sample(text, "pgbouncer_waiting_clients" + pool) == 0);
  // SHOW DATABASES: the configured sizes.
  CHECK(metrics::sample(text, "pgbouncer_pool_size" + db) == 7);
  CHECK(metrics::sample(text, "pgbouncer_reserve_pool" + db) == 2);
  // SHOW LISTS: the app client and the exporter's own console session; no DNS cache, no free-list.
  CHECK(metrics::sample(text, "pgbouncer_used_clients") >= 2);
  CHECK(metrics::sample(text, "pgbouncer_databases") >= 2);
  CHECK(metrics::sample(text, "pgbouncer_pools") >= 1);
  CHECK(metrics::sample(text, "pgbouncer_used_servers") >= 1);
  CHECK(metrics::sample(text, "pgbouncer_free_clients") == 0);
  CHECK(metrics::sample(text, "pgbouncer_dns_pending") == 0);

  // The exporter keeps one console session: later scrapes see later traffic.
  for (int i = 0; i < 10; ++i) exec(client.get(), "SELECT 2");
  const double before = metrics::sample(text, "pgbouncer_requests_total" + db);
  CHECK(wait_until(
      [&] {
        const metrics::HttpReply reply = metrics::http_get(http_port, "/metrics");
        return reply.status == 200 && metrics::sample(reply.body, "pgbouncer_requests_total" + db) >= before + 10;
      },
      10, 0.2));
  client.reset();
  routing::drop_database(ports, kDb);
}

}  // namespace
}  // namespace pgmux::test
