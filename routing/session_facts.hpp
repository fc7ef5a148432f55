// What a statement does to its session, as data the proxy decides from: why it pins the client to its
// server, which session commands it runs, and the parameter a RESET names. Plain values without allocation,
// so a Classification stays cheap to copy and to cache.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pgmux::routing {

// Session state only the server that holds it has: the client stays on that server (the primary).
enum class PinReason : uint8_t {
  None,
  TempTable,     // CREATE TEMP ..., SELECT ... INTO TEMP
  AdvisoryLock,  // a session-level advisory lock (pg_advisory_lock, pg_try_advisory_lock[_shared])
  Listen,        // LISTEN
  HoldCursor,    // DECLARE ... CURSOR WITH HOLD
  SqlPrepare,    // PREPARE name AS ...: set by the proxy (it pins only in transaction pooling)
  UnknownSessionState,  // the session ran something whose effect on its state pgmux cannot tell (set_config with
                        // computed arguments, a DO block): only its server has that state
  Count
};
const char* to_string(PinReason reason);  // "temporary table", "session advisory lock", ...

// One kind of session command. A statement has at most one; a multi-statement string collects all of them.
enum class SessionEffect : uint8_t {
  Set,            // SET [SESSION] name ..., SET ROLE, SET SESSION CHARACTERISTICS ...: lasts the session
  SetLocal,       // SET LOCAL, SET TRANSACTION, SET CONSTRAINTS: ends with the transaction
  Reset,          // RESET name, SET name TO DEFAULT: Classifier::reset_parameter names it (when readable)
  ResetAll,       // RESET ALL
  DiscardAll,     // DISCARD ALL: every session state, prepared statements included
  Discard,        // DISCARD PLANS / SEQUENCES / TEMP
  Prepare,        // PREPARE name AS ...
  DeallocateAll,  // DEALLOCATE [PREPARE] ALL: every prepared statement, the proxy's own included
  Deallocate,     // DEALLOCATE [PREPARE] name
  Listen,         // LISTEN / UNLISTEN
  Load,           // LOAD 'library'
  Show,           // SHOW: reads the session, changes nothing
  SetConfig,      // a set_config(name, value, is_local) call not known to be local
  Opaque,         // code that may change the session unseen: a DO block
  // Beside SetLocal: SET LOCAL or set_config(..., true) of a setting a prepared statement keeps from its parse
  // (routing::fixed_at_parse: TimeZone, DateStyle...), or of one whose name is not read. The statements parsed in
  // its transaction mean something else than their shared copies (ClientSession::analysis_settings_key).
  SetLocalAnalysis,
  Count
};
const char* to_string(SessionEffect effect);

// The session commands of every statement of a string, as a set.
class SessionEffects {
 public:
  void add(SessionEffect effect) { bits_ = static_cast<uint16_t>(bits_ | bit(effect)); }
  void add(SessionEffects other) { bits_ = static_cast<uint16_t>(bits_ | other.bits_); }
  bool has(SessionEffect effect) const { return (bits_ & bit(effect)) != 0; }
  bool empty() const { return bits_ == 0; }
  // Session state may differ afterwards: the server needs a reset before another client gets it, and the
  // command belongs in the client's session log. False for SHOW and transaction-scoped SETs alone.
  bool may_change_session() const;
  bool operator==(const SessionEffects&) const = default;

 private:
  static constexpr uint16_t bit(SessionEffect effect) {
    return static_cast<uint16_t>(1u << static_cast<unsigned>(effect));
  }
  static_assert(static_cast<unsigned>(SessionEffect::Count) <= 16, "one bit per effect");
  uint16_t bits_ = 0;
};

// A run-time parameter's name as PostgreSQL folds it (lowercase unless quoted, parts joined by '.'), held
// inline. A name that does not fit (no PostgreSQL parameter is that long) is not kept: it reads as empty.
class ParameterName {
 public:
  static constexpr size_t kCapacity = 63;  // NAMEDATALEN - 1

  // Appends text, lowercasing ASCII letters when fold_case. Returns false when it does not fit: the name then
  // stays empty, whatever is appended later.
  bool append(std::string_view text, bool fold_case = false);
  std::string_view view() const { return {text_.data(), size_}; }
  bool empty() const { return size_ == 0; }
  bool operator==(const ParameterName& other) const { return view() == other.view(); }

 private:
  std::array<char, kCapacity> text_{};
  uint8_t size_ = 0;
  bool too_long_ = false;
};

}  // namespace pgmux::routing
