// Cancel requests (cancel.hpp has the key registry and the sending). A CancelRequest arrives as a startup packet
// on a connection of its own, on whichever worker accepted it; what it does depends on the state of the client it
// names, which only that client's worker may read, so it is handed to that worker first.
#include "proxy/client/client_conn.hpp"

#include "protocol/startup.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/ops/admin/console.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

namespace {

// On the worker that runs the slot's client: the client (if it is still there) hears the cancel.
void cancel_on_owner(Worker& worker, const std::shared_ptr<CancelSlot>& slot) {
  if (ClientConn* client = worker.client_with_cancel_slot(slot.get())) client->on_cancel_request();
}

}  // namespace

// Nothing is answered, as PostgreSQL answers nothing; the request's own connection closes at once.
void ClientConn::forward_cancel(const protocol::CancelRequest& cancel) {
  std::shared_ptr<CancelSlot> slot = worker_.cancels().find(cancel.process_id, cancel.secret_key);
  if (!slot) {
    LOG_INFO("C-%llu %s: cancel request (pid %d) ignored: unknown key", static_cast<unsigned long long>(id_),
             peer_.c_str(), cancel.process_id);
  } else if (slot->owner_worker() == worker_.index()) {
    cancel_on_owner(worker_, slot);
  } else {
    for (Worker* owner : worker_.shared().workers) {
      if (owner->index() == slot->owner_worker()) {
        owner->post([slot](Worker& w) { cancel_on_owner(w, slot); });  // dropped with its worker's loop
      }
    }
  }
  close_reason_ = Failure::CancelRequestDone;
  close();
}

// A request still waiting (for a pool's server, a primary, a standby's replay, PAUSE) has reached no server:
// PostgreSQL would have cancelled it as it ran, so it fails with 57014 and never runs. Otherwise the cancel goes
// on to the server the client uses now, if any (an idle one ignores it, as PostgreSQL does).
void ClientConn::on_cancel_request() {
  if (!open()) return;
  if (cancel_waiting_request()) return;
  if (!active_ || active_->owed_client_requests() == 0) {
    // Nothing of the client's runs. The server may still run a query of pgmux's (capture_prepare_types), and the
    // client's next request behind it, which must not be hit. A request held back until that query ends (Draining)
    // never ran: it fails unsent, as one waiting for a server does. Otherwise the client waits for nothing, and
    // PostgreSQL ignores a cancel for an idle backend.
    if (state_ == ClientState::Draining) {
      LOG_INFO("%s: cancel request while the request waits for pgmux's own query: it fails unsent",
               log_prefix().c_str());
      resume_requests();
      fail({Failure::WaitingRequestCanceled});
      if (open()) pump();
      return;
    }
    LOG_INFO("%s: cancel request ignored: no request of the client's is running", log_prefix().c_str());
    return;
  }
  std::optional<CancelTarget> target = cancel_slot_->begin_cancel();
  if (!target) {
    LOG_INFO("%s: cancel request ignored: the client uses no server now, or 65535 cancels for it are on their way",
             log_prefix().c_str());
    return;
  }
  LOG_INFO("%s: forwarding a cancel request to server S-%llu (backend pid %d)", log_prefix().c_str(),
           static_cast<unsigned long long>(target->server_id), target->process_id);
  send_cancel_request(loop(), *target, worker_.config()->timeouts.server_connect_timeout, cancel_slot_);
}

bool ClientConn::cancel_waiting_request() {
  if (state_ == ClientState::AdminBusy) return admin_->cancel_waiting_pause();
  if (state_ == ClientState::PreparingCanceled) return true;  // cancelled already
  if (state_ == ClientState::Preparing) {
    // pgmux's own messages run there for the request (the session's settings, its statements): cancelling them
    // could leave the server half set up, so the request fails once they are done (finish_prepare).
    LOG_INFO("%s: cancel request while pgmux brings its server up to date for the request: it fails unsent once "
             "that is done", log_prefix().c_str());
    set_state(ClientState::PreparingCanceled);
    return true;
  }
  if (!holds_unsent_request(state_)) return false;
  LOG_INFO("%s: cancel request while the request waits (%s): it fails unsent", log_prefix().c_str(),
           to_string(state_));
  routed_.reset();
  replay_wait_.reset();
  primary_wait_ = {};
  resume_requests();  // off the wait's list (set_state)
  fail({Failure::WaitingRequestCanceled});
  if (open()) pump();
  return true;
}

// The client cancelled the request while pgmux brought its server up to date: like a request that still waits, it
// never ran, and fails with 57014. Inside a transaction block open on the server (the deferred BEGIN went out in
// the step, or one was open already) the block fails there too, as the cancelled statement fails it on
// PostgreSQL. Not when the preparation failed (its error answers the request) or the block had failed already
// (the server answers 25P02). True when the request failed here.
bool ClientConn::fail_canceled_request(ServerConn& s) {
  if (!prepare_error_.empty() || s.tx_status() == 'E') {
    LOG_INFO("%s: the request cancelled while S-%llu was brought up to date goes on (%s)", log_prefix().c_str(),
             static_cast<unsigned long long>(s.id()),
             prepare_error_.empty() ? "its block failed already" : "it fails with the preparation's error");
    return false;
  }
  resume_requests();
  if (s.tx_status() == 'T') {
    fail_server_block(s);
    make_active(&s);  // the block's next requests go there
  }
  fail({Failure::WaitingRequestCanceled});
  if (open()) pump();
  release_idle_servers();  // transaction pooling, outside a block: the server did nothing for the client after all
  return true;
}

}  // namespace pgmux::proxy
