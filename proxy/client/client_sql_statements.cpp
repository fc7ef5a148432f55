// ClientConn, SQL-level prepared statements (PREPARE name AS ..., EXECUTE, DEALLOCATE) in transaction pooling, and
// the SQL commands that drop statements made with the protocol's Parse (DEALLOCATE, DEALLOCATE ALL, DISCARD ALL).
// Such a statement lives on the server that ran the PREPARE, but the client's next transaction may run anywhere,
// and pinning the client to that server would end pooling for it. So the session keeps each statement's PREPARE
// and a server gets it just before a request that names it there: EXECUTE (also in EXPLAIN and CREATE TABLE AS),
// DEALLOCATE, a read of pg_prepared_statements, or a PREPARE of the same name (which then fails there with 42P05,
// as it would on a direct connection). PREPARE and DEALLOCATE are not transactional: they take effect when their
// request ends, outside the session log and its transaction rules. A server that got any goes back to the pool
// through DISCARD ALL (session_dirty), so no other client ever sees them.
#include <algorithm>
#include <optional>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"
#include "routing/parse_classifier.hpp"
#include "routing/session_sql.hpp"
#include "routing/session_statement.hpp"
#include "routing/sql_prepared_refs.hpp"

namespace pgmux::proxy {

namespace {

using routing::PreparedRefKind;

// A statement that is only deallocated needs to exist, not to be what the client prepared: a stand-in that cannot
// fail (the original may no longer analyze, after its table was dropped, where DEALLOCATE still succeeds).
std::string stand_in_prepare(const std::string& name) {
  std::string sql = "PREPARE \"";
  for (char c : name) {
    sql += c;
    if (c == '"') sql += '"';
  }
  sql += "\" AS SELECT NULL";
  return sql;
}

bool is_prepare_command(const routing::Classification& c) {
  return c.effects.has(routing::SessionEffect::Prepare) || c.effects.has(routing::SessionEffect::Deallocate) ||
         c.effects.has(routing::SessionEffect::DeallocateAll);
}

}  // namespace

// The PREPARE as the client's settings stood when it prepared it (search_path resolves its names, DateStyle reads
// its literals, the role's privileges decide which schemas it may name): if the session log grew since, the
// server's settings go back to that point inside a block (or savepoint) that is rolled back afterwards, which
// PREPARE, not being transactional, survives (statement_settings.cpp). A log restarted since (RESET ALL) has lost
// that point: the statement is prepared with the current settings.
void ClientConn::set_sql_prepare_queries(SqlStatementPrep& prep, const SqlStatement& stored, bool in_block) const {
  if (stored.log_generation != session_.log_generation || stored.log_at >= session_.log.size()) {
    prep.queries = {stored.to_replay()};
    prep.prepare_at = 0;
    prep.check_prepared = false;
    return;
  }
  std::vector<std::string> queries = settings_reset_queries(in_block);
  queries.insert(queries.end(), session_.log.begin(), session_.log.begin() + static_cast<long>(stored.log_at));
  prep.prepare_at = static_cast<uint16_t>(queries.size());
  queries.push_back(stored.to_replay());
  for (std::string& query : settings_restore_queries(in_block)) queries.push_back(std::move(query));
  prep.check_prepared = in_block;  // the rollback also undoes a failed PREPARE's abort of the client's block
  prep.queries = std::move(queries);
}

// The client's SQL prepared statements that this request names and the server lacks, each with the queries that
// bring it there (in_block: they run inside a transaction block). Empty outside transaction pooling and for
// clients without such statements (the common path stops at the first test). A DEALLOCATE of a statement the
// client made with Parse (pgmux answers one alone itself) gets a stand-in too: on the server that statement has
// pgmux's shared name (transaction pooling), or was never parsed (session pooling with the split: parsed on the
// other server), and the DEALLOCATE failed there with 26000 (psycopg's pipeline mode evicts its cache so).
std::vector<ClientConn::SqlStatementPrep> ClientConn::missing_sql_statements(const ServerConn& server, bool in_block,
                                                                            bool deallocates_parsed) {
  std::vector<SqlStatementPrep> missing;
  if (!deallocates_parsed && (!transaction_pooling() || session_.sql_statements.empty())) return missing;
  std::vector<routing::PreparedRef> refs;
  if (request_.kind == RequestKind::Query) {
    refs = routing::prepared_statement_refs(request_.sql);
  } else if (request_.kind == RequestKind::Extended) {
    std::vector<std::string> texts;
    executed_statements(texts);
    for (const std::string& text : texts) {
      for (routing::PreparedRef& ref : routing::prepared_statement_refs(text)) {
        ref.statement = {};  // views into `text`, which ends here
        refs.push_back(std::move(ref));
      }
    }
  }
  auto want = [&](const std::string& name, bool whole) {
    const SqlStatement* stored = session_.sql_statements.find(name);
    const bool parsed = stored == nullptr && !whole && session_.find_statement(name) != nullptr &&
                        (transaction_pooling() || !server.prepared.contains(name));
    if ((stored == nullptr && !parsed) || server.sql_statements.count(name) > 0) return;
    auto seen = std::find_if(missing.begin(), missing.end(), [&](const auto& m) { return m.name == name; });
    if (seen == missing.end()) seen = missing.insert(missing.end(), {name, {stand_in_prepare(name)}, 0});
    if (whole) set_sql_prepare_queries(*seen, *stored, in_block);
  };
  const bool utf8 = client_utf8(&server);
  for (const routing::PreparedRef& ref : refs) {
    // A name pgmux cannot tell exactly may be any of them (an EXECUTE U&"q" runs q): the server gets them all.
    if (ref.kind == PreparedRefKind::ListAll ||
        (ref.kind != PreparedRefKind::DeallocateAll && !ref.name_exact(utf8))) {
      session_.sql_statements.for_each_name([&](const std::string& name) { want(name, true); });
    } else if (ref.kind != PreparedRefKind::DeallocateAll) {
      want(ref.name, ref.kind != PreparedRefKind::Deallocate);
    }
  }
  return missing;
}

// At the end of a request: its SQL PREPAREs and DEALLOCATEs leave `tracked`, as they are not transactional (the
// session block's rules would drop one made in a block that rolled back). Returned: those that ran, to apply once
// the log has the request's other commands (DISCARD ALL and DEALLOCATE ALL included, as copies, since they clear
// the statements). A failed request whose failure may have come after one (a multi-statement string, an extended
// batch) leaves pgmux unable to tell what exists: the client keeps this server, which knows (session pooling: the
// session's reads stay on the primary).
std::vector<TrackedStatement> ClientConn::take_sql_statements(ServerConn* server,
                                                              std::vector<TrackedStatement>& tracked, bool failed) {
  std::vector<TrackedStatement> ran;
  auto first_command = std::find_if(tracked.begin(), tracked.end(), [](const TrackedStatement& t) {
    return is_prepare_command(t.c) || t.c.effects.has(routing::SessionEffect::DiscardAll);
  });
  if (first_command == tracked.end()) return ran;
  // Failed with the command last: it failed, or did not run. Anything else may have run and then failed.
  if (failed && first_command != tracked.end() - 1) {
    if (transaction_pooling()) {
      keep_unsure_statements_on(*server, tracked);
    } else {
      lose_track_of_session(server);
    }
  } else if (!failed) {
    for (const TrackedStatement& t : tracked) {
      if (is_prepare_command(t.c) || t.c.effects.has(routing::SessionEffect::DiscardAll)) ran.push_back(t);
    }
  }
  std::erase_if(tracked, [](const TrackedStatement& t) { return is_prepare_command(t.c); });
  return ran;
}

// Session pooling: a DEALLOCATE that ran on `server` among other statements (pgmux answers one alone itself) and
// named a statement the client made with Parse. Replayed from the session log on the client's other server, where
// that statement may never have been parsed, it failed there, and the session ended (psycopg's pipeline mode
// evicts its statement cache so). Dropped as a Close of it would drop it instead: true when so.
bool ClientConn::dropped_parsed_statement(ServerConn* server, const TrackedStatement& t, uint64_t request) {
  if (!t.c.effects.has(routing::SessionEffect::Deallocate)) return false;
  const std::vector<routing::PreparedRef> refs = routing::prepared_statement_refs(t.sql);
  if (refs.size() != 1 || refs.front().kind != PreparedRefKind::Deallocate ||
      !refs.front().name_exact(client_utf8(server))) {
    return false;
  }
  const PreparedStatement* parsed = session_.find_statement(refs.front().name);
  if (!parsed) return false;
  server->sql_statements.erase(refs.front().name);  // a stand-in that let it run here (missing_sql_statements)
  // One parsed again by a request pipelined behind this one exists (its Parse closed the old one elsewhere).
  if (parsed->made_by_request < request) {
    session_.erase_statement(refs.front().name);
    forget_statement_elsewhere(server, refs.front().name, true);
  }
  return true;
}

// Session pooling with the split, a failed request: a stand-in made for its DEALLOCATE (missing_sql_statements) may
// still be there if the DEALLOCATE did not run. The client's own statement of that name may be parsed here later:
// closed before the next request (a Close of a statement that is not there is no error).
void ClientConn::close_stand_ins(ServerConn& server) {
  for (const std::string& name : server.sql_statements) {
    if (!server.prepared.contains(name)) server.pending_closes.push_back(name);
  }
  server.sql_statements.clear();
}

// Transaction pooling: the statements now exist (or not) for the client and on this server. Each remembers the
// session log as it stands, its own request's settings included.
// A PREPARE or DEALLOCATE of a name pgmux cannot tell exactly (PreparedRef::name_exact) keeps the client on this
// server, which knows what it did.
void ClientConn::apply_sql_statements(ServerConn* server, const std::vector<TrackedStatement>& ran,
                                      uint64_t request) {
  const bool utf8 = client_utf8(server);
  for (const TrackedStatement& t : ran) {
    if (t.c.effects.has(routing::SessionEffect::DiscardAll) || t.c.effects.has(routing::SessionEffect::DeallocateAll)) {
      session_.sql_statements.clear();
      server->sql_statements.clear();
      continue;
    }
    for (const routing::PreparedRef& ref : routing::prepared_statement_refs(t.sql)) {
      const bool names = ref.kind == PreparedRefKind::Prepare || ref.kind == PreparedRefKind::Deallocate;
      if (names && !ref.name_exact(utf8)) {
        // Which statement it made or dropped, only this server knows: the client keeps it. The others stay
        // tracked, prepared there when named as anywhere.
        note_pin(routing::PinReason::SqlPrepare, true);
        continue;
      }
      if (ref.kind == PreparedRefKind::Prepare) {
        session_.sql_statements[ref.name] =
            SqlStatement{std::string(ref.statement), session_.log.size(), session_.log_generation, {}};
        server->sql_statements.insert(ref.name);
      } else if (ref.kind == PreparedRefKind::Deallocate) {
        session_.sql_statements.erase(ref.name);
        server->sql_statements.erase(ref.name);
        // A statement the client made with Parse (its stand-in ran the DEALLOCATE here), not one parsed behind it.
        const PreparedStatement* parsed = session_.find_statement(ref.name);
        if (parsed && parsed->made_by_request < request) session_.erase_statement(ref.name);
      }
    }
  }
}

// Transaction pooling, a failed request whose PREPAREs and DEALLOCATEs may or may not have run: the statements they
// name are what this server has, and the client keeps it; the client's others stay tracked. After a DEALLOCATE ALL
// or DISCARD ALL that may have run, only this server knows what is left.
void ClientConn::keep_unsure_statements_on(ServerConn& server, const std::vector<TrackedStatement>& tracked) {
  note_pin(routing::PinReason::SqlPrepare, true);
  for (const TrackedStatement& t : tracked) {
    if (t.c.effects.has(routing::SessionEffect::DiscardAll) || t.c.effects.has(routing::SessionEffect::DeallocateAll)) {
      session_.sql_statements.clear();
      server.sql_statements.clear();
      return;
    }
    if (!is_prepare_command(t.c)) continue;
    for (const routing::PreparedRef& ref : routing::prepared_statement_refs(t.sql)) {
      session_.sql_statements.erase(ref.name);
      server.sql_statements.erase(ref.name);
    }
  }
}

// Names reach PostgreSQL as they are: the client encoding in effect and the database's are both UTF8 (as
// session_params spells it and its aliases), as the server where the request runs reports them (pgmux brought it
// to the client's settings). Without a server, unknown: false (the database's encoding is not a startup value).
bool ClientConn::client_utf8(const ServerConn* server) const {
  if (server == nullptr) return false;
  const std::string* client = server->params().find("client_encoding");
  const std::string* database = server->params().find("server_encoding");
  return client != nullptr && *client == "UTF8" && database != nullptr && *database == "UTF8";
}

// A lone SQL PREPARE that leaves its parameter types to PostgreSQL, outside a transaction block: another server
// would infer them anew from its text, after DDL other ones (PostgreSQL fixes them at PREPARE: an int4 parameter
// stays int4 after ALTER COLUMN ... TYPE real). pgmux reads them right behind it on the same server, by a query of
// its own whose reply the client never sees (ReplyFate::CaptureOwn); outside a block only, where that query cannot
// fail the client's transaction, and with nothing else in flight there but such queries (behind the PREPARE just
// before, say; a BEGIN pgmux answered goes out ahead of its block's first statement). Its name must be exact: the
// query reads the statement by it. Another server prepares it in transaction pooling (a later transaction's), and
// in session pooling with the split (the standby connection, from the log; a read the client sends before that
// reply came follows the primary, which still owes it: choose_server).
void ClientConn::capture_prepare_types(ServerConn& server, const routing::Classification& c) {
  if (!c.effects.has(routing::SessionEffect::Prepare) || !(transaction_pooling() || statements_may_move()) ||
      request_.kind != RequestKind::Query || c.multi_statement || session_.tx_status != 'I' || !server.open() ||
      server.tx_status() != 'I' || !server.only_last_request_in_flight()) {
    return;
  }
  const std::vector<routing::PreparedRef> refs = routing::prepared_statement_refs(request_.sql);
  if (refs.size() != 1 || refs.front().kind != PreparedRefKind::Prepare ||
      refs.front().types_at == std::string_view::npos || !refs.front().name_exact(client_utf8(&server))) {
    return;
  }
  protocol::ByteVector query;
  protocol::build_query(query, routing::parameter_types_query(refs.front().name));
  server.expect_captured_reply(refs.front().name);
  server.send_owned(std::move(query));
}

// The types read behind the PREPARE (capture_prepare_types), for the statement it made. A PREPARE that failed made
// none: the types read are those of the statement of that name already there (42P05); a statement with types
// already known keeps them. Session pooling: the PREPARE the log has for the standby connection, unless it ran
// there already.
void ClientConn::learn_prepare_types(const std::string& name, const std::string& types) {
  if (!transaction_pooling()) {
    session_.type_logged_prepare(name, types, standby_ ? standby_->applied_log : 0);
    return;
  }
  SqlStatement* stored = session_.sql_statements.find(name);
  if (stored == nullptr || !stored->typed_prepare.empty()) return;
  std::string typed = routing::with_parameter_types(stored->prepare, types);
  if (typed != stored->prepare) stored->typed_prepare = std::move(typed);
}

// PostgreSQL keeps the statements of SQL PREPARE and of the protocol's Parse in one name space: SQL DEALLOCATE drops
// either, and PREPARE of a name Parse made fails with 42P05. pgmux keeps a client's Parse statements itself
// (renamed on shared servers in transaction pooling; on either of its servers with the split), so no one server
// can answer such a command as PostgreSQL would (drivers evict their statement caches with DEALLOCATE name:
// psycopg, through the extended protocol). pgmux answers it when it is a request's only statement, as a simple
// query or (DEALLOCATE) one unnamed Parse, Bind, [Describe portal,] Execute and Sync, and names a statement made
// with Parse (not by an SQL PREPARE pgmux keeps): a DEALLOCATE outside a failed block (there PostgreSQL answers
// 25P02), a PREPARE outside a block a server runs (an error pgmux answers cannot fail that block; one it answered
// BEGIN for fails).
std::optional<bool> ClientConn::answer_statement_command(const routing::Classification& c) {
  const bool deallocates = c.effects.has(routing::SessionEffect::Deallocate);
  if (c.multi_statement || session_.statement_count() == 0 ||
      (!deallocates && !c.effects.has(routing::SessionEffect::Prepare)) || !single_statement_request()) {
    return std::nullopt;
  }
  const std::string_view sql = request_.kind == RequestKind::Query ? request_.sql : request_.parses.front().sql;
  const std::vector<routing::PreparedRef> refs = routing::prepared_statement_refs(sql);
  if (refs.size() != 1 || refs.front().kind != (deallocates ? PreparedRefKind::Deallocate : PreparedRefKind::Prepare) ||
      !refs.front().name_exact(client_utf8(active_ ? active_ : primary_.get()))) {
    return std::nullopt;
  }
  const std::string& name = refs.front().name;
  if (session_.sql_statements.contains(name) || !session_.find_statement(name)) return std::nullopt;
  // In a failed block PostgreSQL answers 25P02. A PREPARE only outside a block a server runs, and only in a simple
  // query (an extended one fails at Execute, after ParseComplete and BindComplete): else left to the server.
  const bool failed_block = session_.deferred_begin_failed || session_.tx_status == 'E';
  if (failed_block || (!deallocates && (session_.tx_status != 'I' || request_.kind != RequestKind::Query))) {
    return std::nullopt;
  }
  // A syntax error comes first on PostgreSQL (`DEALLOCATE s1 junk`, `PREPARE s1 AS SELEC 1`): the server answers
  // it, and runs nothing. The grammar is asked only here, for a name the client made with Parse.
  if (!routing::parses_without_syntax_error(sql)) return std::nullopt;
  // Behind an extended sequence left open (Flush, no Sync) the server decides: an error there skips this command,
  // and no reply to wait for comes before this request's own Sync.
  if (active_ && active_->awaits_sync()) return std::nullopt;
  if (active_ && active_->has_outstanding()) {
    set_state(ClientState::Draining);  // answered in order, after the replies still owed
    return false;
  }
  unnamed_.drop();  // a simple Query, or the Parse of the unnamed statement, replaces it, as on PostgreSQL
  if (!deallocates) {
    answer_locally_with_error({Failure::DuplicatePreparedStatement, {name}});
    return true;
  }
  answer_deallocate(name);
  return true;
}

// A simple query, or an extended request of one statement as libpq's PQexecParams sends it: Parse of the unnamed
// statement, Bind of it, maybe Describe of the portal, Execute, Sync. Each message one PostgreSQL reads (pgmux answers
// such a request itself: one it cannot read gets the server's 08P01 instead).
bool ClientConn::single_statement_request() const {
  if (request_.kind == RequestKind::Query) return request_.refused_messages == 0;
  if (request_.kind != RequestKind::Extended || !request_.ends_with_sync || request_.parses.size() != 1 ||
      !request_.parses.front().name.empty() || (request_.messages != 4 && request_.messages != 5) ||
      request_.refused_messages != 0 || !request_.used.empty() || !request_.binds_unnamed) {
    return false;
  }
  std::string tags;
  const protocol::ByteView request(in_.data() + in_.parsed(), request_.size);
  for (size_t pos = 0; pos < request.size();) {
    const protocol::Frame frame = protocol::next_frame(request.subspan(pos), worker_.max_message_size());
    if (frame.status != protocol::FrameStatus::Frame) return false;
    tags += frame.tag;
    const protocol::ByteView body = request.subspan(pos + frame.header_size(), frame.total() - frame.header_size());
    if (frame.tag == protocol::frontend::kDescribe) {
      const auto describe = protocol::parse_describe(body);
      if (!describe || describe->kind != 'P') return false;
    }
    if (frame.tag == protocol::frontend::kExecute && !protocol::parse_execute(body)) return false;
    pos += frame.total();
  }
  return tags == "PBES" || tags == "PBDES";
}

// Drops it as a Close of it would (the client's servers that have it close it before their next request there;
// transaction pooling's shared copies stay, under pgmux's names), and answers as PostgreSQL does. DEALLOCATE is not
// transactional: a block goes on, and a deferred BEGIN stays deferred.
void ClientConn::answer_deallocate(const std::string& name) {
  session_.erase_statement(name);
  forget_statement_elsewhere(nullptr, name, false);
  protocol::ByteVector out;
  if (request_.kind == RequestKind::Extended) {
    protocol::build_parse_complete(out);
    protocol::build_bind_complete(out);
    if (request_.messages == 5) protocol::build_no_data(out);  // the Describe of the portal
  }
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  protocol::build_command_complete(out, "DEALLOCATE");
  protocol::build_ready_for_query(out, session_.deferred_begin.empty() ? session_.tx_status : 'T');
  send_owned(std::move(out));
  LOG_DEBUG("%s: DEALLOCATE of statement %s (made with Parse) answered by pgmux", log_prefix().c_str(),
            escape_for_log(name, 64).c_str());
}

// DISCARD ALL or DEALLOCATE ALL ran as request number `request`: the statements the client made with Parse before
// it are gone too, wherever they were (the client's other server runs the command from the session log before
// its next request). Those parsed by requests pipelined behind it exist, on the server that ran it.
void ClientConn::forget_protocol_statements(ServerConn* runner, uint64_t request) {
  session_.clear_statements_before(request);
  for (ServerConn* server : {primary_.get(), standby_.get()}) {
    if (!server) continue;
    if (server != runner) {
      server->prepared.clear();
      continue;
    }
    std::erase_if(server->prepared, [this](const auto& entry) { return !session_.find_statement(entry.first); });
  }
}

}  // namespace pgmux::proxy
