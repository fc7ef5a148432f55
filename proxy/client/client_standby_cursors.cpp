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
// it, and so does a CLOSE ALL run there. True for a CLOSE ALL or DISCARD ALL run elsewhere: once it succeeds, the
// standby's cursors must close too (close_standby_cursors).
bool ClientConn::note_standby_cursors(ServerConn* server, const routing::Classification& c) {
  const bool declares = c.pin_reason == routing::PinReason::HoldCursor && server == standby_.get();
  if (session_.standby_hold_cursors.empty() && !declares) return false;
  std::vector<std::string>& names = session_.standby_hold_cursors;
  // Statements that run: a Parse alone (a driver preparing CLOSE ALL) closes nothing.
  const bool runs = request_.kind == RequestKind::Query || request_.named_binds > 0 || request_.binds_unnamed;
  bool closes_all_elsewhere = runs && c.effects.has(routing::SessionEffect::DiscardAll) && server != standby_.get();
  for (std::string_view text : request_statement_texts()) {
    routing::CursorRef ref = routing::cursor_ref(text);
    if (ref.kind == routing::CursorRefKind::DeclareHold && declares) {
      if (std::find(names.begin(), names.end(), ref.name) == names.end()) names.push_back(std::move(ref.name));
    } else if (ref.kind == routing::CursorRefKind::DeclareHold || ref.kind == routing::CursorRefKind::Close) {
      // Declared again elsewhere (the standby's one was rolled back, or closed): the latest one is the cursor.
      std::erase(names, ref.name);
    } else if (ref.kind == routing::CursorRefKind::CloseAll && runs) {
      if (server == standby_.get()) {
        names.clear();  // in statement order: a DECLARE after it in the batch is kept
      } else {
        closes_all_elsewhere = true;
      }
    }
  }
  return closes_all_elsewhere && !names.empty();
}

// A CLOSE ALL or DISCARD ALL succeeded on another server: the standby connection holding WITH HOLD cursors is given
// back, and its reset closes them, as the statement does on a direct connection. It is idle: a request for it
// (a FETCH of one) waits for the replies owed by the active server (server_to_follow).
void ClientConn::close_standby_cursors() {
  if (session_.standby_hold_cursors.empty() || !standby_ || standby_->has_outstanding() ||
      standby_->tx_status() != 'I') {
    return;
  }
  LOG_DEBUG("%s: CLOSE ALL or DISCARD ALL: S-%llu, holding WITH HOLD cursors, is given back to close them",
            log_prefix().c_str(), static_cast<unsigned long long>(standby_->id()));
  drop_server(standby_);
}

// The standby connection, when every statement of this request is a FETCH, MOVE or CLOSE of a WITH HOLD cursor
// declared there and the request may run there: outside a transaction, or opening a read-only block (a read-write
// one must run on the primary). Else null: a batch that also writes cannot be split between two servers.
ServerConn* ClientConn::standby_cursor_server(const routing::Classification& c) {
  if (session_.standby_hold_cursors.empty() || !standby_ || !standby_->open()) return nullptr;
  if (request_.uses_prior_unnamed) return nullptr;  // a statement of an earlier request: not among its texts
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
