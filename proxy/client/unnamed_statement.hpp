// The client's unnamed prepared statement as PostgreSQL sees it: which of the client's servers holds it, a copy
// of its Parse to prepare it on another, and its class for routing. A request changes it with a Parse "" or a
// Close 'S' "" (a simple Query drops it), but an error earlier in an extended batch makes PostgreSQL skip those
// messages, so a change counts only once the request's reply shows that it ran (settled state).
//
// Until then routing reads the expected state, every sent change having run. That is right for a request that
// continues the same extended sequence (an error there makes PostgreSQL skip it as well) and can be wrong for one
// after a Sync: a use of the earlier unnamed statement waits until nothing it depends on is unsettled (settled()),
// or it could run a statement another client left on the server. Pure: servers are compared, never used
// (tests/unit/proxy_unnamed_statement_test.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "protocol/bytes.hpp"
#include "proxy/client/request_scanner.hpp"
#include "routing/classifier.hpp"

namespace pgmux::proxy {

class ServerConn;

class UnnamedStatement {
 public:
  // Where a request went, for its changes: its number (OwedReply::request), the Parse messages its reply-queue
  // entry carried before it (a Flush-ended sequence continues an entry), whether it starts that entry, and
  // whether it closes it (Sync, or a simple Query).
  struct Sent {
    ServerConn* server = nullptr;
    uint64_t request = 0;
    unsigned parses_before = 0;
    bool starts_entry = true;
    bool ends_entry = true;
  };

  // A request went out. `last_parse_class` is the class of its last Parse "" (if any). `keep_copy`: keep that
  // Parse even when the request binds it itself (transaction pooling gives the server back after the request).
  void on_sent(const RequestInfo& request, const Sent& sent, const routing::Classification& last_parse_class,
               bool keep_copy);
  // A request's reply ended (its ReadyForQuery, or for an extended batch that starts COPY FROM STDIN its
  // CopyInResponse): `parses_seen` ParseComplete messages came in its entry.
  void on_finished(uint64_t request, bool failed, unsigned parses_seen) {
    if (count_ > 0 && request != 0) settle_finished(request, failed, parses_seen);  // 0: pgmux's own statements
  }
  // A simple Query goes out (or is deferred: the BEGIN pgmux answered): PostgreSQL drops the unnamed statement
  // whatever happened before, so nothing pending matters. (The class stays: it only routes a use of a statement
  // that is gone, which fails anyway.)
  void drop() {
    count_ = 0;
    settled_.server = nullptr;
    settled_.parse.clear();
  }
  // pgmux parsed the kept copy on `server` itself (a prepare step that succeeded).
  void prepared_on(ServerConn* server);
  // The server left the client (given back or lost): it holds nothing of the client's any more, and what was
  // sent to it and not answered never will be.
  void forget_server(const ServerConn* server);
  // Nothing is owed on any server, yet changes are pending: no reply will settle them. Forgotten, as if they did
  // not run (a guard: a use must never wait for a reply that is not coming).
  void drop_unanswered();
  // The class of the expected statement, for a standby's refusal to correct (it runs on the primary from now on).
  routing::Classification& expected_class() { return (count_ ? pending_[count_ - 1].after : settled_).c; }

  // The expected state: the server that holds the client's unnamed statement (or, with no copy, one known to
  // hold none) and the copy of its Parse (empty: none kept).
  ServerConn* server() const { return count_ ? pending_[count_ - 1].after.server : settled_.server; }
  protocol::ByteView parse() const { return count_ ? pending_[count_ - 1].after.parse : settled_.parse; }
  const routing::Classification& classification() const {
    return count_ ? pending_[count_ - 1].after.c : settled_.c;
  }
  // No change sent before a Sync is still unanswered: the expected state is the state.
  bool settled() const;

 private:
  struct State {
    ServerConn* server = nullptr;
    protocol::ByteVector parse;
    routing::Classification c;
  };
  // One Parse "" or Close 'S' "" of a request. It ran when the request succeeded, or when the Parse at
  // `witness` (the entry's ordinal of the Parse itself, or for a Close of the next Parse) was answered.
  struct Change {
    bool is_parse = false;
    // A Parse with only Closes between it and the previous Parse or the entry's start: if it is the first
    // unanswered Parse of a failed request, the error is its own, and PostgreSQL dropped the unnamed statement
    // before parsing.
    bool fails_alone = false;
    unsigned witness = 0;
    // A Parse with more changes behind it in its request, when copies are kept: where its message is in
    // Pending::copies (the statement left on the server if an error comes before the next change; the request's
    // last Parse is `after.parse`). copy_size 0: none.
    uint32_t copy_at = 0;
    uint32_t copy_size = 0;
  };
  struct Pending {
    uint64_t request = 0;
    bool ends_entry = true;
    std::vector<Change> changes;
    protocol::ByteVector copies;  // the messages of Parses with changes behind them (Change::copy_at)
    State after;  // the state once every change ran (the last Parse's copy and class)
  };
  static constexpr unsigned kNoWitness = ~0u;

  void settle_finished(uint64_t request, bool failed, unsigned parses_seen);
  void settle(Pending& pending, bool failed, unsigned parses_seen);
  void drop_front();
  Pending& push(const Sent& sent);

  State settled_;
  // Requests with changes whose replies are due, oldest first. Slots past count_ are kept for their capacity:
  // no allocation per request once the depth has been seen.
  std::vector<Pending> pending_;
  size_t count_ = 0;
};

}  // namespace pgmux::proxy
