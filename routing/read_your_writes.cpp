#include "routing/read_your_writes.hpp"

#include <algorithm>
#include <vector>

namespace pgmux::routing {
namespace {

// The first sample of `samples` (time-ordered) sent after `t`, or null.
const LsnSample* first_after(const std::vector<LsnSample>& samples, double t) {
  auto it = std::upper_bound(samples.begin(), samples.end(), t,
                             [](double time, const LsnSample& s) { return time < s.time; });
  return it == samples.end() ? nullptr : &*it;
}

}  // namespace

std::optional<uint64_t> required_lsn(const BackendsView& view, double commit_time) {
  // Each sample was read by a query sent at `time`, so one sent after the commit returned carries an LSN at or
  // past the commit record. The earliest such sample of either list asks the least of the standbys.
  const LsnSample* round = first_after(view.primary_lsn_history, commit_time);
  const LsnSample* polled = first_after(view.recent_primary_lsn, commit_time);
  if (round == nullptr && polled == nullptr) return std::nullopt;
  if (round == nullptr) return polled->lsn;
  if (polled == nullptr) return round->lsn;
  return round->time <= polled->time ? round->lsn : polled->lsn;
}

std::optional<LsnSample> latest_primary_sample(const BackendsView& view) {
  std::optional<LsnSample> latest;
  for (const std::vector<LsnSample>* samples : {&view.primary_lsn_history, &view.recent_primary_lsn}) {
    if (!samples->empty() && (!latest || samples->back().time > latest->time)) latest = samples->back();
  }
  return latest;
}

std::optional<uint64_t> furthest_replay(const BackendsView& view, uint64_t mask) {
  std::optional<uint64_t> furthest;
  for (size_t i = 0; i < view.backends.size() && i < 64; ++i) {
    const BackendStatus& b = view.backends[i];
    if (!((mask >> i) & 1) || !b.readable) continue;
    if (!furthest || b.last.replay_lsn > *furthest) furthest = b.last.replay_lsn;
  }
  return furthest;
}

bool standby_caught_up(const BackendsView& view, int index, uint64_t lsn) {
  if (index < 0 || static_cast<size_t>(index) >= view.backends.size()) return false;
  return view.backends[static_cast<size_t>(index)].last.replay_lsn >= lsn;
}

}  // namespace pgmux::routing
