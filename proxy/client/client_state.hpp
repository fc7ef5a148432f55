// The one state of a client connection (DESIGN.md §3.4). ClientConn::set_state() is its only writer; this file
// holds what can be said about states without a connection: their names, which transitions are legal, and the
// questions the rest of pgmux asks of a state. Pure, so it is unit-tested on its own.
#pragma once
#include <cstdint>

namespace pgmux::proxy {

enum class ClientState : uint8_t {
  Startup,      // reading the startup packet (SSLRequest, GSSENCRequest and CancelRequest are answered here)
  AuthLookup,   // auth_query: the database is asked for the record of a user the config does not list
  Auth,         // the password exchange
  LoginWait,    // authenticated: waiting for a server to log in through (its ParameterStatus set)
  LoginPrimaryWait,  // authenticated, and no primary to log in through (a failover) while the read/write split is
                     // off, so no standby may serve the session: the login waits for one, up to failover_timeout
  Ready,        // logged in: requests are read, routed and forwarded (replies may be owed meanwhile)
  ServerWait,   // a request waits for a server from a pool
  PrimaryWait,  // a request waits for a primary to appear (failover), up to failover_timeout
  ReplayWait,   // a read waits for a standby to replay the commits it must see, up to routing.causal_wait
  Paused,       // a request that would start a transaction is held by PAUSE
  CatalogWait,  // a request waits for its database's first function catalog (ClientConn::waits_for_first_catalog)
  Draining,     // a request waits until the client's server has sent the replies it still owes
  Ending,       // the client's input ended (Terminate, or EOF behind requests pgmux still held): the replies owed
                // before it are relayed first (ClientConn::end_session looks again at each one's end)
  EndForwarded, // the client's end went on to its server, as it would reach PostgreSQL directly (its Terminate, then
                // the end of pgmux's sending side): what the server sends is relayed until it closes, which ends the
                // session (replies pgmux cannot count: an open extended sequence, a COPY, a Query inside a sequence)
  Preparing,    // pgmux brings a server up to date (session replay, statements, plan retry) before a request
  PreparingCanceled,  // Preparing, and a cancel request came for the request meanwhile: once the server is up to
                      // date the request fails with 57014 unsent, outside a transaction block (finish_prepare)
  ServerEnding, // session pooling: the primary connection ended with 57P01 outside a transaction (from Ready, or
                // interrupting a request's wait); a probe round tells a terminate (the session ends with that
                // FATAL) from a shutdown (the session moves on to the next primary; a waiting request routes again)
  Admin,        // an admin console session, reading queries
  AdminBusy,    // the admin console is answering a query; nothing more is read meanwhile
  Closing,
};
inline constexpr int kClientStateCount = static_cast<int>(ClientState::Closing) + 1;

const char* to_string(ClientState s);

// Whether `from -> to` is a transition the client state machine knows. Staying in a state is always legal.
bool is_legal_transition(ClientState from, ClientState to);

// Requests are read and dispatched in this state.
inline bool reads_requests(ClientState s) { return s == ClientState::Ready || s == ClientState::Admin; }

// The client waits for something other than its own next bytes (SHOW CLIENTS' "waiting").
inline bool is_waiting(ClientState s) {
  return s == ClientState::AuthLookup || s == ClientState::LoginWait || s == ClientState::LoginPrimaryWait ||
         s == ClientState::ServerWait ||
         s == ClientState::PrimaryWait || s == ClientState::ReplayWait || s == ClientState::Paused ||
         s == ClientState::CatalogWait || s == ClientState::Draining || s == ClientState::Ending ||
         s == ClientState::EndForwarded ||
         s == ClientState::Preparing ||
         s == ClientState::PreparingCanceled || s == ClientState::ServerEnding || s == ClientState::AdminBusy;
}

// The client has been told it is logged in (ReadyForQuery after authentication).
inline bool is_logged_in(ClientState s) {
  return s != ClientState::Startup && s != ClientState::AuthLookup && s != ClientState::Auth &&
         s != ClientState::LoginWait && s != ClientState::LoginPrimaryWait && s != ClientState::Closing;
}

// The request in hand waits unsent (for a pool's server, a primary, a standby's replay, PAUSE, the catalog): a
// cancel request fails it with 57014 there (client_cancel.cpp), since no server runs it.
inline bool holds_unsent_request(ClientState s) {
  return s == ClientState::ServerWait || s == ClientState::PrimaryWait || s == ClientState::ReplayWait ||
         s == ClientState::Paused || s == ClientState::CatalogWait;
}

// Waiting in a pool's FIFO for a server.
inline bool waits_for_pool(ClientState s) { return s == ClientState::LoginWait || s == ClientState::ServerWait; }

// On the worker's list of clients each new view wakes: those waiting for a primary, and a session pooling client
// whose primary connection ended (a probe round tells a terminate from a shutdown).
inline bool waits_for_primary(ClientState s) {
  return s == ClientState::PrimaryWait || s == ClientState::LoginPrimaryWait || s == ClientState::ServerEnding;
}

}  // namespace pgmux::proxy
