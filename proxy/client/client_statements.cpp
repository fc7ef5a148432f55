// ClientConn, prepared statements: remembering them, preparing them where a request lands, renaming them for
// transaction pooling, in the order PostgreSQL applies a batch's messages.
#include "proxy/client/client_conn.hpp"

#include <algorithm>
#include <bit>
#include <utility>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_naming.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

namespace {
// The name a stale statement's Bind or Describe goes out under (ClientConn::copy_is_stale), one string for all:
// resolve_server_names points at it.
const std::string& stale_plan_name() {
  static const std::string name(protocol::kStalePlanStatement);
  return name;
}
}  // namespace

using namespace protocol;

// Close and Parse messages that must reach the server before this request: statements the request uses that
// the server lacks (for a Parse that will fail with 42P05, the statement that exists: the server must have it
// to answer so), and (session pooling) client statements replaced elsewhere or (transaction pooling) pgmux
// statements evicted from the server's LRU. `prepared` gets the client names of the statements prepared here.
// With `messages` null nothing changes: the answer is only whether anything would be sent. True when something
// is (or would be).
bool ClientConn::add_statement_prep(ServerConn* server, ByteVector* messages, PrepareStep* step) {
  const std::vector<std::string>& closes = transaction_pooling() ? server->server_closes : server->pending_closes;
  bool any = !closes.empty();
  if (messages) {
    for (const auto& name : closes) build_close(*messages, 'S', name);
    if (transaction_pooling()) server->server_closes.clear();  // pending_closes: cleared once the prep succeeded
  }
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& resolved) {
    // A statement from an earlier request, used here (or existing, for a Parse that fails): the server needs it.
    if (!resolved.in_session || resolved.step->kind == StatementStepKind::Close) return true;
    const std::string_view name = resolved.step->name;
    const bool lacks = transaction_pooling() ? lacks_shared_copy(server, name, *resolved.in_session, messages)
                                             : !server->prepared.contains(name);
    if (!lacks) return true;
    any = true;
    if (messages) add_session_statement(server, name, *resolved.in_session, *messages, *step);
    return true;
  });
  if (binds_earlier_unnamed(server)) {
    any = true;
    if (messages) messages->insert(messages->end(), unnamed_.parse().begin(), unnamed_.parse().end());
  }
  return any;
}

// The request binds the unnamed statement an earlier request parsed, and this server does not have it.
bool ClientConn::binds_earlier_unnamed(const ServerConn* server) const {
  return request_.uses_prior_unnamed && server != unnamed_.server() && !unnamed_.parse().empty();
}

// Transaction pooling: the server lacks a shared copy the client's statement can run on. A copy older than the
// client's Parse may predate DDL the client saw; one whose parameter types differ from those the client's Parse
// resolved was made after DDL by another client's Parse of the same text (or inferred them here): then, and
// whenever pgmux prepares a statement whose types are known, its Parse spells them out (pin_parameter_types:
// another shared name, which the server may have). Only `prepares` (not a dry run) changes the client's
// statement.
bool ClientConn::lacks_shared_copy(ServerConn* server, std::string_view client_name, const PreparedStatement& stored,
                                   bool prepares) {
  // A use makes the copy the most recently used (get, not peek): the list closes the least recently used first,
  // so a request's own statements are the last to go when it prepares another one there.
  const ServerConn::SharedStatement* copy = server->server_statements.get(stored.server_name);
  if (copy && copy->prepared_at >= stored.parsed_at) {
    const protocol::ByteVector& types = copy->description.parameter_types;
    const bool adopts = stored.parameter_types.empty();  // its Parse was answered by pgmux: the copy's types
    if (adopts || types.empty() || types == stored.parameter_types) {
      if (adopts && prepares) session_.find_statement(client_name)->parameter_types = types;
      return false;
    }
  }
  if (!prepares) return true;
  PreparedStatement* own = session_.find_statement(client_name);  // `stored`, which the walk sees as const
  const std::string inferred = own->server_name;  // (not the hot path: the server lacks a usable copy)
  if (!pin_parameter_types(*own)) return true;
  // The copy get() just made the most recent is no use to this client any more: the first to go, rather than
  // one kept for the request while a statement the request does use is closed to make room (unless another of
  // the request's statements, of the same text, runs on it).
  if (copy && !request_uses_shared(inferred)) server->server_statements.demote(inferred);
  return lacks_shared_copy(server, client_name, *own, prepares);
}

// Whether a statement of the session that the request names (not one it closes) runs on that shared copy.
bool ClientConn::request_uses_shared(std::string_view server_name) {
  for (const StatementStep& step : request_.steps) {
    if (step.kind == StatementStepKind::Close || step.name.empty()) continue;
    const PreparedStatement* other = session_.find_statement(step.name);
    if (other && other->server_name == server_name) return true;
  }
  return false;
}

// A statement from the session that the server lacks, once per prep: its Parse now, or, if the session's settings
// changed since its Parse (another TimeZone would read its literals otherwise), after the others under its own
// settings (add_reparsed_statements).
void ClientConn::add_session_statement(ServerConn* server, std::string_view client_name,
                                       const PreparedStatement& stored, ByteVector& messages, PrepareStep& step) {
  const auto listed = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), client_name) != names.end();
  };
  if (listed(step.prepared) || listed(step.reparsed)) return;
  if (stored.settings_key() != session_.parse_settings_key()) {
    step.reparsed.emplace_back(client_name);
    return;
  }
  if (append_statement_parse(server, client_name, messages)) step.prepared.emplace_back(client_name);
}

// The messages that prepare a statement of the session on the server (transaction pooling: under its shared name,
// closed first, and described). False if its Parse could not be renamed (not sent).
bool ClientConn::append_statement_parse(ServerConn* server, std::string_view client_name, ByteVector& messages) {
  PreparedStatement& stored = *session_.find_statement(client_name);
  if (!transaction_pooling()) {
    // With the split, the types its Parse fixed are known (forward_described): spelled out here, and the copy
    // described, for its result columns (stale_statement).
    pin_parameter_types(stored);
    messages.insert(messages.end(), stored.parse.begin(), stored.parse.end());
    if (statements_may_move()) {
      build_describe(messages, 'S', client_name);
      // Listed now: its description is recorded there as it comes.
      server->prepared.insert_or_assign(std::string(client_name), ServerConn::StatementDescription());
    }
    return true;
  }
  const std::string& name = stored.server_name;
  // Closed first even when pgmux's list says the server lacks it: a copy older than the client's Parse, or one
  // whose Close an earlier batch's error skipped (the list forgot it, the server did not); PostgreSQL does not
  // mind a Close of a statement that is not there.
  build_close(messages, 'S', name);
  const bool ok = rewrite_statement_names(
      stored.parse, [&](std::string_view) { return std::optional<std::string_view>(name); }, messages);
  if (!ok) return false;
  ++server->pool().stats.server_parses;
  build_describe(messages, 'S', name);  // its shape (ServerConn::SharedStatement)
  // The list closes the least recently used to make room, never one this request uses (the walk made those the
  // most recent: at most one per step); a request that uses more than max_per_server keeps them all meanwhile.
  server->server_statements.put_keeping(name, {uv_hrtime(), {}}, request_.steps.size(),
                                        [&](const std::string& evicted) { build_close(messages, 'S', evicted); });
  return true;
}

// A client statement's result shape and parameter types are the first ones known of a copy made for it (its own
// Parse's, or the first server's that prepared it for the client). Session pooling describes statements only
// when they may move (the split).
void ClientConn::learn_description(ServerConn& server, std::string_view client_name) {
  PreparedStatement* stored = session_.find_statement(client_name);
  if (!stored) return;
  const std::string_view on_server = statement_on_server(*stored, client_name);
  if (const ServerConn::StatementDescription* copy = server.description_of(on_server, transaction_pooling())) {
    if (stored->shape == 0) stored->shape = copy->shape;
    if (stored->parameter_types.empty()) stored->parameter_types = copy->parameter_types;
  }
}

// A request that starts by binding or describing a statement whose copy on this server has other result columns
// than the client's statement (prepared on either side of DDL): PostgreSQL would answer 0A000 "cached plan must
// not change result type", so pgmux does (forward: inside a block, the server's block fails too). Not behind
// replies the server still owes (the answer would overtake them), nor in a failed block (PostgreSQL answers
// 25P02 there). Null otherwise. In transaction pooling a client statement whose shape is not known yet (its Parse
// was answered by pgmux, and the copy it runs on was another client's) takes the copy's; session pooling knows
// shapes only when statements may move (the split).
const PreparedStatement* ClientConn::stale_statement(const ServerConn* server) {
  if (request_.kind != RequestKind::Extended || request_.steps.empty() || server->tx_status() == 'E' ||
      server->has_outstanding() || (!transaction_pooling() && !statements_may_move())) {
    return nullptr;
  }
  const StatementStep& first = request_.steps.front();
  if (first.kind != StatementStepKind::Use || first.name.empty() || first.message != 0) {
    // Only a Bind or Describe that is the request's first message: nothing before it may have run (or failed: a
    // Describe of a portal, a message PostgreSQL cannot read).
    return nullptr;
  }
  PreparedStatement* stored = session_.find_statement(first.name);
  if (!stored || (stored->shape == 0 && !transaction_pooling())) return nullptr;
  const ServerConn::StatementDescription* copy =
      server->description_of(statement_on_server(*stored, first.name), transaction_pooling());
  if (!copy || copy->shape == 0) return nullptr;
  if (stored->shape == 0) stored->shape = copy->shape;
  return copy->shape != stored->shape ? stored : nullptr;
}

// Transaction pooling: the server's copy of a client statement has other result columns than the client's
// statement (prepared on either side of DDL). A Bind or Describe of it anywhere in a request (stale_statement
// answers only a request's first message, and only with nothing owed before it) goes out naming
// kStalePlanStatement: PostgreSQL answers and skips exactly as for the stale statement, and the relay gives the
// client its 0A000 (ServerConn::client_view_of_error). pgjdbc sends its BEGIN in front of the Bind.
bool ClientConn::copy_is_stale(const ServerConn* server, const PreparedStatement& stored) const {
  // In a failed block PostgreSQL answers 25P02 first; the server does so for any name.
  if (stored.shape == 0 || server->tx_status() == 'E') return false;
  const ServerConn::StatementDescription* copy = server->description_of(stored.server_name, true);
  return copy && copy->shape != 0 && copy->shape != stored.shape;
}

// PostgreSQL's answer to a Bind or Describe of a stale statement, in place of the server's 26000 for
// kStalePlanStatement (through the failure table: counted and logged).
void ClientConn::build_plan_changed_error(ByteVector& out) {
  report_failure(Failure::PlanChanged, Severity::Error, worker_.metrics(), log_prefix(), out);
}

// A request that depends on a Parse or a Close an earlier request, still unanswered, sent (pipelined: two batches
// in one write, each with its Sync). PostgreSQL answers a Parse of the same name 42P05 if that Parse succeeded and
// creates the statement if it failed or was skipped (an error earlier in its batch), and the other way round for a
// Close; a Bind or Describe of the name runs that statement or fails with 26000. Only that request's reply tells.
// A Bind or Describe only matters where pgmux renames or moves statements (transaction pooling, the split):
// otherwise its one server answers it as PostgreSQL does.
bool ClientConn::depends_on_unanswered_statement() {
  if (unconfirmed_.empty()) return false;
  const bool uses_matter = transaction_pooling() || statements_may_move();
  bool depends = false;
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& resolved) {
    const StatementStep& step = *resolved.step;
    if (step.kind == StatementStepKind::Parse || step.kind == StatementStepKind::Close) {
      // (A Close keeps the statement it removes, to put back if skipped: it must be the one PostgreSQL has.)
      depends = std::any_of(unconfirmed_.begin(), unconfirmed_.end(),
                            [&](const UnconfirmedStatement& earlier) { return earlier.name == step.name; });
    } else if (step.kind == StatementStepKind::Use && uses_matter && !resolved.in_batch) {
      // Parsed and not answered yet; or closed and not answered yet (PostgreSQL may have skipped the Close).
      depends = resolved.in_session ? !resolved.in_session->confirmed
                                    : std::any_of(unconfirmed_.begin(), unconfirmed_.end(),
                                                  [&](const UnconfirmedStatement& earlier) {
                                                    return earlier.closed && earlier.name == step.name;
                                                  });
    }
    return !depends;
  });
  return depends;
}

// Transaction pooling: a request that starts with a Parse of a named statement the session already has gets
// PostgreSQL's 42P05 here, with its wording (the server knows the statement by its shared name). Only outside a
// transaction: an error pgmux answers cannot abort the server's transaction. Such a Parse later in a batch is
// sent under the existing statement's shared name, so the server answers 42P05 itself (naming that name).
const ParsedStatement* ClientConn::duplicate_parse() {
  if (!transaction_pooling() || request_.kind != RequestKind::Extended || request_.parses.empty() ||
      !session_.deferred_begin.empty()) {
    return nullptr;
  }
  const ParsedStatement& first = request_.parses.front();
  if (first.name.empty() || first.message.data() != in_.data() + in_.parsed()) return nullptr;
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) return nullptr;
  const PreparedStatement* existing = session_.find_statement(first.name);
  return existing && existing->confirmed ? &first : nullptr;
}

// Transaction pooling: a batch of only named Parses and a Sync (libpq's PQprepare) that would wait for a server
// to be released (its pool is full) is answered here; the statement is prepared on whichever server first needs
// it. Clients that prepare synchronously (pgbench -M prepared, more clients than servers) would otherwise wait
// for a server that their own thread's other connections hold. Any other time it goes to a server like any
// request, which checks the statement and fixes its parameter types as PostgreSQL does at Parse. Limit (README):
// a statement answered here is checked at its first use, and types left to infer are inferred then.
bool ClientConn::answer_parse_instead_of_waiting() {
  if (state_ != ClientState::ServerWait || !waiting_pool_ || !waiting_pool_->waits_for_release(this)) return false;
  if (!transaction_pooling() || request_.kind != RequestKind::Extended || !request_.ends_with_sync ||
      request_.parses.empty() || request_.messages != request_.parses.size() + 1 || !session_.deferred_begin.empty()) {
    return false;
  }
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) return false;
  if (request_.parses_unnamed) return false;  // the unnamed statement lives on one server only
  bool all_create = true;  // else a server answers the 42P05
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& step) {
    return all_create = step.outcome == ParseOutcome::Creates;
  });
  if (!all_create) return false;
  routed_.reset();
  resume_requests();  // off the pool's list
  ByteVector out;
  const uint64_t now = uv_hrtime();
  for (const auto& parse : request_.parses) {
    // Confirmed: the client was told it exists, so a second Parse of the name is 42P05 as on PostgreSQL.
    session_.remember(parse, classify_sql(parse.sql), transaction_pooling(), now, requests_sent_).confirmed = true;
    build_parse_complete(out);
    ++parses_answered_here_;
  }
  build_ready_for_query(out, 'I');
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  send_owned(std::move(out));
  return true;
}

// Transaction pooling: the request goes out with client statement names replaced by the shared server names,
// message by message as PostgreSQL resolves them (a Close then a Parse of one name in the same batch: the Close
// names the old statement, the Parse the new one). A name that resolves to nothing is sent as is: the server
// answers 26000 for it as PostgreSQL would, and a Close of it is no error. A Parse whose shared statement the
// server already has (another client's, or older) gets a Close of it in front, sent in the same write; its
// CloseComplete is kept from the client (OwedReply::hidden_closes).
bool ClientConn::forward_renamed(ServerConn* server, OwedReply& owed, bool first_use_checked) {
  BatchServerNames& names = worker_.batch_server_names();
  if (resolve_server_names(server, names, first_use_checked)) owed.stale_plan_sent = true;
  count_statement_traffic(server->pool().stats, names.created.size());
  ByteVector& out = worker_.rewrite_buffer();  // no allocation per request: sent from there, or copied if queued
  out.reserve(request_.size + 64);
  if (hides_unnamed_close(server, owed)) build_close(out, 'S', "");
  size_t next = 0;  // the rewriter asks for the names in the order the walk resolved them
  const StatementRenamer rename = [&](std::string_view) -> std::optional<std::string_view> {
    if (next >= names.of_step.size()) return std::string_view();  // cannot happen: fails the rewrite
    const std::string* name = names.of_step[next++];
    return name ? std::optional<std::string_view>(*name) : std::nullopt;
  };
  const ByteView request(in_.data() + in_.parsed(), request_.size);
  size_t done = 0;  // bytes of the request rewritten so far
  for (const uint32_t created : names.created) {
    const ParsedStatement& parse = request_.parses[created];
    const size_t at = static_cast<size_t>(parse.message.data() - request.data());
    if (!rewrite_statement_names(request.subspan(done, at - done), rename, out)) return false;
    const std::string& name = names.of_parse[created];
    const unsigned ordinal = owed.closes_sent + close_messages_before(request, at);
    // Closed first, had the server a copy or not by pgmux's list (add_session_statement says why). Past what the
    // reply can track, a copy the server has answers 42P05.
    if (ordinal < 64) {
      build_close(out, 'S', name);
      owed.hidden_closes |= uint64_t{1} << ordinal;
      ++owed.closes_sent;
    }
    if (!rewrite_statement_names(parse.message, rename, out)) return false;
    // Its shape, for the 0A000 PostgreSQL would give the client's statement on a copy prepared after DDL.
    build_describe(out, 'S', name);
    owed.add_described(owed.parses_sent + created, name);
    done = at + parse.message.size();
  }
  if (!rewrite_statement_names(request.subspan(done), rename, out)) return false;
  note_duplicate_names(names, owed);
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  server->send_copy(out);
  worker_.done_rewriting();
  return true;
}

bool ClientConn::statements_may_move() const {
  const auto mask = session_.route.backend_mask;
  return worker_.config()->routing.read_write_split && (mask & (mask - 1)) != 0;  // two backends or more
}

// Session pooling with the split: the request goes out as it is, but with a Describe of each statement it creates
// behind its Parse; the answers are kept from the client (OwedReply::described, as forward_renamed's) and tell
// the parameter types and result columns PostgreSQL fixed at the Parse. A server that prepares the statement later
// gets those types spelled out (add_session_statement), and one whose copy has other columns (prepared after DDL)
// gets PostgreSQL's 0A000 from pgmux (stale_statement). A deferred BEGIN went ahead (build_prepare_step).
void ClientConn::forward_described(ServerConn* server, OwedReply& owed) {
  ByteVector& out = worker_.rewrite_buffer();  // as forward_renamed's
  out.reserve(request_.size + 64);
  if (hides_unnamed_close(server, owed)) build_close(out, 'S', "");
  const std::byte* request = in_.data() + in_.parsed();
  size_t done = 0;  // bytes of the request copied so far
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& step) {
    if (step.step->kind != StatementStepKind::Parse || step.outcome != ParseOutcome::Creates) return true;
    const ParsedStatement& parse = request_.parses[step.step->parse];
    const size_t end = static_cast<size_t>(parse.message.data() - request) + parse.message.size();
    out.insert(out.end(), request + done, request + end);
    build_describe(out, 'S', parse.name);
    owed.add_described(owed.parses_sent + step.step->parse, parse.name);
    done = end;
    return true;
  });
  out.insert(out.end(), request + done, request + request_.size);
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  server->send_copy(out);
  worker_.done_rewriting();
}

// A request that uses the unnamed statement an earlier request parsed, on a server that does not hold the
// client's (pgmux parses it there first when it has the client's Parse: prepare): the server may hold another
// client's (transaction pooling) or an older one of the client's (a server it had let go of, or the other one
// with read/write split). A Close of it goes first, its CloseComplete kept from the client, so the server answers
// 26000 where PostgreSQL would, in its place in the batch. True when the caller must send that Close in front
// of the request (counted in `owed` here). Past 64 Closes in one open sequence the reply cannot track another
// hidden one; none is sent.
bool ClientConn::hides_unnamed_close(const ServerConn* server, OwedReply& owed) {
  if (!request_.uses_prior_unnamed || server == unnamed_.server() || owed.closes_sent >= 64) return false;
  owed.hidden_closes |= uint64_t{1} << owed.closes_sent;
  ++owed.closes_sent;
  return true;
}

// A Query or FunctionCall that continues an extended sequence (Flush, no Sync) goes out behind a Close of a portal
// no client names, the sentinel (OwedReply::sentinel_close): its CloseComplete says the sequence's messages before
// it ran without error. An error before it makes PostgreSQL skip the Query up to the next Sync, which pgmux could
// not tell from an error of the Query itself: it counted a ReadyForQuery that never came, and the server stayed
// owing one (never given back in transaction pooling). An error that came already says so without one.
bool ClientConn::hides_sequence_sentinel(OwedReply& owed, bool continues_sequence) {
  if (!continues_sequence || request_.kind == RequestKind::Extended || owed.fate != ReplyFate::Forward) return false;
  if (owed.failed) {
    owed.skips_to_sync = true;
    return false;
  }
  if (owed.closes_sent >= 64) return false;
  owed.hidden_closes |= uint64_t{1} << owed.closes_sent;
  ++owed.closes_sent;
  owed.sentinel_close = owed.closes_sent;
  return true;
}

// SHOW STATS' prepared-statement counts, as PgBouncer keeps them in its tracking mode. Parses answered here
// (answer_parse_instead_of_waiting) count with the client's next request that names a statement, in that
// request's pool.
void ClientConn::count_statement_traffic(PoolStats& stats, size_t created) {
  for (const ParsedStatement& parse : request_.parses) stats.client_parses += parse.name.empty() ? 0 : 1;
  stats.client_parses += std::exchange(parses_answered_here_, 0);
  stats.server_parses += created;
  stats.binds += request_.named_binds;
}

// The 42P05 of a Parse of a name that exists names the existing shared statement: the relay puts the client's
// name back (ServerConn::client_view_of_error).
void ClientConn::note_duplicate_names(const BatchServerNames& names, OwedReply& owed) {
  for (const auto& [parse, shared] : names.duplicates) {
    if (!owed.duplicate_names) {
      owed.duplicate_names = std::make_unique<std::vector<std::pair<std::string, std::string>>>();
    }
    owed.duplicate_names->emplace_back(*shared, std::string(request_.parses[parse].full_name()));
  }
}

// The server name of every named step, in order (names.of_step; null: sent as is), and the Parses that
// create a shared statement (names.created). A Close of a client statement closes no shared one: the client's other
// statements of the same text use it too, in this very batch maybe (pgjdbc closes one and binds another so), and
// so may other clients; the server's list evicts it in time. It is renamed to a name no statement has, so the
// server still answers CloseComplete in its place.
// True when a Bind or Describe goes out under kStalePlanStatement (copy_is_stale). first_use_checked: stale_statement
// looked at the request's first message already (no reply owed before it; not in a failed block), so a Bind or
// Describe there is not looked up again (the hot path: one statement per request, as pgbench -M prepared sends).
bool ClientConn::resolve_server_names(ServerConn* server, BatchServerNames& names, bool first_use_checked) {
  static const std::string kNoStatement = "pgmux_no_statement";  // not of the shared form: never parsed
  bool stale_sent = false;
  names.of_parse.resize(request_.parses.size());
  names.of_step.clear();
  names.created.clear();
  names.duplicates.clear();
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& step) {
    const std::string* name = nullptr;
    if (step.step->kind == StatementStepKind::Parse && step.outcome == ParseOutcome::Creates) {
      const uint32_t parse = step.step->parse;
      names.of_parse[parse] =
          server_statement_name(request_.parses[parse].message, session_.parse_settings_key());
      name = &names.of_parse[parse];
      server->server_statements.erase(*name);  // the Parse makes a new one (a copy there is closed first)
      names.created.push_back(parse);
    } else if (step.step->kind == StatementStepKind::Close && (step.in_batch || step.in_session)) {
      name = &kNoStatement;
    } else if (step.in_batch) {
      name = &names.of_parse[static_cast<size_t>(step.in_batch - request_.parses.data())];
    } else if (step.in_session) {
      const bool checked = first_use_checked && step.step->message == 0;  // as stale_statement
      const bool stale =
          step.step->kind == StatementStepKind::Use && !checked && copy_is_stale(server, *step.in_session);
      stale_sent = stale_sent || stale;
      name = stale ? &stale_plan_name() : &step.in_session->server_name;
    }
    if (step.step->kind == StatementStepKind::Parse && step.outcome != ParseOutcome::Creates && name) {
      names.duplicates.push_back({step.step->parse, name});  // 42P05 from the server, naming `name`
    }
    names.of_step.push_back(name);
    return true;
  });
  return stale_sent;
}

// Close messages in the first `end` bytes of a request (each one is answered by a CloseComplete).
unsigned ClientConn::close_messages_before(ByteView request, size_t end) const {
  unsigned closes = 0;
  for (size_t pos = 0; pos < end;) {
    const Frame frame = next_frame(request.subspan(pos), worker_.max_message_size());
    if (frame.status != FrameStatus::Frame) break;
    closes += frame.tag == frontend::kClose;
    pos += frame.total();
  }
  return closes;
}

// What the request's Parse and Close messages do to the session's statements, in batch order. A Parse that
// PostgreSQL will reject with 42P05 changes nothing, and neither does anything after it (the server skips to
// Sync). Statements parsed are confirmed when the request finishes: those whose ParseComplete came.
void ClientConn::apply_statement_steps(ServerConn* server, OwedReply& owed) {
  if (request_.parses.empty() && request_.closes == 0) return;
  const unsigned parses_before = owed.parses_sent;  // a Flush sequence continues an entry
  // The client's Close messages in the entry before this request (pgmux's own are in front of Parses).
  const unsigned closes_before = owed.closes_sent - static_cast<unsigned>(std::popcount(owed.hidden_closes));
  owed.parses_sent = static_cast<uint16_t>(std::min<size_t>(UINT16_MAX, parses_before + request_.parses.size()));
  statement_steps_.walk(request_, session_, [&](const ResolvedStep& step) {
    const std::string_view name = step.step->name;
    if (step.step->kind == StatementStepKind::Parse) {
      if (step.outcome != ParseOutcome::Creates) return false;
      const ParsedStatement& parse = request_.parses[step.step->parse];
      // A copy, to prepare the statement elsewhere later (the class comes from the classifier's cache).
      const uint64_t now = uv_hrtime();
      const PreparedStatement& stored =
          session_.remember(parse, classify_sql(parse.sql), transaction_pooling(), now, owed.request);
      unconfirmed_.push_back({owed.request, parses_before + step.step->parse, std::string(name), nullptr});
      server->prepared.insert_or_assign(std::string(name), ServerConn::StatementDescription());
      if (transaction_pooling()) {
        server->server_statements.put_keeping(stored.server_name, {now, {}}, request_.steps.size(),
                                              [&](std::string evicted) {
                                                server->server_closes.push_back(std::move(evicted));
                                              });
      }
      forget_statement_elsewhere(server, name, false);
    } else if (step.step->kind == StatementStepKind::Close) {
      // Transaction pooling: the shared statement stays on the server (resolve_server_names).
      take_closed_statement(server, owed, closes_before + step.step->close, name);
      forget_statement_elsewhere(server, name, true);
    }
    return true;
  });
}

// A Close of a named statement: gone from the session now (a Bind behind it in its batch must not find it), but
// kept until the reply tells whether PostgreSQL ran it (restore_closed_statement). Past what the reply can
// count (255 Close messages in one entry), it counts as run.
void ClientConn::take_closed_statement(ServerConn* server, const OwedReply& owed, unsigned ordinal,
                                       std::string_view name) {
  std::optional<PreparedStatement> taken = session_.take_statement(name);
  if (!taken || ordinal >= UINT8_MAX) return;
  auto closed = std::make_unique<ClosedStatement>(ClosedStatement{std::move(*taken), std::nullopt});
  if (const auto here = server->prepared.find(name); here != server->prepared.end()) {
    closed->here = std::move(here->second);  // the entry goes next (forget_statement_elsewhere)
  }
  unconfirmed_.push_back({owed.request, ordinal, std::string(name), std::move(closed)});
}

// A Close that an error earlier in its batch made PostgreSQL skip: the statement is still there, as it was.
// (A statement of that name parsed since was parsed by a later request of the same open sequence, which PostgreSQL
// skipped too and confirm_statements has already dropped; a later batch naming it waits for this reply.)
void ClientConn::restore_closed_statement(ServerConn* server, UnconfirmedStatement& closed) {
  if (session_.find_statement(closed.name)) return;
  session_.restore_statement(closed.name, std::move(closed.closed->statement));
  if (closed.closed->here) server->prepared.try_emplace(closed.name, std::move(*closed.closed->here));
}

// Session pooling: a statement parsed or closed on one server is closed on the client's other one before its
// next request there (it would be the old version).
void ClientConn::forget_statement_elsewhere(ServerConn* server, std::string_view name, bool here_too) {
  const std::string key(name);
  for (ServerConn* other : {primary_.get(), standby_.get()}) {
    if (!other) continue;
    if (other == server) {
      if (here_too) other->prepared.erase(key);
    } else if (other->prepared.erase(key)) {
      other->pending_closes.push_back(key);
    }
  }
}

}  // namespace pgmux::proxy
