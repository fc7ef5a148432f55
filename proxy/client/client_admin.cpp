// ClientConn, the admin console session and PAUSE: logging in to the database "pgmux", handing its queries to the
// AdminConsole, and holding application requests at a transaction boundary while their database is paused.
#include <algorithm>
#include <cstring>

#include "protocol/backend_messages.hpp"
#include "protocol/framer.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/ops/admin/console.hpp"
#include "proxy/ops/admin/explain_route.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}
}  // namespace

// After authentication on the database "pgmux": admin_users may run everything, stats_users SHOW only.
void ClientConn::start_admin_session() {
  const bool may_change = listed(config_->admin_users, user_);
  if (!may_change && !listed(config_->stats_users, user_)) {
    fail({Failure::NotAdminUser, {user_}});
    return;
  }
  auth_.reset();
  admin_ = std::make_unique<AdminConsole>(worker_, id_, user_);
  cancel_slot_ = std::make_shared<CancelSlot>(worker_.index());
  SessionParams params;
  params.set("server_version", "15.0 (pgmux " PGMUX_VERSION ")");
  params.set("server_encoding", "UTF8");
  params.set("client_encoding", "UTF8");
  params.set("DateStyle", "ISO, MDY");
  params.set("TimeZone", "UTC");
  params.set("integer_datetimes", "on");
  params.set("standard_conforming_strings", "on");
  params.set("is_superuser", may_change ? "on" : "off");
  params.set("application_name", session_.wanted_params.find("application_name")
                                     ? *session_.wanted_params.find("application_name")
                                     : std::string());
  if (!finish_login(params, may_change ? "the admin console, admin user" : "the admin console, stats user")) return;
  set_state(ClientState::Admin);
}

bool ClientConn::dispatch_admin() {
  const bool ends_with_ready = request_.kind != RequestKind::Extended || request_.ends_with_sync;
  if (request_.kind == RequestKind::Query && request_.refused_messages > 0) {
    // A Query PostgreSQL cannot read: its answer (ERROR 08P01, ReadyForQuery), the session goes on.
    const std::byte* body = in_.data() + in_.parsed() + protocol::kFrameHeaderSize;
    const bool has_nul = std::memchr(body, 0, request_.size - protocol::kFrameHeaderSize) != nullptr;
    in_.advance_parsed(request_.size);
    in_.consume_to(in_.parsed());
    ByteVector out;
    report_failure({Failure::UnreadableAdminQuery, {has_nul ? "invalid message format" : "invalid string in message"}},
                   Severity::Error, worker_.metrics(), log_prefix(), out);
    build_ready_for_query(out, 'I');
    send_owned(std::move(out));
    return true;
  }
  if (request_.kind == RequestKind::Query) {
    std::string sql(request_.sql);
    in_.advance_parsed(request_.size);
    in_.consume_to(in_.parsed());
    last_activity_ = worker_.now();
    set_state(ClientState::AdminBusy);  // nothing more is read until the answer went out
    admin_->execute(sql);
    return state_ == ClientState::Admin && open();
  }
  // As PostgreSQL answers an extended message it refuses: the error at once (a batch closed by Flush, as asyncpg
  // sends its first Parse and Describe, must not wait for a Sync that only comes after the answer), then
  // everything up to the Sync is skipped, which gets ReadyForQuery.
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  ByteVector out;
  report_failure(Failure::AdminExtendedProtocol, Severity::Error, worker_.metrics(), log_prefix(), out);
  discard_until_sync_ = !ends_with_ready;  // ClientConn::dispatch skips what follows, a Query too
  if (ends_with_ready) build_ready_for_query(out, 'I');
  send_owned(std::move(out));
  return true;
}

void ClientConn::on_admin_answer(ByteVector bytes) {
  if (!open()) return;
  send_owned(std::move(bytes));
  last_activity_ = worker_.now();
  if (state_ != ClientState::AdminBusy) return;
  set_state(ClientState::Admin);
  pump();
}

// A request that would start a new transaction while the client's database is paused waits here, unsent.
bool ClientConn::held_by_pause() {
  SharedState& shared = worker_.shared();
  if (!shared.paused.any() || !shared.paused.is_paused(database_)) return false;
  if (in_transaction()) return false;  // a running transaction finishes: PAUSE waits for it
  // Transaction pooling hands idle servers back, so a paused database can be restarted underneath.
  if (transaction_pooling()) drop_idle_servers();
  set_state(ClientState::Paused);
  LOG_DEBUG("%s: held by PAUSE of its database", log_prefix().c_str());
  return true;
}

void ClientConn::on_resume() {
  if (state_ != ClientState::Paused) return;
  resume_requests();
  pump();
}

// Held past query_wait_timeout, as a request waiting for a pool's server would be: it fails unsent (53300) and the
// session goes on; the database stays paused.
void ClientConn::on_paused_too_long(double query_wait_timeout) {
  if (state_ != ClientState::Paused) return;
  resume_requests();
  fail({Failure::PausedWaitTimeout, {database_, format_seconds(query_wait_timeout)}});
  if (open()) pump();
}

// "EXPLAIN ROUTE ..." is no PostgreSQL syntax, so pgmux may answer it in any session. The first-letter test keeps
// the cost off every other query.
bool ClientConn::is_explain_route_request() const {
  std::string_view sql = request_.sql;
  size_t i = 0;
  while (i < sql.size() && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r')) ++i;
  if (i >= sql.size() || (sql[i] != 'E' && sql[i] != 'e')) return false;
  bool matched = false;
  admin::explain_route_target(sql, &matched);
  return matched;
}

bool ClientConn::answer_explain_route() {
  if (active_ && active_->has_outstanding()) {
    set_state(ClientState::Draining);  // answer in order, after the replies still owed
    return false;
  }
  bool matched = false;
  const std::string_view target = admin::explain_route_target(request_.sql, &matched);
  routing::ClientRouteState state = session_.route;
  describe_held_standby(state);
  state.cluster_commit = worker_.shared().commits.latest();
  state.cluster_unapplied_commit = worker_.shared().commits.latest_unapplied().value_or(0);
  admin::Answer answer;
  if (target.empty()) {
    answer = admin::Answer::fail(sqlstate::kSyntaxError, "EXPLAIN ROUTE needs a statement",
                                 "for example: EXPLAIN ROUTE SELECT 1");
  } else {
    answer = admin::Answer::of(admin::explain_route_result(target, worker_.classifier(), state, worker_.view(),
                                                           route_settings(), worker_.balancer(), catalog_.state()));
  }
  ByteVector out;
  admin::encode(answer, out);
  // encode() ends with ReadyForQuery 'I': inside a transaction the status must stay the server's.
  char status = active_ ? active_->tx_status() : 'I';
  if (!session_.deferred_begin.empty()) status = session_.deferred_begin_failed ? 'E' : 'T';
  out.back() = static_cast<std::byte>(status);
  send_owned(std::move(out));
  in_.advance_parsed(request_.size);
  in_.consume_to(in_.parsed());
  return true;
}

}  // namespace pgmux::proxy
