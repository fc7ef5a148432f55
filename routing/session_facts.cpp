#include "routing/session_facts.hpp"

namespace pgmux::routing {

const char* to_string(PinReason reason) {
  switch (reason) {
    case PinReason::None: return "none";
    case PinReason::TempTable: return "temporary table";
    case PinReason::AdvisoryLock: return "session advisory lock";
    case PinReason::Listen: return "LISTEN";
    case PinReason::HoldCursor: return "WITH HOLD cursor";
    case PinReason::SqlPrepare: return "SQL PREPARE";
    case PinReason::UnknownSessionState: return "session state unknown";
    case PinReason::Count: break;
  }
  return "?";
}

const char* to_string(SessionEffect effect) {
  switch (effect) {
    case SessionEffect::Set: return "SET";
    case SessionEffect::SetLocal: return "SET LOCAL";
    case SessionEffect::Reset: return "RESET";
    case SessionEffect::ResetAll: return "RESET ALL";
    case SessionEffect::DiscardAll: return "DISCARD ALL";
    case SessionEffect::Discard: return "DISCARD";
    case SessionEffect::Prepare: return "PREPARE";
    case SessionEffect::DeallocateAll: return "DEALLOCATE ALL";
    case SessionEffect::Deallocate: return "DEALLOCATE";
    case SessionEffect::Listen: return "LISTEN";
    case SessionEffect::Load: return "LOAD";
    case SessionEffect::Show: return "SHOW";
    case SessionEffect::SetConfig: return "set_config";
    case SessionEffect::Opaque: return "DO or session-changing function";
    case SessionEffect::SetLocalAnalysis: return "SET LOCAL of a setting fixed at parse";
    case SessionEffect::Count: break;
  }
  return "?";
}

bool SessionEffects::may_change_session() const {
  const uint16_t harmless = static_cast<uint16_t>(bit(SessionEffect::Show) | bit(SessionEffect::SetLocal) |
                                                  bit(SessionEffect::SetLocalAnalysis));
  return (bits_ & ~harmless) != 0;
}

bool ParameterName::append(std::string_view text, bool fold_case) {
  if (too_long_ || text.size() > kCapacity - size_) {
    too_long_ = true;
    size_ = 0;
    return false;
  }
  for (char c : text) {
    text_[size_++] = (fold_case && c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return true;
}

}  // namespace pgmux::routing
