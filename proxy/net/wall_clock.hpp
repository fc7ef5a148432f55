// The wall clock, for times shown to people (SHOW commands, metrics, logs' peers) and Patroni's scheduled times.
// Never for intervals: those use the monotonic clock (uv_now, monotonic_seconds).
#pragma once

#include <chrono>

namespace pgmux::proxy {

// Seconds since the Unix epoch, to the microsecond: a time shown in whole seconds moves by one between two calls
// as the fraction of the current second comes and goes, and two rows computed from it disagree.
inline double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace pgmux::proxy
