// What a server connection owes, oldest first (DESIGN.md §3.5): one entry per request sent to it, popped when
// the ReadyForQuery that ends its reply has been handled. The entry at the front says what happens to the
// server's messages: relayed to the client, dropped (pgmux's own statement in front of a client request), held
// back for a retry (a read that a standby rejected as a write), consumed by pgmux (its own queries: reset,
// parameter sync, bringing a server up to date), or read by pgmux behind a client's request (the parameter types
// of its SQL PREPARE). Nothing else on a connection counts replies.
#pragma once
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/bytes.hpp"
#include "routing/classifier.hpp"

namespace pgmux::proxy {

class ServerConn;

enum class ReplyFate : uint8_t {
  Forward,            // a client request: its reply goes to the client
  HeldForRetry,       // a request pgmux can run again, its server idle when it went out: a read on a standby (a
                      // 25006, or a 0A000 refusing SERIALIZABLE, sends it to the primary), a lone transaction start
                      // (lost with its server, it goes to the next one). Its messages are held until its
                      // ReadyForQuery (a 25006 may follow rows), up to 128 KiB; such an error makes the reply
                      // DropForRetry, anything else Forward
                      // (decide_read_only_retry); the server lost meanwhile, nothing of it reached the client
  DropForRetry,       // a failed attempt the client never sees; at its ReadyForQuery the client runs it again
  SkipOwn,            // pgmux's own statement sent ahead of a client request (a deferred BEGIN): dropped; if it
                      // fails the server is closed (the request must not run outside the client's transaction)
  FailOwn,            // pgmux's own statement that fails on purpose, behind a deferred BEGIN: the block fails on the
                      // server as it did for the client (an error pgmux answered itself). Dropped; a ReadyForQuery
                      // other than 'E' closes the server (the request must not run in a block that goes on)
  Internal,           // pgmux's own queries on a server no client request is waiting for: consumed here
  CaptureOwn,         // pgmux's own query behind a client request, whose one value pgmux reads (OwnCapture): kept
                      // from the client
};

// A request that may change session state (SET, RESET, set_config, ...), or any request while session
// commands wait for their transaction block to end: at its ReadyForQuery the client decides which commands
// last (SessionBlock) and records them in the session log, to replay on its other servers.
struct SessionCommand {
  std::vector<std::string> statements;  // a Query's text (cut into statements later), or the statements an
                                        // extended batch executed, in order; a deferred BEGIN (and the SET
                                        // TRANSACTIONs held with it) first
  bool unresolved = false;              // an Execute whose statement text pgmux does not have
  // Transaction pooling, a request of one statement: the parameter its RESET (SET ... TO DEFAULT) brings back to
  // the client's startup value, "*" for RESET ALL and DISCARD ALL, else empty (ServerConn::report_silent_resets).
  std::string resets;
  std::vector<std::string> reported;  // ... and the parameters its reply reported (ParameterStatus) so far
};

// pgmux's own queries: done(ok, sqlstate, message of the first error) runs at the last ReadyForQuery, or with
// ok false when the connection is lost first.
using InternalDone = std::function<void(ServerConn&, bool ok, const std::string& sqlstate, const std::string& error)>;
struct InternalRun {
  InternalDone done;
  std::vector<std::string> described;  // shared statements whose Describe 'S' answers are still to come, in order
  std::string error_state;
  std::string error;
  protocol::ByteVector error_body;  // the first ErrorResponse's body, whole
  uint16_t readies_seen = 0;        // ReadyForQuery messages so far
  std::vector<uint16_t> failed;     // for each ErrorResponse, readies_seen then: which Query (or Sync) failed
  // A Query sent to fail (ClientConn's kFailBlock, at this readies_seen): its error is in `failed` but is not the
  // run's error, which is then the first one after it.
  int expected_failure = -1;
  bool describing = false;  // a ParameterDescription came: the next RowDescription or NoData answers a Describe 'S'
};

// What a CaptureOwn query is for, and the value of its one row and column once it came (nullopt: none, or NULL).
struct OwnCapture {
  std::string statement;  // the SQL prepared statement whose parameter types are read (capture_prepare_types)
  std::optional<std::string> value;
};

// What a transaction wrote, as far as its commit is concerned: nothing; writes whose commit waits for the standbys
// that apply every commit (routing::commits_wait_for_apply), as far as pgmux knows; or writes whose commit may not
// (its session may have changed synchronous_commit, or a notice came, such as PostgreSQL's warning that a wait
// for synchronous replication was cancelled).
enum class Written : uint8_t { Nothing, Applied, MaybeNotApplied };

struct OwedReply {
  ReplyFate fate = ReplyFate::Forward;
  bool open = false;      // an extended sequence not closed by Sync yet: the next request continues this entry
  bool extended = false;  // ended by Sync (which PostgreSQL ignores if the batch starts COPY FROM STDIN)
  bool failed = false;    // an ErrorResponse came in its reply
  // A Query or FunctionCall continued an extended sequence, in this entry or one owed before it. It gets a
  // ReadyForQuery of its own, unless an error earlier in the sequence made PostgreSQL skip it (up to the Sync): then
  // one ReadyForQuery fewer comes than entries are owed, which pgmux learns only from the replies (sentinel_close).
  // Until then nothing may wait for this queue to empty (ClientConn::end_session).
  bool count_uncertain = false;
  bool writes = false;    // the request sent a write (to the primary)
  bool synced = false;    // a Sync went out in it (a Query or FunctionCall may close an extended sequence instead)
  // The Query or FunctionCall that continued this entry's extended sequence went out behind a Close of pgmux's own
  // (a portal no client names: PostgreSQL answers CloseComplete and does nothing), the sentinel_close-th
  // CloseComplete of the entry (0: none). An error before that answer came from the sequence: PostgreSQL then skips
  // everything up to the next Sync, the Query too, and the one ReadyForQuery that comes is the Sync's
  // (skips_to_sync; ServerConn::deliver_ready ends the entries it skipped with it). With more than 63 Closes in the
  // entry before the Query no sentinel goes out, and an error of the sequence leaves one ReadyForQuery owed for good.
  uint8_t sentinel_close = 0;
  bool skips_to_sync = false;
  // A Bind or Describe in it went out naming protocol::kStalePlanStatement (ClientConn::copy_is_stale): the
  // server's 26000 for that name is the client's 0A000.
  bool stale_plan_sent = false;
  // Set at a ReadyForQuery 'I' that ends a transaction: what the transaction wrote (the commit to acknowledge).
  Written committed = Written::Nothing;
  uint16_t readies = 1;   // ReadyForQuery messages still to come for it (several only for an internal run)
  // CopyDone and CopyFail messages the client sent right behind it before PostgreSQL asked for COPY data: a COPY
  // FROM STDIN it starts is already ended (ServerConn::deliver).
  uint16_t copy_ends = 0;
  // ... and the first of them came after the entry's Sync, which PostgreSQL then ignored inside the COPY.
  bool copy_end_after_sync = false;
  // It may start COPY FROM STDIN (routing::Classification::copy_in), and neither its CopyInResponse, its end nor
  // the client's end of that COPY came yet: whether PostgreSQL reads the client's next messages as part of the
  // COPY (where it ignores Sync and Flush, and rejects others) is not known until then (ClientConn::dispatch).
  bool copy_may_start = false;
  uint64_t sent_ns = 0;   // uv_hrtime() when its first message went out (query duration)
  uint64_t request = 0;   // the client's number for the request (statements it parsed are confirmed by it)
  // CloseComplete messages: how many Close messages went out in this entry's requests, how many answers the
  // relay has seen, and (bit n) which answers belong to a Close pgmux put in front of a client's Parse.
  uint8_t closes_sent = 0;
  uint8_t closes_seen = 0;
  uint64_t hidden_closes = 0;
  // ParseComplete messages: Parse messages sent in this entry's requests before the current one (a Flush
  // sequence continues an entry), and answers seen. A failed request created exactly the statements of the
  // Parses answered before its error.
  bool resets_parameters = false;  // transaction pooling: RESET / RESET ALL / DISCARD ALL (client_view_of_reset)
  bool commits = false;            // the request commits a transaction (routing::commits_transaction)
  bool closes_standby_cursors = false;  // CLOSE ALL / DISCARD ALL run elsewhere (ClientConn::close_standby_cursors)
  uint16_t parses_sent = 0;
  uint16_t parses_seen = 0;
  // Parses (by that ordinal) followed by a Describe 'S' of pgmux's own, with the statement's name on the server.
  std::unique_ptr<std::vector<std::pair<uint16_t, std::string>>> described;
  void add_described(unsigned parse_ordinal, std::string_view statement) {
    if (!described) described = std::make_unique<std::vector<std::pair<uint16_t, std::string>>>();
    described->emplace_back(static_cast<uint16_t>(parse_ordinal), statement);
  }
  // Transaction pooling: Parses of a name that exists went out under the existing statement's shared name; the
  // server's 42P05 names it, and the client reads its own name instead (shared name, client name).
  std::unique_ptr<std::vector<std::pair<std::string, std::string>>> duplicate_names;
  std::unique_ptr<SessionCommand> session;  // only for session commands
  std::unique_ptr<InternalRun> internal;    // only for fate Internal
  std::unique_ptr<OwnCapture> capture;      // only for fate CaptureOwn

  // The CloseComplete messages seen that answer the client's own Close messages (every one, when more went out
  // than the counts hold).
  unsigned client_closes_seen() const {
    if (closes_sent == UINT8_MAX) return UINT_MAX;
    const uint64_t answered = closes_seen >= 64 ? ~uint64_t{0} : (uint64_t{1} << closes_seen) - 1;
    return closes_seen - static_cast<unsigned>(std::popcount(hidden_closes & answered));
  }
  // Whether the client waits for this reply (as opposed to pgmux's own statements).
  bool for_client() const {
    return fate == ReplyFate::Forward || fate == ReplyFate::HeldForRetry || fate == ReplyFate::DropForRetry;
  }
};

// A ring that grows by doubling and never allocates while its depth stays within what it has seen.
class ReplyQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  OwedReply& front() { return slots_[head_]; }
  const OwedReply& front() const { return slots_[head_]; }
  OwedReply& back() { return slots_[index(size_ - 1)]; }
  const OwedReply& back() const { return slots_[index(size_ - 1)]; }
  // What the next server message belongs to: Forward when nothing is owed (notices, notifications).
  ReplyFate front_fate() const { return empty() ? ReplyFate::Forward : front().fate; }

  // A client request was sent. It continues the open entry at the back if there is one (an extended sequence
  // after Flush); else a new entry is added. A request sent behind one armed for a retry disarms it: resending
  // that one would put its replies after this one's. Returns the entry, for the caller to fill in.
  OwedReply& push_request(bool closes, bool extended, uint64_t now_ns);
  // pgmux's own statement sent ahead of the next client request (the next push_request).
  void push_skipped();
  // The same, one that must fail (FailOwn).
  void push_failing();
  void push_internal(int readies, InternalDone done);
  // pgmux's own query sent behind the last client request, reading the parameter types of `statement`.
  void push_capture(std::string statement);
  // The front entry is done.
  OwedReply pop();

  // An extended sequence was left open (Flush, no Sync): the next request continues it.
  bool open_sequence() const { return !empty() && back().open; }
  // The last entry a client request made (pgmux's own queries behind it passed over), or null.
  OwedReply* last_for_client() {
    for (size_t i = size_; i > 0; --i) {
      if (slots_[index(i - 1)].for_client()) return &slots_[index(i - 1)];
    }
    return nullptr;
  }
  // The entries from the front up to and including the first that sent a Sync; 0 if none did.
  size_t entries_through_sync() const;
  // PostgreSQL may be waiting for a Sync the client has not sent: an extended sequence is open, or a Query continued
  // one and an error came before the sentinel's answer, or that answer is still to come, with no Sync sent since.
  // Nothing may wait for the replies owed then (they may come only behind the client's next request).
  bool awaits_sync() const { return open_sequence() || (!empty() && back().count_uncertain && skip_unresolved()); }
  // Replies the client still waits for (pgmux's own statements not counted; an open sequence counts).
  size_t client_requests() const;
  // The client's requests owed ahead of the first entry that waits for more from the client (an extended sequence
  // left open) or whose ReadyForQuery may never come (count_uncertain): replies that come without the client.
  size_t client_requests_before_doubt() const;
  // The back entry is a simple query's alone: nothing but pgmux's queries behind PREPAREs (CaptureOwn) ahead of it,
  // and no extended sequence it continues (a query behind an error there is skipped up to its Sync, and the one
  // ReadyForQuery answers the whole entry).
  bool lone_simple_request_at_back() const;
  // Nothing owed but pgmux's queries behind PREPAREs, if anything: a server its client leaves may still be reset.
  // (Inline for the usual empty queue: asked at every release.)
  bool only_captures() const { return size_ == 0 || only_captures_owed(); }
  // A request that commits a transaction is among those owed: lost now, its outcome is unknown.
  bool commit_owed() const {
    for (size_t i = 0; i < size_; ++i) {
      if (slots_[index(i)].commits) return true;
    }
    return false;
  }

 private:
  size_t index(size_t i) const { return (head_ + i) & (slots_.size() - 1); }
  OwedReply& push_back();
  bool only_captures_owed() const;
  bool skip_unresolved() const;
  bool captures_in_first(size_t count) const;  // the first `count` entries are all CaptureOwn

  std::vector<OwedReply> slots_;  // capacity a power of two
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace pgmux::proxy
