#include "proxy/ops/metrics_export.hpp"

#include <prometheus/text_serializer.h>

#include "proxy/ops/metric_family.hpp"

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
    {RouteTarget::Primary, RouteReason::Unlogged},
    {RouteTarget::Primary, RouteReason::SplitOff},
    {RouteTarget::Primary, RouteReason::ReadYourWrites},
    {RouteTarget::Primary, RouteReason::Causal},
    {RouteTarget::Primary, RouteReason::LagExcluded},
    {RouteTarget::Primary, RouteReason::NoEligibleStandby},
    {RouteTarget::Primary, RouteReason::StandbyCursors},
    {RouteTarget::Primary, RouteReason::RecoveryConflict},
    {RouteTarget::Primary, RouteReason::OpenSequence},
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
    const std::vector<MetricFamilyInfo>& declared = metric_families();
    for (size_t i = 0; i < families_.size(); ++i) {
      families_[i].name = declared[i].name;
      families_[i].help = declared[i].help;
      families_[i].type = declared[i].type;
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
  for (size_t i = 0; i < clients.size(); ++i)
    out.gauge(Family::ClientConnections, {{"state", kClientStates[i]}}, clients[i]);
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
  out.counter(Family::ClientBytesSent, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.client_bytes_sent; }));
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
  out.counter(Family::ServerBytesSent, {},
              total(s, [](const WorkerMetrics& w) -> auto& { return w.server_bytes_sent; }));
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
      out.counter(Family::QueriesRouted,
                  {{"target", routing::to_string(target)}, {"reason", routing::to_string(reason)}}, n);
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
