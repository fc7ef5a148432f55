// A worker: one thread, one libuv loop, its own listener sockets (SO_REUSEPORT), clients and pools
// (DESIGN.md §4). Other threads talk to it only through post().
#pragma once
#include <uv.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy/client/client_conn.hpp"
#include "proxy/net/intrusive_list.hpp"
#include "proxy/net/uv_handle.hpp"
#include "proxy/ops/metrics.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/ops/snapshot.hpp"
#include "routing/balancer.hpp"
#include "routing/classifier.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// Pools see their worker through PoolHost (pool_server.hpp): the clock, the config's timeouts, the metrics and
// where server connections come from.
class Worker final : public PoolHost {
 public:
  // listen_fds are bound, listening-ready sockets this worker owns from now on.
  Worker(int index, SharedState& shared, std::vector<int> listen_fds, std::function<void()> on_exit);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();
  // Thread-safe: runs fn on this worker's loop. False when the loop has ended (fn is dropped).
  bool post(std::function<void(Worker&)> fn);
  // Thread-safe: a reloaded config and the backends view that matches its backend list, taken together.
  void apply_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const routing::BackendsView> view);
  // Thread-safe. Graceful: stop accepting and let sessions finish (up to shutdown_timeout); else close now.
  void shutdown(bool graceful);

  // Loop-thread API.
  uv_loop_t* loop() { return &loop_; }
  int index() const { return index_; }
  double now() const override { return static_cast<double>(uv_now(&loop_)) / 1000.0; }
  uint32_t max_message_size() const { return config_->max_message_size; }
  bool shutting_down() const override { return shutting_down_; }
  bool paused(const std::string& database) const override { return shared_.paused.is_paused(database); }
  const conf::Timeouts& timeouts() const override { return config_->timeouts; }
  const std::shared_ptr<const conf::Config>& config() const { return config_; }
  CancelRegistry& cancels() { return shared_.cancels; }
  uint64_t next_server_id() { return ++shared_.next_server_id; }
  PinCounters& pins() { return shared_.pins; }
  SharedState& shared() { return shared_; }
  // The TLS context new client connections use, null while tls.client.mode is disable.
  std::shared_ptr<const TlsServerContext> client_tls() const { return shared_.client_tls.load(); }
  // The TLS context of a backend's server connections, null when its sslmode is disable.
  std::shared_ptr<const TlsClientContext> server_tls(const std::string& backend) const {
    auto contexts = shared_.backend_tls.load();
    auto it = contexts->find(backend);
    return it == contexts->end() ? nullptr : it->second;
  }

  // Changes whenever an answer of pool_for may (a reload, a pool retired or re-keyed): a cached answer holds while
  // it stays the same.
  uint64_t pool_generation() const { return pool_lookups_generation_; }
  // The pool of a client's (database, user) on the backend at backend_index of the current config. login_database
  // and login_user are the client's entries from the config it logged in under: they fix the server database,
  // and stand in for sizes and password once a reload removed them. mode is the client's pool mode. Null, with
  // *failure set, when there is no such backend or its address does not resolve.
  Pool* pool_for(const std::string& requested_database, const conf::Database& login_database,
                 const conf::User& login_user, conf::PoolMode mode, int backend_index,
                 std::optional<FailureReport>* failure);
  // Asks every other worker to close one idle server of this pool key (this worker's pool is starving).
  void request_shed(const std::string& key, const ShedRequest& request) override;
  void give_slot(const Pool& from, int to_worker) override;
  bool evict_idle_server(const Pool& starving) override;
  void report_refused(const std::string& backend, const std::string& error) override;
  // A ServerConn of this pool on this worker's loop.
  PoolServer* create_server(Pool& pool) override;
  // Thread-safe: a new backends view from the prober; this worker picks it up on its loop.
  void publish_view(std::shared_ptr<const routing::BackendsView> view);
  const routing::BackendsView& view() const { return *view_; }
  // Fills out->address (and `resolved` for a host name); false with why when a host name is not resolved yet.
  bool backend_address(size_t index, BackendAddress* out, std::string* error) const;
  routing::Classifier& classifier() { return *classifier_; }
  // A buffer for a request rewritten on its way to a server (renamed prepared statements), reused from request to
  // request: empty when handed out; whatever a large request made it grow to is given back by done_rewriting.
  protocol::ByteVector& rewrite_buffer() {
    rewrite_buffer_.clear();
    return rewrite_buffer_;
  }
  void done_rewriting() {
    if (rewrite_buffer_.capacity() > kKeptRewriteBuffer) protocol::ByteVector().swap(rewrite_buffer_);
  }
  // The server names of the request a client is forwarding (ClientConn::forward_renamed): cleared and filled by
  // each use, its vectors keeping their capacity.
  BatchServerNames& batch_server_names() { return batch_server_names_; }
  routing::Balancer& balancer() { return balancer_; }
  // Clients waiting for a primary (failover) are woken on every new view.
  void wait_for_primary(ClientConn* client) {
    if (!client->state_wait_node.linked()) primary_waiters_.push_back(client);
  }
  // PAUSE: clients held at a transaction boundary; the tick releases them once their database is resumed.
  void hold_paused(ClientConn* client) {
    if (!client->state_wait_node.linked()) paused_.push_back(client);
  }
  void stop_holding(ClientConn* client) { paused_.remove(client); }
  void stop_waiting_for_primary(ClientConn* client) { primary_waiters_.remove(client); }
  // Reads waiting for a standby to replay what they must see (routing.causal_wait), for up to seconds_left: woken
  // by every new view and by a timer at the earliest deadline.
  void wait_for_replay(ClientConn* client, double seconds_left);
  void stop_waiting_for_replay(ClientConn* client) { replay_waiters_.remove(client); }
  // Requests waiting for their database's first function catalog (only right after pgmux starts, or when a
  // database is new to it): polled every few milliseconds while any waits, each for up to kFirstCatalogWait.
  void wait_for_catalog(ClientConn* client);
  void stop_waiting_for_catalog(ClientConn* client) { catalog_waiters_.remove(client); }
  const protocol::ScramSecret* scram_secret_for(const conf::User& user);
  // A standby refused a session of this (database, user) for its default isolation level, SERIALIZABLE, set
  // where pgmux cannot see it (ALTER ROLE / DATABASE ... SET): the pair's next sessions on this worker start with
  // their reads on the primary instead of each trying a standby once first. Forgotten at a reload, and one
  // routing.function_catalog_refresh after it was learned (the catalog's own bound on how long DDL made other
  // than through pgmux goes unseen): an ALTER ROLE ... RESET then costs one refusal, not every read on the primary.
  void learn_serializable_default(const std::string& database, const std::string& user) {
    serializable_defaults_[{database, user}] = now();
  }
  bool serializable_default_of(const std::string& database, const std::string& user) const;

  void add_client(ClientConn* client);
  void remove_client(ClientConn* client);

  // Written by this worker only; read by scrapes from any thread.
  WorkerMetrics& metrics() override { return metrics_; }
  const WorkerMetrics& metrics() const { return metrics_; }
  const ByteCounters& client_byte_counters() const { return client_byte_counters_; }  // its clients count here
  // The picture of this worker's clients, servers and pools (snapshot.cpp).
  WorkerSnapshot snapshot();
  void keep_totals_of(Pool& pool);  // snapshot.cpp: before a pool is deleted
  // RECONNECT: the server connections of `database`'s pools (every pool's when empty) are replaced.
  void reconnect_pools(const std::string& database) {
    for (auto& entry : pools_) {
      if (database.empty() || entry.second->database_name() == database) entry.second->reconnect();
    }
  }
  // PAUSE done: the server connections of `database`'s pools (every pool's when empty) close.
  void close_paused_pools(const std::string& database) {
    for (auto& entry : pools_) {
      if (database.empty() || entry.second->database_name() == database) entry.second->close_for_pause();
    }
  }
  // The client with this id on this worker, or null.
  ClientConn* find_client(uint64_t id) {
    return find_client_where([id](const ClientConn* c) { return c->id() == id; });
  }
  // The client on this worker that holds this cancel slot, or null (it has gone).
  ClientConn* client_with_cancel_slot(const CancelSlot* slot) {
    return find_client_where([slot](const ClientConn* c) { return c->cancel_slot() == slot; });
  }
  // The first client on this worker for which `match` holds, or null: a walk over them all (admin commands and
  // cancel requests, not per message).
  template <typename Match>
  ClientConn* find_client_where(Match&& match) {
    ClientConn* found = nullptr;
    clients_.for_each([&](ClientConn* client) {
      if (!found && match(client)) found = client;
    });
    return found;
  }
  // Server S-lost_server of backend backend_index ended as the whole server does (ServerConn::ended_with_backend):
  // this worker's idle connections to that backend are closed, in every pool.
  void close_idle_servers_to(int backend_index, uint64_t lost_server);

 private:
  void run();
  void open_listeners();
  void begin_shutdown(bool graceful);
  void finish();
  void tick();
  void follow_resolved_address(Pool& pool, const routing::BackendStatus& status);
  void on_view(std::shared_ptr<const routing::BackendsView> view);
  void on_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const routing::BackendsView> view);
  std::vector<Pool*> reconfigure_pools();
  void remove_empty_pools();
  void retire_unused_auto_pools(double now);
  std::string current_pool_key(const std::string& database, const std::string& user,
                               const conf::Backend& backend) const;
  Pool::Limits pool_limits(const std::string& key, const std::string& database_name, const conf::Database& database,
                           const conf::User& user, bool database_kept, bool user_kept);
  void wake_primary_waiters();
  void wake_replay_waiters();
  static void on_replay_timer(uv_timer_t* handle);
  static void on_catalog_timer(uv_timer_t* handle);
  void poll_catalog_waiters();
  void release_resumed();
  static void on_connection(uv_stream_t* server, int status);
  static void on_async(uv_async_t* handle);
  static void on_tick(uv_timer_t* handle);
  static void on_shutdown_timer(uv_timer_t* handle);

  int index_;
  SharedState& shared_;
  std::vector<int> listen_fds_;
  std::function<void()> on_exit_;
  std::thread thread_;
  uv_loop_t loop_;
  // The loop runs until finish() closes these; the worker object outlives the run.
  UvAsync<Worker> async_{this};
  UvTimer<Worker> tick_timer_{this};
  UvTimer<Worker> shutdown_timer_{this};
  UvTimer<Worker> replay_timer_{this};  // the earliest deadline of replay_waiters_
  uint64_t replay_timer_due_ = 0;       // loop time (ms) it fires at, while active
  UvTimer<Worker> catalog_timer_{this};  // polls catalog_waiters_ while there are any
  size_t next_evict_worker_ = 0;         // the worker evict_idle_server asks next
  std::vector<std::unique_ptr<UvTcp<Worker>>> listeners_;
  std::mutex inbox_mutex_;
  std::vector<std::function<void(Worker&)>> inbox_;
  bool inbox_closed_ = false;
  std::shared_ptr<const conf::Config> config_;
  // By identity (pool_key in worker_pools.cpp); draining pools stay here under a key pool_for never asks for.
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  uint64_t drained_pools_ = 0;
  std::vector<PoolRow> retired_pool_totals_;  // WorkerSnapshot::retired
  // pool_for's recent answers: its key costs a few allocations to build, and a transaction-mode client asks for a
  // pool at every transaction. One slot per backend index (modulo); all forgotten whenever the config changes or
  // a pool leaves pools_ or changes its key (forget_pool_lookups).
  struct PoolLookup {
    std::string database, user, server_database;
    conf::PoolMode mode{};
    bool through_wildcard = false;
    int backend = -1;
    Pool* pool = nullptr;
  };
  std::array<PoolLookup, 8> pool_lookups_;
  uint64_t pool_lookups_generation_ = 1;  // ClientConn's own pool cache holds while it stays the same
  void forget_pool_lookups() {
    for (PoolLookup& lookup : pool_lookups_) lookup.pool = nullptr;
    ++pool_lookups_generation_;
  }
  static constexpr size_t kKeptRewriteBuffer = 64 * 1024;
  protocol::ByteVector rewrite_buffer_;
  BatchServerNames batch_server_names_;
  std::map<std::string, std::pair<std::string, protocol::ScramSecret>> scram_cache_;
  std::map<std::pair<std::string, std::string>, double> serializable_defaults_;  // learned at (now())
  IntrusiveList<ClientConn, &ClientConn::worker_node> clients_;
  IntrusiveList<ClientConn, &ClientConn::state_wait_node> primary_waiters_;
  IntrusiveList<ClientConn, &ClientConn::state_wait_node> replay_waiters_;
  IntrusiveList<ClientConn, &ClientConn::state_wait_node> paused_;
  IntrusiveList<ClientConn, &ClientConn::state_wait_node> catalog_waiters_;
  std::shared_ptr<const routing::BackendsView> view_;
  std::unique_ptr<routing::Classifier> classifier_;
  routing::Balancer balancer_;
  bool shutting_down_ = false;
  bool finished_ = false;
  double wall_offset_ = 0;  // wall clock less loop clock, for the times snapshot() shows
  WorkerMetrics metrics_;
  ByteCounters client_byte_counters_{&metrics_.client_bytes_received, &metrics_.client_bytes_sent};
};

}  // namespace pgmux::proxy
