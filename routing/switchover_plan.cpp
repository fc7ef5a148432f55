#include "routing/switchover_plan.hpp"

namespace pgmux::routing {

namespace {
constexpr const char* kNotReady = "55000";  // object_not_in_prerequisite_state
constexpr const char* kUndefined = "42704";  // undefined_object

SwitchoverPlan refuse(const char* sqlstate, std::string error, std::string hint) {
  SwitchoverPlan plan;
  plan.sqlstate = sqlstate;
  plan.error = std::move(error);
  plan.hint = std::move(hint);
  return plan;
}

// A synchronous standby has every acknowledged commit already; among equals, the one that replayed the most
// needs the shortest catch-up; config order breaks a tie.
bool better_candidate(const BackendStatus& a, const BackendStatus& b) {
  const bool a_sync = a.sync_state == "sync" || a.sync_state == "quorum";
  const bool b_sync = b.sync_state == "sync" || b.sync_state == "quorum";
  if (a_sync != b_sync) return a_sync;
  return a.last.replay_lsn > b.last.replay_lsn;
}
}  // namespace

std::string switchover_obstacle(const BackendsView& view, const BackendStatus& candidate) {
  const BackendStatus& primary = view.backends[static_cast<size_t>(view.primary)];
  if (candidate.spec.standby_only) return "it is configured with \"role\": \"standby\" (reads only, never promoted)";
  if (candidate.role != Role::Standby) {
    return std::string("it is not a standby (role ") + to_string(candidate.role) +
           (candidate.excluded_reason.empty() ? "" : ": " + candidate.excluded_reason) + ")";
  }
  if (candidate.last.timeline != primary.last.timeline) {
    return "it is on timeline " + std::to_string(candidate.last.timeline) + ", the primary on " +
           std::to_string(primary.last.timeline);
  }
  if (candidate.sync_state.empty()) {
    return "the primary " + primary.spec.name + " has no WAL sender named \"" +
           (candidate.spec.application_name.empty() ? candidate.spec.name : candidate.spec.application_name) +
           "\" (set the backend's application_name to its pg_stat_replication.application_name)";
  }
  if (candidate.lag_excluded) return "it lags (" + candidate.excluded_reason + ")";
  return {};
}

SwitchoverPlan plan_switchover(const BackendsView& view, std::string_view target_name) {
  if (view.primary < 0) {
    return refuse(kNotReady, "there is no primary to switch over from" + (view.alarm.empty() ? "" : ": " + view.alarm),
                  "SHOW BACKENDS shows each backend's role; a failover in progress must finish first");
  }
  const BackendStatus& primary = view.backends[static_cast<size_t>(view.primary)];
  SwitchoverPlan plan;
  plan.old_primary = view.primary;
  if (!target_name.empty()) {
    for (size_t i = 0; i < view.backends.size(); ++i) {
      if (view.backends[i].spec.name == target_name) plan.target = static_cast<int>(i);
    }
    if (plan.target < 0) {
      return refuse(kUndefined, "backend \"" + std::string(target_name) + "\" is not configured",
                    "SHOW BACKENDS lists the backends");
    }
    if (plan.target == view.primary) {
      return refuse(kNotReady, "backend \"" + primary.spec.name + "\" is already the primary",
                    "SWITCHOVER TO names the standby that is to become the primary");
    }
    const std::string obstacle = switchover_obstacle(view, view.backends[static_cast<size_t>(plan.target)]);
    if (!obstacle.empty()) {
      return refuse(kNotReady, "backend \"" + std::string(target_name) + "\" cannot become the primary: " + obstacle,
                    "SHOW BACKENDS shows its role, timeline, lag and sync_state");
    }
    return plan;
  }
  std::string reasons;
  for (size_t i = 0; i < view.backends.size(); ++i) {
    if (static_cast<int>(i) == view.primary) continue;
    const BackendStatus& b = view.backends[i];
    const std::string obstacle = switchover_obstacle(view, b);
    if (!obstacle.empty()) {
      reasons += (reasons.empty() ? "" : "; ") + b.spec.name + ": " + obstacle;
    } else if (plan.target < 0 || better_candidate(b, view.backends[static_cast<size_t>(plan.target)])) {
      plan.target = static_cast<int>(i);
    }
  }
  if (plan.target < 0) {
    return refuse(kNotReady, "no standby can become the primary" + (reasons.empty() ? "" : ": " + reasons),
                  "SHOW BACKENDS shows each backend's role, timeline, lag and sync_state");
  }
  return plan;
}

FailoverPlan plan_failover(const BackendsView& view, int old_primary, const std::vector<ReceiverReport>& reports) {
  FailoverPlan plan;
  if (old_primary < 0 || static_cast<size_t>(old_primary) >= view.backends.size()) {
    plan.waiting = "the old primary is not in the config any more";
    return plan;
  }
  const BackendStatus& old = view.backends[static_cast<size_t>(old_primary)];
  std::vector<std::string> unusable;
  const ReceiverReport* best = nullptr;
  for (const ReceiverReport& report : reports) {
    if (report.backend >= view.backends.size()) continue;
    const BackendStatus& b = view.backends[report.backend];
    if (!report.answered) {
      unusable.push_back(b.spec.name + " did not answer (" + report.error + ")");
      continue;
    }
    if (report.status == "streaming") {
      plan.waiting = b.spec.name + " still streams WAL from its upstream: " + old.spec.name +
                     " may be alive and only unreachable from pgmux, so nothing is promoted";
      return plan;
    }
    if (report.status == "hidden") {
      plan.waiting = b.spec.name + " does not show its WAL receiver to the health-check user (grant it "
                     "pg_read_all_stats), so pgmux cannot confirm that " + old.spec.name + " is gone";
      return plan;
    }
    std::string why;
    if (report.status == "not in recovery") {
      why = "it is not in recovery";
    } else if (b.spec.standby_only) {
      why = "it is configured with \"role\": \"standby\"";
    } else if (b.spec.disabled) {
      why = "it is disabled (DISABLE BACKEND)";
    } else if (b.last.timeline != old.last.timeline) {
      why = "it is on timeline " + std::to_string(b.last.timeline) + ", " + old.spec.name + " was on " +
            std::to_string(old.last.timeline);
    }
    if (!why.empty()) {
      unusable.push_back(b.spec.name + ": " + why);
      continue;
    }
    if (best == nullptr || report.received_lsn > best->received_lsn) best = &report;
  }
  if (best == nullptr) {
    plan.waiting = "no standby can take over from " + old.spec.name;
    for (size_t i = 0; i < unusable.size(); ++i) plan.waiting += (i == 0 ? ": " : "; ") + unusable[i];
    return plan;
  }
  plan.target = static_cast<int>(best->backend);
  return plan;
}

}  // namespace pgmux::routing
