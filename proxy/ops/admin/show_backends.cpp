// SHOW BACKENDS (alias SHOW POOL_NODES): Pgpool-II's columns, then pgmux's own (lag, timeline, why excluded).
#include <map>

#include "proxy/ops/admin/commands.hpp"
#include "proxy/control/probe_connection.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/wall_clock.hpp"

namespace pgmux::proxy::admin {

namespace {

const char* status_of(const routing::BackendStatus& b) {
  if (b.spec.disabled) return "disabled";
  switch (b.role) {
    case routing::Role::Primary:
    case routing::Role::Standby: return "up";
    case routing::Role::Down: return "down";
    case routing::Role::Fenced: return "fenced";
    case routing::Role::Unknown: break;
  }
  return "unknown";
}

// What PostgreSQL itself says (pg_is_in_recovery), independent of pgmux's decisions.
const char* pg_role_of(const routing::BackendStatus& b) {
  if (!b.ever_probed) return "unknown";
  return b.last.in_recovery ? "standby" : "primary";
}

}  // namespace

Answer show_backends(const Input&, Context& context) {
  const routing::BackendsView& view = *context.view;
  // Reads each backend served, by name (pools of removed backends drop out).
  std::map<std::string, uint64_t> selects;
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const PoolRow& p : s.pools) selects[p.backend] += p.totals.reads;
  }
  int64_t total_weight = 0;
  for (const routing::BackendStatus& b : view.backends) {
    if (b.role == routing::Role::Standby && !b.spec.disabled) total_weight += b.spec.weight;
  }
  const double unix_now = wall_clock_seconds();
  const double mono_now = monotonic_seconds();

  ResultSet r;
  r.column("node_id", kInt8).column("hostname").column("port", kInt8).column("status").column("pg_status");
  r.column("lb_weight", kFloat8).column("role").column("pg_role").column("select_cnt", kInt8);
  r.column("load_balance_node", kBool).column("replication_delay", kInt8).column("last_status_change");
  r.column("name").column("weight", kInt8).column("lag_bytes", kInt8).column("lag_seconds", kFloat8);
  r.column("timeline", kInt8).column("excluded_reason").column("last_error").column("sync_state");
  r.column("synchronous_standby_names").column("patroni_role").column("applies_commits", kBool);
  for (size_t i = 0; i < view.backends.size(); ++i) {
    const routing::BackendStatus& b = view.backends[i];
    const bool standby = b.role == routing::Role::Standby;
    const double lb = standby && total_weight > 0 && !b.spec.disabled
                          ? static_cast<double>(b.spec.weight) / static_cast<double>(total_weight)
                          : 0.0;
    const double changed =
        b.last_status_change > 0 ? unix_now - (mono_now - b.last_status_change) : 0;
    r.row().cell(static_cast<int64_t>(i)).cell(b.spec.host).cell(static_cast<int64_t>(b.spec.port));
    r.cell(status_of(b)).cell(b.reachable ? "up" : "down").cell(lb).cell(routing::to_string(b.role));
    r.cell(pg_role_of(b)).cell(selects[b.spec.name]).cell(b.readable).cell(standby ? b.lag_bytes : int64_t{0});
    r.cell(format_time(changed)).cell(b.spec.name).cell(b.spec.weight);
    r.cell(standby ? b.lag_bytes : int64_t{0}).cell(standby ? b.lag_seconds : 0.0);
    r.cell(static_cast<int64_t>(b.last.timeline)).cell(b.readable ? "" : b.excluded_reason).cell(b.last_error);
    r.cell(b.sync_state).cell(b.role == routing::Role::Primary ? b.last.synchronous_standby_names : "");
    r.cell(b.dcs_role).cell(b.applies_commits);
  }
  return Answer::of(std::move(r));
}

}  // namespace pgmux::proxy::admin
