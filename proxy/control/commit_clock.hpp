// Causal reads across workers: when pgmux last acknowledged a write's commit to any client. A worker publishes
// it at the ReadyForQuery that ends a write's transaction, before those bytes can reach the client, so a read that
// arrives afterwards on any connection of any worker sees a time at or past that commit. The replay poller and
// every routing decision read it. Two atomics: no lock, nothing allocated.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>

namespace pgmux::proxy {

class CommitClock {
 public:
  // at_ns: uv_hrtime() when the commit was known to be done (its ReadyForQuery arrived). Keeps the latest: a
  // worker that read the clock a moment earlier must not move it back. applied: the commit surely waited for the
  // standbys that apply every commit (BackendStatus::applies_commits): its session did not change
  // synchronous_commit and nothing said the wait was cut short. Other commits bind those standbys as well.
  void acknowledge(uint64_t at_ns, bool applied = false) {
    raise(latest_ns_, at_ns);
    if (!applied) raise(latest_unapplied_ns_, at_ns);
  }
  // In monotonic seconds (the prober's clock, monotonic_seconds()); nullopt before the first write.
  std::optional<double> latest() const { return seconds(latest_ns_); }
  // The latest commit not known to have been applied by the standbys that apply every commit.
  std::optional<double> latest_unapplied() const { return seconds(latest_unapplied_ns_); }

 private:
  static void raise(std::atomic<uint64_t>& stamp, uint64_t at_ns) {
    uint64_t current = stamp.load(std::memory_order_relaxed);
    while (current < at_ns && !stamp.compare_exchange_weak(current, at_ns, std::memory_order_seq_cst)) {
    }
  }
  static std::optional<double> seconds(const std::atomic<uint64_t>& stamp) {
    const uint64_t ns = stamp.load(std::memory_order_seq_cst);
    if (ns == 0) return std::nullopt;
    return static_cast<double>(ns) / 1e9;
  }

  std::atomic<uint64_t> latest_ns_{0};
  std::atomic<uint64_t> latest_unapplied_ns_{0};
};

}  // namespace pgmux::proxy
