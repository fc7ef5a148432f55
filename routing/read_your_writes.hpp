// Read-your-writes without a round trip: after a client's write commits at time t, a standby may serve its reads
// only once it has replayed past the first primary LSN the prober sampled after t.
#pragma once
#include <cstdint>
#include <optional>

#include "routing/topology.hpp"

namespace pgmux::routing {

// The LSN a standby must have replayed for a client whose last write committed at commit_time; nullopt when
// no sample after commit_time exists yet (reads must stay on the primary).
std::optional<uint64_t> required_lsn(const BackendsView& view, double commit_time);

// True when the standby at index has replayed at least `lsn`.
bool standby_caught_up(const BackendsView& view, int index, uint64_t lsn);

}  // namespace pgmux::routing
