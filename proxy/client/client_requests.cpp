// ClientConn, the request path: scan, classify, route, prepare the server, forward (DESIGN.md §3.6).
#include "proxy/client/client_conn.hpp"

#include <cctype>
#include <cstdio>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"
#include "routing/read_your_writes.hpp"
#include "routing/session_sql.hpp"

namespace pgmux::proxy {

using namespace protocol;

void ClientConn::pump() {
  if (pumping_) {
    repump_ = true;
    return;
  }
  pumping_ = true;
  do {
    repump_ = false;
    pump_requests();
  } while (repump_ && open());
  pumping_ = false;
}

void ClientConn::pump_requests() {
  const uint32_t max_size = worker_.max_message_size();
  while (open() && reads_requests(state_) && !pinned()) {
    if (copying()) {
      if (relay_copy()) continue;
      // No complete progress: wait for more bytes (or for the pinned write). None come after the end of input:
      // the end goes on to the server, which fails the COPY and ends the session, as directly.
      if (input_ended() && open() && !pinned()) end_session(Failure::ClientClosed);
      break;
    }
    if (in_.unparsed() == 0) {
      if (input_ended()) end_session(Failure::ClientClosed);  // the end of what the client sent before its EOF
      break;
    }
    // PostgreSQL answers an unknown message type at its type byte, before reading a length: so does pgmux, once
    // no reply is owed (else it would overtake them; then the whole message goes to the server, which answers).
    if (const auto tag = static_cast<char>(in_.unparsed_bytes()[0]);
        !protocol::frontend::is_request_message_type(tag) && !(active_ && active_->has_outstanding())) {
      fail({Failure::MalformedRequest, {"invalid frontend message type " + std::to_string(static_cast<uint8_t>(tag))}});
      return;
    }
    ScanResult scan = scan_request(in_.unparsed_bytes(), max_size, size_t{4} * max_size, request_);
    if (scan.status == ScanStatus::NeedMore && input_ended()) {
      // A message cut by the end of the stream: the client broke off (PostgreSQL drops the message). It is closed
      // at once, as a client gone while only requests already sent run (on_read_end).
      close_reason_ = Failure::ClientClosed;
      close();
      break;
    }
    if (scan.status == ScanStatus::NeedMore) {
      // The rest of the request must fit, and reading must go on whatever size it has (else a request that ends
      // the buffer on a message boundary would wait forever, and a client that vanished would go unnoticed). The
      // room grows with what arrived, not with what a header announced: 13 bytes must not commit max_message_size.
      in_.consume_to(in_.parsed());
      in_.make_room(std::min(scan.bytes_needed, std::max(2 * in_.unparsed(), IoBuffer::kDefaultCapacity)));
      break;
    }
    if (scan.status == ScanStatus::InvalidLength && active_ && active_->has_outstanding()) {
      set_state(ClientState::Draining);  // PostgreSQL answers what came before, then closes
      break;
    }
    if (scan.status == ScanStatus::Error || scan.status == ScanStatus::InvalidLength) {
      fail(scan.status == ScanStatus::Error ? FailureReport(Failure::MalformedRequest, {scan.error})
                                            : FailureReport(Failure::InvalidMessageLength));
      return;
    }
    if (!dispatch()) break;
  }
  if (!open() || pinned()) return;
  if (reads_requests(state_)) {
    in_.compact();
    in_.shrink_if_empty();
  }
  start_reading();
}

bool ClientConn::dispatch() {
  if (request_.kind == RequestKind::Terminate) return end_session(Failure::ClientTerminated);
  if (request_.kind == RequestKind::CopyMessage) return dispatch_copy_message();
  if (discard_until_sync_ && (request_.kind == RequestKind::Extended || request_.kind == RequestKind::Query ||
                              request_.kind == RequestKind::FunctionCall)) {
    // After an error pgmux reported itself, PostgreSQL skips to Sync (a Query, a FunctionCall too, unanswered).
    bool sync = request_.kind == RequestKind::Extended && request_.ends_with_sync;
    in_.advance_parsed(request_.size);
    in_.consume_to(in_.parsed());
    if (sync) {
      discard_until_sync_ = false;
      ByteVector out;
      build_ready_for_query(out, status_after_local_error());
      send_owned(std::move(out));
    }
    return true;
  }
  if (admin_) return dispatch_admin();
  if (active_ && active_->owed_depth() >= kMaxPipelineDepth) {
    set_state(ClientState::Draining);  // a very deep pipeline: let replies catch up
    return false;
  }
  if (active_ && active_->copy_may_start()) {
    // Behind a COPY FROM STDIN that may have started: PostgreSQL takes this as part of the COPY (ignoring a Sync or
    // Flush, failing the COPY at anything else) or as a request of its own. Its reply tells (on_copy_in).
    set_state(ClientState::Draining);
    return false;
  }

  if (routed_server()) return resume_routed();
  routed_.reset();  // its server was lost meanwhile: routed afresh

  if (held_by_pause() || waits_for_first_catalog()) return false;
  if (request_.kind == RequestKind::Query && is_explain_route_request()) return answer_explain_route();
  routing::Classification c = classify_request();

  // Statement pooling hands the server back after every statement, so a transaction cannot span statements.
  if (pool_mode_ == conf::PoolMode::Statement && c.kind == routing::StatementKind::TxBegin && !c.multi_statement) {
    if (active_ && active_->has_outstanding()) {
      set_state(ClientState::Draining);  // answer in order: after the replies still owed
      return false;
    }
    fail(Failure::StatementPoolingTransaction);
    return open();
  }

  if (defer_begin(c) || (!session_.deferred_begin.empty() && hold_set_transaction(c))) return true;
  if (const std::optional<bool> answered = answer_statement_command(c)) return *answered;
  if (!session_.deferred_begin.empty()) class_behind_deferred_begin(c);

  // An extended sequence closed by Flush (no Sync) may go on with anything, writes included, on the same server:
  // start such a sequence on the primary. As a read: a Parse and Describe (asyncpg prepares so) write nothing, and
  // taking them for a write made this client's next reads, and with causal reads every client's, wait for the
  // standbys' replay. Also behind replies a standby still owes: it starts on the primary once they came
  // (server_to_follow), not on that standby, where a write later in the sequence would fail (25006).
  if (request_.kind == RequestKind::Extended && !request_.ends_with_sync &&
      routing::is_read_only_statement(c, session_.route)) {
    c.opens_sequence = true;
  }

  if (active_ && active_->has_outstanding() && !active_->awaits_sync() && depends_on_unanswered_statement()) {
    set_state(ClientState::Draining);  // whether that Parse made its statement: after the earlier one's reply
    return false;
  }
  if (const ParsedStatement* duplicate = duplicate_parse()) {
    answer_locally_with_error({Failure::DuplicatePreparedStatement, {std::string(duplicate->full_name())}});
    return true;
  }
  ServerConn* server = choose_server(c);
  if (!server) {
    if (answer_parse_instead_of_waiting()) return true;
    // Its pool handed a server over at once (an idle one, nothing to sync): on with it now, rather than scan and
    // dispatch this same request again in the next turn of pump_requests' loop.
    if (open() && reads_requests(state_) && routed_server()) return resume_routed();
    return reads_requests(state_) && open();  // answered here (an error): the next request; a wait: stop
  }
  if (!prepare(server, c)) return false;
  forward(server, c);
  return open() && !pinned();
}

namespace {
const std::vector<std::string> kNoNames;
}  // namespace

// Brings the server up to date with the client's session before its request: replays session commands it has
// not run, sets back what a RESET in the open block took (block_resets), closes statements that changed elsewhere,
// prepares the statements the request uses (and stand-ins for those it DEALLOCATEs), and sends a
// deferred BEGIN. Returns false while that runs (the request goes out afterwards).
bool ClientConn::prepare(ServerConn* server, const routing::Classification& c) {
  // A DEALLOCATE among other statements may name a statement the client made with Parse that the server does not
  // know by that name (transaction pooling) or has not parsed (the split): a stand-in (missing_sql_statements).
  const bool deallocates_parsed = (transaction_pooling() || statements_may_move()) &&
                                  c.effects.has(routing::SessionEffect::Deallocate) && session_.statement_count() > 0;
  if (!deallocates_parsed && nothing_to_prepare(*server)) return true;
  const bool behind_log = server->applied_log < session_.log.size();
  std::vector<SqlStatementPrep> sql_preps = missing_sql_statements(
      *server, server->tx_status() != 'I' || !session_.deferred_begin.empty(), deallocates_parsed);
  if (server->has_outstanding() &&
      (behind_log || !sql_preps.empty() || !server->block_resets.empty() ||
       add_statement_prep(server, nullptr, nullptr))) {
    if (server->awaits_sync()) {
      // An extended sequence left open by Flush never finishes before the client's Sync, which is in this very
      // request (or a later one): waiting would hang. The request goes as it is; the server answers for what it
      // lacks (26000).
      LOG_WARN("%s: S-%llu lacks a statement this request uses, in the middle of an extended sequence (Flush "
               "without Sync): sent as it is", log_prefix().c_str(), static_cast<unsigned long long>(server->id()));
      return true;
    }
    set_state(ClientState::Draining);  // its own replies first: pgmux's messages must not interleave with them
    LOG_DEBUG("C-%llu: waiting for S-%llu to finish before preparing it", static_cast<unsigned long long>(id_),
              static_cast<unsigned long long>(server->id()));
    return false;
  }
  PrepareStep step;  // what build_prepare_step sends, for finish_prepare
  step.log_size = session_.log.size();
  step.replay_from = server->applied_log;
  step.log_generation = session_.log_generation;
  ByteVector messages;
  const int readies = build_prepare_step(server, sql_preps, messages, step);
  if (readies == 0) return true;  // the usual case: nothing more was spent on it
  step.c = c;
  step.prepares_unnamed = binds_earlier_unnamed(server);
  LOG_DEBUG("C-%llu: preparing S-%llu (%d replies)", static_cast<unsigned long long>(id_),
            static_cast<unsigned long long>(server->id()), readies);
  std::vector<std::string> described;  // each statement prepared is described (add_session_statement)
  for (const std::string& name : transaction_pooling() || statements_may_move() ? step.prepared : kNoNames) {
    described.emplace_back(statement_on_server(*session_.find_statement(name), name));
  }
  set_state(ClientState::Preparing);
  preparing_ = server;
  const int fail_block_at = step.fail_block_at;
  server->run_internal_messages(
      std::move(messages), readies,
      [this, step = std::move(step)](ServerConn& s, bool ok, const std::string& sqlstate, const std::string& error) {
        if (!s.open()) return;  // on_server_lost told the client
        finish_prepare(s, step, ok, sqlstate, error);
      },
      std::move(described), fail_block_at);
  return false;
}

// The usual request, told by a few loads instead of the walks below: it names no statement (its own unnamed one
// aside: the walks skip it) and uses no unnamed statement of an earlier request, the server ran the whole session
// log and owes no Closes, and the session has no SQL-prepared statements (transaction pooling prepares those where
// needed). A deferred BEGIN then goes out in front of the request itself (build_prepare_step returns 0 for it).
bool ClientConn::nothing_to_prepare(const ServerConn& server) const {
  const std::vector<std::string>& closes = transaction_pooling() ? server.server_closes : server.pending_closes;
  return request_.used.empty() && !request_.parses_named && request_.closes == 0 && !request_.uses_prior_unnamed &&
         server.applied_log == session_.log.size() && session_.sql_statements.empty() && closes.empty() &&
         server.block_resets.empty();
}

// The prepare step's messages, in this order: the session log the server has not run, each entry its own Query
// (DISCARD ALL and friends refuse to run inside a multi-statement string) and outside the transaction, so that
// what they set lasts whatever the block does; the deferred BEGIN; the Closes and Parses of the statements the
// request uses that the server lacks, and a Sync; the SQL PREPAREs it names. Behind the BEGIN, a statement that
// fails to prepare aborts the transaction, as the client's own use of it does on PostgreSQL: the server is then
// in the failed block the client is told of ('E'), not in a block that began after the failure ('T'). Returns
// how many ReadyForQuery replies they make; 0: nothing to send ahead of the request.
int ClientConn::build_prepare_step(ServerConn* server, std::vector<SqlStatementPrep>& sql_preps,
                                   ByteVector& messages, PrepareStep& step) {
  int readies = 0;
  for (size_t i = step.replay_from; i < step.log_size; ++i) {
    build_query(messages, session_.log[i]);
    ++readies;
  }
  // Inside the block the RESETs ran in (a ROLLBACK TO SAVEPOINT undoes these SETs with them); once it ended, the
  // session log has the client's values. After the log's entries, whose failures are counted from the first reply.
  if (server->tx_status() == 'T') {
    for (const std::string& set : server->block_resets) build_query(messages, set);
    readies += static_cast<int>(server->block_resets.size());
  }
  server->block_resets.clear();
  const size_t replayed_end = messages.size();
  const bool begins = !session_.deferred_begin.empty();
  // Where the step surely goes out, the BEGIN is written in place now; else only if statements must be prepared.
  const bool begin_written =
      begins && (readies > 0 || !sql_preps.empty() || forwards_renamed() || forwards_described());
  if (begin_written) write_deferred_begin(messages);
  step.prepares_statements = add_statement_prep(server, &messages, &step);
  if (step.prepares_statements) {
    build_sync(messages);
    ++readies;
    readies += add_reparsed_statements(server, messages, step, server->tx_status() != 'I' || begins);
  }
  if (begins && !begin_written) {
    // Nothing else to bring over: the BEGIN goes out in the same write as the request (forward()), and the
    // server skips its reply. One round trip fewer per transaction.
    if (!step.prepares_statements) return 0;
    ByteVector begin;  // rare (session pooling with statements to prepare): in front of them
    write_deferred_begin(begin);
    messages.insert(messages.begin() + static_cast<std::ptrdiff_t>(replayed_end), begin.begin(), begin.end());
  }
  if (begins) {
    step.begin_at = static_cast<int>(step.log_size - step.replay_from);
    readies += static_cast<int>(session_.deferred_begin.size());
    if (session_.deferred_begin_failed) {
      step.fail_block_at = step.begin_at + static_cast<int>(session_.deferred_begin.size());
      ++readies;
    }
  }
  for (SqlStatementPrep& prep : sql_preps) {
    step.sql_prepared.emplace_back(std::move(prep.name), static_cast<uint16_t>(readies + prep.prepare_at));
    for (const std::string& query : prep.queries) build_query(messages, query);
    readies += static_cast<int>(prep.queries.size());
    if (prep.check_prepared) {
      // Its savepoint was rolled back, also when the PREPARE failed: a Describe of the statement fails then
      // (26000), and the block is aborted as the client's EXECUTE would have left it. No effect otherwise.
      build_describe(messages, 'S', step.sql_prepared.back().first);
      build_sync(messages);
      ++readies;
    }
    server->session_dirty = true;  // DISCARD ALL before another client gets it
  }
  return readies;
}

// The server is up to date (or failed to be): the request goes on with the decision made when it was routed.
void ClientConn::finish_prepare(ServerConn& s, const PrepareStep& step, bool ok, const std::string& sqlstate,
                                const std::string& error) {
  if (s.client() != this) {
    // The client left meanwhile (compared, not dereferenced): part of its session was replayed there, so the
    // server is closed rather than handed to someone else half set up.
    s.close();
    return;
  }
  s.pool().set_state(&s, ServerState::Linked);  // out of Internal, so that a release can take it back
  preparing_ = nullptr;
  if (!ok && fail_unrestored_session(s, step, sqlstate, error)) return;
  bool close_unlisted = false;
  if (!ok) {
    LOG_WARN("%s: bringing server S-%llu up to date with the session failed: %s", log_prefix().c_str(),
             static_cast<unsigned long long>(s.id()), escape_for_log(error, 300).c_str());
    if (step.prepares_statements || !step.sql_prepared.empty()) {
      prepare_error_.assign(s.last_internal_error().begin(), s.last_internal_error().end());
      for (const auto& name : step.prepared) {  // not there after all
        const PreparedStatement* stored = session_.find_statement(name);
        if (stored && transaction_pooling()) s.server_statements.erase(stored->server_name);
        if (!transaction_pooling()) s.prepared.erase(name);  // described: listed when it was sent
      }
      close_unlisted = !transaction_pooling();
    }
  }
  s.applied_log = step.log_size;
  s.pending_closes.clear();
  if (close_unlisted) {
    // The step's Parses before the one that failed did make their statements (PostgreSQL keeps them though the
    // step's transaction rolls back): closed before the next prepare there, which would get 42P05 for them.
    // (Transaction pooling closes each shared name before its Parse anyway.)
    s.pending_closes.assign(step.prepared.begin(), step.prepared.end());
  }
  for (const auto& [name, ordinal] : step.sql_prepared) {
    if (!s.last_internal_failed(ordinal)) s.sql_statements.insert(name);
  }
  if (ok || !step.prepares_statements) {
    for (const auto& name : step.prepared) {
      s.prepared.try_emplace(name);
      learn_description(s, name);
    }
    if (step.prepares_unnamed) unnamed_.prepared_on(&s);
  }
  if (!session_.deferred_begin.empty()) {
    session_.deferred_begin_sent();
    // The request goes on inside the block that BEGIN opened ('T'), or fails in it ('E': pgmux answered an error
    // in it, or a statement the step prepared behind the BEGIN failed, and resume_routed answers the request with
    // that error).
    session_.tx_status = s.tx_status();
  }
  if (state_ == ClientState::PreparingCanceled && fail_canceled_request(s)) return;
  routed_ = RoutedRequest{step.c, role_of(&s), std::nullopt, true};
  resume_requests();
  pump();
  // A request that failed here (prepare_error_: answered without reaching the server) leaves the server idle;
  // inside pump it could not be given back, and no reply will come to do it: transaction pooling would starve.
  release_idle_servers();
}

// A command of the session log failed on the server (its Queries come first in the step, so its error is the
// run's first): the request must not run there with the server's own setting in the command's place. Or the
// deferred BEGIN, next, failed: the request must not run outside the block the client was told it is in. The
// session ends (the failures' rows say why an ERROR would not do), and with it the checkout: the rows close the
// server, which ran the rest of the step. True when the client was failed so.
bool ClientConn::fail_unrestored_session(ServerConn& s, const PrepareStep& step, const std::string& sqlstate,
                                         const std::string& error) {
  for (size_t i = 0; step.replay_from + i < step.log_size; ++i) {
    if (!s.last_internal_failed(static_cast<uint16_t>(i))) continue;
    const size_t at = step.replay_from + i;
    // The log does not change while its client waits for the step, unless a reply from its other server
    // restarted it meanwhile.
    const bool known = step.log_generation == session_.log_generation && at < session_.log.size();
    fail(FailureReport::relayed_words(Failure::SessionReplayFailed, sqlstate,
                                      {known ? session_.log[at] : std::string("?"), std::to_string(s.id()),
                                       s.pool().backend().name, error}));
    return true;
  }
  for (size_t i = 0; step.begin_at >= 0 && i < session_.deferred_begin.size(); ++i) {
    if (!s.last_internal_failed(static_cast<uint16_t>(step.begin_at + static_cast<int>(i)))) continue;
    fail(FailureReport::relayed_words(Failure::DeferredBeginRefused, sqlstate,
                                      {session_.deferred_begin[i], std::to_string(s.id()), s.pool().backend().name,
                                       error}));
    return true;
  }
  return false;
}

void ClientConn::forward(ServerConn* server, const routing::Classification& c) {
  session_.route.rerun_after_recovery_conflict = false;  // it goes (a rerun that followed a server was not routed)
  if (stale_statement(server)) {
    // PostgreSQL's answer for a statement whose result columns changed since the client prepared it. It fails
    // the transaction block the request is in: the one open on the server fails there too, a deferred one when
    // its BEGIN goes out (answer_locally_with_error).
    const std::string name(request_.steps.front().name);
    if (server->tx_status() == 'T') {
      fail_server_block(*server);
      make_active(server);  // the block's next requests go there (with the split: not to where routing sends them)
    }
    answer_locally_with_error(Failure::PlanChanged);
    LOG_INFO("%s: prepared statement \"%s\" predates DDL that changed its columns (0A000, as PostgreSQL)",
             log_prefix().c_str(), escape_for_log(name, 200).c_str());
    release_idle_servers();
    return;
  }
  const bool is_primary = server == primary_;
  last_activity_ = worker_.now();
  LOG_DEBUG("C-%llu: %s (%s) -> S-%llu backend %s", static_cast<unsigned long long>(id_), routing::to_string(c.kind),
            c.reason, static_cast<unsigned long long>(server->id()), server->pool().backend().name.c_str());
  // A deferred BEGIN (and the SET TRANSACTIONs held behind it) goes out in front of the request (send_request):
  // its replies are owed first.
  for (size_t i = 0; i < session_.deferred_begin.size(); ++i) server->expect_skipped_reply();
  if (session_.deferred_begin_failed) server->expect_failing_reply();
  // Asked before its reply is owed.
  const bool retriable = may_run_on_primary_instead(server, c) || may_run_again_if_lost(server, c);
  const bool first_use_checked = !server->has_outstanding() && server->tx_status() != 'E';  // by stale_statement
  const bool extended = request_.kind == RequestKind::Extended;
  const bool ends_entry = !extended || request_.ends_with_sync;
  OwedReply& owed = server->expect_reply(ends_entry, extended);
  const bool starts_entry = owed.request == 0;  // else it continues an open sequence
  if (starts_entry) owed.request = ++requests_sent_;
  owed.copy_may_start = c.copy_in;
  if (retriable) {
    owed.fate = ReplyFate::HeldForRetry;
    retry_request_.assign(in_.data() + in_.parsed(), in_.data() + in_.parsed() + request_.size);
  }
  note_outstanding(c, is_primary, owed);
  if (routing::commits_transaction(c)) owed.commits = true;
  if (transaction_pooling()) note_parameter_resets(owed, c);
  note_session_effects(server, c, is_primary, owed);
  note_bound_portals(owed.request);  // after the session's look at what it executes
  // Active before anything goes out: a write that fails at once (the server closes inside the call) finds its
  // request in flight, and on_server_lost answers it or sends it again.
  make_active(server);
  // Renamed as the statements are before this request; then its Parse and Close messages change them.
  const bool renamed = forwards_renamed();
  const bool renamed_ok = !renamed || forward_renamed(server, owed, first_use_checked);
  const bool described = !renamed && forwards_described();
  if (described) forward_described(server, owed);
  const bool unnamed_close = !renamed && !described && hides_unnamed_close(server, owed);  // those send their own
  const bool sentinel = !renamed && !described && hides_sequence_sentinel(owed, !starts_entry);
  if (!server->open()) return;
  // A copy of its Parse whenever a later use may run elsewhere: transaction pooling gives the server back, and
  // with the split a read that must see a commit goes to the primary or a standby that has it (choose_server).
  const bool may_move = transaction_pooling() || statements_may_move();
  unnamed_.on_sent(request_, {server, owed.request, owed.parses_sent, starts_entry, ends_entry}, request_unnamed_class_,
                   may_move);
  apply_statement_steps(server, owed);
  if (renamed && !renamed_ok) {
    fail(Failure::MalformedExtendedMessage);
    return;
  }
  // Every Close is answered by a CloseComplete: a later part of an open sequence numbers its hidden ones after.
  owed.closes_sent = static_cast<uint8_t>(std::min<unsigned>(255, owed.closes_sent + request_.close_messages));
  if (!renamed && !described) {
    send_request(server, unnamed_close ? HiddenClose::UnnamedStatement
                         : sentinel    ? HiddenClose::SequenceSentinel
                                       : HiddenClose::None);
  }
  capture_prepare_types(*server, c);
  server->relay();  // replies that arrived while it was not this client's active server
}

// What its reply is for, in the server's reply queue: the timings and, for a session command, the command to
// record in the session log once it succeeded (popped at its ReadyForQuery).
void ClientConn::note_outstanding(const routing::Classification& c, bool is_primary, OwedReply& owed) {
  if (tx_started_ns_ == 0) tx_started_ns_ = owed.sent_ns;
  if (c.catalog_change) catalog_hold_.begin(worker_.shared().catalogs, catalog_.slot());
  note_commit_wait_change(c);
  note_session_request(owed, c);  // what of it lasts is decided at its ReadyForQuery
  // Session commands change no data: they do not start read-your-writes.
  if (is_primary && !routing::is_read_only_statement(c, session_.route) &&
      c.kind != routing::StatementKind::Session) {
    owed.writes = true;
  }
}

// Session state the request may leave on the server: a shared server gets DISCARD ALL on release (false
// positives only cost that), and a pin keeps the client on its server.
void ClientConn::note_session_effects(ServerConn* server, const routing::Classification& c, bool is_primary,
                                      OwedReply& owed) {
  // A SET LOCAL of a setting statements keep from their parse: those parsed in this transaction do not mean what
  // their shared names say (ClientSession::analysis_settings_key); the server's reset drops them. (Not for
  // search_path or the role, which PostgreSQL checks at each execution: per-transaction SET LOCAL of those is
  // common, and a reset each time would cost a round trip and every shared statement.)
  const bool local_analysis = c.effects.has(routing::SessionEffect::SetLocalAnalysis);
  // (Text this session may read otherwise than the lexer has an unknown effect: read_as_session_does.)
  if (transaction_pooling() && (c.effects.may_change_session() || c.pins_primary() || local_analysis)) {
    server->session_dirty = true;
    if (c.effects.has(routing::SessionEffect::DiscardAll) || c.effects.has(routing::SessionEffect::DeallocateAll)) {
      server->server_statements.clear();  // the client's command drops pgmux's shared statements there too
      server->server_closes.clear();
    }
  }
  // SQL PREPARE pins no more: the session keeps its statements (client_sql_statements.cpp).
  // A temporary-schema pin a standby saw (a search_path naming pg_temp, set in a read-only block) is the primary's:
  // the session's CREATEs make temporary objects there from then on.
  if (c.pin_reason != routing::PinReason::None) {
    note_pin(c.pin_reason, is_primary || c.pin_reason == routing::PinReason::TempTable);
  }
  owed.closes_standby_cursors = owed.closes_standby_cursors || note_standby_cursors(server, c);
}

// Its replies are relayed from now on, and a cancel request reaches it.
void ClientConn::make_active(ServerConn* server) {
  if (active_ == server) return;
  active_ = server;
  CancelTarget target;
  target.set_address(server->address());
  target.process_id = server->key().process_id;
  target.secret_key = server->key().secret_key;
  target.server_id = server->id();
  cancel_slot_->set(target);
}

// The request's bytes, untouched, straight from the receive buffer (a deferred BEGIN in front of them).
void ClientConn::send_request(ServerConn* server, HiddenClose hidden) {
  uv_buf_t bufs[3];
  unsigned count = 0;
  if (!session_.deferred_begin.empty()) {
    // The BEGIN pgmux answered, in front of the request; its reply (CommandComplete, ReadyForQuery) is skipped.
    begin_message_.clear();
    write_deferred_begin(begin_message_);  // and the statement that fails its block, if any: its reply skipped too
    bufs[count++] =
        uv_buf_init(reinterpret_cast<char*>(begin_message_.data()), static_cast<unsigned>(begin_message_.size()));
    session_.deferred_begin_sent();
  }
  if (hidden == HiddenClose::UnnamedStatement) {  // hides_unnamed_close: Close 'S' ""
    static char close_unnamed[] = {'C', 0, 0, 0, 6, 'S', 0};
    bufs[count++] = uv_buf_init(close_unnamed, sizeof close_unnamed);
  } else if (hidden == HiddenClose::SequenceSentinel) {  // hides_sequence_sentinel: Close 'P' of a reserved name
    static char close_sentinel[] = "C\0\0\0\x1dPpgmux_sequence_sentinel";  // the string's own NUL ends the name
    bufs[count++] = uv_buf_init(close_sentinel, sizeof close_sentinel);
  }
  std::byte* request = in_.data() + in_.parsed();
  bufs[count++] = uv_buf_init(reinterpret_cast<char*>(request), static_cast<unsigned>(request_.size));
  in_.advance_parsed(request_.size);
  if (server->forward_from(*this, bufs, count)) in_.consume_to(in_.parsed());
}

// The client keeps its server(s) for the session state it just created there (pinned_primary: on the primary).
void ClientConn::note_pin(routing::PinReason pin, bool pinned_primary) {
  if (pinned_primary) session_.route.pinned_primary = true;
  if (!session_.pin_reason) session_.pin_reason = routing::to_string(pin);
  if (transaction_pooling() && !session_.pin_logged) {
    session_.pin_logged = true;
    worker_.pins().add(pin);
    LOG_INFO("%s: pinned to its server (%s)", log_prefix().c_str(), session_.pin_reason);
  }
}

// An error inside a transaction block fails it. In a block still deferred (no server has run its BEGIN: routing
// and pool failures such as 57P03 or 53300 meet the request that would have sent it), the block fails on the server
// too, behind the BEGIN in front of the client's next request: PostgreSQL itself answers what follows, as on a
// direct connection (25P02 until the block ends, ROLLBACK for COMMIT, whatever the protocol, query string or
// savepoint). Inside a block a server runs, what pgmux answers failed there already (PrepareFailed); it answers
// the others (PlanChanged, DuplicatePreparedStatement) only outside a block.
void ClientConn::answer_locally_with_error(const FailureReport& failure) {
  primary_wait_ = {};  // the request is over: a later one's wait for a primary starts afresh
  ByteVector out;
  report_failure(failure, Severity::Error, worker_.metrics(), log_prefix(), out);
  if (!session_.deferred_begin.empty()) session_.deferred_begin_failed = true;
  const bool ends_with_ready = request_.kind != RequestKind::Extended || request_.ends_with_sync;
  if (ends_with_ready) {
    build_ready_for_query(out, status_after_local_error());
  } else {
    discard_until_sync_ = true;
  }
  send_owned(std::move(out));
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
}

// An error inside a transaction block fails it (the block pgmux answered BEGIN for included).
char ClientConn::status_after_local_error() const {
  return session_.deferred_begin.empty() && session_.tx_status == 'I' ? 'I' : 'E';
}

}  // namespace pgmux::proxy
