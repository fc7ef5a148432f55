#include "proxy/client/pin_counters.hpp"

namespace pgmux::proxy {

std::string PinCounters::summary() const {
  std::string text;
  for (size_t i = 0; i < static_cast<size_t>(routing::PinReason::Count); ++i) {
    const auto reason = static_cast<routing::PinReason>(i);
    if (reason == routing::PinReason::None) continue;
    if (!text.empty()) text += ", ";
    text += routing::to_string(reason);
    text += '=';
    text += std::to_string(counts_[i].load(std::memory_order_relaxed));
  }
  return text;
}

}  // namespace pgmux::proxy
