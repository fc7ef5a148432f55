// Read-your-writes and causal reads without a round trip per read: after a write commits at time t, a standby
// may serve a read that must see it only once it has replayed past the first primary LSN sampled after t (by the
// prober's rounds, or by the replay poller between them).
#pragma once
#include <cstdint>
#include <optional>

#include "routing/topology.hpp"

namespace pgmux::routing {

// How fresh a read served by a standby must be (routing.consistency).
enum class Consistency : uint8_t {
  Causal,    // it sees every commit pgmux acknowledged to any client before the read arrived
  Session,   // it sees the client's own last commit (read-your-writes)
  Eventual,  // only the lag limits apply
};

// The LSN a standby must have replayed for a read that must see a commit made at commit_time; nullopt when
// no sample after commit_time exists yet (reads must stay on the primary).
std::optional<uint64_t> required_lsn(const BackendsView& view, double commit_time);

// The newest primary LSN sample of either kind (probe round or replay poller); nullopt when there is none.
std::optional<LsnSample> latest_primary_sample(const BackendsView& view);

// With no primary (a failover), what a read that must see a commit can ask at most: the replay LSN of the
// readable standby in `mask` that replayed the most; nullopt when no standby is readable.
std::optional<uint64_t> furthest_replay(const BackendsView& view, uint64_t mask);

// True when the standby at index has replayed at least `lsn`.
bool standby_caught_up(const BackendsView& view, int index, uint64_t lsn);

}  // namespace pgmux::routing
