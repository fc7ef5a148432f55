// The metrics listener end to end (issue 5 item 2): /metrics passes promtool and moves as expected under
// pgbench over the real primary + 2 standbys; /healthz, /readyz and /status answer as documented; bad requests
// get 4xx and the listener keeps serving; a metrics_listen port in use stops pgmux with a clear error.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <memory>
#include <string>

#include "tests/integration/metrics/http_get.hpp"
#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::metrics;
using nlohmann::json;

namespace {

const char* const kDb = "metrics_bench";
const char* const kBin = "/usr/lib/postgresql/15/bin";

// A pgmux with the metrics listener on a free port next to its client port.
struct MetricsProxy {
  int port = 0;
  int http_port = 0;
  std::unique_ptr<PgmuxProcess> process;

  explicit MetricsProxy(json config, int listen_port) : port(listen_port) {
    http_port = free_port_from(listen_port + 1);
    config["metrics_listen"] = "127.0.0.1:" + std::to_string(http_port);
    process = std::make_unique<PgmuxProcess>(config.dump(), listen_port);
  }
  std::string scrape() const {
    HttpReply reply = http_get(http_port, "/metrics");
    if (reply.status != 200) throw std::runtime_error("GET /metrics: status " + std::to_string(reply.status));
    return reply.body;
  }
  // Polls /metrics until pred(scrape) holds, up to `seconds`.
  bool wait_metrics(const std::function<bool(const std::string&)>& pred, double seconds) const {
    return routing::wait_until(
        [&] {
          try {
            return pred(scrape());
          } catch (const std::exception&) {
            return false;
          }
        },
        seconds, 0.1);
  }
};

json cluster_config(int listen_port) { return routing::routing_config(listen_port, cluster_ports()); }

bool cluster_known(const std::string& m) {
  return sample(m, "pgmux_backend_role{backend=\"primary\",role=\"primary\"}") == 1 &&
         sample(m, "pgmux_backend_readable{backend=\"standby1\"}") == 1 &&
         sample(m, "pgmux_backend_readable{backend=\"standby2\"}") == 1;
}

int pgbench(int port, const std::string& args, std::string* out) {
  return run_shell("PGPASSWORD=app PGCONNECT_TIMEOUT=5 timeout 120 " + std::string(kBin) +
                       "/pgbench -h 127.0.0.1 -p " + std::to_string(port) + " -U app " + args,
                   out);
}

// Growth of a series between two scrapes; a series missing before (an error class not seen yet) counts as 0.
struct Delta {
  const std::string& before;
  const std::string& after;
  double operator()(const std::string& series) const {
    const double was = before.find("\n" + series + " ") == std::string::npos ? 0 : sample(before, series);
    return sample(after, series) - was;
  }
  double sum(const std::string& prefix) const { return sum_samples(after, prefix) - sum_samples(before, prefix); }
};

// Counters of routing and durations over pgbench -S -t 200 and pgbench -t 50 (2 clients each).
void check_routing_and_duration_counters(const Delta& delta) {
  // 400 autocommit reads were routed, to the standbys unless they fell behind meanwhile (then to the primary
  // with the reason); 100 transactions were routed to the primary once each, by their first statement, an UPDATE
  // (BEGIN waits for it; the later statements follow the transaction).
  const double standby_reads = delta("pgmux_queries_routed_total{target=\"standby\",reason=\"read\"}");
  const double fallback_reads = delta("pgmux_queries_routed_total{target=\"primary\",reason=\"lag-excluded\"}") +
                                delta("pgmux_queries_routed_total{target=\"primary\",reason=\"fallback-to-primary\"}");
  CHECK(standby_reads + fallback_reads >= 400);
  CHECK(standby_reads >= 1);
  WARN(standby_reads >= 400);
  CHECK(delta("pgmux_queries_routed_total{target=\"primary\",reason=\"write\"}") >= 100);
  // 6 statements per read-write transaction, 1 per read; each is a transaction of its own or part of one.
  CHECK(delta.sum("pgmux_query_duration_seconds_count{") >= 400 + 600);
  CHECK(delta("pgmux_query_duration_seconds_count{role=\"primary\"}") >= 600);
  CHECK(delta.sum("pgmux_query_duration_seconds_sum{") > 0);
  CHECK(delta.sum("pgmux_query_duration_seconds_bucket{role=\"standby\",le=\"+Inf\"}") == doctest::Approx(
            delta("pgmux_query_duration_seconds_count{role=\"standby\"}")));
  CHECK(delta.sum("pgmux_transaction_duration_seconds_count{") >= 400 + 100);
  CHECK(delta("pgmux_transaction_duration_seconds_count{role=\"primary\"}") >= 100);
  CHECK(delta("pgmux_transaction_duration_seconds_count{role=\"standby\"}") >= standby_reads);
}

// Gauges after the run: the held client and its server, all three backends up in their roles.
void check_cluster_gauges(const std::string& after) {
  CHECK(sample(after, "pgmux_client_connections{state=\"idle\"}") >= 1);
  CHECK(sum_samples(after, "pgmux_server_connections{backend=\"primary\",") >= 1);
  for (const char* name : {"primary", "standby1", "standby2"}) {
    CAPTURE(name);
    CHECK(sample(after, std::string("pgmux_backend_up{backend=\"") + name + "\"}") == 1);
    CHECK(sample(after, std::string("pgmux_backend_weight{backend=\"") + name + "\"}") == 1);
  }
  CHECK(sample(after, "pgmux_backend_role{backend=\"primary\",role=\"primary\"}") == 1);
  CHECK(sample(after, "pgmux_backend_role{backend=\"standby1\",role=\"standby\"}") == 1);
  CHECK(sample(after, "pgmux_backend_role{backend=\"standby2\",role=\"standby\"}") == 1);
  CHECK(sum_samples(after, "pgmux_backend_role{backend=\"primary\",") == 1);
  CHECK(sample(after, "pgmux_backend_lag_bytes{backend=\"primary\"}") == 0);
  CHECK(sample(after, "pgmux_probe_duration_seconds_count{backend=\"standby2\"}") > 0);
  CHECK(sample(after, "pgmux_up") == 1);
}

}  // namespace

TEST_CASE("a scrape passes promtool check metrics") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  MetricsProxy proxy(cluster_config(listen), listen);
  txpool::wait_serving(txpool::app_conninfo(proxy.port, "app"));
  CHECK(proxy.wait_metrics(cluster_known, 15));
  HttpReply reply = http_get(proxy.http_port, "/metrics");
  REQUIRE(reply.status == 200);
  CHECK(reply.head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
  CHECK(reply.head.find("Connection: close\r\n") != std::string::npos);
  const std::string path = "/tmp/pgmux-test-scrape-" + std::to_string(getpid()) + ".txt";
  {
    std::ofstream file(path);
    file << reply.body;
  }
  std::string out;
  const int rc = run_shell("timeout 30 promtool check metrics < " + path, &out);
  unlink(path.c_str());
  INFO("promtool says:\n" << out);
  CHECK(rc == 0);
  CHECK(out.empty());  // no lint complaint either
}

TEST_CASE("metrics move as expected under pgbench over the primary and two standbys") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  txpool::fresh_database(kDb);
  std::string init;
  REQUIRE_MESSAGE(pgbench(ports.primary, std::string("-i -s 1 -q ") + kDb, &init) == 0, init);
  REQUIRE(routing::wait_replayed(ports, 30));

  const int listen = pick_listen_port();
  MetricsProxy proxy(cluster_config(listen), listen);
  txpool::wait_serving(txpool::app_conninfo(proxy.port, kDb));
  REQUIRE(proxy.wait_metrics(cluster_known, 15));
  // Until the database's first function-catalog load is done, reads go to the primary as writes: wait for it
  // (slow under the sanitizers), so the 400 reads below meet a ready router.
  REQUIRE(routing::wait_ports_serving(txpool::app_conninfo(proxy.port, kDb), {ports.standby1, ports.standby2}, 30));

  PgConn held = connect(txpool::app_conninfo(proxy.port, kDb));  // an idle client for the gauges
  exec(held.get(), "SELECT 1");
  const std::string before = proxy.scrape();

  std::string select_only, tpcb;
  const int select_rc = pgbench(proxy.port, std::string("-n -S -c 2 -j 1 -t 200 ") + kDb, &select_only);
  INFO("pgbench -S:\n" << select_only);
  REQUIRE(select_rc == 0);
  const int tpcb_rc = pgbench(proxy.port, std::string("-n -c 2 -j 1 -t 50 ") + kDb, &tpcb);
  INFO("pgbench:\n" << tpcb);
  REQUIRE(tpcb_rc == 0);
  CHECK(exec_sqlstate(held.get(), "SELECT 1/0") == "22012");
  PgConn refused = try_connect(conninfo(proxy.port, "postgres", "wrongpw", kDb));
  CHECK(PQstatus(refused.get()) == CONNECTION_BAD);

  const std::string after = proxy.scrape();
  INFO("scrape after:\n" << after);
  const Delta delta{before, after};
  check_routing_and_duration_counters(delta);
  CHECK(delta("pgmux_pool_wait_seconds_count") >= 4);
  CHECK(delta("pgmux_client_logins_total") >= 4);
  CHECK(delta("pgmux_client_login_failures_total") >= 1);
  CHECK(delta("pgmux_errors_total{class=\"22\"}") >= 1);
  CHECK(sample(after, "pgmux_errors_total{class=\"28\"}") >= 1);
  CHECK(delta("pgmux_client_bytes_received_total") > 400 * 20);
  CHECK(delta("pgmux_client_bytes_sent_total") > 400 * 20);
  CHECK(delta("pgmux_server_bytes_received_total") > 400 * 20);
  CHECK(delta("pgmux_server_bytes_sent_total") > 400 * 20);
  CHECK(sample(after, "pgmux_server_connects_total") >= 3);  // at least one per backend
  check_cluster_gauges(after);
  held.reset();
  refused.reset();
  txpool::drop_database_quietly(kDb);
}

// Every pgmux_* name written in `file` (a dashboard's or a rule file's expressions).
std::set<std::string> metric_names_in(const std::string& file) {
  std::ifstream in(file);
  REQUIRE_MESSAGE(in.good(), "cannot read " << file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::set<std::string> names;
  const std::regex name("pgmux_[a-z_]+[a-z]");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

TEST_CASE("every metric the Grafana dashboard and the alert rules use is in a real scrape") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  MetricsProxy proxy(cluster_config(listen), listen);
  txpool::wait_serving(txpool::app_conninfo(proxy.port, "app"));
  REQUIRE(proxy.wait_metrics(cluster_known, 15));
  {  // what makes the event-driven series appear: an error, a refused login, a disconnect
    PgConn client = connect(txpool::app_conninfo(proxy.port, "app"));
    CHECK(exec_sqlstate(client.get(), "SELECT 1/0") == "22012");
    PgConn refused = try_connect(conninfo(proxy.port, "postgres", "wrongpw", "app"));
    CHECK(PQstatus(refused.get()) == CONNECTION_BAD);
  }
  std::string text;
  REQUIRE(proxy.wait_metrics([&](const std::string& m) {
    text = m;
    return m.find("\npgmux_client_disconnects_total{") != std::string::npos;
  }, 10));
  const std::string conf = std::string(PGMUX_SOURCE_DIR) + "/conf/";
  for (const char* file : {"grafana-dashboard.json", "prometheus-alerts.yml"}) {
    const std::set<std::string> names = metric_names_in(conf + file);
    CHECK(names.size() >= 5);
    for (const std::string& name : names) {
      INFO(file << " uses " << name);
      const bool sampled = text.find("\n" + name + "{") != std::string::npos ||
                           text.find("\n" + name + " ") != std::string::npos;
      CHECK(sampled);
    }
  }
  CHECK(metric_names_in(conf + "grafana-dashboard.json").count("pgmux_queries_routed_total") == 1);
}

TEST_CASE("/healthz, /readyz and /status; 404, 405 and 400 answers leave the listener serving") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  MetricsProxy proxy(cluster_config(listen), listen);
  txpool::wait_serving(txpool::app_conninfo(proxy.port, "app"));  // leaves a pool behind for /status
  REQUIRE(proxy.wait_metrics(cluster_known, 15));

  HttpReply healthz = http_get(proxy.http_port, "/healthz");
  CHECK(healthz.status == 200);
  CHECK(healthz.body == "ok\n");
  HttpReply readyz = http_get(proxy.http_port, "/readyz");
  CHECK(readyz.status == 200);
  CHECK(readyz.body == "ready: primary primary\n");

  HttpReply status = http_get(proxy.http_port, "/status");
  REQUIRE(status.status == 200);
  CHECK(status.head.find("Content-Type: application/json") != std::string::npos);
  const json doc = json::parse(status.body);
  CHECK(doc["primary"] == "primary");
  CHECK(doc["alarm"] == "");
  CHECK(doc["version"].is_string());
  CHECK(doc["uptime_seconds"].get<double>() >= 0);
  REQUIRE(doc["backends"].size() == 3);
  CHECK(doc["backends"][0]["name"] == "primary");
  CHECK(doc["backends"][0]["role"] == "primary");
  CHECK(doc["backends"][0]["port"] == cluster_ports().primary);
  CHECK(doc["backends"][1]["role"] == "standby");
  CHECK(doc["backends"][2]["readable"] == true);
  for (const char* key : {"host", "reachable", "excluded_reason", "weight", "lag_bytes", "lag_seconds", "timeline",
                          "last_error"}) {
    CAPTURE(key);
    CHECK(doc["backends"][1].contains(key));
  }
  REQUIRE(doc["pools"].is_array());
  REQUIRE(!doc["pools"].empty());
  bool app_pool = false;
  for (const json& pool : doc["pools"]) {
    app_pool |= pool["database"] == "app" && pool["user"] == "app";
    for (const char* key :
         {"backend", "mode", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login", "maxwait"}) {
      CAPTURE(key);
      CHECK(pool.contains(key));
    }
  }
  CHECK(app_pool);

  CHECK(http_get(proxy.http_port, "/nope").status == 404);
  CHECK(http_get(proxy.http_port, "/metrics/extra").status == 404);
  CHECK(http_get(proxy.http_port, "/healthz?verbose=1").status == 200);
  HttpReply post = http_raw(proxy.http_port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(post.status == 405);
  CHECK(post.head.find("Allow: GET, HEAD\r\n") != std::string::npos);
  // HEAD (load balancers' health checks): the GET's status and headers, no body.
  for (const char* path : {"/healthz", "/readyz", "/metrics", "/status"}) {
    CAPTURE(path);
    HttpReply head = http_raw(proxy.http_port, "HEAD " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(head.status == 200);
    CHECK(head.head.find("Content-Length: ") != std::string::npos);
    CHECK(head.body.empty());
  }
  HttpReply head_missing = http_raw(proxy.http_port, "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(head_missing.status == 404);
  CHECK(head_missing.body.empty());
  CHECK(http_raw(proxy.http_port, "hello, is this HTTP?\r\n\r\n").status == 400);
  CHECK(http_raw(proxy.http_port, std::string(3000, '\x01') + "\r\n").status == 400);
  CHECK(http_raw(proxy.http_port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n").status == 431);
  CHECK(http_get(proxy.http_port, "/healthz").status == 200);
  // A client that never finishes its request is answered 408 after 5 s.
  HttpReply slow = http_raw(proxy.http_port, "GET /metrics HTTP/1.1\r\n", 8);
  CHECK(slow.status == 408);
  // Many scrapes in a row: nothing piles up.
  for (int i = 0; i < 30; ++i) REQUIRE(http_get(proxy.http_port, i % 2 ? "/metrics" : "/status").status == 200);
}

TEST_CASE("/readyz is 503 while the only backend is down; /healthz stays 200") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  json config = default_config(listen);
  const int dead = free_port_from(listen + 20);
  config["backends"] = json::array({{{"name", "dead"}, {"host", "127.0.0.1"}, {"port", dead}}});
  config["health_check"] = {{"period", 0.2}, {"timeout", 1}, {"max_retries", 1}, {"user", "postgres"}};
  MetricsProxy proxy(config, listen);
  CHECK(proxy.wait_metrics(
      [](const std::string& m) {
        return sample(m, "pgmux_backend_role{backend=\"dead\",role=\"down\"}") == 1 &&
               sample(m, "pgmux_backend_up{backend=\"dead\"}") == 0;
      },
      10));
  HttpReply readyz = http_get(proxy.http_port, "/readyz");
  CHECK(readyz.status == 503);
  CHECK(readyz.body.rfind("not ready: ", 0) == 0);
  CHECK(http_get(proxy.http_port, "/healthz").status == 200);
  const json doc = json::parse(http_get(proxy.http_port, "/status").body);
  CHECK(doc["primary"].is_null());
  CHECK(doc["backends"][0]["reachable"] == false);
  CHECK(doc["backends"][0]["last_error"] != "");
}

TEST_CASE("/healthz turns 503 once a graceful shutdown begins") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  MetricsProxy proxy(cluster_config(listen), listen);
  txpool::wait_serving(txpool::app_conninfo(proxy.port, "app"));
  PgConn session = connect(txpool::app_conninfo(proxy.port, "app"));  // keeps the shutdown waiting
  exec(session.get(), "SELECT 1");
  CHECK(http_get(proxy.http_port, "/healthz").status == 200);
  proxy.process->send_signal(SIGTERM);
  CHECK(routing::wait_until([&] { return http_get(proxy.http_port, "/healthz").status == 503; }, 5));
  CHECK(http_get(proxy.http_port, "/readyz").status == 503);
  session.reset();
  CHECK(proxy.process->wait_exit(15));
}

TEST_CASE("a metrics_listen port in use stops pgmux with an error naming metrics_listen") {
  if (direct_mode()) return;
  const int listen = pick_listen_port();
  const int busy = free_port_from(listen + 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr = loopback_address(busy);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  json config = default_config(listen);
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(busy);
  std::string log;
  int status = 0;
  try {
    // The client listener is bound before the metrics one, so the harness may see it accept first.
    PgmuxProcess process(config.dump(), listen);
    CHECK(process.wait_exit(10, &status));
    log = process.log();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
  } catch (const std::runtime_error& e) {
    log = e.what();
  }
  close(fd);
  INFO(log);
  CHECK(log.find("metrics_listen 127.0.0.1:" + std::to_string(busy)) != std::string::npos);
  CHECK(log.find("address already in use") != std::string::npos);
}
