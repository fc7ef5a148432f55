#include "proxy/server/reply_queue.hpp"

#include <new>
#include <utility>

namespace pgmux::proxy {

OwedReply& ReplyQueue::push_back() {
  if (size_ == slots_.size()) {
    std::vector<OwedReply> grown(slots_.empty() ? 8 : slots_.size() * 2);
    for (size_t i = 0; i < size_; ++i) grown[i] = std::move(slots_[index(i)]);
    slots_ = std::move(grown);
    head_ = 0;
  }
  const bool uncertain = size_ > 0 && back().count_uncertain;
  ++size_;
  OwedReply& entry = back();
  // Destroyed and built in place: cheaper than assigning a temporary (no pointer moved, fields zeroed in one go).
  entry.~OwedReply();
  new (&entry) OwedReply();
  entry.count_uncertain = uncertain;  // behind one that may never get a ReadyForQuery of its own
  return entry;
}

OwedReply& ReplyQueue::push_request(bool closes, bool extended, uint64_t now_ns) {
  if (open_sequence()) {
    OwedReply& continued = back();
    continued.open = !closes;
    continued.synced = closes && extended;
    if (!extended) continued.count_uncertain = true;
    return continued;
  }
  if (!empty() && back().fate == ReplyFate::HeldForRetry) back().fate = ReplyFate::Forward;
  OwedReply& entry = push_back();
  entry.open = !closes;
  entry.extended = extended;
  entry.synced = closes && extended;
  entry.sent_ns = now_ns;
  return entry;
}

void ReplyQueue::push_skipped() { push_back().fate = ReplyFate::SkipOwn; }

void ReplyQueue::push_failing() { push_back().fate = ReplyFate::FailOwn; }

void ReplyQueue::push_internal(int readies, InternalDone done) {
  OwedReply& entry = push_back();
  entry.fate = ReplyFate::Internal;
  entry.readies = static_cast<uint16_t>(readies);
  entry.internal = std::make_unique<InternalRun>();
  entry.internal->done = std::move(done);
}

void ReplyQueue::push_capture(std::string statement) {
  // Run again, the request would go out behind this query: as for a client request sent behind it, no retry.
  if (!empty() && back().fate == ReplyFate::HeldForRetry) back().fate = ReplyFate::Forward;
  OwedReply& entry = push_back();
  entry.fate = ReplyFate::CaptureOwn;
  entry.capture = std::make_unique<OwnCapture>();
  entry.capture->statement = std::move(statement);
}

OwedReply ReplyQueue::pop() {
  OwedReply done = std::move(front());  // the slot keeps only empty pointers; push_back resets it when reused
  head_ = index(1);
  --size_;
  return done;
}

size_t ReplyQueue::client_requests() const {
  size_t count = 0;
  for (size_t i = 0; i < size_; ++i) count += slots_[index(i)].for_client() ? 1 : 0;
  return count;
}

size_t ReplyQueue::client_requests_before_doubt() const {
  size_t count = 0;
  for (size_t i = 0; i < size_; ++i) {
    const OwedReply& entry = slots_[index(i)];
    if (entry.open || entry.count_uncertain) break;
    count += entry.for_client() ? 1 : 0;
  }
  return count;
}

size_t ReplyQueue::entries_through_sync() const {
  for (size_t i = 0; i < size_; ++i) {
    if (slots_[index(i)].synced) return i + 1;
  }
  return 0;
}

// Back to front, down to the last entry that sent a Sync (count_uncertain, inherited, says one such Query is owed).
bool ReplyQueue::skip_unresolved() const {
  for (size_t i = size_; i-- > 0;) {
    const OwedReply& entry = slots_[index(i)];
    if (entry.synced) return false;
    if (entry.skips_to_sync || entry.closes_seen < entry.sentinel_close) return true;
  }
  return false;
}

bool ReplyQueue::lone_simple_request_at_back() const {
  return size_ > 0 && !back().extended && captures_in_first(size_ - 1);
}

bool ReplyQueue::only_captures_owed() const { return captures_in_first(size_); }

bool ReplyQueue::captures_in_first(size_t count) const {
  for (size_t i = 0; i < count; ++i) {
    if (slots_[index(i)].fate != ReplyFate::CaptureOwn) return false;
  }
  return true;
}

}  // namespace pgmux::proxy
