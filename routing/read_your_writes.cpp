#include "routing/read_your_writes.hpp"

#include <algorithm>

namespace pgmux::routing {

std::optional<uint64_t> required_lsn(const BackendsView& view, double commit_time) {
  // Samples are time-ordered; each was read by a query sent at `time`, so one sent after the commit
  // returned carries an LSN at or past the commit record.
  const auto& h = view.primary_lsn_history;
  auto it = std::upper_bound(h.begin(), h.end(), commit_time,
                             [](double t, const LsnSample& s) { return t < s.time; });
  if (it == h.end()) return std::nullopt;
  return it->lsn;
}

bool standby_caught_up(const BackendsView& view, int index, uint64_t lsn) {
  if (index < 0 || static_cast<size_t>(index) >= view.backends.size()) return false;
  return view.backends[static_cast<size_t>(index)].last.replay_lsn >= lsn;
}

}  // namespace pgmux::routing
