#include "proxy/ops/status_json.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace pgmux::proxy {

namespace {

nlohmann::json backend_json(const routing::BackendStatus& b, int index) {
  return {
      {"index", index},
      {"name", b.spec.name},
      {"host", b.spec.host},
      {"port", b.spec.port},
      {"role", routing::to_string(b.role)},
      {"reachable", b.reachable},
      {"readable", b.readable},
      {"excluded_reason", b.excluded_reason},
      {"disabled", b.spec.disabled},
      {"weight", b.spec.weight},
      {"lag_bytes", b.lag_bytes},
      {"lag_seconds", b.lag_seconds},
      {"timeline", b.last.timeline},
      {"sync_state", b.sync_state},
      {"applies_commits", b.applies_commits},
      {"synchronous_standby_names", b.role == routing::Role::Primary ? b.last.synchronous_standby_names : ""},
      {"last_error", b.last_error},
      {"patroni_role", b.dcs_role},
  };
}

// topology.source patroni: what Patroni said last; null with the probe source.
nlohmann::json topology_json(const routing::DcsState& dcs) {
  if (!dcs.enabled) return nullptr;
  return {
      {"source", "patroni"},
      {"reachable", dcs.reachable},
      {"leader", dcs.leader},
      {"asked", dcs.source},
      {"error", dcs.error},
      {"paused", dcs.cluster.paused},
  };
}

nlohmann::json pools_json(const std::vector<WorkerSnapshot>& snapshots) {
  const std::map<PoolKey, PoolRow> merged = merge_pools(snapshots);
  nlohmann::json pools = nlohmann::json::array();
  for (const auto& [key, p] : merged) {
    pools.push_back({
        {"database", p.database},
        {"user", p.user},
        {"backend", p.backend},
        {"mode", p.pool_mode},
        {"pool_size", p.pool_size},
        {"cl_active", p.cl_active},
        {"cl_waiting", p.cl_waiting},
        {"sv_active", p.sv_active},
        {"sv_idle", p.sv_idle},
        {"sv_login", p.sv_login},
        {"maxwait", p.maxwait},
        {"draining", p.draining},
    });
  }
  return pools;
}

}  // namespace

nlohmann::json status_json(const ExportSources& s) {
  const routing::BackendsView& view = *s.view;
  nlohmann::json backends = nlohmann::json::array();
  for (size_t i = 0; i < view.backends.size(); ++i)
    backends.push_back(backend_json(view.backends[i], static_cast<int>(i)));
  nlohmann::json primary = nullptr;
  if (view.primary >= 0 && static_cast<size_t>(view.primary) < view.backends.size()) {
    primary = view.backends[static_cast<size_t>(view.primary)].spec.name;
  }
  return {
      {"version", s.version},
      {"started_at", s.control->started_at},
      {"uptime_seconds", std::max(0.0, s.now - s.control->started_at)},
      {"shutting_down", s.shutting_down},
      {"clients", s.clients},
      {"primary", primary},
      {"alarm", view.alarm},
      {"patroni", topology_json(view.dcs)},
      {"backends", std::move(backends)},
      {"pools", pools_json(*s.snapshots)},
  };
}

}  // namespace pgmux::proxy
