// ClientConn, the BEGIN pgmux answers itself (with the read/write split), and the SET TRANSACTIONs it holds behind
// it: they go out with the first statement after them, which decides where the whole transaction runs (a read-only
// block on a standby, any other on the primary), and the statement that fails the block when pgmux answered an
// error inside it (ClientSession::deferred_begin_failed).
#include "proxy/client/client_conn.hpp"

#include <algorithm>

#include "protocol/backend_messages.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {

// What fails a block on the server that pgmux answered an error in (a deferred BEGIN's: deferred_begin_failed; one
// open there: fail_server_block): no such text is an integer, so it fails at parse analysis wherever it runs
// (22P02; no table, function or setting of the session takes part), and the server's log says why.
constexpr std::string_view kFailBlock =
    "SELECT 'pgmux answered an error in this transaction block: it fails here too'::pg_catalog.int4";

}  // namespace

// The statement that carries a deferred BEGIN decides where the whole transaction runs: the class it routes by.
// After a read-only BEGIN (READ ONLY, or any BEGIN in a read-only session) the block is read-only (a standby, unless
// the router keeps it on the primary), unless that statement is SET TRANSACTION READ WRITE (or a SET of a
// transaction_* setting), which PostgreSQL allows before a block's first query, or something a read-only block
// does right on the primary only: a command a standby refuses (NOTIFY), a write function (an advisory lock taken
// on a standby locks nothing on the primary; txid_current), or session state (a WITH HOLD cursor outlives the
// block, and its FETCHes go to the primary). A BEGIN READ WRITE, or one with the primary hint, stays on the
// primary whatever follows: a standby refuses the one, and the other asked for it.
void ClientConn::class_behind_deferred_begin(routing::Classification& c) {
  const routing::Classification& begin = session_.deferred_begin_class;
  const bool read_only_begin = routing::is_read_only_statement(begin, session_.route) && !begin.primary_hint;
  const bool sets_read_write = (c.kind == routing::StatementKind::Session && c.read_write) || begin.read_write;
  const bool sets_read_only =
      c.kind == routing::StatementKind::Session && c.read_only && !c.read_write && !begin.read_write &&
      !begin.primary_hint;
  // A block pgmux failed before any of it ran (an error it answered, deferred_begin_failed): what follows goes to
  // the primary, where PostgreSQL answers it as in a failed block (25P02; COMMIT and ROLLBACK end it), not to the
  // standby a read-only block asked for, which may be what was missing (57P03 again, and no way out of the block).
  if (session_.deferred_begin_failed) {
    if (routing::is_read_only_statement(c, session_.route)) {
      c.kind = routing::StatementKind::Write;
      c.reason = "in a failed transaction block";
    }
    return;
  }
  if (routing::refused_during_recovery(c) || c.write_function || c.pin_reason != routing::PinReason::None) {
    if (routing::is_read_only_statement(c, session_.route)) {
      c.kind = routing::StatementKind::Write;
      c.reason = "primary only, in a read-only transaction";
    }
    return;
  }
  if (sets_read_only || (read_only_begin && !sets_read_write)) {
    c.kind = routing::StatementKind::TxBegin;  // BEGIN; SET TRANSACTION READ ONLY: a read-only transaction
    c.read_only = true;
    // A BEGIN that asked for SERIALIZABLE keeps the block off standbys, whatever level this one sets: they refuse
    // that BEGIN itself.
    if (begin.isolation == routing::Isolation::Serializable) c.isolation = routing::Isolation::Serializable;
  } else if (routing::is_read_only_statement(c, session_.route) || sets_read_write) {
    c.kind = routing::StatementKind::Write;  // anything else: a read-write transaction, on the primary
    c.reason = "read-write transaction";
  }
}

// A BEGIN is answered here and sent with the first statement after it that is not a SET TRANSACTION pgmux holds
// too (hold_set_transaction), so that statement (the first read or write), with the modes set before it, decides
// where the whole transaction runs. True when it was.
bool ClientConn::defer_begin(const routing::Classification& c) {
  const bool idle = !active_ || (!active_->has_outstanding() && active_->tx_status() == 'I');
  if (request_.kind != RequestKind::Query || c.kind != routing::StatementKind::TxBegin || c.multi_statement ||
      !idle || !session_.deferred_begin.empty() || !worker_.config()->routing.read_write_split) {
    return false;
  }
  const char* tag = c.held_tag;
  if (!tag) return false;  // a BEGIN PostgreSQL refuses goes to it as it is: the client gets its error (42601)
  session_.deferred_begin.assign(1, std::string(request_.sql));
  session_.deferred_begin_class = c;
  answer_held(tag);
  return true;
}

// A SET TRANSACTION of modes right behind the deferred BEGIN (pg_dump's REPEATABLE READ, READ ONLY) is answered
// here too and goes out behind the BEGIN: the block's first statement then decides where it runs, with every mode
// set before it known. Routed by its own READ ONLY, a later SET TRANSACTION READ WRITE, ISOLATION LEVEL
// SERIALIZABLE or SNAPSHOT (which PostgreSQL allows before the block's first query) found the block on a standby,
// which refuses them. Only a text PostgreSQL accepts as written, outside a failed block: it cannot fail where the
// merged modes send it (READ WRITE or SERIALIZABLE anywhere keeps the block on the primary, as a standby refuses
// either even when a later SET changes it back). True when it was.
bool ClientConn::hold_set_transaction(const routing::Classification& c) {
  // A handful at most (each its own Query and reply in front of the request): more go out as they come.
  constexpr size_t kMaxHeld = 8;
  if (session_.deferred_begin.empty() || session_.deferred_begin.size() > kMaxHeld ||
      session_.deferred_begin_failed || request_.kind != RequestKind::Query ||
      c.kind != routing::StatementKind::Session || c.held_tag == nullptr) {
    return false;
  }
  routing::Classification& block = session_.deferred_begin_class;
  block.read_only = block.read_only || c.read_only;
  block.read_write = block.read_write || c.read_write;  // READ WRITE anywhere: a standby refuses it
  block.isolation = std::max(block.isolation, c.isolation);
  block.primary_hint = block.primary_hint || c.primary_hint;
  session_.deferred_begin.emplace_back(request_.sql);
  answer_held(c.held_tag);
  return true;
}

// The answer to a statement pgmux holds back (BEGIN, START TRANSACTION, SET): its CommandComplete and ReadyForQuery
// 'T', as the server would send them, built once per tag (tpcb-like begins every transaction so). A simple Query
// destroys the unnamed statement, as on PostgreSQL: the statement goes out ahead of the next request on whatever
// server it runs, so no copy of the unnamed one may be prepared behind it (prepare) either.
void ClientConn::answer_held(std::string_view tag) {
  last_activity_ = worker_.now();  // idle_transaction_timeout counts from here: the client is in a block now
  unnamed_.drop();
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  static const auto reply = [](std::string_view command) {
    ByteVector out;
    build_command_complete(out, command);
    build_ready_for_query(out, 'T');
    return out;
  };
  static const ByteVector kBeginReply = reply("BEGIN");
  static const ByteVector kStartReply = reply("START TRANSACTION");
  static const ByteVector kSetReply = reply("SET");
  send_copy(tag == "BEGIN" ? kBeginReply : tag == "SET" ? kSetReply : kStartReply);
}

// The deferred BEGIN, in front of what goes out with it (the request, or the prepare step). After an error pgmux
// answered in its block (deferred_begin_failed), the block fails right behind it, ahead of anything the step
// prepares: that then fails as the client's own use of it does in a failed block on PostgreSQL (25P02), not with an
// error of its own (a dropped table's 42P01).
// An error pgmux answers inside a block open on the server (0A000 for a statement whose columns changed, 57014 for
// a request cancelled while its server was prepared) fails that block there as well, as PostgreSQL's own error
// would: pgmux's statement that fails, its reply dropped (the relay tells the client once the server owes nothing,
// ServerConn::drop_own_reply). A named Parse and a Sync, not a Query: a Query would destroy the client's unnamed
// statement there. The client's session knows its block failed: it was told 'E'.
void ClientConn::fail_server_block(ServerConn& server) {
  ByteVector fail;
  build_parse(fail, "pgmux_fail_block", kFailBlock);
  build_sync(fail);
  server.expect_failing_reply();
  server.send_copy(fail);
  session_.tx_status = 'E';
}

void ClientConn::write_deferred_begin(ByteVector& out) const {
  for (const std::string& statement : session_.deferred_begin) build_query(out, statement);
  if (session_.deferred_begin_failed) build_query(out, kFailBlock);
}

}  // namespace pgmux::proxy
