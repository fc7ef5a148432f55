// How many clients were pinned to their server (transaction pooling), by reason. Process-wide and lock-free;
// reported when pgmux stops (the admin console and metrics will read the same counters).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgmux::proxy {

enum class PinReason : uint8_t { TempTable, AdvisoryLock, Listen, HoldCursor, SqlPrepare, Other, Count };

const char* to_string(PinReason reason);
// From the classifier's reason text (or pgmux's own "SQL PREPARE").
PinReason pin_reason_of(std::string_view classifier_reason);

class PinCounters {
 public:
  void add(PinReason reason) { counts_[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t get(PinReason reason) const { return counts_[static_cast<size_t>(reason)].load(std::memory_order_relaxed); }
  std::string summary() const;  // "temporary table=1, session advisory lock=0, ..."

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(PinReason::Count)> counts_{};
};

}  // namespace pgmux::proxy
