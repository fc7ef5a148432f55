#include "proxy/client/unnamed_statement.hpp"

#include <algorithm>
#include <utility>

namespace pgmux::proxy {

void UnnamedStatement::on_sent(const RequestInfo& request, const Sent& sent,
                               const routing::Classification& last_parse_class, bool keep_copy) {
  if (request.kind == RequestKind::Query) return drop();
  if (request.kind != RequestKind::Extended) return;
  if (sent.ends_entry) {
    for (size_t i = 0; i < count_; ++i) {
      if (pending_[i].request == sent.request) pending_[i].ends_entry = true;  // this Sync closes their sequence
    }
  }
  // One pass: the changes, the last Parse "" and whether only Binds follow it.
  Pending* pending = nullptr;
  const ParsedStatement* last_parse = nullptr;  // its change is the last one so far
  bool bound_after = false;  // the request binds the statement it parses (what drivers do)
  unsigned parses = 0;       // Parse messages of the request before the step
  for (const StatementStep& step : request.steps) {
    if (!step.name.empty()) {
      parses += step.kind == StatementStepKind::Parse;
      continue;
    }
    if (step.kind == StatementStepKind::Use) {
      bound_after = true;
      continue;
    }
    if (!pending) pending = &push(sent);
    if (last_parse && keep_copy) {  // a batch with another change behind a Parse "" (a pipeline of statements)
      Change& parsed = pending->changes.back();
      parsed.copy_at = static_cast<uint32_t>(pending->copies.size());
      parsed.copy_size = static_cast<uint32_t>(last_parse->message.size());
      pending->copies.insert(pending->copies.end(), last_parse->message.begin(), last_parse->message.end());
    }
    bound_after = false;
    if (step.kind == StatementStepKind::Close) {
      const bool parse_follows = parses < request.parses.size();
      pending->changes.push_back({false, false, parse_follows ? sent.parses_before + parses : kNoWitness, 0, 0});
      last_parse = nullptr;
      continue;
    }
    last_parse = &request.parses[step.parse];
    // Only Closes (which cannot fail) since the previous Parse, or since the start of the entry.
    const bool fails_alone = last_parse->after_closes_only && (parses > 0 || sent.starts_entry);
    pending->changes.push_back({true, fails_alone, sent.parses_before + parses, 0, 0});
    ++parses;
  }
  if (!pending) return;
  State& after = pending->after;
  after.server = sent.server;
  after.parse.clear();
  if (last_parse) {  // else the last change is a Close: the server holds none (the class does not matter)
    after.c = last_parse_class;
    // Session pooling keeps the server, so a statement the request binds itself needs no copy.
    if (keep_copy || !bound_after) after.parse.assign(last_parse->message.begin(), last_parse->message.end());
  }
}

void UnnamedStatement::settle_finished(uint64_t request, bool failed, unsigned parses_seen) {
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
  // The Parse the error came at (the first one not answered) failed itself when only Closes lie between it and
  // the last answered message: those Closes ran, and PostgreSQL dropped the statement before parsing.
  size_t at = ran;
  while (at < pending.changes.size() && !pending.changes[at].is_parse) ++at;
  const bool own_error = at < pending.changes.size() && pending.changes[at].fails_alone &&
                         pending.changes[at].witness == parses_seen;
  if (ran == 0 && !own_error) return;  // nothing ran: the statement is what it was
  // A Close ran, or the Parse itself failed (the statement was dropped first): the server holds none. Or an earlier
  // Parse of the batch ran last: the server holds that statement, which pgmux can prepare elsewhere if it kept
  // its copy (PostgreSQL runs it again at the next Bind, the write that failed too).
  settled_.server = pending.after.server;
  settled_.parse.clear();
  if (!own_error && pending.changes[ran - 1].is_parse) {
    const Change& last = pending.changes[ran - 1];
    const auto from = pending.copies.begin() + last.copy_at;
    settled_.parse.assign(from, from + last.copy_size);
  }
  settled_.c = {};  // a write, for routing: only the last Parse's class is known
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

bool UnnamedStatement::settled() const {
  for (size_t i = 0; i < count_; ++i) {
    if (pending_[i].ends_entry) return false;
  }
  return true;
}

void UnnamedStatement::drop_front() {
  if (count_ == 1) {  // the usual depth: the slot stays where it is
    count_ = 0;
    return;
  }
  std::rotate(pending_.begin(), pending_.begin() + 1, pending_.begin() + static_cast<std::ptrdiff_t>(count_));
  --count_;
}

UnnamedStatement::Pending& UnnamedStatement::push(const Sent& sent) {
  if (count_ == pending_.size()) pending_.emplace_back();
  Pending& pending = pending_[count_++];
  pending.request = sent.request;
  pending.ends_entry = sent.ends_entry;
  pending.changes.clear();
  pending.copies.clear();  // keeps its capacity: no allocation per request once the size has been seen
  return pending;
}

}  // namespace pgmux::proxy
