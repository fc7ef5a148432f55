#include "proxy/ops/metrics_export.hpp"

#include <prometheus/text_serializer.h>

#include <array>
#include <limits>
#include <map>
#include <utility>

namespace pgmux::proxy {

std::string sqlstate_class_text(size_t index) {
  if (index >= kSqlstateClasses) return "unknown";
  auto digit = [](size_t d) { return static_cast<char>(d < 10 ? '0' + d : 'A' + (d - 10)); };
  return std::string{digit(index / 36), digit(index % 36)};
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Every family pgmux exports, in output order. Index = Family. Help texts stay on one line without backslashes
// (prometheus-cpp writes them as they are).
enum class Family : size_t {
  Up,
  BuildInfo,
  StartTime,
  ClientConnections,
  ClientLogins,
  ClientLoginFailures,
  ClientDisconnects,
  PinnedClients,
  ClientBytesReceived,
  ClientBytesSent,
  ServerConnections,
  ServerConnects,
  ServerConnectFailures,
  ServerBytesReceived,
  ServerBytesSent,
  QueriesRouted,
  StandbyWriteRetries,
  LostRequestRetries,
  QueryDuration,
  TransactionDuration,
  PoolWait,
  Errors,
  BackendUp,
  BackendRole,
  BackendReadable,
  BackendWeight,
  BackendLagBytes,
  BackendLagSeconds,
  BackendTimeline,
  BackendSync,
  BackendAppliesCommits,
  BackendSyncStandbyNames,
  PatroniUp,
  PatroniRole,
  ProbeDuration,
  Failovers,
  Switchovers,
  SwitchoverWritePause,
  ConsistencyChecks,
  ConsistencyDifferences,
  ConsistencyLastRun,
  AutoFailovers,
  PatroniSwitchovers,
  EtcdWatchUp,
  SplitBrain,
  ConfigReloads,
  ConfigLastReloadSuccess,
  Count
};

constexpr MetricType kGauge = MetricType::Gauge;
constexpr MetricType kCounter = MetricType::Counter;
constexpr MetricType kHistogram = MetricType::Histogram;

const MetricFamilyInfo kFamilies[] = {
    {"pgmux_up", kGauge, "", "1 while pgmux is running."},
    {"pgmux_build_info", kGauge, "version", "Always 1; the version label says which pgmux this is."},
    {"pgmux_start_time_seconds", kGauge, "", "When pgmux started, in unix seconds."},
    {"pgmux_client_connections", kGauge, "state",
     "Client connections by state: login (startup and authentication), active (a request in flight or a "
     "transaction open), idle (between transactions), waiting (for a server connection or a primary)."},
    {"pgmux_client_logins_total", kCounter, "", "Clients that completed login."},
    {"pgmux_client_login_failures_total", kCounter, "",
     "Clients refused before their login completed (bad password, unknown user or database, no server, "
     "max_client_conn, login timeout)."},
    {"pgmux_client_disconnects_total", kCounter, "reason",
     "Client connections ended, by reason (the failure table in docs/ARCHITECTURE.md: client_closed, "
     "auth_failed, idle_transaction_timeout, ...)."},
    {"pgmux_pinned_clients_total", kCounter, "reason",
     "Clients pinned to their server in transaction pooling, by reason."},
    {"pgmux_client_bytes_received_total", kCounter, "", "Bytes received from clients."},
    {"pgmux_client_bytes_sent_total", kCounter, "", "Bytes sent to clients."},
    {"pgmux_server_connections", kGauge, "backend,state",
     "Server connections by backend and state: login (connecting or authenticating), idle (in the pool), active "
     "(linked to a client), used (running pgmux's own reset or parameter sync)."},
    {"pgmux_server_connects_total", kCounter, "", "Server connections opened and logged in."},
    {"pgmux_server_connect_failures_total", kCounter, "",
     "Server connections that failed to connect or log in."},
    {"pgmux_server_bytes_received_total", kCounter, "", "Bytes received from PostgreSQL servers."},
    {"pgmux_server_bytes_sent_total", kCounter, "", "Bytes sent to PostgreSQL servers."},
    {"pgmux_queries_routed_total", kCounter, "target,reason",
     "Routing decisions by target (primary, standby, wait-for-primary, no-backend) and reason; statements that "
     "follow an open transaction or pipeline to its server are not routed again."},
    {"pgmux_standby_write_retries_total", kCounter, "",
     "Reads a standby rejected with 25006 (the statement writes after all) that pgmux ran again on the primary "
     "before any row reached the client; the statement's text counts as a write from then on."},
    {"pgmux_lost_request_retries_total", kCounter, "",
     "Requests whose server was lost before any of their reply reached the client, when running them changed "
     "nothing (a read on a standby, a lone BEGIN): sent again to the next server instead of failing with 08006."},
    {"pgmux_query_duration_seconds", kHistogram, "role",
     "Time from forwarding a request to its ReadyForQuery, by the role of the server that answered."},
    {"pgmux_transaction_duration_seconds", kHistogram, "role",
     "Time from the first request of a transaction to ReadyForQuery idle, by the role of the server that "
     "answered (an autocommit statement is a transaction)."},
    {"pgmux_pool_wait_seconds", kHistogram, "", "Time clients waited for a server connection from a pool."},
    {"pgmux_errors_total", kCounter, "class",
     "ErrorResponses sent to clients (relayed from PostgreSQL or pgmux's own), by SQLSTATE class."},
    {"pgmux_backend_up", kGauge, "backend", "1 when the backend answered its last health probe."},
    {"pgmux_backend_role", kGauge, "backend,role",
     "1 for the backend's current role (unknown, primary, standby, down, fenced), 0 for the others."},
    {"pgmux_backend_readable", kGauge, "backend", "1 when the backend is in the read set (serves reads)."},
    {"pgmux_backend_weight", kGauge, "backend", "The backend's load-balancing weight."},
    {"pgmux_backend_lag_bytes", kGauge, "backend",
     "Replication lag of a standby in bytes (primary WAL position minus replay position); 0 for the primary."},
    {"pgmux_backend_lag_seconds", kGauge, "backend", "Replication lag of a standby in seconds; 0 for the primary."},
    {"pgmux_backend_timeline", kGauge, "backend", "Timeline the backend reported in its last successful probe."},
    {"pgmux_backend_sync_state", kGauge, "backend,state",
     "1 for how the primary replicates to this standby (sync, quorum, potential, async; unknown: not readable by the "
     "prober's role; none: no WAL sender to it); absent for the primary."},
    {"pgmux_backend_applies_commits", kGauge, "backend",
     "1 when every commit on the primary returns only after this standby applied it (remote_apply, listed in a "
     "synchronous_standby_names that requires every standby it lists): reads after a commit go there at once."},
    {"pgmux_backend_synchronous_standby_names", kGauge, "backend,value",
     "1 with the primary's synchronous_standby_names as the value label (empty: asynchronous replication)."},
    {"pgmux_patroni_up", kGauge, "",
     "topology.source patroni only: 1 when the last GET /cluster got an answer from one of topology.patroni_urls."},
    {"pgmux_backend_patroni_role", kGauge, "backend,role",
     "topology.source patroni only: 1 for the role Patroni gives the backend's member (leader, replica, "
     "sync_standby, standby_leader; none: no member at its name or address)."},
    {"pgmux_probe_duration_seconds", kHistogram, "backend", "Duration of health probes, by backend."},
    {"pgmux_failovers_total", kCounter, "", "Times the primary moved to another backend."},
    {"pgmux_switchovers_total", kCounter, "result",
     "Admin SWITCHOVERs by result: done, canceled (nothing changed: writes resumed on the old primary), failed "
     "(stopped part way: see the log)."},
    {"pgmux_switchover_write_pause_seconds", kGauge, "",
     "How long the last completed switchover (SWITCHOVER, or Patroni's drained for) held writes (from the hold to "
     "the new primary); 0 before any."},
    {"pgmux_consistency_checks_total", kCounter, "result",
     "CHECK CONSISTENCY runs by result: consistent, differences, failed (no comparison: see the log)."},
    {"pgmux_consistency_differences", kGauge, "",
     "Standby rows of the last CHECK CONSISTENCY that ran whose count or checksum differs from the primary's (or "
     "could not be read)."},
    {"pgmux_consistency_last_run_timestamp_seconds", kGauge, "",
     "Unix time of the last CHECK CONSISTENCY that ran; 0 before any."},
    {"pgmux_auto_failovers_total", kCounter, "result",
     "Failovers pgmux ran itself (failover.mode pgmux) by result: done, canceled (the primary answered again), "
     "failed (see the log)."},
    {"pgmux_patroni_switchovers_total", kCounter, "result",
     "Switchovers asked of Patroni directly (patronictl switchover), seen in etcd (topology.etcd_urls), that pgmux "
     "drained for, by result: done, canceled (Patroni cleared its request: writes resumed on the old primary), "
     "failed (no new primary within routing.failover_timeout)."},
    {"pgmux_etcd_watch_up", kGauge, "",
     "topology.etcd_urls only: 1 while pgmux watches Patroni's failover key in etcd; while 0, a switchover asked of "
     "Patroni directly is followed but not drained for."},
    {"pgmux_split_brain", kGauge, "", "1 while more than one backend claims to be the primary (writes pause)."},
    {"pgmux_config_reloads_total", kCounter, "result", "Config reloads by result (ok, failed)."},
    {"pgmux_config_last_reload_success_timestamp_seconds", kGauge, "",
     "Unix seconds of the last successful config load (startup or reload)."},
};
static_assert(std::size(kFamilies) == static_cast<size_t>(Family::Count));

// Routes the router can take, always exported (0 until they happen) so rates work from the start; any other
// combination appears once it has been counted.
using routing::RouteReason;
using routing::RouteTarget;
constexpr std::pair<RouteTarget, RouteReason> kUsualRoutes[] = {
    {RouteTarget::Primary, RouteReason::Write},
    {RouteTarget::Primary, RouteReason::SessionCommand},
    {RouteTarget::Primary, RouteReason::ReadWriteTransaction},
    {RouteTarget::Primary, RouteReason::TransactionEnd},
    {RouteTarget::Primary, RouteReason::Pinned},
    {RouteTarget::Primary, RouteReason::PrimaryHint},
    {RouteTarget::Primary, RouteReason::SplitOff},
    {RouteTarget::Primary, RouteReason::ReadYourWrites},
    {RouteTarget::Primary, RouteReason::Causal},
    {RouteTarget::Primary, RouteReason::LagExcluded},
    {RouteTarget::Primary, RouteReason::NoEligibleStandby},
    {RouteTarget::Standby, RouteReason::Read},
    {RouteTarget::WaitForPrimary, RouteReason::NoPrimary},
    {RouteTarget::NoBackend, RouteReason::ReadYourWrites},
    {RouteTarget::NoBackend, RouteReason::Causal},
    {RouteTarget::NoBackend, RouteReason::LagExcluded},
    {RouteTarget::NoBackend, RouteReason::NoEligibleStandby},
};

constexpr const char* kClientStates[] = {"login", "active", "idle", "waiting"};
constexpr const char* kServerStates[] = {"login", "idle", "active", "used"};
constexpr routing::Role kRoles[] = {routing::Role::Unknown, routing::Role::Primary, routing::Role::Standby,
                                    routing::Role::Down, routing::Role::Fenced};

// Buckets of one or more DurationHistograms added up.
struct HistogramTotal {
  std::array<uint64_t, kDurationBuckets.size() + 1> buckets{};
  uint64_t sum_ns = 0;

  void add(const DurationHistogram& h) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.bucket(i);
    sum_ns += h.sum_ns();
  }
  ClientMetric::Histogram to_prometheus() const {
    ClientMetric::Histogram out;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      cumulative += buckets[i];
      const double bound = i < kDurationBuckets.size() ? kDurationBuckets[i] : std::numeric_limits<double>::infinity();
      out.bucket.push_back({cumulative, bound});
    }
    out.sample_count = cumulative;
    out.sample_sum = static_cast<double>(sum_ns) / 1e9;
    return out;
  }
};

class Builder {
 public:
  Builder() : families_(static_cast<size_t>(Family::Count)) {
    for (size_t i = 0; i < families_.size(); ++i) {
      families_[i].name = kFamilies[i].name;
      families_[i].help = kFamilies[i].help;
      families_[i].type = kFamilies[i].type;
    }
  }
  void gauge(Family f, Labels labels, double value) { add(f, std::move(labels)).gauge.value = value; }
  void counter(Family f, Labels labels, uint64_t value) {
    add(f, std::move(labels)).counter.value = static_cast<double>(value);
  }
  void histogram(Family f, Labels labels, const HistogramTotal& total) {
    add(f, std::move(labels)).histogram = total.to_prometheus();
  }
  std::vector<prometheus::MetricFamily> take() { return std::move(families_); }

 private:
  ClientMetric& add(Family f, Labels labels) {
    ClientMetric& metric = families_[static_cast<size_t>(f)].metric.emplace_back();
    metric.label = std::move(labels);
    return metric;
  }
  std::vector<prometheus::MetricFamily> families_;
};

// A worker counter added up over all workers.
template <typename Get>
uint64_t total(const ExportSources& s, Get get) {
  uint64_t sum = 0;
  for (const WorkerMetrics* w : s.workers) sum += get(*w).get();
  return sum;
}

template <typename Get>
HistogramTotal histogram_total(const ExportSources& s, Get get) {
  HistogramTotal sum;
  for (const WorkerMetrics* w : s.workers) sum.add(get(*w));
  return sum;
}

template <size_t N>
int state_index(const char* const (&states)[N], const std::string& state) {
  for (size_t i = 0; i < N; ++i) {
    if (state == states[i]) return static_cast<int>(i);
  }
  return -1;
}

void export_process(const ExportSources& s, Builder& out) {
  out.gauge(Family::Up, {}, 1);
  out.gauge(Family::BuildInfo, {{"version", s.version}}, 1);
  out.gauge(Family::StartTime, {}, s.control->started_at);
}

void export_clients(const ExportSources& s, Builder& out) {
  std::array<int, std::size(kClientStates)> clients{};
  for (const WorkerSnapshot& snapshot : *s.snapshots) {
    for (const ClientRow& row : snapshot.clients) {
      if (int i = state_index(kClientStates, row.state); i >= 0) ++clients[static_cast<size_t>(i)];
    }
  }
  for (size_t i = 0; i < clients.size(); ++i) out.gauge(Family::ClientConnections, {{"state", kClientStates[i]}}, clients[i]);
  out.counter(Family::ClientLogins, {}, total(s, [](const WorkerMetrics& w) -> auto& { return w.client_logins; }));
  out.counter(Family::ClientLoginFailures, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.client_login_failures; }));
  for (size_t i = 0; i < kFailureCount; ++i) {
    const uint64_t n = total(s, [&](const WorkerMetrics& w) -> auto& { return w.client_disconnects[i]; });
    if (n > 0) out.counter(Family::ClientDisconnects, {{"reason", to_string(static_cast<Failure>(i))}}, n);
  }
  for (size_t i = 0; i < static_cast<size_t>(routing::PinReason::Count); ++i) {
    const auto reason = static_cast<routing::PinReason>(i);
    if (reason == routing::PinReason::None) continue;
    out.counter(Family::PinnedClients, {{"reason", routing::to_string(reason)}}, s.pins ? s.pins->get(reason) : 0);
  }
  out.counter(Family::ClientBytesReceived, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.client_bytes_received; }));
  out.counter(Family::ClientBytesSent, {}, total(s, [](const WorkerMetrics& w) -> auto& { return w.client_bytes_sent; }));
}

void export_servers(const ExportSources& s, Builder& out) {
  // Every configured backend has all states (0 included); a removed backend still draining shows up too.
  std::vector<std::string> order;
  std::map<std::string, std::array<int, std::size(kServerStates)>> servers;
  for (const routing::BackendStatus& b : s.view->backends) {
    if (servers.emplace(b.spec.name, std::array<int, std::size(kServerStates)>{}).second) order.push_back(b.spec.name);
  }
  for (const WorkerSnapshot& snapshot : *s.snapshots) {
    for (const ServerRow& row : snapshot.servers) {
      const int i = state_index(kServerStates, row.state);
      if (i < 0) continue;
      auto [it, added] = servers.emplace(row.backend, std::array<int, std::size(kServerStates)>{});
      if (added) order.push_back(row.backend);
      ++it->second[static_cast<size_t>(i)];
    }
  }
  for (const std::string& backend : order) {
    for (size_t i = 0; i < std::size(kServerStates); ++i) {
      out.gauge(Family::ServerConnections, {{"backend", backend}, {"state", kServerStates[i]}}, servers[backend][i]);
    }
  }
  out.counter(Family::ServerConnects, {}, total(s, [](const WorkerMetrics& w) -> auto& { return w.server_connects; }));
  out.counter(Family::ServerConnectFailures, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.server_connect_failures; }));
  out.counter(Family::ServerBytesReceived, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.server_bytes_received; }));
  out.counter(Family::ServerBytesSent, {}, total(s, [](const WorkerMetrics& w) -> auto& { return w.server_bytes_sent; }));
}

void export_requests(const ExportSources& s, Builder& out) {
  for (size_t t = 0; t < kRouteTargets; ++t) {
    for (size_t r = 0; r < static_cast<size_t>(RouteReason::Count); ++r) {
      const auto target = static_cast<RouteTarget>(t);
      const auto reason = static_cast<RouteReason>(r);
      const uint64_t n = total(s, [&](const WorkerMetrics& w) -> auto& { return w.routed[t][r]; });
      bool usual = false;
      for (const auto& [ut, ur] : kUsualRoutes) usual |= ut == target && ur == reason;
      if (n == 0 && !usual) continue;
      out.counter(Family::QueriesRouted, {{"target", routing::to_string(target)}, {"reason", routing::to_string(reason)}},
                  n);
    }
  }
  out.counter(Family::StandbyWriteRetries, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.standby_write_retries; }));
  out.counter(Family::LostRequestRetries, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.lost_request_retries; }));
  for (size_t by = 0; by < static_cast<size_t>(ServedBy::Count); ++by) {
    const Labels role{{"role", to_string(static_cast<ServedBy>(by))}};
    out.histogram(Family::QueryDuration, role,
                  histogram_total(s, [&](const WorkerMetrics& w) -> auto& { return w.query_duration[by]; }));
    out.histogram(Family::TransactionDuration, role,
                  histogram_total(s, [&](const WorkerMetrics& w) -> auto& { return w.transaction_duration[by]; }));
  }
  out.histogram(Family::PoolWait, {}, histogram_total(s, [](const WorkerMetrics& w) -> auto& { return w.pool_wait; }));
  for (size_t i = 0; i <= kSqlstateClasses; ++i) {
    const uint64_t n = total(s, [&](const WorkerMetrics& w) -> auto& { return w.errors[i]; });
    if (n > 0) out.counter(Family::Errors, {{"class", sqlstate_class_text(i)}}, n);
  }
}

void export_backends(const ExportSources& s, Builder& out) {
  for (const routing::BackendStatus& b : s.view->backends) {
    const Labels backend{{"backend", b.spec.name}};
    out.gauge(Family::BackendUp, backend, b.reachable ? 1 : 0);
    for (routing::Role role : kRoles) {
      out.gauge(Family::BackendRole, {{"backend", b.spec.name}, {"role", routing::to_string(role)}},
                b.role == role ? 1 : 0);
    }
    out.gauge(Family::BackendReadable, backend, b.readable ? 1 : 0);
    out.gauge(Family::BackendWeight, backend, b.spec.weight);
    out.gauge(Family::BackendLagBytes, backend, static_cast<double>(b.lag_bytes));
    out.gauge(Family::BackendLagSeconds, backend, b.lag_seconds);
    out.gauge(Family::BackendTimeline, backend, b.last.timeline);
    if (b.role == routing::Role::Standby) {
      const std::string state = b.sync_state.empty() ? "none" : b.sync_state == "?" ? "unknown" : b.sync_state;
      out.gauge(Family::BackendSync, {{"backend", b.spec.name}, {"state", state}}, 1);
      out.gauge(Family::BackendAppliesCommits, backend, b.applies_commits ? 1 : 0);
    }
    if (b.role == routing::Role::Primary) {
      const Labels names{{"backend", b.spec.name}, {"value", b.last.synchronous_standby_names}};
      out.gauge(Family::BackendSyncStandbyNames, names, 1);
    }
    if (s.view->dcs.enabled) {
      out.gauge(Family::PatroniRole, {{"backend", b.spec.name}, {"role", b.dcs_role.empty() ? "none" : b.dcs_role}}, 1);
    }
  }
  if (s.view->dcs.enabled) out.gauge(Family::PatroniUp, {}, s.view->dcs.reachable ? 1 : 0);
  for (const auto& [name, histogram] : s.control->probe_duration) {
    HistogramTotal probe;
    probe.add(histogram);
    out.histogram(Family::ProbeDuration, {{"backend", name}}, probe);
  }
  out.counter(Family::Failovers, {}, s.control->failovers);
  for (const char* result : {"done", "canceled", "failed"}) {
    const auto found = s.control->switchovers.find(result);
    out.counter(Family::Switchovers, {{"result", result}}, found == s.control->switchovers.end() ? 0 : found->second);
  }
  out.gauge(Family::SwitchoverWritePause, {}, s.control->last_switchover_write_pause);
  if (s.control->etcd_watch_up >= 0) out.gauge(Family::EtcdWatchUp, {}, s.control->etcd_watch_up);
  for (const char* result : {"done", "canceled", "failed"}) {
    const auto found = s.control->auto_failovers.find(result);
    out.counter(Family::AutoFailovers, {{"result", result}},
                found == s.control->auto_failovers.end() ? 0 : found->second);
    const auto patroni = s.control->patroni_switchovers.find(result);
    out.counter(Family::PatroniSwitchovers, {{"result", result}},
                patroni == s.control->patroni_switchovers.end() ? 0 : patroni->second);
  }
  for (const char* result : {"consistent", "differences", "failed"}) {
    const auto found = s.control->consistency_checks.find(result);
    out.counter(Family::ConsistencyChecks, {{"result", result}},
                found == s.control->consistency_checks.end() ? 0 : found->second);
  }
  out.gauge(Family::ConsistencyDifferences, {}, s.control->consistency_differences);
  out.gauge(Family::ConsistencyLastRun, {}, s.control->last_consistency_check);
  out.gauge(Family::SplitBrain, {}, s.view->split_brain ? 1 : 0);
}

void export_config(const ExportSources& s, Builder& out) {
  out.counter(Family::ConfigReloads, {{"result", "ok"}}, s.control->reloads_ok);
  out.counter(Family::ConfigReloads, {{"result", "failed"}}, s.control->reloads_failed);
  const double last_ok = s.control->last_reload_time > 0 ? s.control->last_reload_time : s.control->started_at;
  out.gauge(Family::ConfigLastReloadSuccess, {}, last_ok);
}

}  // namespace

const std::vector<MetricFamilyInfo>& metric_families() {
  static const std::vector<MetricFamilyInfo> families(std::begin(kFamilies), std::end(kFamilies));
  return families;
}

std::vector<prometheus::MetricFamily> export_metrics(const ExportSources& sources) {
  Builder out;
  export_process(sources, out);
  export_clients(sources, out);
  export_servers(sources, out);
  export_requests(sources, out);
  export_backends(sources, out);
  export_config(sources, out);
  return out.take();
}

std::string render_metrics(const ExportSources& sources) {
  return prometheus::TextSerializer().Serialize(export_metrics(sources));
}

}  // namespace pgmux::proxy
