// Which backend an admin SWITCHOVER [TO name] moves the primary to, decided from the current BackendsView before
// anything is held: the target must be a standby streaming from the primary on its timeline, not lagging, and a
// promotion candidate (not configured "role": "standby"). Pure: proxy/control/switchover.cpp does the I/O.
#pragma once
#include <string>
#include <string_view>

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

}  // namespace pgmux::routing
