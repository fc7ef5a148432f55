// WITH HOLD cursors that live on the session's standby connection. A DECLARE ... WITH HOLD normally goes to the
// primary (it pins the session there), but inside a read-only block already running on a standby (its first
// statement was a read, or SET TRANSACTION READ ONLY) it runs there, and the cursor outlives the block there. The
// FETCH, MOVE and CLOSE statements naming it follow it to that server, in autocommit or opening a read-only block;
// in a block already running elsewhere they get that server's 34000, as a direct connection never would.
#include "proxy/client/client_conn.hpp"

#include <algorithm>

#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"
#include "routing/sql_cursor_refs.hpp"

namespace pgmux::proxy {

// The statement texts this request runs: its Query, or its Parses and the stored statements it binds.
std::vector<std::string_view> ClientConn::request_statement_texts() {
  std::vector<std::string_view> texts;
  if (request_.kind == RequestKind::Query) {
    texts.push_back(request_.sql);
    return texts;
  }
  for (const ParsedStatement& parse : request_.parses) texts.push_back(parse.sql);
  for (std::string_view name : request_.used) {
    if (const std::optional<std::string_view> text = statement_text(name)) texts.push_back(*text);
  }
  return texts;
}

// At forward: a WITH HOLD cursor declared on the standby connection is remembered by name; a CLOSE of one forgets
// it. CLOSE ALL and DISCARD ALL sent elsewhere give that connection back (its reset closes the cursors there, as
// the statement does on a direct connection): it is idle then, since a request for another server waits for the
// replies owed by the active one.
void ClientConn::note_standby_cursors(ServerConn* server, const routing::Classification& c) {
  const bool declares = c.pin_reason == routing::PinReason::HoldCursor && server == standby_.get();
  if (session_.standby_hold_cursors.empty() && !declares) return;
  std::vector<std::string>& names = session_.standby_hold_cursors;
  bool closes_all = c.effects.has(routing::SessionEffect::DiscardAll);
  for (std::string_view text : request_statement_texts()) {
    routing::CursorRef ref = routing::cursor_ref(text);
    if (ref.kind == routing::CursorRefKind::DeclareHold && declares) {
      if (std::find(names.begin(), names.end(), ref.name) == names.end()) names.push_back(std::move(ref.name));
    } else if (ref.kind == routing::CursorRefKind::DeclareHold || ref.kind == routing::CursorRefKind::Close) {
      // Declared again elsewhere (the standby's one was rolled back, or closed): the latest one is the cursor.
      std::erase(names, ref.name);
    } else if (ref.kind == routing::CursorRefKind::CloseAll) {
      closes_all = true;
    }
  }
  if (!closes_all || names.empty()) return;
  if (server == standby_.get()) {
    names.clear();  // run there: it closes them itself
  } else if (standby_ && !standby_->has_outstanding() && standby_->tx_status() == 'I') {
    LOG_DEBUG("%s: CLOSE ALL or DISCARD ALL: S-%llu, holding WITH HOLD cursors, is given back to close them",
              log_prefix().c_str(), static_cast<unsigned long long>(standby_->id()));
    drop_server(standby_);
  }
}

// The standby connection, when every statement of this request is a FETCH, MOVE or CLOSE of a WITH HOLD cursor
// declared there and the request may run there: outside a transaction, or opening a read-only block (a read-write
// one must run on the primary). Else null: a batch that also writes cannot be split between two servers.
ServerConn* ClientConn::standby_cursor_server(const routing::Classification& c) {
  if (session_.standby_hold_cursors.empty() || !standby_ || !standby_->open()) return nullptr;
  if (!session_.deferred_begin.empty() && !routing::is_read_only_statement(c, session_.route)) return nullptr;
  const std::vector<std::string>& names = session_.standby_hold_cursors;
  const std::vector<std::string_view> texts = request_statement_texts();
  const bool all_there = !texts.empty() && std::all_of(texts.begin(), texts.end(), [&](std::string_view text) {
    const routing::CursorRef ref = routing::cursor_ref(text);
    return (ref.kind == routing::CursorRefKind::Use || ref.kind == routing::CursorRefKind::Close) &&
           std::find(names.begin(), names.end(), ref.name) != names.end();
  });
  if (!all_there) return nullptr;
  LOG_DEBUG("%s: its cursors are on S-%llu (declared WITH HOLD there)", log_prefix().c_str(),
            static_cast<unsigned long long>(standby_->id()));
  return standby_.get();
}

}  // namespace pgmux::proxy
