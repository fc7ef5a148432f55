// ClientConn, prepared statements: remembering them, preparing them where a request lands, renaming them for
// transaction pooling, and the retry after a plan changed shape.
#include "proxy/client/client_conn.hpp"

#include <cctype>
#include <cstdio>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/statement_naming.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"
#include "routing/read_your_writes.hpp"

namespace pgmux::proxy {

using namespace protocol;

// Close and Parse messages that must reach the server before this request: statements the request uses that
// the server lacks, and (session pooling) client statements replaced elsewhere or (transaction pooling)
// pgmux statements evicted from the server's LRU or about to be parsed again by this request.
void ClientConn::add_statement_prep(ServerConn* server, ByteVector& messages, bool& extended) {
  if (!transaction_pooling()) {
    for (const auto& name : server->pending_closes) {
      build_close(messages, 'S', name);
      extended = true;
    }
    for (auto name : request_.used) {
      std::string key(name);
      if (server->prepared.count(key)) continue;
      auto it = session_.statements.find(key);
      if (it == session_.statements.end()) continue;
      messages.insert(messages.end(), it->second.parse.begin(), it->second.parse.end());
      extended = true;
    }
    return;
  }
  for (const auto& name : server->server_closes) {
    build_close(messages, 'S', name);
    extended = true;
  }
  server->server_closes.clear();
  for (const auto& parse : request_.parses) {
    if (parse.name.empty()) continue;
    std::string name = server_statement_name(parse.message);
    if (server->server_statements.erase(name)) {  // the request's own Parse creates it again
      build_close(messages, 'S', name);
      extended = true;
    }
  }
  for (auto used : request_.used) {
    bool parsed_here = false;
    for (const auto& parse : request_.parses) parsed_here |= parse.name == used;
    auto it = session_.statements.find(std::string(used));
    if (parsed_here || it == session_.statements.end()) continue;
    const std::string& name = it->second.server_name;
    if (server->server_statements.get(name)) continue;
    const bool ok = rewrite_statement_names(
        it->second.parse, [&](std::string_view) { return std::optional<std::string_view>(name); }, messages);
    if (!ok) continue;
    if (auto evicted = server->server_statements.put(name, true)) {
      build_close(messages, 'S', *evicted);
    }
    extended = true;
  }
}

// Transaction pooling: a request that starts with a Parse of a named statement the session already has gets
// PostgreSQL's 42P05 here, as the server would (there the statement has its shared name, so the server would
// accept the Parse). Only outside a transaction: an error pgmux answers cannot abort the server's transaction.
// Limit: such a Parse later in a batch reaches the server, which accepts it.
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

// Transaction pooling: a batch of only named Parses and a Sync (libpq's PQprepare) from a client that holds no
// server is answered here; the statement is prepared on whichever server first needs it. Clients that prepare
// synchronously (pgbench -M prepared) would otherwise wait for a server that their own thread's other
// connections hold. Limit: an invalid statement is reported at its first use instead of at Parse.
bool ClientConn::answer_parse_locally() {
  if (!transaction_pooling() || request_.kind != RequestKind::Extended || !request_.ends_with_sync ||
      request_.parses.empty() || request_.messages != request_.parses.size() + 1 || !session_.deferred_begin.empty()) {
    return false;
  }
  if (active_ && (active_->has_outstanding() || active_->tx_status() != 'I')) return false;
  for (const auto& parse : request_.parses) {
    if (parse.name.empty()) return false;  // the unnamed statement lives on one server only
  }
  ByteVector out;
  for (const auto& parse : request_.parses) {
    session_.remember(parse, classify_sql(parse.sql), transaction_pooling());
    build_parse_complete(out);
  }
  build_ready_for_query(out, 'I');
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  send_owned(std::move(out));
  return true;
}

// Transaction pooling: the request goes out with client statement names replaced by the shared server names.
bool ClientConn::forward_renamed(ServerConn* server) {
  ByteVector out;
  out.reserve(request_.size + 64);
  const bool ok = rewrite_statement_names(
      ByteView(in_.data() + in_.parsed(), request_.size),
      [&](std::string_view client_name) -> std::optional<std::string_view> {
        auto it = session_.statements.find(std::string(client_name));
        if (it == session_.statements.end()) return std::nullopt;
        return std::string_view(it->second.server_name);
      },
      out);
  if (!ok) return false;
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  if (!retry_statements_.empty()) retry_request_ = out;  // armed: keep what was sent
  server->send_owned(std::move(out));
  return true;
}

void ClientConn::on_plan_retry(ServerConn* server, OwedReply dropped) {
  if (retry_request_.empty() || retry_statements_.empty() || server->has_outstanding() ||
      ++plan_retries_ > kMaxPlanRetries) {
    // Cannot send it again without reordering replies (or DDL keeps changing it): the client gets PostgreSQL's
    // error, in order.
    ByteVector out;
    report_failure(Failure::PlanChanged, Severity::Error, worker_.metrics(), log_prefix(), out);
    build_ready_for_query(out, server->tx_status());
    send_owned(std::move(out));
    retry_statements_.clear();
    retry_request_.clear();
    dropped.failed = true;
    on_ready_for_query(server, server->tx_status(), std::move(dropped));
    return;
  }
  LOG_INFO("C-%llu user=%s db=%s: a prepared statement's result type changed (DDL); re-preparing it on S-%llu and "
           "sending the request again",
           static_cast<unsigned long long>(id_), user_.c_str(), database_.c_str(),
           static_cast<unsigned long long>(server->id()));
  ByteVector messages;
  for (const auto& name : retry_statements_) {
    const PreparedStatement& statement = session_.statements[name];
    if (transaction_pooling()) {
      build_close(messages, 'S', statement.server_name);
      rewrite_statement_names(
          statement.parse, [&](std::string_view) { return std::optional<std::string_view>(statement.server_name); },
          messages);
    } else {
      build_close(messages, 'S', name);
      messages.insert(messages.end(), statement.parse.begin(), statement.parse.end());
    }
  }
  build_sync(messages);
  set_state(ClientState::Preparing);
  preparing_ = server;
  server->run_internal_messages(
      std::move(messages), 1, [this](ServerConn& s, bool, const std::string&, const std::string&) {
        if (!s.open()) return;
        if (s.client() != this) {
          s.close();  // the client left during the retry: nothing to send, and the statement state is half done
          return;
        }
        s.pool().set_state(&s, ServerState::Linked);
        preparing_ = nullptr;
        resume_requests();
        // Armed again: another ALTER may land between the re-prepare and the request (up to kMaxPlanRetries).
        s.expect_reply(true, true).fate = ReplyFate::RetryOnPlanChange;
        s.send_owned(protocol::ByteVector(retry_request_));
        pump();
      });
}

}  // namespace pgmux::proxy
