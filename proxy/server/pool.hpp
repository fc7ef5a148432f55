// A pool of server connections for one (database, user, backend) on one worker: idle and busy servers, a FIFO of
// waiting clients, and the rules for handing a server out and taking it back. Every server state change
// goes through set_state() so list membership and state never disagree (DESIGN.md §3.4). It sees clients,
// servers and its worker only through the interfaces in pool_server.hpp.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "protocol/auth_scram.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/net/address.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/ops/metrics.hpp"
#include "proxy/server/pool_server.hpp"

namespace pgmux::proxy {

// What a server connection needs to log in to PostgreSQL as the pool's user.
struct ServerLogin {
  std::string user;
  std::string password;  // plaintext, "md5..." hash or SCRAM secret text
  std::string database;
  std::optional<protocol::ScramSecret> scram_secret;  // parsed when password is a SCRAM secret
  std::optional<protocol::Sha256> client_key;         // recovered from a client's SCRAM login
};

struct BackendAddress {
  std::string name;  // config name, for messages
  std::string host;
  uint16_t port = 0;
  sockaddr_storage address{};
  std::string resolved;  // host is a name: what the prober last resolved it to (`address`, as text); else ""
  std::string text() const { return host + ":" + std::to_string(port); }
};

class Pool {
 public:
  // Limits a pool draws its server connections from: its own pool_size (+ reserve after reserve_pool_timeout),
  // and, when set, max_db_connections and max_user_connections shared with other pools.
  struct Limits {
    std::shared_ptr<PoolBudget> pool;
    std::shared_ptr<PoolBudget> database;  // null: no max_db_connections
    std::shared_ptr<PoolBudget> user;      // null: no max_user_connections
    int reserve = 0;
    int min_size = 0;
    std::shared_ptr<SharedLoginParams> login_params;  // shared by this key's pools on every worker
  };
  Pool(PoolHost& host, std::string key, std::string name, int backend_index, BackendAddress backend, ServerLogin login,
       Limits limits, conf::PoolMode mode);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const std::string& name() const { return name_; }
  ServerLogin& login() { return login_; }
  const BackendAddress& backend() const { return backend_; }
  // Where server connections go from now on (the backend's host name resolved to another address): the idle ones
  // at the old address close now, the busy ones when they are given back (retire_reason).
  void set_address(const sockaddr_storage& address, std::string resolved);
  // Connected where the backend no longer is (its host name now leads elsewhere).
  bool at_old_address(const PoolServer& server) const { return !same_address(server.address(), backend_.address); }
  // Index of its backend in the worker's current config (a reload may move it); -1 once draining.
  int backend_index() const { return backend_index_; }
  conf::PoolMode mode() const { return mode_; }
  // The ParameterStatus set of the first server that logged in: transaction pooling logs clients in with it.
  SessionParams login_params() const { return limits_.login_params->get(); }
  bool transaction_pooling() const { return mode_ != conf::PoolMode::Session; }

  // Clients.
  void request(PoolClient* client);
  void withdraw(PoolClient* client);
  // A client gives a server back. from_client: what only the client knows (COPY in progress, pinned); `why`: the
  // failure that ended its request or session, if any. server_fate() decides: reuse, reset or close.
  void release(PoolServer* server, ServerFacts from_client = {}, std::optional<Failure> why = std::nullopt);

  // Servers.
  void set_state(PoolServer* server, ServerState state);
  void on_login_done(PoolServer* server);
  void on_server_failed(PoolServer* server, FailureReport failure);
  void on_server_closing(PoolServer* server);

  void tick(double now, const conf::Timeouts& timeouts);
  // Another worker's pool of this key is starving (PoolHost::request_shed): the oldest idle server closes and its
  // slot goes to that worker now; with none idle, the next server given back here may (give_to_starving_worker).
  void shed_for(const ShedRequest& request, int starving_worker);
  // Another pool starves on a database or user budget (PoolHost::evict_idle_server): if this one draws from every
  // spent budget of it, its longest-idle server closes, freeing a slot there. True when one did.
  bool evict_idle_for(const Limits& starving);
  // A slot another worker freed for this one (PoolHost::give_slot), counted in `budgets`: a server opens with it
  // for the first waiting client that has none on the way, or the slot goes back. Budgets other than this pool's
  // (a reload reached the two workers at different moments) take it back at once.
  void accept_slot(const Limits& budgets);
  // Returns a slot that no pool took to the budgets it came from.
  static void release_budgets(const Limits& limits);
  const Limits& limits() const { return limits_; }
  const std::string& key() const { return key_; }
  std::string database_name() const { return key_.substr(0, key_.find('\0')); }
  int pool_size() const { return limits_.pool->limit.load(std::memory_order_relaxed); }
  // Its backend was removed by a reload: no new work; servers close as they are released.
  bool draining() const { return standing_ == Standing::Draining; }
  // Waiting clients hear `why`; every server closes.
  void close_all(Failure why);
  // RECONNECT (admin console): every server connection opened until now is replaced, an idle one at once, a busy
  // one when its client gives it back (session defaults of ALTER ROLE / DATABASE ... SET reach new ones only).
  void reconnect();
  // PAUSE, once no transaction runs: the same without forgetting the login parameters (logins meanwhile need no
  // server in transaction pooling).
  void close_for_pause();

  // Reload (worker.cpp): the backend kept its name and address but may have moved in the list.
  void set_backend_index(int index) { backend_index_ = index; }
  // Reload: new limits (pool_size, reserve, min_pool_size, max_db/max_user budgets) and the user's password for
  // servers opened from now on. Servers beyond the new size close as they are released.
  void reconfigure(Limits limits, const std::string& password);
  // The password (or secret) servers opened from now on log in with; a changed one forgets the client key.
  void set_password(const std::string& password);
  // Reload: the config no longer describes this pool (database, user, pool mode or server database changed):
  // it goes on serving the clients that logged in before, keeps no min_pool_size, and goes once empty.
  void set_stale(bool stale) {
    if (standing_ == Standing::Draining) return;  // for good
    standing_ = stale ? Standing::Stale : Standing::Current;
    if (stale) limits_.min_size = 0;
  }
  bool stale() const { return standing_ == Standing::Stale; }
  // A pool of a database a client named through the "*" entry: the worker bounds those and drops them unused.
  void mark_auto_database() { auto_database_ = true; }
  bool auto_database() const { return auto_database_; }
  // A server of this pool's key completed a login (here, or on another worker before this pool was made): the
  // database exists and the login works.
  bool ever_logged_in() const { return ever_logged_in_; }
  // Since when no server has been busy (or connecting) and no client waiting; as of the last tick.
  double unused_since() const { return unused_since_; }
  // Closes the idle servers of a pool about to go (no busy server, nobody waiting: nothing else to close).
  void close_idle_servers();
  // Reload removed or moved its backend: waiting clients are routed again, idle and connecting servers close,
  // linked ones close when their client releases them (at its next transaction boundary).
  void drain();
  // No server object alive (closing ones included) and nobody waiting: the worker may delete it.
  bool empty() const { return servers_alive_ == 0 && waiting_.empty(); }
  // ServerConn's constructor and destructor: a pool outlives every server that refers to it.
  void server_created() { ++servers_alive_; }
  void server_deleted() { --servers_alive_; }

  PoolStats stats;  // SHOW STATS (metrics.hpp)
  // Where its servers count their bytes: the worker's metrics and stats above.
  const ByteCounters& byte_counters() const { return byte_counters_; }
  template <typename F>
  void for_each_server(F&& f) {
    idle_.for_each(f);
    busy_.for_each(f);
  }
  template <typename F>
  void for_each_waiting(F&& f) {
    waiting_.for_each(f);
  }
  // The client waits here and no server is being opened for it: only a server given back will serve it.
  bool waits_for_release(const PoolClient* client) {
    return client->wait_node.linked() && !has_server_on_the_way(client);
  }
  int connecting_count() const { return connecting_; }
  size_t waiting_count() const { return waiting_.size(); }
  size_t idle_count() const { return idle_.size(); }
  // A client asking now would wait: no idle server and no room to open one (a read then tries another standby).
  bool would_queue() const { return idle_.empty() && !can_open_more(); }
  size_t busy_count() const { return busy_.size(); }

 private:
  // Every way a client leaves waiting_ goes through these: off the list, and no server still logging in keeps
  // a pointer to call it back with (the client may be freed as soon as it is told).
  void stop_waiting(PoolClient* client);
  PoolClient* pop_waiter();
  void forget_client(PoolClient* client);
  void serve_waiters();
  std::vector<PoolClient*> pick_clients_to_open_for(double now, bool* starving);
  bool has_server_on_the_way(const PoolClient* client);
  PoolServer* orphan_on_the_way(const PoolClient* client, double now);
  void assign(PoolServer* server, PoolClient* client);
  void on_assign_synced(PoolServer* server, bool ok, const std::string& sqlstate, const std::string& error);
  void reset_and_idle(PoolServer* server, const char* reset_sql);
  void open_server(PoolClient* for_client);
  PoolServer* take_idle_for(PoolClient* client);
  void close_expired_idle(double now, const conf::Timeouts& timeouts);
  size_t server_count() const { return idle_.size() + busy_.size(); }
  bool can_open_more() const;
  bool acquire_slot(bool reserve);
  void release_slot();
  bool over_limit() const;
  bool budget_over_pool_size() const;  // reserve-pool slots are in use (over_limit: beyond the reserve too)
  const char* retire_reason(const PoolServer& server) const;

  PoolHost& host_;
  std::string key_;
  std::string name_;
  int backend_index_;
  BackendAddress backend_;
  ServerLogin login_;
  Limits limits_;
  conf::PoolMode mode_;
  int connecting_ = 0;
  // What the current config says of it: Current; Stale (no longer described, may be again); Draining (its backend
  // removed; final).
  enum class Standing { Current, Stale, Draining };
  Standing standing_ = Standing::Current;
  double reconnect_before_ = -1;  // servers that began connecting before this (now()) are retired: RECONNECT
  bool replaced_by_reconnect(const PoolServer& server) const { return server.connect_started() < reconnect_before_; }
  void retire_servers(const char* why);  // reconnect, close_for_pause
  bool auto_database_ = false;
  bool ever_logged_in_ = false;
  double unused_since_;
  int servers_alive_ = 0;
  // A worker that asked for a slot while nothing here was idle: the next server given back closes for it.
  struct OwedShed {
    ShedRequest request;
    double asked_at;
    int worker;
  };
  // Sharing the budget with other workers' pools of this key (pool_sharing.cpp).
  void note_demand(int taking);  // a client asked: `taking` 1 when it takes an idle server at once
  int demand() const;  // the most clients that wanted a server at once, lately
  void roll_demand_window(double now);
  void ask_for_slot(double now);
  bool shared_budget_spent() const;
  bool evict_for_waiters(double now);
  bool fair_to_give(const ShedRequest& there) const;
  ShedRequest shed_request() const;
  bool give_to_starving_worker(PoolServer* server);
  bool claim_wanted_slot();
  void forget_slot_request(double now);
  void shed(PoolServer* server, int to_worker);

  double last_shed_request_ = 0;
  double last_evict_request_ = 0;  // when it last asked other workers to close an idle server (evict_for_waiters)
  double last_shed_ = -1e9;  // when this pool last gave a server's slot up to a starving worker
  int demand_peak_ = 0;         // busy servers plus waiting clients, at most, in the current window
  int demand_peak_before_ = 0;  // and in the window before
  double demand_window_start_ = 0;
  std::optional<OwedShed> owed_shed_;
  ByteCounters byte_counters_;
  IntrusiveList<PoolServer, &PoolServer::pool_node> idle_;
  IntrusiveList<PoolServer, &PoolServer::pool_node> busy_;
  IntrusiveList<PoolClient, &PoolClient::wait_node> waiting_;
};

}  // namespace pgmux::proxy
