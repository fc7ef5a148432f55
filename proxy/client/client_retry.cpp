// ClientConn, requests run again where the client cannot tell (ReplyFate::HeldForRetry: their replies are held
// until their ReadyForQuery).
// - Reads that write: a statement the classifier took for a read (a function declared STABLE that writes anyway,
//   an operator or cast over a volatile function, a function created behind pgmux's back) fails on a standby with
//   25006. When that error comes before any row reached the client, outside a transaction, the client never sees
//   it: the request runs again on the primary, and its text counts as a write from then on.
// - Reads a standby canceled for a conflict with its recovery (40001, 40P01: its replay of the primary's WAL needed a
//   lock, a buffer pin or row versions the read held), before any row reached the client, outside a transaction:
//   the request runs again on the primary, where it would have run undisturbed. A FATAL one (the read held a
//   subtransaction) ends the connection: the read is then a request lost with its server (below), and runs again
//   on the primary too (ClientConn::absorb_server_fatal).
// - Reads of an unlogged table (its rows are the primary's only): a standby refuses them (0A000) at planning, before
//   they run; the request runs again on the primary, and its text counts as a write from then on.
// - Reads of a session whose default isolation level is SERIALIZABLE where pgmux could not see it set (ALTER
//   ROLE / DATABASE ... SET, set_config): a standby refuses them (0A000) before they run; the request runs again on
//   the primary, and the session's reads go there from then on.
// - Requests lost with their server (a crash, a failover, a network cut) before any of their reply reached the
//   client, when running them did nothing: a read on a standby, a lone BEGIN (a client between transactions at a
//   failover starts its next one on the new primary, instead of hearing 08006 "may or may not have been
//   executed"). They go to the next server as they came.
#include "proxy/client/client_conn.hpp"

#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

// Armed only where running it again cannot change what the client sees: a read alone on its standby (nothing
// owed ahead), outside a transaction, a whole request (a Query, or an extended batch ending in Sync).
bool ClientConn::may_run_on_primary_instead(const ServerConn* server, const routing::Classification& c) const {
  if (server != standby_.get() || c.kind != routing::StatementKind::Read || c.read_only || server->has_outstanding()) {
    return false;  // read_only: the client asked for a read-only transaction, where the primary says 25006 too
  }
  if (server->tx_status() != 'I' || !session_.deferred_begin.empty() || request_.size > kMaxRetriedRequest) {
    return false;
  }
  return request_.kind == RequestKind::Query || (request_.kind == RequestKind::Extended && request_.ends_with_sync);
}

// One transaction start alone (BEGIN, START TRANSACTION: a Query of that one statement, or an extended batch of one
// Parse, Bind, Describe, Execute), on a server outside a transaction with nothing owed, for a session that keeps no
// state on its server: lost before its ReadyForQuery, it opened nothing that outlives the connection. Not a
// string or batch with more in it: the classes of its statements combine (BEGIN; INSERT; COMMIT is a TxBegin
// batch), and what follows a BEGIN may have committed.
bool ClientConn::may_run_again_if_lost(const ServerConn* server, const routing::Classification& c) const {
  if (c.kind != routing::StatementKind::TxBegin || c.multi_statement || server->has_outstanding() ||
      server->tx_status() != 'I' || session_.pin_reason != nullptr || session_.route.pinned_primary) {
    return false;
  }
  if (!session_.deferred_begin.empty() || request_.size > kMaxRetriedRequest) return false;
  if (request_.kind == RequestKind::Query) return true;
  const unsigned binds = request_.named_binds + (request_.binds_unnamed ? 1 : 0);
  return request_.kind == RequestKind::Extended && request_.ends_with_sync && request_.parses.size() <= 1 &&
         binds == 1 && request_.messages <= 5;  // Parse, Bind, Describe, Execute, Sync: one Execute at most
}

bool ClientConn::run_again_after_loss(const std::string& backend) {
  // Once per request: one that takes its server down itself (a crash, an out-of-memory kill) must not take the
  // next one down too; lost again, the client hears 08006.
  if (!in_.unread(retry_request_)) return false;  // can_run_again made sure it fits; else it is answered as lost
  sent_again_after_loss_ = true;
  worker_.metrics().lost_request_retries.add();
  LOG_INFO("%s: backend %s was lost before it answered a request that changes nothing it could lose (a read, a "
           "BEGIN); sending it again",
           log_prefix().c_str(), backend.c_str());
  retry_request_.clear();
  tx_started_ns_ = 0;
  return true;
}

// Asked by the standby when its refusal (standby_refusal) arrives (its reply still owed), and again at its
// ReadyForQuery: nothing was sent behind the read, nothing waits to be routed, and the client's buffer can take
// the request back.
bool ClientConn::may_run_again(const ServerConn* server) const { return can_run_again(server, 1); }

bool ClientConn::can_run_again(const ServerConn* server, size_t owed) const {
  return server == active_ && server->owed_depth() == owed && !routed_ && !preparing_ && !retry_request_.empty() &&
         (state_ == ClientState::Ready || state_ == ClientState::Draining || state_ == ClientState::Ending) &&
         in_.consumed() == in_.parsed();
}

void ClientConn::on_read_only_retry(ServerConn* server, OwedReply dropped) {
  const StandbyRefusal refusal = refusal_in(server->dropped_reply());
  // Something came in between (the client pipelined another request): its replies must stay in order, so the
  // client gets the standby's error after all. So it does for a canceled read no primary can take (a failover, a
  // read set without the primary, routing.fallback_to_primary off): a read needs no primary, unlike a write.
  if (!can_run_again(server, 0) || (refusal == StandbyRefusal::RecoveryConflict && !primary_takes_reads())) {
    LOG_INFO("%s: a standby refused a read (25006, 0A000 or a recovery conflict); it cannot run again on the primary "
             "now",
             log_prefix().c_str());
    send_owned(ByteVector(server->dropped_reply().begin(), server->dropped_reply().end()));
    retry_request_.clear();
    dropped.failed = true;
    on_ready_for_query(server, server->tx_status(), std::move(dropped));
    return;
  }
  restore_skipped_closes(server, dropped);  // the request applies its Closes again when it goes out again
  if (refusal != StandbyRefusal::Serializable) forget_unmade_copies(server, dropped);
  if (refusal != StandbyRefusal::RecoveryConflict) worker_.metrics().standby_write_retries.add();
  if (refusal == StandbyRefusal::RecoveryConflict) {
    // Nothing to learn: the same read runs on a standby again once its replay has moved on. This one goes to the
    // primary, where no replay cancels it (counted as routed for "recovery-conflict").
    session_.route.rerun_after_recovery_conflict = true;
    LOG_INFO("%s: S-%llu backend %s canceled a read for a conflict with its recovery before any row reached the "
             "client; running it again on the primary",
             log_prefix().c_str(), static_cast<unsigned long long>(server->id()),
             server->pool().backend().name.c_str());
  } else if (refusal == StandbyRefusal::Serializable) {
    learn_serializable_default(*server);
    confirm_statements(server, dropped);  // its Parses were refused: the standby does not have them
  } else if (refusal == StandbyRefusal::Unlogged) {
    learn_from_refusal(retry_request_, /*unlogged=*/true);
    LOG_INFO("%s: S-%llu backend %s refused to plan a read (0A000: it reads an unlogged table, which only the "
             "primary has) before any row reached the client; running it again on the primary (its text goes there "
             "from now on)",
             log_prefix().c_str(), static_cast<unsigned long long>(server->id()),
             server->pool().backend().name.c_str());
  } else {
    learn_from_refusal(retry_request_, /*unlogged=*/false);
    LOG_INFO("%s: S-%llu backend %s rejected a read as a write (25006) before any row reached the client; running "
             "it again on the primary (its text counts as a write from now on)",
             log_prefix().c_str(), static_cast<unsigned long long>(server->id()),
             server->pool().backend().name.c_str());
  }
  in_.unread(retry_request_);
  retry_request_.clear();
  if (state_ == ClientState::Draining || state_ == ClientState::Ending) resume_requests();
  release_idle_servers();
  pump();
}

// Transaction pooling: the shared copies the dropped request's Parses were to make on the standby, where no
// ParseComplete came for them (skipped behind the error, or canceled while parsing): the server does not have them,
// and another client must not take its list's word for it (a 26000 under the shared name).
void ClientConn::forget_unmade_copies(ServerConn* server, const OwedReply& dropped) {
  if (!transaction_pooling()) return;
  for (const UnconfirmedStatement& change : unconfirmed_) {
    if (change.request != dropped.request || change.closed || change.ordinal < dropped.parses_seen) continue;
    if (const PreparedStatement* stored = session_.find_statement(change.name)) {
      server->server_statements.erase(stored->server_name);
    }
  }
}

// A read run again for a recovery conflict goes to the primary: there is one, in the client's read set, and reads may
// fall back to it.
bool ClientConn::primary_takes_reads() const {
  const routing::BackendsView& view = worker_.view();
  return view.primary >= 0 && ((session_.route.backend_mask >> view.primary) & 1) &&
         worker_.config()->routing.fallback_to_primary;
}

// What the ErrorResponse in a reply dropped for a retry says the standby refused.
StandbyRefusal ClientConn::refusal_in(ByteView reply) {
  for (size_t at = 0;;) {
    const Frame frame = next_frame(reply.subspan(at), static_cast<uint32_t>(reply.size()));
    if (frame.status != FrameStatus::Frame || at + frame.total() > reply.size()) return StandbyRefusal::None;
    if (frame.tag == backend::kErrorResponse) return refusal_of(reply.subspan(at + kFrameHeaderSize, frame.length - 4));
    at += frame.total();
  }
}

StandbyRefusal ClientConn::refusal_of(ByteView error_body) {
  const auto error = parse_error_fields(error_body);
  return error ? standby_refusal(*error) : StandbyRefusal::None;
}

// A standby refused the session's default isolation level, SERIALIZABLE, which the session got where pgmux could
// not see (ALTER ROLE / DATABASE ... SET, set_config, the servers' configuration): the request runs again on the
// primary, and so do the session's reads from now on (a RESET returns to that default too). The worker keeps it
// for the (database, user)'s next sessions.
void ClientConn::learn_serializable_default(ServerConn& standby) {
  session_.route.serializable_default = true;
  session_.route.serializable_server_default = true;
  worker_.learn_serializable_default(database_, user_config_->name);
  LOG_INFO("%s: S-%llu backend %s cannot run the session's default isolation level, SERIALIZABLE (0A000), before "
           "the request ran; it runs again on the primary, where the session's reads go from now on",
           log_prefix().c_str(), static_cast<unsigned long long>(standby.id()), standby.pool().backend().name.c_str());
}

// The statements of the rejected request are writes (25006), or reads only the primary can run (unlogged): their
// texts for the classifier, named statements and the unnamed one for this session.
void ClientConn::learn_from_refusal(ByteView request, bool unlogged) {
  RequestInfo info;
  const uint32_t max_size = worker_.max_message_size();
  if (scan_request(request, max_size, request.size(), info).status != ScanStatus::Complete) return;
  routing::Classifier& classifier = worker_.classifier();
  const auto lesson = unlogged ? routing::LearnedWrites::Lesson::PrimaryRead : routing::LearnedWrites::Lesson::Write;
  auto learn_class = [unlogged](routing::Classification& c) {
    if (unlogged) {
      c.reads_unlogged = true;
    } else {
      c.kind = routing::StatementKind::Write;
      c.reason = "rejected as a write by a standby";
    }
  };
  if (info.kind == RequestKind::Query) classifier.learn(info.sql, lesson);
  for (const ParsedStatement& parse : info.parses) classifier.learn(parse.sql, lesson);
  for (std::string_view name : info.used) {
    if (PreparedStatement* stored = session_.find_statement(name)) learn_class(stored->classification);
  }
  if (info.binds_unnamed) learn_class(unnamed_.expected_class());
}

}  // namespace pgmux::proxy
