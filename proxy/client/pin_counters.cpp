#include "proxy/client/pin_counters.hpp"

namespace pgmux::proxy {

const char* to_string(PinReason reason) {
  switch (reason) {
    case PinReason::TempTable: return "temporary table";
    case PinReason::AdvisoryLock: return "session advisory lock";
    case PinReason::Listen: return "LISTEN";
    case PinReason::HoldCursor: return "WITH HOLD cursor";
    case PinReason::SqlPrepare: return "SQL PREPARE";
    case PinReason::Other:
    case PinReason::Count: break;
  }
  return "other";
}

PinReason pin_reason_of(std::string_view reason) {
  auto has = [&](std::string_view part) { return reason.find(part) != std::string_view::npos; };
  if (has("LISTEN")) return PinReason::Listen;
  if (has("TEMP") || has("temp")) return PinReason::TempTable;
  if (has("advisory") || has("write function")) return PinReason::AdvisoryLock;
  if (has("HOLD") || has("DECLARE")) return PinReason::HoldCursor;
  if (has("PREPARE")) return PinReason::SqlPrepare;
  return PinReason::Other;
}

std::string PinCounters::summary() const {
  std::string text;
  for (size_t i = 0; i < static_cast<size_t>(PinReason::Count); ++i) {
    if (!text.empty()) text += ", ";
    text += to_string(static_cast<PinReason>(i));
    text += '=';
    text += std::to_string(counts_[i].load(std::memory_order_relaxed));
  }
  return text;
}

}  // namespace pgmux::proxy
