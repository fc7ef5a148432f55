#include "routing/router.hpp"

#include <algorithm>

namespace pgmux::routing {

const char* to_string(RouteTarget t) {
  switch (t) {
    case RouteTarget::Primary: return "primary";
    case RouteTarget::Standby: return "standby";
    case RouteTarget::WaitForPrimary: return "wait-for-primary";
    case RouteTarget::NoBackend: return "no-backend";
  }
  return "?";
}

const char* to_string(RouteReason r) {
  switch (r) {
    case RouteReason::Write: return "write";
    case RouteReason::Read: return "read";
    case RouteReason::SessionCommand: return "session-command";
    case RouteReason::ReadWriteTransaction: return "read-write-transaction";
    case RouteReason::TransactionEnd: return "transaction-end";
    case RouteReason::Pinned: return "pinned";
    case RouteReason::PrimaryHint: return "primary-hint";
    case RouteReason::Unlogged: return "unlogged";
    case RouteReason::SessionUnknown: return "session-state-unknown";
    case RouteReason::Serializable: return "serializable";
    case RouteReason::SplitOff: return "split-off";
    case RouteReason::ReadYourWrites: return "read-your-writes";
    case RouteReason::Causal: return "causal";
    case RouteReason::LagExcluded: return "lag-excluded";
    case RouteReason::NoEligibleStandby: return "fallback-to-primary";
    case RouteReason::NoPrimary: return "no-primary";
    case RouteReason::StandbyCursors: return "standby-cursors";
    case RouteReason::RecoveryConflict: return "recovery-conflict";
    case RouteReason::OpenSequence: return "open-sequence";
    case RouteReason::Count: break;
  }
  return "?";
}

bool is_read_only_statement(const Classification& c, const ClientRouteState& state) {
  switch (c.kind) {
    case StatementKind::Read:
    case StatementKind::Empty:
      return true;
    case StatementKind::TxBegin:  // READ WRITE anywhere in its modes keeps it off standbys (they refuse it)
      return !c.read_write && (c.read_only || state.session_read_only);
    default:
      return false;
  }
}

bool refused_during_recovery(const Classification& c) {
  if (c.kind != StatementKind::Write) return false;
  static constexpr std::array<std::string_view, 6> kReasons = {"NOTIFY", "LOCK",    "ANALYZE",
                                                               "CLUSTER", "REINDEX", "VACUUM"};
  const std::string_view reason = c.reason;
  return std::find(kReasons.begin(), kReasons.end(), reason) != kReasons.end();
}

std::optional<double> applying_since(const BackendsView& view) {
  std::optional<double> since;
  for (const BackendStatus& b : view.backends) {
    if (b.applies_commits) since = std::max(since.value_or(0), b.applies_since);
  }
  return since;
}

std::optional<CommitToSee> commit_to_see(const ClientRouteState& state, Consistency consistency,
                                         std::optional<double> applying_since) {
  std::optional<CommitToSee> commit;
  if (consistency == Consistency::Eventual) return commit;
  std::optional<double> own = state.last_write_commit;
  std::optional<double> cluster = state.cluster_commit;
  if (applying_since) {
    if (own && !state.last_write_unapplied) own = std::min(*own, *applying_since);
    if (cluster) cluster = std::min(*cluster, *applying_since);
    if (state.cluster_unapplied_commit > 0 && (!cluster || state.cluster_unapplied_commit > *cluster)) {
      cluster = state.cluster_unapplied_commit;
    }
  }
  if (own) commit = CommitToSee{*own, true};
  // The client's own commits are among the cluster's: another client's later one is what binds then.
  if (consistency == Consistency::Causal && cluster && (!commit || *cluster > commit->time)) {
    commit = CommitToSee{*cluster, false};
  }
  return commit;
}

namespace {

bool in_mask(uint64_t mask, int index) { return index >= 0 && index < 64 && ((mask >> index) & 1); }

Route primary_or_wait(const BackendsView& view, uint64_t mask, RouteReason reason) {
  if (view.primary >= 0 && in_mask(mask, view.primary)) return Route{RouteTarget::Primary, view.primary, reason};
  return Route{RouteTarget::WaitForPrimary, -1, RouteReason::NoPrimary};
}

// What a standby must have replayed for a read: nothing (no commit to see), a position, or a position not known
// yet (nothing sampled on the primary since the commit): no standby qualifies then.
struct ReplayNeed {
  bool commit = false;
  std::optional<uint64_t> lsn;
  bool unknown() const { return commit && !lsn; }
};

bool switching_over(const BackendsView& view) {
  return std::any_of(view.backends.begin(), view.backends.end(),
                     [](const BackendStatus& b) { return b.fence.has_value(); });
}

ReplayNeed replay_need(const std::optional<CommitToSee>& commit, const BackendsView& view, uint64_t mask) {
  if (!commit) return {};
  ReplayNeed need{true, required_lsn(view, commit->time)};
  // No primary (a failover): nothing newer can be sampled, and waiting for a primary would stop reads standbys
  // can serve. The standby that replayed the most has every commit any standby has; a commit that reached none
  // may be lost with the old primary anyway. Not during a switchover (its fence is on the old primary): that
  // primary stopped cleanly, so the target will show every acknowledged commit, and a standby that has not
  // replayed one yet would answer with older data (found by bench/ha_compare.py through Patroni). Such a read
  // waits for a standby to catch up or for the new primary.
  const std::optional<uint64_t> furthest =
      view.primary < 0 && !switching_over(view) ? furthest_replay(view, mask) : std::nullopt;
  if (furthest && (!need.lsn || *furthest < *need.lsn)) need.lsn = furthest;
  return need;
}

// No standby can take the read: the primary (or a wait for one), with the reason a metric and EXPLAIN ROUTE give, or
// no backend when fallback_to_primary is off.
Route no_standby_for_read(const ClientRouteState& state, const BackendsView& view, const RouteSettings& settings,
                          const ReplayNeed& need, RouteReason held) {
  bool any_readable = false;
  bool any_lagging = false;
  for (size_t i = 0; i < view.backends.size(); ++i) {
    if (!in_mask(state.backend_mask, static_cast<int>(i))) continue;
    any_readable |= view.backends[i].readable;
    // Only standbys: the topology leaves lag_excluded set on a standby that was promoted (or fenced) since.
    const BackendStatus& b = view.backends[i];
    any_lagging |= b.lag_excluded && b.reachable && b.role == Role::Standby;
  }
  if (need.unknown()) return primary_or_wait(view, state.backend_mask, held);
  RouteReason why = RouteReason::NoEligibleStandby;
  if (need.commit && any_readable) {
    why = held;
  } else if (any_lagging && !any_readable) {
    why = RouteReason::LagExcluded;
  }
  if (settings.fallback_to_primary) return primary_or_wait(view, state.backend_mask, why);
  return Route{RouteTarget::NoBackend, -1, why};
}

}  // namespace

Route route_statement(const Classification& c, const ClientRouteState& state, const BackendsView& view,
                      const RouteSettings& settings, Balancer& balancer) {
  if (!settings.read_write_split) return primary_or_wait(view, state.backend_mask, RouteReason::SplitOff);
  if (c.primary_hint) return primary_or_wait(view, state.backend_mask, RouteReason::PrimaryHint);
  if (state.pinned_primary) return primary_or_wait(view, state.backend_mask, RouteReason::Pinned);
  if (state.session_unknown) return primary_or_wait(view, state.backend_mask, RouteReason::SessionUnknown);
  const bool read_only = is_read_only_statement(c, state);
  if (read_only && c.reads_unlogged) return primary_or_wait(view, state.backend_mask, RouteReason::Unlogged);
  if (read_only && c.opens_sequence) return primary_or_wait(view, state.backend_mask, RouteReason::OpenSequence);
  if (read_only && state.rerun_after_recovery_conflict) {
    return primary_or_wait(view, state.backend_mask, RouteReason::RecoveryConflict);
  }
  if (read_only && (state.serializable_default || c.serializable())) {
    return primary_or_wait(view, state.backend_mask, RouteReason::Serializable);
  }
  if (!read_only) {
    switch (c.kind) {
      case StatementKind::Session: return primary_or_wait(view, state.backend_mask, RouteReason::SessionCommand);
      case StatementKind::TxBegin: return primary_or_wait(view, state.backend_mask, RouteReason::ReadWriteTransaction);
      case StatementKind::TxEnd: return primary_or_wait(view, state.backend_mask, RouteReason::TransactionEnd);
      default: return primary_or_wait(view, state.backend_mask, RouteReason::Write);
    }
  }

  // A read set of the primary alone: no standby to weigh and no commit to wait for, so such a read never waits
  // (causal_wait) for a standby that cannot exist; its reason is the one a read set whose standbys all fall short
  // gets. With fallback_to_primary off the rest decides (the primary after a commit to see, else no backend).
  const size_t count = view.backends.size();
  const uint64_t present = count >= 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
  if (settings.fallback_to_primary && view.primary >= 0 && view.primary < 64 &&
      (state.backend_mask & present) == uint64_t{1} << view.primary) {
    return Route{RouteTarget::Primary, view.primary, RouteReason::NoEligibleStandby};
  }

  // Read-your-writes and causal reads: only standbys that replayed past the primary LSN sampled after the commit
  // the read must see. A standby that applies every commit (remote_apply, BackendStatus::applies_commits) has
  // what was committed through pgmux at once, except what a session may have committed otherwise.
  const std::optional<CommitToSee> commit = commit_to_see(state, settings.consistency);
  const RouteReason held = commit && !commit->own ? RouteReason::Causal : RouteReason::ReadYourWrites;
  ReplayNeed need;          // for every standby
  ReplayNeed applied_need;  // for those that apply every commit (none to see when no commit is)
  bool any_applying = false;
  if (commit) {
    need = replay_need(commit, view, state.backend_mask);
    const std::optional<double> since = settings.remote_apply_reads ? applying_since(view) : std::nullopt;
    any_applying = since.has_value();
    if (any_applying) {
      applied_need = replay_need(commit_to_see(state, settings.consistency, since), view, state.backend_mask);
    }
    // Nothing sampled since the commit and no standby that applies commits: no standby can show it yet.
    if (need.unknown() && !any_applying) return primary_or_wait(view, state.backend_mask, held);
  }
  auto allowed = [&](int index) {
    const BackendStatus& b = view.backends[static_cast<size_t>(index)];
    if (!in_mask(state.backend_mask, index) || !b.readable || b.spec.weight <= 0) return false;
    const ReplayNeed& needed = any_applying && b.applies_commits ? applied_need : need;
    return !needed.unknown() && (!needed.lsn || standby_caught_up(view, index, *needed.lsn));
  };
  if (state.held_standby >= 0 && static_cast<size_t>(state.held_standby) < view.backends.size() &&
      allowed(state.held_standby)) {
    return Route{RouteTarget::Standby, state.held_standby, RouteReason::Read};
  }
  if (state.held_standby_keeps_cursors && view.primary >= 0 && in_mask(state.backend_mask, view.primary)) {
    for (size_t i = 0; i < view.backends.size(); ++i) {
      if (allowed(static_cast<int>(i))) return Route{RouteTarget::Primary, view.primary, RouteReason::StandbyCursors};
    }
  }
  int pick = balancer.pick(view, allowed);
  if (pick >= 0) return Route{RouteTarget::Standby, pick, RouteReason::Read};

  return no_standby_for_read(state, view, settings, need, held);
}

}  // namespace pgmux::routing
