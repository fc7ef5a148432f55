// Whether a BEGIN / START TRANSACTION text is one PostgreSQL accepts as written: the keyword, an optional WORK or
// TRANSACTION after BEGIN, and transaction modes (ISOLATION LEVEL ..., READ ONLY / WRITE, [NOT] DEFERRABLE)
// separated by commas or blanks, then at most one ';' (comments anywhere). pgmux answers such a BEGIN itself and
// sends it with the next statement (ClientConn::defer_begin); a text PostgreSQL would refuse must reach it as it
// is instead, so that the client gets its error, not a "BEGIN" followed by a statement run outside any block.
#pragma once
#include <string_view>

namespace pgmux::routing {

// The command tag PostgreSQL answers such a text with ("BEGIN" or "START TRANSACTION"), or nullptr when the text
// is not one it accepts.
const char* well_formed_begin_tag(std::string_view sql);
inline bool is_well_formed_begin(std::string_view sql) { return well_formed_begin_tag(sql) != nullptr; }

// "SET" for a SET TRANSACTION of transaction modes alone (no SNAPSHOT) that PostgreSQL accepts as written, which
// pgmux answers itself behind a BEGIN it holds back (ClientConn::hold_set_transaction); nullptr otherwise.
const char* well_formed_set_transaction_tag(std::string_view sql);

}  // namespace pgmux::routing
