// ClientConn, what comes back: ReadyForQuery bookkeeping (session log, read-your-writes, release), COPY,
// idle timeouts and lost servers.
#include "proxy/client/client_conn.hpp"

#include <cctype>
#include <cstdio>

#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/net/forward_batch.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/worker.hpp"
#include "routing/read_your_writes.hpp"
#include "routing/session_sql.hpp"

namespace pgmux::proxy {

using namespace protocol;

void ClientConn::check_idle(double now, const conf::Timeouts& timeouts) {
  if (wait_ != Wait::None || in_.unparsed() > 0 || copy_in_) return;
  if (active_ && active_->has_outstanding()) return;
  const bool in_transaction = !deferred_begin_.empty() || (active_ && active_->tx_status() != 'I');
  const double idle = now - last_activity_;
  if (in_transaction && timeouts.idle_transaction_timeout > 0 && idle > timeouts.idle_transaction_timeout) {
    close_reason_ = "idle_transaction_timeout";
    fail("25P03", "terminating connection due to idle-in-transaction timeout (pgmux idle_transaction_timeout is " +
                      std::to_string(static_cast<int>(timeouts.idle_transaction_timeout)) + " s)");
  } else if (!in_transaction && timeouts.client_idle_timeout > 0 && idle > timeouts.client_idle_timeout) {
    close_reason_ = "client_idle_timeout";
    fail("57P05", "terminating connection due to idle-session timeout (pgmux client_idle_timeout is " +
                      std::to_string(static_cast<int>(timeouts.client_idle_timeout)) + " s)");
  }
}

void ClientConn::on_ready_for_query(ServerConn* server, char tx_status, bool had_error) {
  last_activity_ = worker_.now();
  const uint64_t now_ns = uv_hrtime();
  const ServedBy served_by = server == standby_ ? ServedBy::Standby : ServedBy::Primary;
  if (outstanding_count_ > 0) {
    Outstanding& done = outstanding_[outstanding_head_];
    worker_.metrics().request_done(served_by, now_ns - done.sent_ns, server->pool().stats);
    outstanding_head_ = (outstanding_head_ + 1) % std::size(outstanding_);
    --outstanding_count_;
    if (done.session) {
      std::string sql = std::move(pending_session_sql_.front());
      pending_session_sql_.erase(pending_session_sql_.begin());
      if (!had_error && tx_status == 'I') record_session_command(server, std::move(sql));
    }
  }
  if (server == active_ && copy_in_) copy_in_ = false;  // COPY ended (an error ends it without CopyDone)
  if (tx_status == 'I' && tx_started_ns_ != 0) {
    worker_.metrics().transaction_done(served_by, now_ns - tx_started_ns_, server->pool().stats);
    tx_started_ns_ = server->has_outstanding() ? now_ns : 0;  // pipelined: the next one is already running
  }
  if (tx_status == 'I' && server->wrote) {
    route_state_.last_write_commit = monotonic_now();
    server->wrote = false;
  }
  route_state_.session_read_only = server->default_read_only();
  if (wait_ == Wait::Drain && !server->has_outstanding()) wait_ = Wait::None;
  pump();
  release_idle_servers();
}

void ClientConn::record_session_command(ServerConn* server, std::string sql) {
  // Only the text waited in the reply queue: its facts again, one lexer pass over a short command.
  const routing::Classification c = worker_.classifier().classify(sql);
  const bool reset_all =
      c.effects.has(routing::SessionEffect::ResetAll) || c.effects.has(routing::SessionEffect::DiscardAll);
  if (transaction_pooling()) {
    // Servers are shared, so their session defaults are not this client's: RESET of a startup parameter must
    // land on the client's startup value, here and wherever the log is replayed.
    const std::string_view target = c.effects.has(routing::SessionEffect::Reset) ? c.parameter.view() : "";
    if (reset_all || (!target.empty() && wanted_params_.find(target))) {
      if (reset_all) {
        session_log_.clear();
        // Replayed elsewhere as RESET ALL: DISCARD ALL would also drop pgmux's shared prepared statements there.
        session_log_.push_back("RESET ALL");
        for (const auto& [name, value] : wanted_params_.entries()) {
          session_log_.push_back(routing::set_statement(name, value));
        }
        for (ServerConn* other : {primary_, standby_}) {
          if (other) other->applied_log = 0;
        }
        server->applied_log = 1;  // it ran the reset; the startup values follow before its next request
      } else {
        session_log_.push_back(routing::set_statement(target, *wanted_params_.find(target)));
        server->applied_log = session_log_.size() - 1;
      }
      return;
    }
  }
  // RESET ALL and DISCARD ALL undo everything before them: the log restarts with them, so it stays short and
  // a server that already ran older entries runs the reset too.
  if (reset_all) {
    session_log_.clear();
    for (ServerConn* other : {primary_, standby_}) {
      if (other) other->applied_log = 0;
    }
  }
  session_log_.push_back(std::move(sql));
  server->applied_log = session_log_.size();
}

void ClientConn::on_copy_in(ServerConn* server) {
  if (server != active_) return;
  // COPY FROM STDIN started by an extended batch: PostgreSQL ignores that batch's Sync during COPY (the client
  // sends another after CopyDone), so no ReadyForQuery will answer it.
  if (outstanding_count_ > 0 && outstanding_[outstanding_head_].extended) {
    if (outstanding_[outstanding_head_].session) pending_session_sql_.erase(pending_session_sql_.begin());
    outstanding_head_ = (outstanding_head_ + 1) % std::size(outstanding_);
    --outstanding_count_;
    server->forget_one_sync();
  }
  copy_in_ = true;
  copy_pass_remaining_ = 0;
  pump();
}

void ClientConn::on_server_lost(ServerConn* server, bool fatal_forwarded, bool mid_message) {
  if (server != primary_ && server != standby_ && wait_ == Wait::Server && open()) {
    // It died while being readied for this client (parameter sync): ask the pool again, or route again when a
    // reload removed its backend.
    if (server->pool().draining()) {
      on_pool_draining(waiting_pool_);
    } else {
      acquire(server->pool().backend_index(), waiting_role_);
    }
    return;
  }
  const bool was_active = server == active_;
  const bool was_primary = server == primary_;
  const bool in_flight = was_active && (server->has_outstanding() || server->tx_status() != 'I' || copy_in_);
  const bool was_preparing = server == preparing_;
  if (was_preparing) preparing_ = nullptr;
  if (server == prepared_for_) prepared_for_ = nullptr;
  if (server == primary_) primary_ = nullptr;
  if (server == standby_) standby_ = nullptr;
  if (server == active_) active_ = nullptr;
  if (server == unnamed_statement_server_) unnamed_statement_server_ = nullptr;
  if (!open()) return;
  close_reason_ = "server connection lost";
  const std::string backend = server->pool().backend().name;
  if (mid_message) {
    close();  // half a message went out: nothing else can be framed after it
    return;
  }
  if (fatal_forwarded) {
    close();  // PostgreSQL ended the session and said so, as it would on a direct connection
    return;
  }
  if ((was_primary && route_state_.pinned_primary) || (in_flight && server->tx_status() != 'I')) {
    fail(sqlstate::kConnectionFailure, "server connection lost (backend \"" + backend + "\"); session state is gone");
    return;
  }
  close_reason_ = nullptr;
  if (in_flight) {
    // The requests may or may not have run; the client hears so, once for each, and the session goes on.
    const unsigned answers = outstanding_count_;
    outstanding_count_ = 0;
    tx_started_ns_ = 0;
    worker_.metrics().count_error(sqlstate::kConnectionFailure, answers > 0 ? answers : 1);
    pending_session_sql_.clear();
    copy_in_ = false;
    ByteVector out;
    const std::string message =
        "server connection lost (backend \"" + backend + "\"); the statement may or may not have been executed";
    for (unsigned i = 0; i < answers; ++i) {
      build_error_response(out, "ERROR", sqlstate::kConnectionFailure, message);
      build_ready_for_query(out, 'I');
    }
    if (answers == 0) {
      build_error_response(out, "ERROR", sqlstate::kConnectionFailure, message);
      discard_until_sync_ = true;  // an extended sequence without Sync: answer its Sync with ReadyForQuery
    }
    send_owned(std::move(out));
  }
  if (wait_ == Wait::Drain || (wait_ == Wait::Prepare && was_preparing)) wait_ = Wait::None;
  pump();
}

}  // namespace pgmux::proxy
