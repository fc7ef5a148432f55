// Which cursor a statement declares WITH HOLD, fetches from or moves (FETCH, MOVE), or closes. With the read/write
// split a WITH HOLD cursor declared inside a read-only block that runs on a standby lives on that standby once the
// block commits: the statements that name it must go there (ClientConn::standby_cursor_server). A lexical scan of
// one statement, asked only for clients that hold such a cursor or statements that declare one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace pgmux::routing {

enum class CursorRefKind : uint8_t {
  None,         // not a cursor statement, or one pgmux cannot read
  DeclareHold,  // DECLARE name ... CURSOR WITH HOLD FOR ...
  Declare,      // DECLARE name ... (without hold: it ends with its block)
  Use,          // FETCH / MOVE [direction] [FROM | IN] name
  Close,        // CLOSE name
  CloseAll,     // CLOSE ALL
};

struct CursorRef {
  CursorRefKind kind = CursorRefKind::None;
  std::string name;  // as PostgreSQL folds it (fold_identifier)
};

// The first statement of `sql` (None when more follow it: a multi-statement string is left to the primary).
CursorRef cursor_ref(std::string_view sql);

}  // namespace pgmux::routing
