// ClientConn, a session's primary connection ended by its server while the session was idle (session pooling).
// PostgreSQL ends it with the same FATAL 57P01 "terminating connection due to administrator command" for a
// pg_terminate_backend of that pid and for a fast shutdown of the whole server. A terminate must end the
// session, as on a direct connection; a shutdown (a failover or switchover under way) need not: the session's
// state is in its session log, and its next request goes to whatever primary comes next. So the FATAL is held
// (ServerEnding: requests wait in the buffer) while a probe round asks the backend. The prober's own connection
// answering after the FATAL means only this session was ended; its failing, or the backend no longer being the
// primary, means the server went away. A crash or an immediate shutdown (57P02, or 57P01 "immediate shutdown")
// is never a terminate: the session moves on at once.
#include "proxy/client/client_conn.hpp"

#include "protocol/error_response.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
constexpr double kDecideWithin = 5;  // seconds; undecided by then, the client gets the FATAL, as directly
constexpr std::string_view kImmediateShutdown = "terminating connection due to immediate shutdown command";
}  // namespace

bool ClientConn::hold_server_fatal(ServerConn& server, ByteView body, ByteView message) {
  if (transaction_pooling() || &server != primary_.get() || state_ != ClientState::Ready || ended_server_) {
    return false;
  }
  if (session_.pin_reason != nullptr || session_.route.pinned_primary) return false;  // its state ends with it
  const auto error = parse_error_fields(body);
  if (!error || error->severity != "FATAL") return false;
  const bool crash = error->sqlstate == sqlstate::kCrashShutdown ||
                     (error->sqlstate == sqlstate::kAdminShutdown && error->message == kImmediateShutdown);
  if (!crash && error->sqlstate != sqlstate::kAdminShutdown) return false;
  worker_.shared().control->request_probe_round();
  if (crash) {
    LOG_INFO("%s: backend %s is going down (%s); the session moves on to the next primary", log_prefix().c_str(),
             server.pool().backend().name.c_str(), escape_for_log(error->message, 200).c_str());
    return true;
  }
  ended_server_ = std::make_unique<EndedServer>(
      EndedServer{ByteVector(message.begin(), message.end()), server.backend_index(), monotonic_now()});
  set_state(ClientState::ServerEnding);
  return true;
}

// Transaction pooling, mid-request: a server ending with a shutdown, crash or terminate FATAL takes no session with
// it (the session lives in pgmux; a pinned one excepted), so the client is not disconnected as a direct client
// would be. The FATAL is dropped, and the end of the connection that follows is answered as any lost server:
// 08006 "may or may not have been executed" and ReadyForQuery between transactions (the client's next request
// goes to the next server, the new primary after a failover), 08006 / 08007 and a close inside one.
bool ClientConn::drops_server_fatal(ByteView body) const {
  if (!transaction_pooling() || session_.pin_reason != nullptr || session_.route.pinned_primary) return false;
  const auto error = parse_error_fields(body);
  if (!error || error->severity != "FATAL") return false;
  return error->sqlstate == sqlstate::kAdminShutdown || error->sqlstate == sqlstate::kCrashShutdown ||
         error->sqlstate == sqlstate::kCannotConnectNow;
}

// At each new view (and worker tick) while ServerEnding.
void ClientConn::decide_server_ending() {
  const EndedServer& ended = *ended_server_;
  const routing::BackendsView& view = worker_.view();
  const routing::BackendStatus* backend =
      ended.backend >= 0 && static_cast<size_t>(ended.backend) < view.backends.size()
          ? &view.backends[static_cast<size_t>(ended.backend)]
          : nullptr;
  const bool gone = backend == nullptr || backend->failed_probes > 0 || backend->role != routing::Role::Primary;
  const bool answered_since = !gone && backend->last.sent_at > ended.at;
  if (answered_since || (!gone && monotonic_now() - ended.at > kDecideWithin)) {
    // Only this session was ended (pg_terminate_backend): it ends here too, with the server's own FATAL.
    LOG_INFO("%s: the server ended the session's connection (%s answers other connections): ending the session",
             log_prefix().c_str(), backend->spec.name.c_str());
    ByteVector fatal = std::move(ended_server_->fatal);
    ended_server_.reset();
    send_owned(std::move(fatal));
    close_reason_ = Failure::ServerLost;
    close();
    return;
  }
  if (!gone) {
    worker_.wait_for_primary(this);  // no probe since the FATAL yet: woken again by the next view (or tick)
    return;
  }
  LOG_INFO("%s: backend %s stopped (the prober cannot reach it as a primary either); the session moves on to the "
           "next primary",
           log_prefix().c_str(), backend != nullptr ? backend->spec.name.c_str() : "?");
  ended_server_.reset();
  set_state(ClientState::Ready);
  pump();
}

}  // namespace pgmux::proxy
