// ClientConn, what comes back: ReadyForQuery bookkeeping (session log, read-your-writes, release), COPY,
// idle timeouts and lost servers.
#include "proxy/client/client_conn.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"
#include "routing/read_your_writes.hpp"

namespace pgmux::proxy {

using namespace protocol;

void ClientConn::check_idle(double now, const conf::Timeouts& timeouts) {
  // A message the client has sent only part of counts as idle, as PostgreSQL's idle timeouts cover its whole read.
  if (!reads_requests(state_) || copying()) return;
  if (active_ && active_->has_outstanding()) return;
  const bool in_transaction = !session_.deferred_begin.empty() || (active_ && active_->tx_status() != 'I');
  const double idle = now - last_activity_;
  if (in_transaction && timeouts.idle_transaction_timeout > 0 && idle > timeouts.idle_transaction_timeout) {
    fail({Failure::IdleTransactionTimeout, {std::to_string(static_cast<int>(timeouts.idle_transaction_timeout))}});
  } else if (!in_transaction && timeouts.client_idle_timeout > 0 && idle > timeouts.client_idle_timeout) {
    fail({Failure::ClientIdleTimeout, {std::to_string(static_cast<int>(timeouts.client_idle_timeout))}});
  }
}

void ClientConn::on_ready_for_query(ServerConn* server, char tx_status, OwedReply done, std::span<OwedReply> skipped) {
  last_activity_ = worker_.now();
  const uint64_t now_ns = uv_hrtime();
  const ServedBy served_by = server == standby_ ? ServedBy::Standby : ServedBy::Primary;
  if (done.sent_ns != 0) worker_.metrics().request_done(served_by, now_ns - done.sent_ns, server->pool().stats);
  if (done.session) finish_session_request(server, *done.session, done.failed, tx_status, done.request);
  session_.tx_status = tx_status;
  sent_again_after_loss_ = false;  // answered: the next request may go again once
  if (!open()) return;  // the session's state was lost on a standby
  settle_statements(server, done);
  for (OwedReply& request : skipped) {  // in order, after `done`: each settles the statements of its request only
    if (request.session) finish_session_request(server, *request.session, true, tx_status, request.request);
    if (!open()) return;
    settle_statements(server, request);
  }
  if (done.closes_standby_cursors && !done.failed) close_standby_cursors();
  // Catalog DDL sent by this client has committed or failed: the catalog is loaded again (reads wait for it).
  if (tx_status == 'I' && !in_transaction()) catalog_hold_.end();
  if (tx_status == 'I') end_bound_portals(*server, done.request);
  // COPY ended (an error ends it without CopyDone).
  if (server == active_ && copying()) copy_in_ = copy_pass_remaining_ > 0 ? CopyIn::DroppedMessage : CopyIn::Off;
  if (tx_status == 'I' && tx_started_ns_ != 0) {
    worker_.metrics().transaction_done(served_by, now_ns - tx_started_ns_, server->pool().stats);
    // Pipelined: the next one is already running (not a query of pgmux's own behind this one).
    tx_started_ns_ = server->owed_client_requests() > 0 ? now_ns : 0;
  }
  if (done.committed != Written::Nothing) {
    session_.route.last_write_commit = monotonic_now();
    // Sticky: a later commit that waited does not cover this one (one that wrote no WAL waits for nothing).
    if (done.committed != Written::Applied) session_.route.last_write_unapplied = true;
  }
  session_.route.session_read_only = server->default_read_only();
  // Ending looks again at every reply's end: replies may still be owed before an open sequence that stays so.
  if (state_ == ClientState::Ending || (state_ == ClientState::Draining && !server->has_outstanding())) {
    resume_requests();
  }
  pump();
  release_idle_servers();
}

// A request's reply ended (its ReadyForQuery, or the CopyInResponse of an extended batch): the statements it
// parsed or closed, named and unnamed, are what its ParseComplete messages say.
void ClientConn::settle_statements(ServerConn* server, const OwedReply& done) {
  if (!unconfirmed_.empty()) confirm_statements(server, done);
  unnamed_.on_finished(done.request, done.failed, done.parses_seen);
}

// The named statements the finished request parsed or closed: an error ends a batch, the messages before it ran
// and the rest were skipped. Walked backwards, so that a skipped Parse is undone before a skipped Close in front of
// it puts back the statement it had removed.
void ClientConn::confirm_statements(ServerConn* server, const OwedReply& done) {
  if (done.request == 0) return;
  size_t finished = 0;
  while (finished < unconfirmed_.size() && unconfirmed_[finished].request <= done.request) ++finished;
  const unsigned closes_seen = done.client_closes_seen();
  for (size_t i = finished; i-- > 0;) {
    UnconfirmedStatement& change = unconfirmed_[i];
    if (change.request != done.request) continue;
    if (!change.closed) {
      confirm_parse(server, done, change);
    } else if (done.failed && change.ordinal >= closes_seen) {
      restore_closed_statement(server, change);
    }
  }
  unconfirmed_.erase(unconfirmed_.begin(), unconfirmed_.begin() + static_cast<std::ptrdiff_t>(finished));
}

// The Closes of request `done` PostgreSQL did not run (no CloseComplete came for them): their statements come back.
// For a request about to run again elsewhere (on_read_only_retry), whose reply was dropped unmarked by its error.
void ClientConn::restore_skipped_closes(ServerConn* server, const OwedReply& done) {
  const unsigned closes_seen = done.client_closes_seen();
  for (size_t i = unconfirmed_.size(); i-- > 0;) {
    UnconfirmedStatement& change = unconfirmed_[i];
    if (change.request != done.request || !change.closed || change.ordinal < closes_seen) continue;
    restore_closed_statement(server, change);
    unconfirmed_.erase(unconfirmed_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

// A named statement exists on the server if its ParseComplete came. Only confirmed ones get PostgreSQL's 42P05
// from pgmux when parsed again. The others do not exist, on the server or for PostgreSQL's client: the session
// forgets them, so a later Bind of the name gets PostgreSQL's 26000 and a Parse of it creates it (before, pgmux
// prepared the failed text again at the next use: a Parse refused in a failed block then ran anyway).
void ClientConn::confirm_parse(ServerConn* server, const OwedReply& done, const UnconfirmedStatement& parsed) {
  PreparedStatement* stored = session_.find_statement(parsed.name);
  if (!stored) return;
  if (parsed.ordinal < done.parses_seen) {
    stored->confirmed = true;
    // The shape and parameter types of the copy its own Parse made (pgmux's Describe behind it, if any).
    stored->shape = 0;
    stored->parameter_types.clear();
    learn_description(*server, parsed.name);
    return;
  }
  if (transaction_pooling()) server->server_statements.erase(stored->server_name);
  if (!parsed_again_later(parsed.name, done.request)) {
    server->prepared.erase(parsed.name);
    session_.erase_statement(parsed.name);
  }
}

// A request pipelined after `request` parsed `name` too: the session's entry is that later one's.
bool ClientConn::parsed_again_later(std::string_view name, uint64_t request) const {
  return std::any_of(unconfirmed_.begin(), unconfirmed_.end(), [&](const UnconfirmedStatement& later) {
    return later.request > request && !later.closed && later.name == name;
  });
}

// COPY FROM STDIN started: the client's next bytes are COPY data for this server. (An extended batch's reply ends
// at the ReadyForQuery of the Sync the client sends after CopyDone, ServerConn::deliver; `batch` is one that ended
// here, with requests pipelined behind it: its statements are settled now.)
void ClientConn::on_copy_in(ServerConn* server, const OwedReply* batch, bool ended_ahead) {
  if (batch) settle_statements(server, *batch);
  if (server != active_ || ended_ahead) return;
  copy_in_ = CopyIn::Streaming;
  copy_pass_remaining_ = 0;
  // The data the client sent before its end goes out; requests held behind the COPY's start are COPY messages.
  if (state_ == ClientState::Ending || state_ == ClientState::Draining) resume_requests();
  pump();
}

void ClientConn::on_server_lost(ServerConn* server, bool fatal_forwarded, bool mid_message) {
  if (server != primary_ && server != standby_ && state_ == ClientState::ServerWait) {
    // It died while being readied for this client (parameter sync): ask the pool again, or route again when a
    // reload removed its backend.
    if (server->pool().draining()) {
      on_pool_draining(waiting_pool_);
    } else {
      acquire(server->pool().backend_index(), waiting_role_);
    }
    return;
  }
  const bool was_active = server == active_;
  const bool was_primary = server == primary_;
  const bool had_cursors = server == standby_ && !session_.standby_hold_cursors.empty();
  // What the client waits for: not a query of pgmux's own behind its last request (CaptureOwn), which it never sees.
  const bool in_flight = was_active && (server->owed_client_requests() > 0 || server->tx_status() != 'I' || copying());
  const bool was_preparing = server == preparing_;
  // A request alone on the server whose reply is still held, not a byte of it relayed (client_retry.cpp).
  const bool run_again =
      in_flight && server->holds_reply_for_retry() && !sent_again_after_loss_ && can_run_again(server, 1);
  if (server == routed_server()) routed_.reset();  // the request is routed afresh
  let_go_of(server);
  if (server == primary_) primary_.forget();  // closing: its pool has let go of it already
  if (server == standby_) standby_.forget();
  if (!open()) return;
  if (state_ == ClientState::EndForwarded) {  // only the server the client's end went to ends it (forward_end)
    if (server->sending_finished()) close();    // as PostgreSQL does; close_reason_ says why
    return;
  }
  const std::string backend = server->pool().backend().name;
  if (mid_message) {
    close_reason_ = Failure::ServerLost;
    close();  // half a message went out: nothing else can be framed after it
    return;
  }
  if (fatal_forwarded) {
    close_reason_ = Failure::ServerLost;
    close();  // PostgreSQL ended the session and said so, as it would on a direct connection
    return;
  }
  if (in_flight && server->in_client_transaction() && server->commit_owed()) {
    fail({Failure::ServerLostDuringCommit, {backend}});  // 08007, as libpq's transaction_resolution_unknown
    return;
  }
  if (in_flight && server->in_client_transaction()) {
    fail({Failure::ServerLostInTransaction, {backend}});
    return;
  }
  if ((was_primary && session_.route.pinned_primary) || had_cursors) {
    fail({Failure::ServerLostSessionGone, {backend}});  // its WITH HOLD cursors went with it
    return;
  }
  if (run_again && run_again_after_loss(backend)) {
    if (state_ == ClientState::Draining || state_ == ClientState::Ending) resume_requests();
    pump();
    return;
  }
  if (in_flight) {
    const size_t requests = server->owed_client_requests();
    const bool open_sequence = server->extended_open();
    tx_started_ns_ = 0;
    copy_in_ = CopyIn::Off;
    if (state_ == ClientState::ServerEnding && was_primary) {
      // Its FATAL is held until a probe tells a terminate from a shutdown: so are the answers (decide_server_ending).
      ended_server_->in_flight = true;
      ended_server_->lost_requests = requests;
      ended_server_->open_sequence = open_sequence;
    } else {
      answer_lost_requests(backend, requests, open_sequence);
    }
  }
  const bool preparing = state_ == ClientState::Preparing || state_ == ClientState::PreparingCanceled;
  const bool canceled = state_ == ClientState::PreparingCanceled && was_preparing;
  if (state_ == ClientState::Draining || state_ == ClientState::Ending || (preparing && was_preparing)) {
    resume_requests();
  }
  if (canceled) fail({Failure::WaitingRequestCanceled});  // it never ran, and its cancel holds: not routed again
  pump();
}

// The requests may or may not have run; the client hears so, once for each, and the session goes on.
void ClientConn::answer_lost_requests(const std::string& backend, size_t requests, bool open_sequence) {
  sent_again_after_loss_ = false;  // the next request may go again once
  session_.route.rerun_after_recovery_conflict = false;
  const size_t answers = requests - (open_sequence ? 1 : 0);
  ByteVector out;
  const FailureReport lost(Failure::ServerLostInFlight, {backend});
  for (size_t i = 0; i < answers; ++i) {
    report_failure(lost, Severity::Error, worker_.metrics(), log_prefix(), out);
    build_ready_for_query(out, 'I');
  }
  if (answers == 0 || open_sequence) {
    // An extended sequence without Sync (or a COPY whose batch was answered): its Sync gets ReadyForQuery.
    report_failure(lost, Severity::Error, worker_.metrics(), log_prefix(), out);
    discard_until_sync_ = true;
  }
  send_owned(std::move(out));
}

}  // namespace pgmux::proxy
