// The Prometheus exporter, /status and the HTTP request parser with synthetic inputs: exact output lines.
#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "proxy/ops/http_message.hpp"
#include "proxy/ops/metrics_export.hpp"
#include "proxy/ops/status_json.hpp"

using namespace pgmux::proxy;
using pgmux::routing::BackendsView;
using pgmux::routing::BackendStatus;
using pgmux::routing::PinReason;
using pgmux::routing::Role;
using pgmux::routing::Route;
using pgmux::routing::RouteReason;
using pgmux::routing::RouteTarget;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

// Every expected line is in the text, as a whole line.
void expect_lines(const std::string& text, std::initializer_list<const char*> lines) {
  for (const char* line : lines) {
    CAPTURE(line);
    CHECK(has_line(text, line));
  }
}

BackendStatus backend(const std::string& name, Role role, bool reachable, bool readable) {
  BackendStatus b;
  b.spec.name = name;
  b.spec.host = "127.0.0.1";
  b.spec.port = 5432;
  b.spec.weight = 2;
  b.role = role;
  b.reachable = reachable;
  b.readable = readable;
  return b;
}

ClientRow client(const std::string& state) {
  ClientRow row;
  row.state = state;
  return row;
}

ServerRow server(const std::string& backend, const std::string& state) {
  ServerRow row;
  row.backend = backend;
  row.state = state;
  return row;
}

PoolRow pool(int cl_active, int sv_idle, double maxwait) {
  PoolRow p;
  p.database = "app";
  p.user = "app";
  p.backend = "p";
  p.pool_mode = "transaction";
  p.cl_active = cl_active;
  p.sv_idle = sv_idle;
  p.maxwait = maxwait;
  return p;
}

// Two workers, a primary and a lagging standby, a few clients and servers.
struct Fixture {
  WorkerMetrics w1, w2;
  ControlMetrics control;
  PinCounters pins;
  BackendsView view;
  std::vector<WorkerSnapshot> snapshots{2};
  ExportSources sources;

  Fixture() {
    w1.count_route(Route{RouteTarget::Standby, 1, RouteReason::Read});
    w2.count_route(Route{RouteTarget::Standby, 1, RouteReason::Read});
    w2.count_route(Route{RouteTarget::Primary, 0, RouteReason::Write});
    w2.count_route(Route{RouteTarget::Primary, 0, RouteReason::Pinned});
    PoolStats stats;
    w1.request_done(ServedBy::Primary, 200'000, stats);    // 0.0002 s
    w2.request_done(ServedBy::Primary, 3'000'000, stats);  // 0.003 s
    w2.request_done(ServedBy::Primary, 20'000'000'000, stats);  // 20 s: only +Inf
    w1.transaction_done(ServedBy::Standby, 1'000'000, stats);
    w1.pool_wait_done(50'000, stats);
    w1.count_error("42P01");
    w2.count_error("42703");
    w2.count_error("08006", 3);
    w1.count_error("");
    w1.client_bytes_received.add(100);
    w2.client_bytes_received.add(23);
    w2.server_bytes_sent.add(7);
    w1.client_logins.add(4);
    w2.client_login_failures.add();
    w1.count_disconnect(Failure::ClientTerminated);
    w2.count_disconnect(Failure::ClientTerminated);
    w2.count_disconnect(Failure::IdleTransactionTimeout);
    w1.server_connects.add(2);
    pins.add(PinReason::TempTable);
    control.started_at = 1700000000;
    control.reloads_ok = 2;
    control.reloads_failed = 1;
    control.last_reload_time = 1700000100.5;
    control.failovers = 1;
    control.probe_duration["p"].observe_ns(2'000'000);
    view.backends = {backend("p", Role::Primary, true, false), backend("s", Role::Standby, true, false)};
    view.backends[1].lag_bytes = 20'000'000;
    view.backends[1].lag_seconds = 12.5;
    view.backends[1].excluded_reason = "lag";
    view.backends[1].last.timeline = 3;
    view.primary = 0;
    snapshots[0].clients = {client("idle"), client("active"), client("login")};
    snapshots[1].clients = {client("idle"), client("waiting"), client("closing")};
    snapshots[0].servers = {server("p", "idle"), server("p", "active"), server("gone", "idle")};
    snapshots[1].servers = {server("s", "used"), server("p", "idle")};
    snapshots[0].pools = {pool(1, 2, 0.5)};
    snapshots[1].pools = {pool(2, 1, 1.5)};
    sources.workers = {&w1, &w2};
    sources.snapshots = &snapshots;
    sources.view = &view;
    sources.control = &control;
    sources.pins = &pins;
    sources.version = "9.9.9";
    sources.now = 1700000060;
    sources.clients = 6;
  }
};

}  // namespace

TEST_CASE("SQLSTATE classes index and print both ways") {
  CHECK(sqlstate_class_text(sqlstate_class_index("0A000")) == "0A");
  CHECK(sqlstate_class_text(sqlstate_class_index("57P01")) == "57");
  CHECK(sqlstate_class_text(sqlstate_class_index("ZZ999")) == "ZZ");
  CHECK(sqlstate_class_text(sqlstate_class_index("x")) == "unknown");
  CHECK(sqlstate_class_text(sqlstate_class_index("a1000")) == "unknown");
}

TEST_CASE("exporter: counters are summed over workers, gauges come from snapshots and the view") {
  Fixture f;
  const std::string text = render_metrics(f.sources);
  CAPTURE(text);
  expect_lines(text, {
      "pgmux_up 1",
      "pgmux_build_info{version=\"9.9.9\"} 1",
      "pgmux_start_time_seconds 1700000000",
      // Clients by state ("closing" is not a state of the gauge).
      "pgmux_client_connections{state=\"login\"} 1",
      "pgmux_client_connections{state=\"active\"} 1",
      "pgmux_client_connections{state=\"idle\"} 2",
      "pgmux_client_connections{state=\"waiting\"} 1",
      "pgmux_client_logins_total 4",
      "pgmux_client_login_failures_total 1",
      // Disconnects by reason: only reasons seen.
      "pgmux_client_disconnects_total{reason=\"client_terminated\"} 2",
      "pgmux_client_disconnects_total{reason=\"idle_transaction_timeout\"} 1",
      "pgmux_pinned_clients_total{reason=\"temporary table\"} 1",
      "pgmux_pinned_clients_total{reason=\"LISTEN\"} 0",
      "pgmux_client_bytes_received_total 123",
      "pgmux_client_bytes_sent_total 0",
      "pgmux_server_bytes_sent_total 7",
      // Servers by backend and state: every configured backend with every state, plus a removed one still open.
      "pgmux_server_connections{backend=\"p\",state=\"idle\"} 2",
      "pgmux_server_connections{backend=\"p\",state=\"active\"} 1",
      "pgmux_server_connections{backend=\"p\",state=\"login\"} 0",
      "pgmux_server_connections{backend=\"s\",state=\"used\"} 1",
      "pgmux_server_connections{backend=\"s\",state=\"idle\"} 0",
      "pgmux_server_connections{backend=\"gone\",state=\"idle\"} 1",
      "pgmux_server_connects_total 2",
      "pgmux_server_connect_failures_total 0",
  });
}

TEST_CASE("exporter: routed statements, errors and histograms") {
  Fixture f;
  const std::string text = render_metrics(f.sources);
  CAPTURE(text);
  expect_lines(text, {
      "pgmux_queries_routed_total{target=\"standby\",reason=\"read\"} 2",
      "pgmux_queries_routed_total{target=\"primary\",reason=\"write\"} 1",
      "pgmux_queries_routed_total{target=\"primary\",reason=\"pinned\"} 1",
      // The usual routes are there before they happen; impossible ones only once counted.
      "pgmux_queries_routed_total{target=\"primary\",reason=\"lag-excluded\"} 0",
      "pgmux_queries_routed_total{target=\"primary\",reason=\"read-your-writes\"} 0",
  });
  CHECK(text.find("target=\"standby\",reason=\"write\"") == std::string::npos);
  // Errors: only classes seen.
  expect_lines(text, {
      "pgmux_errors_total{class=\"42\"} 2",
      "pgmux_errors_total{class=\"08\"} 3",
      "pgmux_errors_total{class=\"unknown\"} 1",
  });
  CHECK(text.find("pgmux_errors_total{class=\"57\"}") == std::string::npos);
  CHECK(text.find("pgmux_client_disconnects_total{reason=\"auth_failed\"}") == std::string::npos);
  // Histograms: cumulative buckets over both workers, +Inf = count.
  expect_lines(text, {
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"0.0001\"} 0",
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"0.00025\"} 1",
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"0.0025\"} 1",
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"0.005\"} 2",
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"10\"} 2",
      "pgmux_query_duration_seconds_bucket{role=\"primary\",le=\"+Inf\"} 3",
      "pgmux_query_duration_seconds_count{role=\"primary\"} 3",
      "pgmux_query_duration_seconds_sum{role=\"primary\"} 20.0032",
      "pgmux_query_duration_seconds_count{role=\"standby\"} 0",
      "pgmux_transaction_duration_seconds_count{role=\"standby\"} 1",
      "pgmux_transaction_duration_seconds_bucket{role=\"standby\",le=\"0.001\"} 1",
      "pgmux_pool_wait_seconds_count 1",
      "pgmux_pool_wait_seconds_sum 5e-05",
      "pgmux_probe_duration_seconds_count{backend=\"p\"} 1",
      "pgmux_probe_duration_seconds_bucket{backend=\"p\",le=\"0.001\"} 0",
      "pgmux_probe_duration_seconds_bucket{backend=\"p\",le=\"0.0025\"} 1",
  });
}

TEST_CASE("exporter: backends, failovers and reloads") {
  Fixture f;
  const std::string text = render_metrics(f.sources);
  CAPTURE(text);
  expect_lines(text, {
      "pgmux_backend_up{backend=\"p\"} 1",
      "pgmux_backend_role{backend=\"p\",role=\"primary\"} 1",
      "pgmux_backend_role{backend=\"p\",role=\"standby\"} 0",
      "pgmux_backend_role{backend=\"s\",role=\"standby\"} 1",
      "pgmux_backend_role{backend=\"s\",role=\"down\"} 0",
      "pgmux_backend_readable{backend=\"s\"} 0",
      "pgmux_backend_weight{backend=\"s\"} 2",
      "pgmux_backend_lag_bytes{backend=\"s\"} 20000000",
      "pgmux_backend_lag_seconds{backend=\"s\"} 12.5",
      "pgmux_backend_timeline{backend=\"s\"} 3",
      "pgmux_backend_applies_commits{backend=\"s\"} 0",
      "pgmux_backend_synchronous_standby_names{backend=\"p\",value=\"\"} 1",
      "pgmux_failovers_total 1",
      "pgmux_split_brain 0",
      "pgmux_config_reloads_total{result=\"ok\"} 2",
      "pgmux_config_reloads_total{result=\"failed\"} 1",
      "pgmux_config_last_reload_success_timestamp_seconds 1700000100.5",
  });
  f.control.last_reload_time = 0;  // never reloaded: the startup load counts
  CHECK(has_line(render_metrics(f.sources), "pgmux_config_last_reload_success_timestamp_seconds 1700000000"));
}

TEST_CASE("exporter: every declared family is exported with HELP and TYPE, and documented") {
  Fixture f;
  const std::string text = render_metrics(f.sources);
  std::ifstream doc_file(PGMUX_TEST_DATA "/../../docs/OPERATIONS-metrics.md");
  REQUIRE(doc_file);
  std::stringstream doc;
  doc << doc_file.rdbuf();
  std::set<std::string> names;
  for (const MetricFamilyInfo& family : metric_families()) {
    const std::string name = family.name;
    CAPTURE(name);
    CHECK(names.insert(name).second);
    CHECK(name.rfind("pgmux_", 0) == 0);
    CHECK(text.find("# HELP " + name + " ") != std::string::npos);
    CHECK(text.find("# TYPE " + name + " ") != std::string::npos);
    CHECK((family.type != prometheus::MetricType::Counter || name.ends_with("_total")));
    CHECK(std::string(family.help).find_first_of("\\\n") == std::string::npos);
    CHECK(doc.str().find("`" + name + "`") != std::string::npos);
  }
}

TEST_CASE("/status: backends as the view has them, pools merged over workers") {
  Fixture f;
  const nlohmann::json status = status_json(f.sources);
  CHECK(status["version"] == "9.9.9");
  CHECK(status["uptime_seconds"] == 60.0);
  CHECK(status["primary"] == "p");
  CHECK(status["clients"] == 6);
  REQUIRE(status["backends"].size() == 2);
  CHECK(status["backends"][1]["name"] == "s");
  CHECK(status["backends"][1]["role"] == "standby");
  CHECK(status["backends"][1]["lag_bytes"] == 20000000);
  CHECK(status["backends"][1]["excluded_reason"] == "lag");
  CHECK(status["backends"][1]["timeline"] == 3);
  CHECK(status["backends"][1]["weight"] == 2);
  REQUIRE(status["pools"].size() == 1);
  CHECK(status["pools"][0]["cl_active"] == 3);
  CHECK(status["pools"][0]["sv_idle"] == 3);
  CHECK(status["pools"][0]["maxwait"] == 1.5);
  CHECK(status["pools"][0]["mode"] == "transaction");
  f.view.primary = -1;
  CHECK(status_json(f.sources)["primary"].is_null());
}

TEST_CASE("HTTP request heads") {
  HttpRequestHead head;
  CHECK(parse_http_request_head("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 8192, &head) == HttpParse::Ok);
  CHECK(head.method == "GET");
  CHECK(head.path == "/metrics");
  CHECK(parse_http_request_head("GET /status?pretty=1 HTTP/1.0\n\n", 8192, &head) == HttpParse::Ok);
  CHECK(head.path == "/status");
  CHECK(parse_http_request_head("GET http://h:9930/readyz HTTP/1.1\r\n\r\n", 8192, &head) == HttpParse::Ok);
  CHECK(head.path == "/readyz");
  CHECK(parse_http_request_head("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 8192, &head) == HttpParse::Ok);
  CHECK(head.method == "POST");
  CHECK(parse_http_request_head("GET /metrics HTTP/1.1\r\nHost: x\r\n", 8192, &head) == HttpParse::NeedMore);
  CHECK(parse_http_request_head("GET /metr", 8192, &head) == HttpParse::NeedMore);
  CHECK(parse_http_request_head("hello there\r\n", 8192, &head) == HttpParse::Malformed);
  CHECK(parse_http_request_head("GET /metrics HTTP/2.0\r\n\r\n", 8192, &head) == HttpParse::Malformed);
  CHECK(parse_http_request_head("GET metrics HTTP/1.1\r\n\r\n", 8192, &head) == HttpParse::Malformed);
  // Blank lines before the request count against the limit: an endless stream of them is refused.
  CHECK(parse_http_request_head(std::string(20000, '\n'), 8192, &head) == HttpParse::TooLarge);
  CHECK(parse_http_request_head("\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", 8192, &head) == HttpParse::Ok);
  CHECK(parse_http_request_head("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 8192, &head) == HttpParse::Malformed);
  CHECK(parse_http_request_head("GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a'), 8192, &head) ==
        HttpParse::TooLarge);
  CHECK(parse_http_request_head(std::string(9000, 'a'), 8192, &head) == HttpParse::TooLarge);
}

TEST_CASE("HTTP responses") {
  CHECK(http_response(405, "text/plain", "no\n", "Allow: GET\r\n") ==
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\nAllow: GET\r\n\r\nno\n");
}
