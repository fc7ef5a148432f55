#include "protocol/error_response.hpp"

#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/sqlstate.hpp"

namespace pgmux::protocol {

std::optional<ErrorFields> parse_error_fields(ByteView body) {
  ErrorFields f;
  bool have_v = false;
  ByteReader r(body);
  while (true) {
    const uint8_t type = r.u8();
    if (!r.ok()) return std::nullopt;  // no terminating zero byte
    if (type == 0) break;
    std::string_view value = r.cstring();
    if (!r.ok()) return std::nullopt;
    switch (char(type)) {
      case 'S':
        if (!have_v) f.severity = value;  // S is localized; V (when sent) wins
        break;
      case 'V':
        f.severity = value;
        have_v = true;
        break;
      case 'C': f.sqlstate = value; break;
      case 'M': f.message = value; break;
      case 'D': f.detail = value; break;
      case 'H': f.hint = value; break;
      case 'R': f.routine = value; break;
      default: f.other.emplace_back(char(type), std::string(value)); break;
    }
  }
  if (!r.at_end()) return std::nullopt;
  return f;
}

std::string_view error_field(ByteView body, char type) {
  ByteReader r(body);
  while (true) {
    const uint8_t t = r.u8();
    if (!r.ok() || t == 0) return {};
    const std::string_view value = r.cstring();
    if (!r.ok()) return {};
    if (char(t) == type) return value;
  }
}

bool is_cached_plan_change(const ErrorFields& error) {
  return error.sqlstate == sqlstate::kFeatureNotSupported && error.routine == "RevalidateCachedQuery";
}

StandbyRefusal standby_refusal(const ErrorFields& error) {
  if (error.sqlstate == sqlstate::kReadOnlySqlTransaction) return StandbyRefusal::ReadOnly;
  if (error.severity == "ERROR" && is_recovery_conflict(error)) return StandbyRefusal::RecoveryConflict;
  if (error.sqlstate != sqlstate::kFeatureNotSupported) return StandbyRefusal::None;
  if (error.routine == "GetSerializableTransactionSnapshot") return StandbyRefusal::Serializable;
  if (error.routine == "get_relation_info") return StandbyRefusal::Unlogged;
  return StandbyRefusal::None;
}

bool is_recovery_conflict(const ErrorFields& error) {
  if (error.sqlstate != sqlstate::kSerializationFailure && error.sqlstate != sqlstate::kDeadlockDetected) {
    return false;
  }
  return error.routine == "ProcessInterrupts" || error.routine == "ProcessRecoveryConflictInterrupt";
}

bool is_server_crash_fatal(const ErrorFields& error) {
  constexpr std::string_view kImmediateShutdown = "terminating connection due to immediate shutdown command";
  if (error.severity != "FATAL") return false;
  return error.sqlstate == sqlstate::kCrashShutdown || error.sqlstate == sqlstate::kCannotConnectNow ||
         (error.sqlstate == sqlstate::kAdminShutdown && error.message == kImmediateShutdown);
}

namespace {
void field(ByteWriter& w, char type, std::string_view value) {
  w.u8(uint8_t(type));
  w.cstring(value);
}

void build_fields(ByteVector& out, char tag, std::string_view severity, std::string_view sqlstate,
                  std::string_view message, std::string_view detail, std::string_view hint,
                  std::string_view routine = {}) {
  ByteWriter w(out);
  w.begin_message(tag);
  field(w, 'S', severity);
  field(w, 'V', severity);
  field(w, 'C', sqlstate);
  field(w, 'M', message);
  if (!detail.empty()) field(w, 'D', detail);
  if (!hint.empty()) field(w, 'H', hint);
  if (!routine.empty()) field(w, 'R', routine);
  w.u8(0);
  w.end_message();
}
}  // namespace

void build_error_response(ByteVector& out, std::string_view severity, std::string_view sqlstate,
                          std::string_view message, std::string_view detail, std::string_view hint,
                          std::string_view routine) {
  build_fields(out, 'E', severity, sqlstate, message, detail, hint, routine);
}

void build_protocol2_fatal(ByteVector& out, std::string_view message) {
  out.push_back(std::byte{'E'});
  for (std::string_view part : {std::string_view("FATAL:  "), message, std::string_view("\n")}) {
    for (char c : part) out.push_back(std::byte(c));
  }
  out.push_back(std::byte{0});
}

void build_notice_response(ByteVector& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message) {
  build_fields(out, 'N', severity, sqlstate, message, {}, {});
}

}  // namespace pgmux::protocol
