#include "proxy/status_json.hpp"

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
      {"last_error", b.last_error},
  };
}

nlohmann::json pools_json(const std::vector<WorkerSnapshot>& snapshots) {
  using Key = std::tuple<std::string, std::string, std::string>;  // database, user, backend
  std::map<Key, PoolRow> merged;
  for (const WorkerSnapshot& snapshot : snapshots) {
    for (const PoolRow& row : snapshot.pools) {
      auto [it, added] = merged.emplace(Key{row.database, row.user, row.backend}, row);
      if (added) continue;
      PoolRow& sum = it->second;
      sum.cl_active += row.cl_active;
      sum.cl_waiting += row.cl_waiting;
      sum.sv_active += row.sv_active;
      sum.sv_idle += row.sv_idle;
      sum.sv_login += row.sv_login;
      sum.maxwait = std::max(sum.maxwait, row.maxwait);
      sum.draining = sum.draining || row.draining;
    }
  }
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
  for (size_t i = 0; i < view.backends.size(); ++i) backends.push_back(backend_json(view.backends[i], static_cast<int>(i)));
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
      {"backends", std::move(backends)},
      {"pools", pools_json(*s.snapshots)},
  };
}

}  // namespace pgmux::proxy
