// ReplyQueue (proxy/server/reply_queue.*): what a server connection owes, oldest first.
#include "proxy/server/reply_queue.hpp"

#include <doctest/doctest.h>

using namespace pgmux::proxy;

TEST_CASE("reply queue: entries come back oldest first, with what the request said of its reply") {
  ReplyQueue q;
  CHECK(q.empty());
  CHECK(q.front_fate() == ReplyFate::Forward);  // nothing owed: notices and notifications go to the client
  q.push_request(true, false, 100);
  OwedReply& second = q.push_request(true, true, 200);
  second.session = std::make_unique<SessionCommand>(SessionCommand{{"SET x = 1"}, false, {}, {}});
  CHECK(q.size() == 2);
  OwedReply first = q.pop();
  CHECK(first.sent_ns == 100);
  CHECK_FALSE(first.extended);
  CHECK_FALSE(first.session);
  OwedReply next = q.pop();
  CHECK(next.sent_ns == 200);
  CHECK(next.extended);
  REQUIRE(next.session);
  CHECK(next.session->statements == std::vector<std::string>{"SET x = 1"});
  CHECK(q.empty());
}

TEST_CASE("reply queue: an extended sequence left open by Flush is continued, not queued twice") {
  ReplyQueue q;
  q.push_request(false, true, 100);  // Parse/Bind/Execute/Flush
  CHECK(q.open_sequence());
  CHECK(q.client_requests() == 1);
  OwedReply& continued = q.push_request(true, true, 300);  // ... Sync
  CHECK(q.size() == 1);
  CHECK_FALSE(continued.open);
  CHECK(continued.sent_ns == 100);  // the request's duration counts from its first message
  CHECK_FALSE(q.open_sequence());
  q.push_request(true, false, 400);  // a new request behind it: its own entry
  CHECK(q.size() == 2);
}

TEST_CASE("reply queue: replies that come without the client, and a Query inside a sequence that may not") {
  ReplyQueue q;
  CHECK(q.client_requests_before_doubt() == 0);
  q.push_request(true, false, 1);  // a Query
  CHECK(q.client_requests_before_doubt() == 1);
  q.push_skipped();                // pgmux's own statement: not the client's
  q.push_request(false, true, 2);  // Parse/Bind/Execute, no Sync: its ReadyForQuery waits for the client's Sync
  CHECK(q.client_requests_before_doubt() == 1);  // the Query's reply comes; the sequence's does not
  q.push_request(true, true, 3);  // the Sync
  CHECK(q.client_requests_before_doubt() == 2);
  q.pop();
  q.pop();
  q.pop();
  CHECK(q.empty());

  // Parse (which may fail), a Query inside the sequence, then the Sync: one ReadyForQuery or two come.
  q.push_request(true, false, 4);  // an ordinary Query ahead: its reply comes
  q.push_request(false, true, 5);
  q.push_request(true, false, 6);  // the Query continues the entry and closes it
  q.push_request(true, true, 7);   // the Sync: its own entry, maybe never answered alone
  CHECK(q.size() == 3);
  CHECK(q.client_requests_before_doubt() == 1);
  q.pop();
  CHECK(q.client_requests_before_doubt() == 0);
  q.pop();  // the one ReadyForQuery of a failed Parse
  q.push_request(true, false, 8);
  q.push_skipped();
  CHECK(q.client_requests_before_doubt() == 0);  // behind the doubtful entry, every entry is doubtful
  q.pop();
  q.pop();
  q.pop();
  q.push_request(true, false, 9);  // the queue emptied: counted again
  CHECK(q.client_requests_before_doubt() == 1);
}

// What ServerConn::deliver_ready ends with the ReadyForQuery of a Sync that PostgreSQL skipped to after an error.
TEST_CASE("reply queue: the entries up to the first one that sent a Sync") {
  ReplyQueue q;
  q.push_request(false, true, 100);                    // Parse/Bind/Execute/Flush
  CHECK_FALSE(q.push_request(true, false, 200).synced);  // a Query continues and closes it, without a Sync
  q.push_request(true, false, 300);                    // another Query
  CHECK(q.entries_through_sync() == 0);                // no Sync yet
  q.push_request(false, true, 400);                    // Parse/Bind/Execute/Flush
  CHECK(q.push_request(true, true, 500).synced);       // ... Sync
  q.push_request(true, false, 600);
  CHECK(q.size() == 4);
  CHECK(q.entries_through_sync() == 3);
  CHECK(q.pop().sent_ns == 100);
  CHECK(q.entries_through_sync() == 2);
  CHECK(q.push_request(true, true, 700).synced);  // a Sync alone: an entry of its own, synced
}

// What keeps a client from waiting for replies that come only behind its own next Sync (ServerConn::awaits_sync).
TEST_CASE("reply queue: PostgreSQL may wait for a Sync while a sequence is open or a skip is unresolved") {
  ReplyQueue q;
  CHECK_FALSE(q.awaits_sync());
  q.push_request(false, true, 100);  // Parse/Bind/Execute/Flush
  CHECK(q.awaits_sync());            // open
  OwedReply& continued = q.push_request(true, false, 200);  // a Query continues and closes it
  continued.closes_sent = 1;
  continued.sentinel_close = 1;  // its sentinel Close went out, not answered yet
  CHECK_FALSE(q.open_sequence());
  CHECK(q.awaits_sync());
  q.push_request(true, false, 300);  // another Query behind: still no Sync
  CHECK(q.awaits_sync());
  continued.closes_seen = 1;  // the sentinel's answer: the sequence ran, the Query gets its own ReadyForQuery
  CHECK_FALSE(q.awaits_sync());
  continued.skips_to_sync = true;  // (had an error come first)
  CHECK(q.awaits_sync());
  q.push_request(true, true, 400);  // a Sync: whatever was skipped ends there
  CHECK_FALSE(q.awaits_sync());
}

TEST_CASE("reply queue: a request sent behind one armed for a retry disarms it") {
  ReplyQueue q;
  q.push_request(true, true, 1).fate = ReplyFate::HeldForRetry;
  CHECK(q.front_fate() == ReplyFate::HeldForRetry);
  q.push_request(true, false, 2);
  CHECK(q.front_fate() == ReplyFate::Forward);  // resending it would put its reply after the second one's
}

TEST_CASE("reply queue: pgmux's own statements are owed in order but are not the client's") {
  ReplyQueue q;
  q.push_skipped();  // a deferred BEGIN in front of the request
  q.push_failing();  // the statement that fails its block (pgmux answered an error in it)
  q.push_request(true, false, 5);
  CHECK(q.size() == 3);
  CHECK(q.client_requests() == 1);
  CHECK(q.front_fate() == ReplyFate::SkipOwn);
  CHECK_FALSE(q.pop().for_client());
  CHECK(q.front_fate() == ReplyFate::FailOwn);
  CHECK_FALSE(q.pop().for_client());
  CHECK(q.front().for_client());
}

TEST_CASE("reply queue: a query of pgmux's behind a request names its statement, and disarms a retry") {
  ReplyQueue q;
  q.push_request(true, false, 7).fate = ReplyFate::HeldForRetry;  // an SQL PREPARE (on a standby, say)
  q.push_capture("ins");
  CHECK(q.size() == 2);
  CHECK(q.client_requests() == 1);
  CHECK(q.front_fate() == ReplyFate::Forward);  // resent, it would go out behind pgmux's query
  CHECK(q.pop().for_client());
  CHECK(q.front_fate() == ReplyFate::CaptureOwn);
  OwedReply capture = q.pop();
  CHECK_FALSE(capture.for_client());
  REQUIRE(capture.capture);
  CHECK(capture.capture->statement == "ins");
  CHECK_FALSE(capture.capture->value);
}

TEST_CASE("reply queue: a request is alone in flight when only pgmux's queries behind PREPAREs are ahead") {
  ReplyQueue q;
  CHECK_FALSE(q.lone_simple_request_at_back());
  q.push_request(true, false, 1);
  CHECK(q.lone_simple_request_at_back());
  q.push_capture("a");
  q.push_request(true, false, 2);  // pipelined behind the first PREPARE: the client's request is ahead
  CHECK_FALSE(q.lone_simple_request_at_back());
  q.pop();  // as when it was sent after the first PREPARE's reply, before its types came
  CHECK(q.lone_simple_request_at_back());
  q.push_skipped();  // a BEGIN pgmux answered, ahead of the next request
  q.push_request(true, false, 3);
  CHECK_FALSE(q.lone_simple_request_at_back());
  CHECK_FALSE(q.only_captures());
  ReplyQueue left;  // a client left right after its PREPARE: only pgmux's query is owed
  CHECK(left.only_captures());
  left.push_request(true, false, 6);
  left.push_capture("b");
  CHECK_FALSE(left.only_captures());
  left.pop();
  CHECK(left.only_captures());
  ReplyQueue open;
  open.push_request(true, true, 4).open = true;  // Parse, Bind, Execute, Flush: no Sync yet
  open.push_request(true, false, 5);            // a Query continues that entry
  CHECK(open.size() == 1);
  CHECK_FALSE(open.lone_simple_request_at_back());
}

TEST_CASE("reply queue: an internal run carries its callback and counts its ReadyForQuery messages") {
  ReplyQueue q;
  int calls = 0;
  q.push_internal(3, [&](ServerConn&, bool, const std::string&, const std::string&) { ++calls; });
  CHECK(q.front_fate() == ReplyFate::Internal);
  CHECK(q.front().readies == 3);
  CHECK(q.client_requests() == 0);
  OwedReply run = q.pop();
  REQUIRE(run.internal);
  CHECK(static_cast<bool>(run.internal->done));
  CHECK(calls == 0);  // the server calls it, at the last ReadyForQuery
}

TEST_CASE("reply queue: growing past its capacity while wrapped keeps the order") {
  ReplyQueue q;
  uint64_t pushed = 0;
  uint64_t popped = 0;
  for (int i = 0; i < 6; ++i) q.push_request(true, false, ++pushed);
  for (int i = 0; i < 4; ++i) CHECK(q.pop().sent_ns == ++popped);  // the head is now mid-ring
  for (int i = 0; i < 40; ++i) q.push_request(true, false, ++pushed);  // grows twice, from a wrapped ring
  CHECK(q.size() == 42);
  while (!q.empty()) CHECK(q.pop().sent_ns == ++popped);
  CHECK(popped == pushed);
  CHECK_FALSE(q.open_sequence());
}

// pop() moves an entry out and leaves its slot as it is; the slot is reset only when push_back reuses it.
TEST_CASE("reply queue: a reused slot starts as a fresh entry") {
  ReplyQueue q;
  for (int lap = 0; lap < 3; ++lap) {  // the ring holds 8: every slot is reused
    CAPTURE(lap);
    for (int i = 0; i < 8; ++i) {
      OwedReply& entry = i % 2 ? q.push_request(false, true, 1) : (q.push_internal(3, {}), q.back());
      entry.writes = true;
      entry.failed = true;
      entry.closes_sent = 2;
      entry.hidden_closes = 1;
      entry.committed = Written::Applied;
      entry.session = std::make_unique<SessionCommand>();
      entry.described = std::make_unique<std::vector<std::pair<uint16_t, std::string>>>();
      OwedReply out = q.pop();
      CHECK(out.writes);
      CHECK(out.session);
    }
    OwedReply& fresh = q.push_request(true, false, 7);
    CHECK(fresh.fate == ReplyFate::Forward);
    CHECK_FALSE(fresh.writes);
    CHECK_FALSE(fresh.failed);
    CHECK(fresh.readies == 1);
    CHECK(fresh.closes_sent == 0);
    CHECK(fresh.hidden_closes == 0);
    CHECK(fresh.committed == Written::Nothing);
    CHECK_FALSE(fresh.session);
    CHECK_FALSE(fresh.internal);
    CHECK_FALSE(fresh.described);
    CHECK(q.pop().sent_ns == 7);
  }
}
