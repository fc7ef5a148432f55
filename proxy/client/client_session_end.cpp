// ClientConn, the end of a session the client asked for (a Terminate, or the end of its stream): after the
// replies owed, or passed on to the server when they cannot be counted.
#include "proxy/client/client_conn.hpp"

#include "protocol/frontend_messages.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

// A Terminate, or the end of what the client sent before its EOF. PostgreSQL answers every request read before
// either: the session ends once the replies owed have been relayed (Ending; the pump comes back here at each
// reply's end, the Terminate still unread). Not those that wait for more from the client (a COPY IN, an extended
// sequence without Sync: PostgreSQL ends the session there, its transaction rolled back) or that pgmux cannot
// count (ReplyQueue::client_requests_before_doubt). Returns false.
bool ClientConn::end_session(Failure reason) {
  const bool owed = !copying() && ((primary_ && primary_->owes_client_before_doubt()) ||
                                   (standby_ && standby_->owes_client_before_doubt()));
  if (owed) {
    set_state(ClientState::Ending);
    return false;
  }
  if (forward_end(reason)) return false;
  close_reason_ = reason;
  close();
  return false;
}

// What the client's server still owes cannot be counted (an extended sequence left open, a Query inside one) or
// waits for data (a COPY): the client's end goes on to that server, as it would reach PostgreSQL directly, and what
// the server sends is relayed until it closes (EndForwarded). The server is not used again. False when nothing is
// owed there, when the other server owes too, or over TLS: the session ends at once.
bool ClientConn::forward_end(Failure reason) {
  ServerConn* server = active_;
  if (!server || !(copying() || server->owed_client_requests() > 0)) return false;
  const ServerConn* other = server == primary_.get() ? standby_.get() : primary_.get();
  if (other && other->owed_client_requests() > 0) return false;
  ByteVector last;
  if (reason == Failure::ClientTerminated) build_terminate(last);
  if (!server->finish_sending(std::move(last))) return false;
  LOG_DEBUG("%s: %s passed on to S-%llu, whose replies cannot be counted", log_prefix().c_str(),
            reason == Failure::ClientTerminated ? "Terminate" : "end of stream",
            static_cast<unsigned long long>(server->id()));
  close_reason_ = reason;
  set_state(ClientState::EndForwarded);
  return true;
}

// At the client's EOF: requests it sent that no server has yet (still in the buffer or in the TLS session's, or
// waiting for a server, a primary, a standby's replay, PAUSE, the catalog, the replies before them). They run, as
// PostgreSQL runs every message read before an EOF.
bool ClientConn::holds_unsent_requests() const {
  if (admin_) return false;
  // A login waiting for a server (session pooling) with requests behind it: PostgreSQL would finish the login and
  // run them.
  if (state_ == ClientState::LoginWait || state_ == ClientState::LoginPrimaryWait) return in_.unparsed() > 0;
  if (!logged_in()) return false;
  return copying() || state_ != ClientState::Ready || in_.unparsed() > 0 || !input_ended();
}

}  // namespace pgmux::proxy
