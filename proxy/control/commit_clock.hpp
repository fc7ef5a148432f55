// Causal reads across workers: when pgmux last acknowledged a write's commit to any client. A worker publishes
// it at the ReadyForQuery that ends a write's transaction, before those bytes can reach the client, so a read that
// arrives afterwards on any connection of any worker sees a time at or past that commit. The replay poller and
// every routing decision read it. One atomic: no lock, nothing allocated.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>

namespace pgmux::proxy {

class CommitClock {
 public:
  // at_ns: uv_hrtime() when the commit was known to be done (its ReadyForQuery arrived). Keeps the latest: a
  // worker that read the clock a moment earlier must not move it back.
  void acknowledge(uint64_t at_ns) {
    uint64_t current = latest_ns_.load(std::memory_order_relaxed);
    while (current < at_ns && !latest_ns_.compare_exchange_weak(current, at_ns, std::memory_order_seq_cst)) {
    }
  }
  // In monotonic seconds (the prober's clock, monotonic_seconds()); nullopt before the first write.
  std::optional<double> latest() const {
    const uint64_t ns = latest_ns_.load(std::memory_order_seq_cst);
    if (ns == 0) return std::nullopt;
    return static_cast<double>(ns) / 1e9;
  }

 private:
  std::atomic<uint64_t> latest_ns_{0};
};

}  // namespace pgmux::proxy
