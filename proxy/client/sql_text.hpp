// Small facts read off SQL text and statement messages by the client's request path.
#pragma once
#include <string_view>

namespace pgmux::proxy {

// True when sql's first keyword (after leading whitespace) is `keyword` (upper case), in any case.
bool starts_with_keyword(std::string_view sql, std::string_view keyword);

// Conservative: true when a multi-statement string contains a word that starts a session command (SET, RESET,
// DISCARD, PREPARE, DEALLOCATE, LISTEN, DECLARE), in any case; a false positive only costs a reset.
bool may_hold_session_command(std::string_view sql);

// RESET ALL or DISCARD ALL: undoes every earlier session command.
bool resets_all_settings(std::string_view sql);

}  // namespace pgmux::proxy
