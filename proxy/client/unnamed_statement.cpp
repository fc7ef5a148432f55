#include "proxy/client/unnamed_statement.hpp"

#include <algorithm>
#include <utility>

namespace pgmux::proxy {

void UnnamedStatement::on_sent(const RequestInfo& request, const Sent& sent,
                               const routing::Classification& last_parse_class, bool keep_copy) {
  if (request.kind == RequestKind::Query) {
    // A simple Query drops the unnamed statement whatever happened before it, so nothing pending matters. (The
    // class stays: it only routes a use of a statement that is gone, which fails anyway.)
    count_ = 0;
    settled_.server = nullptr;
    settled_.parse.clear();
    return;
  }
  if (request.kind != RequestKind::Extended) return;
  if (sent.ends_entry) {
    for (size_t i = 0; i < count_; ++i) {
      if (pending_[i].request == sent.request) pending_[i].ends_entry = true;  // this Sync closes their sequence
    }
  }
  const bool changes = std::any_of(request.steps.begin(), request.steps.end(), [](const StatementStep& step) {
    return step.name.empty() && step.kind != StatementStepKind::Use;
  });
  if (!changes) return;
  Pending& pending = push();
  pending.request = sent.request;
  pending.ends_entry = sent.ends_entry;
  record_changes(request, sent, pending);
  const ParsedStatement* last_parse = nullptr;
  bool bound_after = false;  // the request binds the statement it parses (what drivers do)
  for (const StatementStep& step : request.steps) {
    if (!step.name.empty()) continue;
    if (step.kind == StatementStepKind::Parse) last_parse = &request.parses[step.parse];
    bound_after = step.kind == StatementStepKind::Use;  // only Binds follow the last Parse when it is the last change
  }
  State& after = pending.after;
  after.server = sent.server;
  after.parse.clear();
  after.c = {};
  if (pending.changes.back().is_parse) {
    after.c = last_parse_class;
    // Session pooling keeps the server, so a statement the request binds itself needs no copy.
    if (keep_copy || !bound_after) after.parse.assign(last_parse->message.begin(), last_parse->message.end());
  }
}

// The request's Parse "" and Close 'S' "" messages, in order, each with what shows it ran.
void UnnamedStatement::record_changes(const RequestInfo& request, const Sent& sent, Pending& pending) const {
  unsigned parses = 0;  // Parse messages of the request before the step
  for (const StatementStep& step : request.steps) {
    if (step.kind == StatementStepKind::Use) continue;
    if (step.name.empty() && step.kind == StatementStepKind::Parse) {
      const ParsedStatement& parse = request.parses[step.parse];
      const bool follows_parse = parses > 0 && request.parses[parses - 1].position + 1 == parse.position;
      const bool fails_alone = parse.position == 0 ? sent.starts_entry : follows_parse;
      pending.changes.push_back({true, fails_alone, sent.parses_before + parses});
    } else if (step.name.empty()) {
      const bool parse_follows = parses < request.parses.size();
      pending.changes.push_back({false, false, parse_follows ? sent.parses_before + parses : kNoWitness});
    }
    if (step.kind == StatementStepKind::Parse) ++parses;
  }
}

void UnnamedStatement::on_finished(uint64_t request, bool failed, unsigned parses_seen) {
  if (request == 0) return;  // pgmux's own statements
  while (count_ > 0 && pending_[0].request <= request) {
    Pending& front = pending_[0];
    if (front.request == request) {
      settle(front, failed, parses_seen);
    } else if (settled_.server == front.after.server) {
      // Never answered (it ran again elsewhere): what it did on its server is unknown.
      settled_.server = nullptr;
    }
    drop_front();
  }
}

// Applies the changes of a finished request that ran. Those after an error did not: PostgreSQL skipped them.
void UnnamedStatement::settle(Pending& pending, bool failed, unsigned parses_seen) {
  size_t ran = 0;
  while (ran < pending.changes.size() && (!failed || pending.changes[ran].witness < parses_seen)) ++ran;
  if (ran == pending.changes.size()) {
    settled_.server = pending.after.server;
    std::swap(settled_.parse, pending.after.parse);  // the slot keeps the old buffer: no allocation next time
    settled_.c = pending.after.c;
    return;
  }
  const Change& first_skipped = pending.changes[ran];
  const bool own_error = first_skipped.is_parse && first_skipped.fails_alone && first_skipped.witness == parses_seen;
  if (ran == 0 && !own_error) return;  // nothing ran: the statement is what it was
  // A Close ran, or the Parse itself failed (the statement was dropped first), or an earlier Parse ran whose copy
  // is not kept: the server holds no statement of the client's that pgmux could prepare elsewhere.
  settled_.server = pending.after.server;
  settled_.parse.clear();
  settled_.c = {};  // a write, for routing: its text is not known
  settled_.c.reason = "unnamed statement of a failed batch";
}

void UnnamedStatement::prepared_on(ServerConn* server) {
  (count_ ? pending_[count_ - 1].after : settled_).server = server;
}

void UnnamedStatement::forget_server(const ServerConn* server) {
  if (settled_.server == server) settled_.server = nullptr;
  size_t kept = 0;
  for (size_t i = 0; i < count_; ++i) {
    if (pending_[i].after.server == server) continue;  // never answered now: as if none of it ran
    if (kept != i) std::swap(pending_[kept], pending_[i]);
    ++kept;
  }
  count_ = kept;
}

void UnnamedStatement::drop_unanswered() {
  for (size_t i = 0; i < count_; ++i) {
    if (settled_.server == pending_[i].after.server) settled_.server = nullptr;
  }
  count_ = 0;
}

void UnnamedStatement::count_as_write(const char* reason) {
  routing::Classification& c = (count_ ? pending_[count_ - 1].after : settled_).c;
  c.kind = routing::StatementKind::Write;
  c.reason = reason;
}

bool UnnamedStatement::settled() const {
  for (size_t i = 0; i < count_; ++i) {
    if (pending_[i].ends_entry) return false;
  }
  return true;
}

void UnnamedStatement::drop_front() {
  std::rotate(pending_.begin(), pending_.begin() + 1, pending_.begin() + static_cast<std::ptrdiff_t>(count_));
  --count_;
}

UnnamedStatement::Pending& UnnamedStatement::push() {
  if (count_ == pending_.size()) pending_.emplace_back();
  Pending& pending = pending_[count_++];
  pending.changes.clear();
  return pending;
}

}  // namespace pgmux::proxy
