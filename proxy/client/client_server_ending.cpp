// ClientConn: a server connection of the client's that ends with a FATAL.
//
// One question decides what the client sees: does its session live on that server?
// - Transaction pooling (no pin): no. The session lives in pgmux; a server ending with a shutdown, crash or
//   terminate FATAL under a request is answered as any lost server: 08006 "may or may not have been executed"
//   and ReadyForQuery between transactions (the next request goes to the next server, the new primary after a
//   failover), 08006 / 08007 and a close inside a transaction.
// - Session pooling, the standby connection: no. The client knows the primary connection's pid, not this one;
//   the connection is let go (idle) or answered as lost (under a request), and the next read finds another.
// - Session pooling, the primary connection, outside a transaction and not pinned: perhaps. PostgreSQL ends it
//   with the same FATAL 57P01 "terminating connection due to administrator command" for a pg_terminate_backend
//   of that pid and for a fast shutdown of the whole server. A terminate must end the session, as on a direct
//   connection; a shutdown (a failover or switchover under way) need not: the session's state is in its session
//   log, and it goes on with whatever primary comes next. So the FATAL is held (ServerEnding: requests wait in
//   the buffer; the answers owed for requests in flight wait too) while a probe round asks the backend; a request
//   held by PAUSE or waiting for a primary or a replay is routed again afterwards. The
//   prober's own connection answering after the FATAL means only this session was ended; its failing, or the
//   backend no longer being the primary, means the server went away. A crash or an immediate shutdown (57P02, or
//   57P01 "immediate shutdown") is never a terminate: the session moves on at once.
// - A standby ending a connection for its replay (FATAL 40001, a recovery conflict): outside a transaction as a
//   lost server (a read whose reply is all held runs again, on the primary); inside one, passed on (below).
// - Otherwise (a pinned session, a transaction open on the session's primary): yes. The FATAL is passed on and
//   the client is closed, as directly.
#include "proxy/client/client_conn.hpp"

#include "protocol/error_response.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
constexpr double kDecideWithin = 5;  // seconds; undecided by then, the client gets the FATAL, as directly

// The FATALs of a server going away that a session may outlive.
enum class EndingKind {
  None,                 // any other error
  Crash,                // a crash or an immediate shutdown, or "cannot connect now": never aimed at one session
  ShutdownOrTerminate,  // 57P01: a fast or smart shutdown, or a pg_terminate_backend of this one connection
  RecoveryConflict,     // a standby ending this connection for its replay (the read held a subtransaction)
};

// The states a held end may interrupt: between requests, and the waits of a request not sent yet (ServerWait,
// PrimaryWait, ReplayWait, Paused, CatalogWait) or sent behind others on the server that ended (Draining): it
// leaves the wait (a pool's withdraw also lets go of a server being synced for it) and enters it again once
// routed afresh. Not a server being prepared (Preparing): pgmux's own steps run there and their replies are owed.
bool may_hold_server_end(ClientState state) {
  return state == ClientState::Ready || state == ClientState::ServerWait || state == ClientState::PrimaryWait ||
         state == ClientState::ReplayWait || state == ClientState::Paused || state == ClientState::CatalogWait ||
         state == ClientState::Draining;
}

EndingKind ending_kind(const std::optional<ErrorFields>& error) {
  if (!error || error->severity != "FATAL") return EndingKind::None;
  if (is_server_crash_fatal(*error)) return EndingKind::Crash;
  if (is_recovery_conflict(*error)) return EndingKind::RecoveryConflict;
  return error->sqlstate == sqlstate::kAdminShutdown ? EndingKind::ShutdownOrTerminate : EndingKind::None;
}
}  // namespace

bool ClientConn::absorb_server_fatal(ServerConn& server, ByteView body, ByteView message) {
  if (session_.pin_reason != nullptr || session_.route.pinned_primary) return false;  // its state ends with it
  const bool mid_request = server.owed_depth() > 0;  // a reply owed to the client or to pgmux's own step
  if (!mid_request && (server.in_client_transaction() || server.has_outstanding())) return false;
  // Every ErrorResponse of the session passes here: only the SQLSTATEs of a server going away are parsed whole.
  const std::string_view code = error_field(body, 'C');
  if (code != sqlstate::kAdminShutdown && code != sqlstate::kCrashShutdown && code != sqlstate::kCannotConnectNow &&
      code != sqlstate::kSerializationFailure && code != sqlstate::kDeadlockDetected) {
    return false;
  }
  const auto error = parse_error_fields(body);
  const EndingKind kind = ending_kind(error);
  if (kind == EndingKind::None) return false;
  if (kind == EndingKind::RecoveryConflict) return absorb_recovery_conflict(server);
  if (transaction_pooling() || &server == standby_.get()) {
    // The session does not live there: the end of the connection that follows is answered as a lost server.
    if (&server == primary_.get()) worker_.shared().control->request_probe_round();
    return true;
  }
  if (&server != primary_.get() || server.in_client_transaction() || ended_server_) return false;
  worker_.shared().control->request_probe_round();
  if (kind == EndingKind::Crash) {
    LOG_INFO("%s: backend %s is going down (%s); the session moves on to the next primary", log_prefix().c_str(),
             server.pool().backend().name.c_str(), escape_for_log(error->message, 200).c_str());
    return true;
  }
  if (!may_hold_server_end(state_)) return false;
  ended_server_ = std::make_unique<EndedServer>(
      EndedServer{ByteVector(message.begin(), message.end()), server.pool().backend().name, monotonic_now()});
  // A request waiting for a pool's server (leaving the wait withdraws it), a primary, a replay, a RESUME or a
  // standby's replies stays in the buffer: routed afresh once the end is decided, it enters that wait again if it
  // still must.
  if (state_ == ClientState::ServerWait) routed_.reset();  // routed afresh, as when its pool drains
  if (state_ != ClientState::Ready) set_state(ClientState::Ready);
  set_state(ClientState::ServerEnding);
  return true;
}

// A standby ended the connection for its replay. Outside a transaction the session does not live there (a standby
// connection, or any in transaction pooling): the close is answered as a lost server, and a read whose reply is
// still all held runs again, on the primary. Inside one the block is gone with its snapshot: the client gets the
// standby's FATAL 40001, as a client of that standby would, which tells a driver's retry logic what happened.
bool ClientConn::absorb_recovery_conflict(ServerConn& server) {
  if (server.in_client_transaction() || (!transaction_pooling() && &server != standby_.get())) return false;
  // (Without a primary to take it, it runs again where routing sends it: its standby's replay has moved on.)
  if (server.holds_reply_for_retry() && primary_takes_reads()) session_.route.rerun_after_recovery_conflict = true;
  return true;
}

// At each new view (and worker tick) while ServerEnding.
void ClientConn::decide_server_ending() {
  const EndedServer& ended = *ended_server_;
  const bool undecided = monotonic_now() - ended.at > kDecideWithin;
  if (primary_ && !undecided) {
    worker_.wait_for_primary(this);  // the connection has not closed yet: what it owed is known once it has
    return;
  }
  // By name: a reload meanwhile may have moved it in the view.
  const routing::BackendsView& view = worker_.view();
  const routing::BackendStatus* backend = nullptr;
  for (const routing::BackendStatus& b : view.backends) {
    if (b.spec.name == ended.backend_name) backend = &b;
  }
  const bool gone = backend == nullptr || backend->failed_probes > 0 || backend->role != routing::Role::Primary;
  const bool answered_since = !gone && backend->last.sent_at > ended.at;
  // Still connected after kDecideWithin (its end never came): as undecided, the client gets the FATAL.
  if (answered_since || (!gone && undecided) || primary_) {
    // Only this session was ended (pg_terminate_backend): it ends here too, with the server's own FATAL.
    LOG_INFO("%s: the server ended the session's connection (%s answers other connections): ending the session",
             log_prefix().c_str(), ended.backend_name.c_str());
    ByteVector fatal = std::move(ended_server_->fatal);
    ended_server_.reset();
    // Not in the middle of a standby's reply being relayed (a read running there meanwhile): nothing can be
    // framed after half a message, so then the close alone says it.
    if (active_ == nullptr || !active_->mid_message()) send_owned(std::move(fatal));
    close_reason_ = Failure::ServerLost;
    close();
    return;
  }
  if (!gone) {
    worker_.wait_for_primary(this);  // no probe since the FATAL yet: woken again by the next view (or tick)
    return;
  }
  LOG_INFO("%s: backend %s stopped (the prober cannot reach it as a primary either); the session moves on to the "
           "next primary",
           log_prefix().c_str(), ended.backend_name.c_str());
  const EndedServer lost = std::move(*ended_server_);
  ended_server_.reset();
  set_state(ClientState::Ready);
  if (lost.in_flight) answer_lost_requests(lost.backend_name, lost.lost_requests, lost.open_sequence);
  pump();
  // A read that waited for a replay before the end and did not wait again (PAUSE holds it, or it was routed):
  // its horizon must not outlive it (as on_view_changed).
  if (state_ != ClientState::ReplayWait) replay_wait_.reset();
}

}  // namespace pgmux::proxy
