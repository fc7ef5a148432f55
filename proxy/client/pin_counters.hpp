// How many clients were pinned to their server (transaction pooling), by reason. Process-wide and lock-free;
// reported when pgmux stops (the admin console and metrics will read the same counters).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "routing/session_facts.hpp"

namespace pgmux::proxy {

class PinCounters {
 public:
  void add(routing::PinReason reason) { counts_[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t get(routing::PinReason reason) const {
    return counts_[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
  std::string summary() const;  // "temporary table=1, session advisory lock=0, ..."

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(routing::PinReason::Count)> counts_{};
};

}  // namespace pgmux::proxy
