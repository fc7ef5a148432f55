// ServerConn, the relay: a linked server's bytes forwarded to its client as the front of the reply queue says
// (DESIGN.md §3.5), with the few messages pgmux must read whole decoded on the way.
#include "proxy/server/server_conn.hpp"

#include "protocol/backend_messages.hpp"
#include "protocol/byte_reader.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/statement_naming.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "routing/router.hpp"

namespace pgmux::proxy {

using namespace protocol;

// The messages relay() handles in one write to the client.
struct ServerConn::RelayPass {
  ForwardBatch batch;
  size_t pos = 0;            // where the next message starts in in_
  bool need_room = false;    // a message that must be read whole does not fit yet
  size_t room = 0;           // need_room: the bytes from pos that must fit
  RelayEvent event = RelayEvent::None;
};

// Only the client's active server relays; another keeps its bytes until it is its turn, unless its idle client
// takes them now (a NOTIFY, a FATAL from pg_terminate_backend on the session's primary connection).
bool ServerConn::relay_turn() {
  if (state() != ServerState::Linked || !client_ || pinned() || !open()) return false;
  if (client_->active_server() == this) return true;
  if (in_.unparsed() > 0 && client_->accept_unsolicited(this)) return true;
  if (in_.unparsed() > 0) {
    LOG_DEBUG("S-%llu: holding %zu bytes, not its client's active server", static_cast<unsigned long long>(id()),
              in_.unparsed());
  }
  return false;
}

// The server closed while holding bytes its client never took (it was not the active server, and the client could
// not take them unasked: another server's reply was running, or the client waited for something): the ErrorResponse
// among them, the FATAL that says why the server ended, still decides what the client sees (absorb_server_fatal)
// rather than vanishing with the connection. Nothing else held (a notice, a notification) can be delivered now.
void ServerConn::offer_held_error() {
  if (!client_ || state() != ServerState::Linked || pass_remaining_ > 0) return;
  // The active server's bytes were relayed, unless its reply is held (HeldForRetry: a FATAL waits there too).
  if (client_->active_server() == this && owed_.front_fate() != ReplyFate::HeldForRetry) return;
  visit_unread_errors([this](ByteView body, ByteView message) {
    client_->absorb_server_fatal(*this, body, message);
    return true;
  });
}

void ServerConn::visit_unread_errors(const std::function<bool(ByteView body, ByteView message)>& visit) const {
  size_t at = in_.parsed();
  while (at < in_.end()) {
    const Frame frame = next_frame(ByteView(in_.data() + at, in_.end() - at), worker_.max_message_size());
    if (frame.status != FrameStatus::Frame || in_.end() - at < frame.total()) return;
    const ByteView message(in_.data() + at, frame.total());
    if (frame.tag == backend::kErrorResponse && visit(message.subspan(kFrameHeaderSize), message)) return;
    at += frame.total();
  }
}

// Every ErrorResponse passes here before anything else looks at it (absorbed, dropped or relayed): only a FATAL
// or PANIC, rare, is parsed whole.
void ServerConn::note_fatal(ByteView body) {
  std::string_view severity = error_field(body, 'V');
  if (severity.empty()) severity = error_field(body, 'S');
  if (severity != "FATAL" && severity != "PANIC") return;
  const auto error = parse_error_fields(body);
  if (severity == "PANIC" || (error && is_server_crash_fatal(*error))) {
    fatal_seen_ = FatalSeen::Backend;
  } else if (fatal_seen_ == FatalSeen::None) {
    fatal_seen_ = FatalSeen::Session;
  }
}

bool ServerConn::ended_with_backend() const {
  // The FATAL may still be among the bytes received and not relayed (a held reply, a server not its client's
  // active one), behind an ordinary error.
  std::optional<bool> unread;
  visit_unread_errors([&unread](ByteView body, ByteView) {
    const auto error = parse_error_fields(body);
    if (!error || (error->severity != "FATAL" && error->severity != "PANIC")) return false;  // an ordinary error
    unread = error->severity == "PANIC" || is_server_crash_fatal(*error);
    return true;
  });
  return unread.value_or(fatal_seen_ != FatalSeen::Session);
}

// Forwards server bytes to the linked client, as the front of the reply queue says. A batch ends at
// ReadyForQuery or CopyInResponse so the client hears of it only after the bytes before it were written (it may
// then route its next request elsewhere).
void ServerConn::relay() {
  if (!relay_turn()) return;
  while (open() && !pinned() && client_) {
    // Nothing unread: the call right after a request went out, or the turn after a ReadyForQuery was delivered.
    if (in_.unparsed() == 0) {
      rewritten_.clear();  // as a pass would: nothing is pinned, so their write is done
      break;
    }
    RelayPass pass;
    pass.pos = in_.parsed();
    if (!collect_relay_pass(pass)) return;  // failed: closed
    in_.advance_parsed(pass.pos - in_.parsed());
    if (!pass.batch.empty()) {
      ClientConn* client = client_;
      if (!client->forward_from(*this, pass.batch.bufs(), pass.batch.count())) {
        pending_event_ = pass.event;  // pinned: on_forward_done delivers it
        return;
      }
      if (!open() || client_ != client) return;
    }
    in_.consume_to(in_.parsed());
    if (pass.need_room) {
      in_.make_room(pass.room);
      break;
    }
    if (pass.event != RelayEvent::None) {
      deliver(pass.event);
      if (!open() || !client_ || client_->active_server() != this) return;
      continue;
    }
    if (in_.unparsed() == 0 || !pass.batch.full()) break;
  }
  if (!open() || pinned()) return;
  in_.compact();
  in_.shrink_if_empty();
  start_reading();
}

// Fills one pass. Only ReadyForQuery, ParameterStatus, ErrorResponse, NoticeResponse (rare; after a write it may
// say a commit's wait for a standby was cancelled) and the COPY-in responses of a forwarded reply are decoded (read
// whole); everything else streams through, part of a message at a time if need be.
// False when the connection failed (and is closed).
bool ServerConn::collect_relay_pass(RelayPass& pass) {
  rewritten_.clear();  // the previous pass's write is done (a pinned one would not start a pass)
  while (!pass.batch.full() && pass.event == RelayEvent::None) {
    const size_t available = in_.end() - pass.pos;
    if (pass_remaining_ > 0) {
      if (available == 0) break;
      size_t n = std::min(pass_remaining_, available);
      pass.batch.add(in_.data() + pass.pos, n);
      pass.pos += n;
      pass_remaining_ -= n;
      continue;
    }
    Frame frame = next_frame(ByteView(in_.data() + pass.pos, available), worker_.max_message_size());
    if (frame.status == FrameStatus::NeedMore) break;
    if (frame.status == FrameStatus::Error) {
      fail({Failure::ServerInvalidMessage, {to_string(frame.error)}});
      return false;
    }
    if (owed_.front_fate() == ReplyFate::HeldForRetry && !decide_read_only_retry(pass)) break;
    const char tag = frame.tag;
    const bool inspect = tag == backend::kReadyForQuery || tag == backend::kParameterStatus ||
                         tag == backend::kErrorResponse || tag == backend::kNoticeResponse ||
                         tag == backend::kCopyInResponse ||
                         tag == backend::kCopyBothResponse || tag == backend::kCloseComplete ||
                         tag == backend::kParseComplete || hidden_describe_ != 0;
    if (!inspect && owed_.front_fate() == ReplyFate::Forward) {
      size_t n = std::min(frame.total(), available);
      pass.batch.add(in_.data() + pass.pos, n);
      pass.pos += n;
      pass_remaining_ = frame.total() - n;
      continue;
    }
    if (available < frame.total()) {
      pass.need_room = true;
      pass.room = frame.total();
      break;
    }
    if (!take_whole_message(tag, ByteView(in_.data() + pass.pos + 5, frame.length - 4), frame.total(), pass)) {
      return false;
    }
  }
  return true;
}

// A whole message, handled as the front entry of the queue says. False when the connection failed.
bool ServerConn::take_whole_message(char tag, ByteView body, size_t size, RelayPass& pass) {
  const ReplyFate fate = owed_.front_fate();
  if (tag == backend::kErrorResponse) note_fatal(body);
  if (tag == backend::kErrorResponse && client_ &&
      client_->absorb_server_fatal(*this, body, ByteView(in_.data() + pass.pos, size))) {
    pass.pos += size;  // the client drops it or keeps it until it knows what ended the server
                       // (client_server_ending.cpp)
    return true;
  }
  if (fate == ReplyFate::SkipOwn || fate == ReplyFate::FailOwn) return drop_own_reply(tag, body, size, pass);
  if (fate == ReplyFate::CaptureOwn) {
    take_captured_reply(tag, body, size, pass);
    return true;
  }
  if (hidden_describe_ != 0 && take_hidden_describe(tag, body, size, pass)) return true;
  if (tag == backend::kParseComplete && !owed_.empty()) note_parse_complete();
  if (tag == backend::kCloseComplete && !owed_.empty()) {  // counted: some may answer pgmux's own Close
    OwedReply& front = owed_.front();
    const unsigned ordinal = front.closes_seen++;
    if (ordinal < 64 && (front.hidden_closes >> ordinal) & 1) {
      pass.pos += size;  // the answer to pgmux's own Close: the client did not send it
      return true;
    }
  }
  if (fate == ReplyFate::DropForRetry) {
    pass.pos += size;  // left out of the batch: the client never sees the failed attempt
    if (tag == backend::kReadyForQuery) {
      note_ready(body);
      pass.event = RelayEvent::Retry;
    }
    return true;
  }
  if (tag == backend::kErrorResponse && client_ && !owed_.empty()) {
    if (ByteVector* own = client_view_of_error(body)) {
      note_relayed(tag, body, pass);
      pass.batch.add(own->data(), own->size());
      pass.pos += size;
      return true;
    }
  }
  if (tag == backend::kParameterStatus && !owed_.empty() && owed_.front().resets_parameters) {
    ByteVector* own = nullptr;
    const ResetView view = client_view_of_reset(body, &own);  // before note_relayed records the server's value
    if (view != ResetView::AsIs) {
      note_relayed(tag, body, pass);
      if (view == ResetView::Rewritten) pass.batch.add(own->data(), own->size());
      pass.pos += size;
      return true;
    }
  }
  if (tag == backend::kReadyForQuery && !owed_.empty() && owed_.front().resets_parameters) {
    add_silent_resets(body, pass);  // where PostgreSQL reports them: before the ReadyForQuery
  }
  note_relayed(tag, body, pass);
  pass.batch.add(in_.data() + pass.pos, size);
  pass.pos += size;
  return true;
}

// Out of line: rare (a RESET in transaction pooling), kept off the relay's every-message path.
[[gnu::noinline, gnu::cold]] void ServerConn::add_silent_resets(ByteView ready, RelayPass& pass) {
  const size_t written = report_silent_resets(ready);
  for (size_t i = rewritten_.size() - written; i < rewritten_.size(); ++i) {
    pass.batch.add(rewritten_[i].data(), rewritten_[i].size());
  }
}

namespace {

constexpr size_t kMaxHeldReply = 128 * 1024;  // a reply that holds back more than this is forwarded as it is

// The messages of a reply held for a retry that decide nothing: the look-ahead steps over them.
bool is_held_reply_message(char tag) {
  switch (tag) {
    case backend::kParseComplete:
    case backend::kBindComplete:
    case backend::kCloseComplete:
    case backend::kRowDescription:
    case backend::kNoData:
    case backend::kParameterDescription:
    case backend::kDataRow:
    case backend::kCommandComplete:
    case backend::kEmptyQueryResponse:
    case backend::kNoticeResponse:
    case backend::kParameterStatus:
      return true;
    default:
      return false;
  }
}

}  // namespace

// The usual reply held for a retry, told by tags and lengths alone: whole in the buffer up to its ReadyForQuery,
// every message before it one that decides nothing (no ErrorResponse, no COPY), within kMaxHeldReply. Then no
// retry can follow. False leaves the decision to decide_read_only_retry's walk, which parses what it must.
bool ServerConn::reply_whole_without_error(size_t from) const {
  const uint32_t max_size = worker_.max_message_size();
  for (size_t at = from; at - from <= kMaxHeldReply;) {
    const ByteView rest(in_.data() + at, in_.end() - at);
    const Frame frame = next_frame(rest, max_size);
    if (frame.status != FrameStatus::Frame || rest.size() < frame.total()) return false;
    if (frame.tag == backend::kReadyForQuery) return true;
    if (!is_held_reply_message(frame.tag)) return false;
    at += frame.total();
  }
  return false;
}

// HeldForRetry: looks ahead from the front of the reply to its ReadyForQuery; everything before it is held
// meanwhile (rows included: none may reach the client before it is known whether the request runs again). A
// standby's refusal (25006, 0A000, 40001: standby_refusal) with the server back outside a transaction makes the reply
// DropForRetry (a copy of it is kept, in case the client cannot run the request again after all); anything else,
// or a reply too big to hold, Forward. False while the bytes that decide are not all here (pass.room says how
// many must fit).
bool ServerConn::decide_read_only_retry(RelayPass& pass) {
  OwedReply& front = owed_.front();
  if (reply_whole_without_error(pass.pos)) {
    front.fate = ReplyFate::Forward;  // what the walk below decides too, at several times the cost
    return true;
  }
  bool rejected = false;  // a refusal only a standby gives came (standby_refusal)
  size_t at = pass.pos;
  while (true) {
    const Frame frame = next_frame(ByteView(in_.data() + at, in_.end() - at), worker_.max_message_size());
    if (frame.status == FrameStatus::Error || at - pass.pos > kMaxHeldReply) {
      front.fate = ReplyFate::Forward;  // the relay reports a bad frame as usual
      return true;
    }
    if (frame.status == FrameStatus::NeedMore || in_.end() - at < frame.total()) {
      pass.need_room = true;
      pass.room = at - pass.pos + (frame.status == FrameStatus::NeedMore ? kFrameHeaderSize : frame.total());
      return false;
    }
    const ByteView body(in_.data() + at + kFrameHeaderSize, frame.length - 4);
    if (is_held_reply_message(frame.tag)) {
      at += frame.total();
      continue;
    }
    switch (frame.tag) {
      case backend::kErrorResponse: {
        auto error = parse_error_fields(body);
        // The server going away with all its connections (a crash, an immediate shutdown), or a standby ending
        // this one for its replay (a recovery conflict): the close comes next, and the request may run again on
        // the next server (ClientConn::on_server_lost); offer_held_error tells the client what ended it. Not a
        // 57P01 of a fast shutdown: a pg_terminate_backend reads the same, and a statement someone terminated must
        // not run again elsewhere.
        if (error && (is_server_crash_fatal(*error) || (error->severity == "FATAL" && is_recovery_conflict(*error)))) {
          return false;
        }
        rejected = error && standby_refusal(*error) != StandbyRefusal::None;
        if (!rejected) break;
        at += frame.total();
        continue;
      }
      case backend::kReadyForQuery: {
        const auto ready = parse_ready_for_query(body);
        if (!rejected || !ready || ready->status != 'I' || !client_ || !client_->may_run_again(this)) break;
        front.fate = ReplyFate::DropForRetry;
        dropped_reply_.assign(in_.data() + pass.pos, in_.data() + at + frame.total());
        return true;
      }
      default:
        break;
    }
    front.fate = ReplyFate::Forward;  // another error, COPY, or no refusal: the client sees this reply
    return true;
  }
}

// A transaction that wrote is over: its commit is published before the client can read this ReadyForQuery, so from
// now on every client's reads must see it (causal reads). A session that may have changed synchronous_commit
// committed without the promise.
void ServerConn::acknowledge_commit() {
  OwedReply* front = owed_.empty() ? nullptr : &owed_.front();
  if (!client_ || client_->commits_may_skip_apply()) tx_written_ = Written::MaybeNotApplied;
  // A commit whose request went out before the standbys were seen to apply every commit may have run under the
  // settings before (PostgreSQL applies a reload between commands).
  const std::optional<double> since = routing::applying_since(worker_.view());
  if (since && (!front || static_cast<double>(front->sent_ns) / 1e9 < *since)) tx_written_ = Written::MaybeNotApplied;
  if (front) front->committed = tx_written_;
  worker_.shared().commits.acknowledge(uv_hrtime(), tx_written_ == Written::Applied);
  tx_written_ = Written::Nothing;
}

// A ParseComplete: the statement exists. If pgmux put a Describe of its own behind that Parse, its answers come next.
void ServerConn::note_parse_complete() {
  OwedReply& front = owed_.front();
  const uint16_t ordinal = front.parses_seen++;
  if (!front.described) return;
  for (auto& [parse, statement] : *front.described) {
    if (parse != ordinal) continue;
    hidden_describe_ = 2;
    described_statement_ = std::move(statement);
    return;
  }
}

// The answers to pgmux's Describe behind a client's Parse: kept from the client, the shape recorded. False when the
// message is not one (nothing else can come between them: then the hiding simply ends).
bool ServerConn::take_hidden_describe(char tag, ByteView body, size_t size, RelayPass& pass) {
  if (hidden_describe_ == 2 && tag == backend::kParameterDescription) {
    record_parameter_types(described_statement_, body);
    hidden_describe_ = 1;
  } else if (hidden_describe_ == 1 && (tag == backend::kRowDescription || tag == backend::kNoData)) {
    record_shape(described_statement_, tag == backend::kNoData ? ByteView() : body);
    hidden_describe_ = 0;
  } else {
    hidden_describe_ = 0;
    return false;
  }
  pass.pos += size;
  return true;
}

// The reply to pgmux's own statement in front of a request: the client already had its answer from pgmux. A
// deferred BEGIN must succeed; the statement behind it that fails the block on purpose (FailOwn) must leave it
// failed.
bool ServerConn::drop_own_reply(char tag, ByteView body, size_t size, RelayPass& pass) {
  pass.pos += size;
  const bool fails_on_purpose = owed_.front().fate == ReplyFate::FailOwn;
  if (tag == backend::kErrorResponse && !fails_on_purpose) {
    auto error = parse_error_fields(body);
    // A FATAL here is the server going away (terminated, shutting down): routine, unlike a BEGIN that failed.
    PGMUX_LOG(error && error->severity == "FATAL" ? conf::LogLevel::Info : conf::LogLevel::Error,
              "S-%llu backend %s: the BEGIN (or SET TRANSACTION) pgmux sent ahead of a request failed: %s; closing "
              "the server",
              static_cast<unsigned long long>(id()), pool_.backend().name.c_str(),
              error ? escape_for_log(error->message, 1000).c_str() : "?");
    owed_.front().failed = true;
  } else if (tag == backend::kReadyForQuery) {
    note_ready(body);
    const bool block_goes_on = fails_on_purpose && tx_status_ != 'E';
    if (block_goes_on) {
      LOG_ERROR("S-%llu backend %s: the statement pgmux sent to fail a transaction block left it '%c'; closing the "
                "server", static_cast<unsigned long long>(id()), pool_.backend().name.c_str(), tx_status_);
    }
    if (owed_.pop().failed || block_goes_on) {
      in_.advance_parsed(pass.pos - in_.parsed());
      fail(Failure::DeferredBeginFailed);
      return false;
    }
    // Nothing of the client's behind it (ClientConn::fail_server_block): the server owes nothing now, which a
    // client waiting for it (Draining) must hear, as at the end of a request of its own.
    if (owed_.empty()) pass.event = RelayEvent::Ready;
  }
  return true;
}

// The reply to pgmux's query behind a client's request (CaptureOwn), kept from the client: the value of its one row
// goes to the client at its ReadyForQuery. An error (a statement_timeout, say) leaves the value unknown. What the
// server sends of its own meanwhile is the client's, as with any reply: a notification PostgreSQL delivers before
// that ReadyForQuery (outside a block), a setting it reports.
void ServerConn::take_captured_reply(char tag, ByteView body, size_t size, RelayPass& pass) {
  if (tag == backend::kNotificationResponse || tag == backend::kParameterStatus) {
    note_relayed(tag, body, pass);
    pass.batch.add(in_.data() + pass.pos, size);
    pass.pos += size;
    return;
  }
  pass.pos += size;
  if (tag == backend::kDataRow) {
    ByteReader row(body);
    const int16_t columns = row.i16();
    const int32_t length = row.i32();
    const ByteView value = row.bytes(length);  // fails for -1 (NULL)
    if (row.ok() && columns == 1) {
      owed_.front().capture->value.emplace(reinterpret_cast<const char*>(value.data()), value.size());
    }
    return;
  }
  if (tag != backend::kReadyForQuery) return;
  note_ready(body);
  const OwedReply done = owed_.pop();
  if (client_ && done.capture->value) client_->learn_prepare_types(done.capture->statement, *done.capture->value);
  // Nothing of the client's behind it: the server owes nothing now, which the client must hear (its transaction
  // pooling gives the server back then).
  if (owed_.empty()) pass.event = RelayEvent::Ready;
}

// What a forwarded message tells pgmux.
void ServerConn::note_relayed(char tag, ByteView body, RelayPass& pass) {
  switch (tag) {
    case backend::kReadyForQuery:
      note_ready(body);
      if (!owed_.empty()) fold_writes(owed_.front());
      if (tx_status_ == 'I' && tx_written_ != Written::Nothing) acknowledge_commit();
      pass.event = RelayEvent::Ready;
      return;
    case backend::kParameterStatus:
      if (auto ps = parse_parameter_status(body)) record_parameter(ps->name, ps->value);
      return;
    case backend::kNoticeResponse:
      // Perhaps PostgreSQL's warning that the commit's wait for synchronous replication was cancelled.
      if (tx_written_ != Written::Nothing || (!owed_.empty() && owed_.front().writes)) {
        tx_written_ = Written::MaybeNotApplied;
      }
      return;
    case backend::kErrorResponse: {
      if (!owed_.empty()) {
        OwedReply& front = owed_.front();
        front.failed = true;
        // Before the sentinel's CloseComplete: an error of the sequence, not of the Query continuing it.
        if (front.sentinel_close != 0 && front.closes_seen < front.sentinel_close) front.skips_to_sync = true;
      }
      auto error = parse_error_fields(body);
      worker_.metrics().count_error(error ? std::string_view(error->sqlstate) : std::string_view());
      if (error && (error->severity == "FATAL" || error->severity == "PANIC")) fatal_forwarded_ = true;
      return;
    }
    case backend::kCopyInResponse:
    case backend::kCopyBothResponse:  // the client's next bytes are COPY data for this server
      pass.event = RelayEvent::CopyIn;
      return;
    default:
      return;
  }
}

void ServerConn::note_ready(ByteView body) {
  if (auto rfq = parse_ready_for_query(body)) tx_status_ = rfq->status;
}

// Tells the client, once the bytes before the event were written. Ready and Retry end the front entry.
void ServerConn::deliver(RelayEvent event) {
  if (!client_) return;
  switch (event) {
    case RelayEvent::Ready:
      deliver_ready();
      return;
    case RelayEvent::CopyIn: {
      bool ended_ahead = false;
      if (!owed_.empty()) {
        OwedReply& front = owed_.front();
        front.copy_may_start = false;
        if (front.copy_ends > 0) {
          // The client ended this COPY before PostgreSQL asked for its data: CopyDone (or CopyFail) came behind
          // the request, and what the client sends next are requests, as any pipelined behind it. The entry ends
          // at its own ReadyForQuery, unless its Sync came before that end: PostgreSQL ignored it inside the COPY,
          // and the entry goes on as below.
          --front.copy_ends;
          ended_ahead = true;
          if (!front.copy_end_after_sync) return;
          front.copy_end_after_sync = false;
        }
      }
      // COPY FROM STDIN started by an extended batch: PostgreSQL ignores that batch's Sync during COPY, and the
      // server stays inside the batch's implicit transaction until the Sync the client sends after CopyDone or
      // CopyFail. The batch's entry is open again: that Sync continues it, and its ReadyForQuery ends it. Until
      // then the server owes the client a reply: a client that leaves meanwhile does not leave it reusable (another
      // client's query would commit the COPY, or wait behind the error's skip to Sync).
      // (Requests pipelined behind the batch, which PostgreSQL rejects during COPY: the batch's reply ends here.)
      std::optional<OwedReply> batch;
      if (!owed_.empty() && owed_.front().extended && &owed_.front() == &owed_.back()) {
        owed_.front().open = true;
      } else if (!owed_.empty() && owed_.front().extended && !owed_.front().open) {
        fold_writes(owed_.front());
        batch = owed_.pop();
      }
      client_->on_copy_in(this, batch ? &*batch : nullptr, ended_ahead);
      return;
    }
    case RelayEvent::Retry:
      client_->on_read_only_retry(this, take_front());
      return;
    case RelayEvent::None:
      return;
  }
}

// The front entry's reply ended. If PostgreSQL skipped to a Sync after an error in the entry's sequence (skips_to_sync),
// this ReadyForQuery is that Sync's: the requests sent since, up to it, were skipped and end here too, as failed
// (nothing of them ran), all off the queue before the client hears (it may send and relay more meanwhile).
void ServerConn::deliver_ready() {
  OwedReply done = take_front();
  if (!done.skips_to_sync) {
    client_->on_ready_for_query(this, tx_status_, std::move(done));
    return;
  }
  std::vector<OwedReply> skipped;
  for (size_t n = owed_.entries_through_sync(); n > 0; --n) {
    OwedReply request = owed_.pop();
    if (!request.for_client()) continue;  // none is sent behind a request that continues a sequence
    request.failed = true;
    skipped.push_back(std::move(request));
  }
  client_->on_ready_for_query(this, tx_status_, std::move(done), skipped);
}

void ServerConn::on_forward_done() {
  in_.consume_to(in_.parsed());
  RelayEvent event = pending_event_;
  pending_event_ = RelayEvent::None;
  if (state() == ServerState::Linked) {
    if (event != RelayEvent::None) deliver(event);
    if (!open()) return;
    relay();
    start_reading();
  } else {
    in_.compact();
    start_reading();
  }
}

}  // namespace pgmux::proxy
