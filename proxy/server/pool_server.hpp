// The narrow interfaces between a Pool and what it serves and uses: PoolClient (a waiting client; ClientConn),
// PoolServer (a server connection; ServerConn) and PoolHost (the worker: its clock, config and metrics, and where
// new server connections come from). Pool knows nothing else of them, so it runs in unit tests with fakes
// (tests/unit/proxy_pool_test.cpp), without sockets or a loop.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <string>

#include "conf/config.hpp"
#include "proxy/net/failure.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/ops/metrics.hpp"
#include "proxy/server/session_params.hpp"

namespace pgmux::proxy {

class Pool;
class PoolServer;

enum class ServerState { Connecting, Login, Idle, Internal, Linked, Closing };
const char* to_string(ServerState s);

// A client that asks a pool for a server.
class PoolClient {
 public:
  // Its startup parameters: session pooling opens its servers with them, transaction pooling SETs them.
  virtual const SessionParams& wanted_params() const = 0;
  // When it began to wait (PoolHost::now()): reserve_pool_timeout and query_wait_timeout count from there.
  virtual double wait_started() const = 0;
  // The server is linked to it and ready for its requests.
  virtual void on_server_ready(PoolServer* server) = 0;
  // No server for it (connect failed, query_wait_timeout, shutdown); it has left the waiting list.
  virtual void on_server_unavailable(const FailureReport& failure) = 0;
  // A reload removed or moved the pool's backend: stop waiting on it, give its servers back when idle.
  virtual void on_pool_draining(Pool* pool) = 0;
  // A failure of its own (the failure table says what the client is told): a server refused its startup parameter.
  virtual void fail(const FailureReport& failure) = 0;

  ListNode wait_node;  // its pool's FIFO of waiting clients

 protected:
  ~PoolClient() = default;
};

// A server connection as its pool sees it. The pool owns the bookkeeping here (Pool::set_state is the only writer
// of the state and moves the server between the pool's lists); the connection does the I/O.
class PoolServer {
 public:
  explicit PoolServer(uint64_t id) : id_(id) {}
  PoolServer(const PoolServer&) = delete;
  PoolServer& operator=(const PoolServer&) = delete;

  uint64_t id() const { return id_; }
  ServerState state() const { return state_; }
  // Still connecting or logging in (on the way to its pool's idle list).
  bool logging_in() const { return state_ == ServerState::Connecting || state_ == ServerState::Login; }
  double idle_since() const { return idle_since_; }
  double connect_started() const { return connect_started_; }
  // The run-time parameters it was opened with: the session's defaults (what RESET returns to).
  const SessionParams& startup_params() const { return startup_params_; }
  // The waiting client this connection was opened for, until it logs in or that client leaves.
  PoolClient* opened_for() const { return opened_for_; }
  void forget_opened_for() {
    opened_for_ = nullptr;
    adopted_ = false;
  }
  // Another waiting client takes over a connection still being opened for no one (Pool::orphan_on_the_way).
  void adopt(PoolClient* client) {
    opened_for_ = client;
    adopted_ = true;
  }
  // opened_for() took it over: it did not open it, and its failure is not that client's to hear.
  bool adopted() const { return adopted_; }

  // Starts connecting and logging in, at `now`, with these startup parameters, for this waiting client (null: a
  // connection kept for min_pool_size). The outcome comes back as Pool::on_login_done or Pool::on_server_failed.
  // `address`: its pool's backend address now, where it connects.
  void connect(SessionParams startup_params, PoolClient* opened_for, double now, const sockaddr_storage& address) {
    startup_params_ = std::move(startup_params);
    opened_for_ = opened_for;
    connect_started_ = now;
    address_ = address;
    start_connect();
  }
  // Where it connected (the backend's host name may lead elsewhere since): where a CancelRequest for it must go,
  // and whether its pool still wants it (Pool::retire_reason).
  const sockaddr_storage& address() const { return address_; }

  virtual bool open() const = 0;
  // Idempotent; tells the pool (Pool::on_server_closing) and the linked client.
  virtual void close() = 0;
  // server_connect_timeout passed while connecting or logging in: fails like a refused connect.
  virtual void fail_timeout() = 0;
  // Nothing in flight and idle outside a transaction: it may serve another client.
  virtual bool reusable() const = 0;
  // What the server reports through ParameterStatus.
  virtual const SessionParams& params() const = 0;
  virtual void link(PoolClient* client) = 0;
  virtual void unlink() = 0;
  virtual PoolClient* linked_client() const = 0;
  // Runs a query of pgmux's own (a reset, a parameter sync) and consumes its replies; the server is Internal
  // meanwhile (it says so through Pool::set_state). done runs at its ReadyForQuery, or with ok false when the
  // connection is lost first (then open() is already false).
  using QueryDone = std::function<void(bool ok, const std::string& sqlstate, const std::string& error)>;
  virtual void run_pool_query(std::string sql, QueryDone done) = 0;
  // Transaction pooling: a client changed session state here (SET replayed, a session command): it needs
  // DISCARD ALL before the next client.
  virtual bool session_changed() const = 0;
  // DISCARD ALL is about to run: nothing pgmux set or prepared here survives it.
  virtual void forget_session() = 0;

  // Parameters pgmux SET here that the server does not report; they survive links (transaction pooling).
  SessionParams applied_unreported;
  ListNode pool_node;  // idle or busy list of its pool

  // Pool::set_state only.
  void set_state_internal(ServerState state) { state_ = state; }
  void mark_idle(double now) { idle_since_ = now; }

 protected:
  ~PoolServer() = default;
  virtual void start_connect() = 0;

 private:
  uint64_t id_;
  ServerState state_ = ServerState::Connecting;
  bool adopted_ = false;
  double idle_since_ = 0;
  double connect_started_ = 0;
  sockaddr_storage address_{};
  SessionParams startup_params_;
  PoolClient* opened_for_ = nullptr;
};

// A starving pool's state, sent with its request for a slot to the other workers' pools of its key.
struct ShedRequest {
  double oldest_wait = 0;  // when its longest-waiting client began to wait
  int servers = 0;         // it has (busy, idle and connecting)
  int demand = 0;          // servers it could use: busy ones plus waiting clients, the most lately (Pool::demand)
};

// What a pool needs of the worker it lives on.
class PoolHost {
 public:
  // The loop's clock, in seconds.
  virtual double now() const = 0;
  // The current config's timeouts (a reload changes them).
  virtual const conf::Timeouts& timeouts() const = 0;
  virtual bool shutting_down() const = 0;
  virtual WorkerMetrics& metrics() = 0;
  // A new server connection of this pool, not connecting yet.
  virtual PoolServer* create_server(Pool& pool) = 0;
  // This worker's pool of `key` is starving (its budget is spent, nothing is idle here): asks every other worker's
  // pool of the key to give it a slot (Pool::shed_for).
  virtual void request_shed(const std::string& key, const ShedRequest& request) = 0;
  // A slot of `from`'s budgets, freed by closing one of its servers, passed on to worker `to_worker`'s pool of
  // the same key (Pool::accept_slot; released to those budgets if that pool is gone or cannot take it).
  virtual void give_slot(const Pool& from, int to_worker) = 0;
  // `starving`'s clients wait with its database's or user's budget spent (max_db_connections,
  // max_user_connections) while its own has room: an idle server of another pool drawing from that budget closes,
  // on this worker if one has such a server (true: the slot is free now), else on another worker (the slot comes
  // back there; the starving pool takes it at its next tick).
  virtual bool evict_idle_server(const Pool& starving) = 0;
  // A new connection to `backend` was refused: nothing listens on its port (the prober counts it as a failed
  // probe: Topology::on_connection_refused).
  virtual void report_refused(const std::string& backend, const std::string& error) = 0;
  // PAUSE holds `database`'s new transactions: its pools open no server to keep min_pool_size meanwhile (the pause
  // closed them so that the database can be restarted, renamed or dropped).
  virtual bool paused(const std::string& /*database*/) const { return false; }

 protected:
  ~PoolHost() = default;
};

}  // namespace pgmux::proxy
