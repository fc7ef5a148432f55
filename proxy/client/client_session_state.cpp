// ClientConn, session state that follows the session: which requests may change it, what of it lasts once
// they finished (PostgreSQL's transaction rules, SessionBlock), and what happens when pgmux cannot tell.
#include "proxy/client/client_conn.hpp"

#include <strings.h>

#include <algorithm>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "routing/session_sql.hpp"
#include "routing/sync_standby_names.hpp"

namespace pgmux::proxy {

using namespace protocol;

// A request that may change session state, or any request while session commands wait for their block to end,
// carries its statements to its ReadyForQuery (finish_session_request). Other requests cost nothing here.
void ClientConn::note_session_request(OwedReply& owed, const routing::Classification& c) {
  // A SET LOCAL of a setting fixed at parse: statements parsed in the rest of the block keep it
  // (SessionBlock::analysis_commands).
  if (!c.effects.may_change_session() && !c.effects.has(routing::SessionEffect::SetLocalAnalysis) &&
      !session_.block.at_stake()) {
    return;
  }
  if (request_.kind != RequestKind::Query && request_.kind != RequestKind::Extended) return;
  if (!owed.session) owed.session = std::make_unique<SessionCommand>();  // else an open sequence goes on
  SessionCommand& command = *owed.session;
  // The BEGIN pgmux answered (and the SET TRANSACTIONs it held with it) goes out in front of this request: the
  // request runs inside its block.
  command.statements.insert(command.statements.end(), session_.deferred_begin.begin(), session_.deferred_begin.end());
  if (request_.kind == RequestKind::Query) {
    command.statements.emplace_back(request_.sql);
  } else if (!executed_statements(command.statements)) {
    command.unresolved = true;
  }
}

// Transaction pooling (the caller asks): a RESET (RESET ALL, DISCARD ALL, SET ... TO DEFAULT) brings parameters
// back to the shared server's login values, not the client's: its ParameterStatus replies say the client's
// (client_view_of_reset, report_silent_resets), which needs to know what a request of one statement resets.
void ClientConn::note_parameter_resets(OwedReply& owed, const routing::Classification& c) {
  using routing::SessionEffect;
  const bool all = c.effects.has(SessionEffect::ResetAll) || c.effects.has(SessionEffect::DiscardAll);
  if (!all && !c.effects.has(SessionEffect::Reset)) return;
  owed.resets_parameters = true;
  SessionCommand* command = owed.session.get();
  if (!command || command->unresolved || command->statements.size() != 1 || c.multi_statement) return;
  command->resets = all ? "*" : worker_.classifier().reset_parameter(command->statements.front());
}

// A session that changes synchronous_commit, or may (set_config, a DO block, a function that runs SET), may commit
// without waiting for the standbys that apply every commit: its commits bind them like any standby from then on,
// the transaction running now included. A SET or SET LOCAL of another parameter changes nothing of that.
void ClientConn::note_commit_wait_change(const routing::Classification& c) {
  using routing::SessionEffect;
  if (session_.route.commits_may_skip_apply || (c.effects.empty() && request_.kind != RequestKind::FunctionCall)) {
    return;
  }
  // A FunctionCall message runs a function pgmux does not look into.
  bool may = c.effects.has(SessionEffect::SetConfig) || c.effects.has(SessionEffect::Opaque) ||
             request_.kind == RequestKind::FunctionCall;
  if (!may && (c.effects.has(SessionEffect::Set) || c.effects.has(SessionEffect::SetLocal))) {
    std::vector<std::string> texts;
    if (request_.kind == RequestKind::Query) {
      may = routing::names_commit_wait_setting(request_.sql);
    } else {
      // Statements it executes, and those it parses (a Bind and its Execute may come in separate requests); none
      // known (an Execute of a portal bound earlier): assume the worst.
      for (const auto& parse : request_.parses) texts.emplace_back(parse.sql);
      may = !executed_statements(texts) || texts.empty() ||
            std::any_of(texts.begin(), texts.end(), [](const std::string& t) {
              return routing::names_commit_wait_setting(t);
            });
    }
  }
  if (!may) return;
  session_.route.commits_may_skip_apply = true;
  LOG_DEBUG("%s: the session may change synchronous_commit: its commits bind every standby's replay from now on",
            log_prefix().c_str());
}

// The statement text each Execute of the extended request runs, in order. False when a Bind names a statement
// whose text is not known here (the unnamed statement of an earlier request, unless a plain read).
bool ClientConn::executed_statements(std::vector<std::string>& out) {
  ByteView rest(in_.data() + in_.parsed(), request_.size);
  std::optional<std::string_view> unnamed;                          // parsed by this request
  std::vector<std::pair<std::string_view, std::string_view>> bound;  // portal, statement text
  bool resolved = true;
  while (!rest.empty()) {
    const Frame frame = next_frame(rest, worker_.max_message_size());
    if (frame.status != FrameStatus::Frame || rest.size() < frame.total()) return false;
    const ByteView body = rest.subspan(frame.header_size(), frame.total() - frame.header_size());
    if (frame.tag == frontend::kParse) {
      if (auto parse = parse_parse(body); parse && parse->statement.empty()) unnamed = parse->sql;
    } else if (frame.tag == frontend::kBind) {
      if (auto bind = parse_bind(body)) {
        std::optional<std::string_view> text = bind->statement.empty() ? unnamed : statement_text(bind->statement);
        if (text) {
          bound.emplace_back(bind->portal, *text);
        } else if (!unnamed_is_plain_read(bind->statement)) {
          resolved = false;
        }
      }
    } else if (frame.tag == frontend::kExecute) {
      // A portal bound by an earlier request goes on with a statement already tracked when it first ran.
      const auto execute = parse_execute(body);
      const auto it = std::find_if(bound.rbegin(), bound.rend(),
                                   [&](const auto& b) { return execute && b.first == execute->portal; });
      if (it != bound.rend()) {
        out.emplace_back(it->second);
      } else if (const std::string* text = execute ? earlier_bound_portal(execute->portal) : nullptr) {
        out.emplace_back(*text);  // bound by an earlier request, run now (client_portals.cpp)
      }
    }
    rest = rest.subspan(frame.total());
  }
  return resolved;
}

// The unnamed statement of an earlier request, whose text is not kept, is a read that touches nothing of the
// session: running it changes nothing pgmux tracks.
bool ClientConn::unnamed_is_plain_read(std::string_view statement) const {
  routing::Classification c = unnamed_.classification();
  read_as_session_does(c);
  return statement.empty() && c.kind == routing::StatementKind::Read && c.effects.empty();
}

// A named statement's text: parsed by this request (the last Parse of that name), or kept by the session.
std::optional<std::string_view> ClientConn::statement_text(std::string_view name) const {
  for (auto it = request_.parses.rbegin(); it != request_.parses.rend(); ++it) {
    if (it->name == name) return it->sql;
  }
  const PreparedStatement* stored = session_.find_statement(name);
  if (!stored || stored->parse.size() < kFrameHeaderSize) return std::nullopt;
  auto parse = parse_parse(ByteView(stored->parse).subspan(kFrameHeaderSize));
  if (!parse) return std::nullopt;
  return parse->sql;
}

// Each statement of the request with its class and, where they decide something, its transaction and replay
// facts (PostgreSQL's parser: only for requests that touch session state).
std::vector<TrackedStatement> ClientConn::tracked_statements(const SessionCommand& command) {
  std::vector<TrackedStatement> tracked;
  auto add = [&](std::string sql, const routing::Classification& c) {
    TrackedStatement s{std::move(sql), c, {}, {}};
    if (c.effects.has(routing::SessionEffect::Reset)) s.reset_parameter = worker_.classifier().reset_parameter(s.sql);
    const bool may_hide_effects =
        c.effects.has(routing::SessionEffect::SetConfig) || c.effects.has(routing::SessionEffect::Opaque);
    if (c.kind == routing::StatementKind::TxBegin) {
      s.facts.transaction = routing::TransactionCommand::Begin;
    } else if (c.kind == routing::StatementKind::TxEnd || c.kind == routing::StatementKind::Write || may_hide_effects) {
      s.facts = routing::statement_session_facts(s.sql);  // savepoints are writes to the classifier
    }
    // The parser read it the standard way, which this session may not: whatever it ran cannot be replayed.
    if (c.unreadable && session_.lexer_may_misread()) s.facts.replay = routing::SessionReplay::Unknown;
    tracked.push_back(std::move(s));
  };
  for (const std::string& text : command.statements) {
    routing::Classification c = worker_.classifier().classify(text, catalog_.state());
    read_as_session_does(c);
    if (!c.multi_statement) {
      add(text, c);
      continue;
    }
    for (std::string& statement : routing::split_statements(text)) {
      routing::Classification one = worker_.classifier().classify(statement, catalog_.state());
      read_as_session_does(one);
      add(std::move(statement), one);
    }
  }
  return tracked;
}

// At the request's ReadyForQuery: the commands that now last go to the session log (the other servers replay
// them before their next request); when what lasts cannot be told, the session's state is unknown.
void ClientConn::finish_session_request(ServerConn* server, const SessionCommand& command, bool failed,
                                        char tx_status, uint64_t request) {
  std::vector<TrackedStatement> tracked = tracked_statements(command);
  if (transaction_pooling() && tx_status == 'T') note_block_resets(*server, tracked);
  std::vector<TrackedStatement> sql_statements = take_sql_statements(server, tracked, failed);
  SessionOutcome outcome = session_.block.finish(std::move(tracked), session_.tx_status, tx_status, failed);
  if (!transaction_pooling()) {
    // Session pooling: the log carries them to the standby, whatever became of their transaction block; a
    // DEALLOCATE of a statement made with Parse is not replayed (the other server may never have had it).
    for (TrackedStatement& t : sql_statements) {
      if (t.c.effects.has(routing::SessionEffect::DiscardAll) || dropped_parsed_statement(server, t, request)) {
        continue;
      }
      outcome.lasting.push_back(std::move(t));
    }
  }
  const LogUpdate update =
      session_.record_lasting(std::move(outcome.lasting), server->applied_log, transaction_pooling());
  if (update.others_restart) {
    for (ServerConn* other : {primary_.get(), standby_.get()}) {
      if (other) other->applied_log = 0;
    }
  }
  server->applied_log = update.runner_applied;
  if (transaction_pooling()) apply_sql_statements(server, sql_statements, request);
  if (!transaction_pooling() && failed) close_stand_ins(*server);
  bool prepared_session_change = false;
  for (const TrackedStatement& t : sql_statements) {  // those that ran
    if (t.c.effects.has(routing::SessionEffect::DiscardAll) || t.c.effects.has(routing::SessionEffect::DeallocateAll)) {
      forget_protocol_statements(server, request);
    }
    // A statement that changes the session as it runs (PREPARE q AS SELECT set_config('role', ...)): what each
    // EXECUTE of it does, pgmux does not follow.
    prepared_session_change = prepared_session_change || (t.c.effects.has(routing::SessionEffect::Prepare) &&
                                                          (t.c.effects.has(routing::SessionEffect::SetConfig) ||
                                                           t.c.effects.has(routing::SessionEffect::Opaque)));
  }
  if (prepared_session_change && server == standby_) {
    // In a read-only block on a standby the PREPARE changed nothing yet: its EXECUTEs run on the primary, where
    // the session's reads go from now on (ending the session, as lose_track_of_session does there, is for state
    // the standby holds). Transaction pooling: the primary server an EXECUTE changes is the client's from then on.
    session_.route.session_unknown = true;
    if (transaction_pooling()) note_pin(routing::PinReason::UnknownSessionState, true);
  } else if (prepared_session_change) {
    lose_track_of_session(server);
  }
  if (outcome.unknown || update.state_unknown || (command.unresolved && !failed)) lose_track_of_session(server);
}

namespace {
// What RESET ALL leaves as it is (PostgreSQL's GUC_NO_RESET_ALL), and what cannot be SET once a block ran a query.
bool kept_by_reset_all(const std::string& name) {
  for (const char* kept : {"role", "session_authorization", "transaction_isolation", "transaction_read_only",
                           "transaction_deferrable"}) {
    if (strcasecmp(name.c_str(), kept) == 0) return true;
  }
  return false;
}
}  // namespace

// Transaction pooling, a request that ended inside a block: a RESET of a parameter the client set at startup brought
// the shared server to its own login value, not the client's (the session log sets the client's once the block
// ends). The rest of the block must not run with it (search_path: another schema's table): the server gets the
// client's value before the next request (build_prepare_step). RESET ALL: every startup parameter it resets. Only
// RESETs that nothing after them in the request may have undone or overridden: a later session command (any SET,
// SET LOCAL, set_config, a DO block), or the end of the block or a rollback to a savepoint, drops those noted
// before it. A savepoint made after the RESET and rolled back to later undoes the SETs back but not the RESET: the
// rest of the block then has the server's value, as without them (README).
// Requests pipelined behind went out before this was known: they ran with the server's value (README), and what
// they did to the parameter or the block is not known here: nothing is noted then.
void ClientConn::note_block_resets(ServerConn& server, const std::vector<TrackedStatement>& tracked) {
  using routing::SessionEffect;
  using routing::TransactionCommand;
  if (server.owed_client_requests() > 0) return;
  std::vector<std::string> sets;
  for (const TrackedStatement& t : tracked) {
    const bool all = t.c.effects.has(SessionEffect::ResetAll);
    if (all || t.c.effects.has(SessionEffect::Reset)) {
      for (const auto& [name, value] : session_.wanted_params.entries()) {
        const bool reset = all ? !kept_by_reset_all(name)
                               : strcasecmp(name.c_str(), t.reset_parameter.c_str()) == 0 &&
                                     strncasecmp(name.c_str(), "transaction_", 12) != 0;
        if (reset) sets.push_back(routing::set_statement(name, value));
      }
    } else if (t.changes_session() || t.c.effects.has(SessionEffect::SetLocal) ||
               t.c.effects.has(SessionEffect::SetLocalAnalysis) ||
               (t.facts.transaction != TransactionCommand::None && t.facts.transaction != TransactionCommand::Savepoint &&
                t.facts.transaction != TransactionCommand::Release)) {
      sets.clear();  // SET LOCAL too (SET TRANSACTION and SET CONSTRAINTS alike: told apart only by the parser)
    }
  }
  server.block_resets.insert(server.block_resets.end(), sets.begin(), sets.end());
}

// pgmux cannot reproduce the session's settings elsewhere. On the primary, the session stays there: its reads go
// to the primary too (transaction pooling: it keeps that server). On a standby (a read-only transaction), the
// primary lacks them and no write can run where they are: the session ends rather than run with other settings.
void ClientConn::lose_track_of_session(ServerConn* server) {
  if (server == standby_) {
    fail({Failure::SessionStateLost, {server->pool().backend().name}});
    return;
  }
  if (!session_.route.session_unknown) {
    LOG_INFO("%s: session settings changed in a way pgmux cannot replay; its reads go to the primary from now on",
             log_prefix().c_str());
  }
  session_.route.session_unknown = true;
  if (transaction_pooling()) note_pin(routing::PinReason::UnknownSessionState, true);
}

}  // namespace pgmux::proxy
