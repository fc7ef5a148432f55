// Which backend an admin SWITCHOVER [TO name] moves the primary to, decided from the current BackendsView before
// anything is held: the target must be a standby streaming from the primary on its timeline, not lagging, and a
// promotion candidate (not configured "role": "standby"). Pure: proxy/control/switchover.cpp does the I/O.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "routing/topology.hpp"

namespace pgmux::routing {

struct SwitchoverPlan {
  int old_primary = -1;
  int target = -1;
  // Set when no switchover can start: PostgreSQL's SQLSTATE (55000 not in prerequisite state, 42704 unknown
  // backend), a message naming the backend and a hint saying what to do.
  std::string sqlstate;
  std::string error;
  std::string hint;
  bool ok() const { return error.empty(); }
};

// target_name empty: the best candidate (a synchronous standby first, then the one that replayed the most).
SwitchoverPlan plan_switchover(const BackendsView& view, std::string_view target_name);

// Why a standby cannot take over from the primary, or "" when it can.
std::string switchover_obstacle(const BackendsView& view, const BackendStatus& candidate);

// failover.mode pgmux: what a standby answered when asked about its WAL receiver after the primary stopped
// answering probes.
struct ReceiverReport {
  size_t backend = 0;     // index in the view
  bool answered = false;  // false: the query failed (`error`)
  // pg_stat_wal_receiver.status ("streaming", "waiting", ...); "none" without a WAL receiver process; "hidden"
  // when the health-check user may not see it (pg_read_all_stats); "not in recovery".
  std::string status;
  uint64_t received_lsn = 0;  // the most WAL it has: received or replayed
  std::string error;
};

struct FailoverPlan {
  int target = -1;
  std::string waiting;  // why pgmux does not promote (yet): a standby still streams, none can take over, ...
  bool ok() const { return target >= 0; }
};

// Promote only when every standby that answered says its WAL receiver is not streaming (the primary is gone for
// replication too, not merely unreachable from pgmux); then the candidate that received the most WAL on the old
// primary's timeline (config order breaks a tie). Candidates: standbys in the view, not "role": "standby", not
// disabled by the operator.
FailoverPlan plan_failover(const BackendsView& view, int old_primary, const std::vector<ReceiverReport>& reports);

}  // namespace pgmux::routing
