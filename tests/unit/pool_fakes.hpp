// Fakes for unit tests of Pool and of what leases its servers: a fake clock (FakeHost), fake clients and fake
// server connections; no sockets, no loop. A fake server logs in, fails or answers pgmux's own queries (DISCARD
// ALL, parameter SETs) when the test says.
#pragma once
#include <doctest/doctest.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/server/pool.hpp"

namespace pool_fakes {

using namespace pgmux::proxy;
using pgmux::conf::PoolMode;
using pgmux::conf::Timeouts;


class FakeServer final : public PoolServer {
 public:
  FakeServer(Pool& pool, uint64_t id) : PoolServer(id), pool_(pool) { pool_.server_created(); }

  // What PostgreSQL does, when the test says so.
  void log_in(SessionParams reported = {}) {
    reported_ = std::move(reported);
    pool_.set_state(this, ServerState::Login);
    pool_.on_login_done(this);
  }
  // As ServerConn::fail during login: the connection closes, then the pool hears why.
  void refuse_login(const std::string& sqlstate, const std::string& message) {
    fail_login(FailureReport::relayed(Failure::ServerLoginRefused, sqlstate, message));
  }
  void fail_login(FailureReport report) {
    close();
    pool_.on_server_failed(this, std::move(report));
  }
  // Ends the pgmux query in flight (its ReadyForQuery).
  void answer(bool ok) {
    REQUIRE(done_);
    QueryDone done = std::move(done_);
    done_ = nullptr;
    done(ok, ok ? "" : "22023", ok ? "" : "invalid value for parameter");
  }
  bool query_pending() const { return static_cast<bool>(done_); }
  Pool& pool() { return pool_; }  // as ServerConn::pool(), for leases

  std::vector<std::string> queries;  // pgmux's own, in order
  bool connecting = false;
  bool usable = true;  // what reusable() says while open (false: mid-transaction, say)
  bool changed_session = false;
  int forgot_session = 0;

  bool open() const override { return open_; }
  void close() override {
    if (!open_) return;
    open_ = false;
    if (done_) {
      QueryDone done = std::move(done_);
      done_ = nullptr;
      done(false, "08006", "server connection lost");
    }
    pool_.on_server_closing(this);
    client_ = nullptr;
    pool_.server_deleted();  // as if its close callback ran at once
  }
  void fail_timeout() override { fail_login(Failure::ServerConnectTimeout); }
  bool reusable() const override { return open_ && usable; }
  const SessionParams& params() const override { return reported_; }
  void link(PoolClient* client) override { client_ = client; }
  void unlink() override { client_ = nullptr; }
  PoolClient* linked_client() const override { return client_; }
  void run_pool_query(std::string sql, QueryDone done) override {
    queries.push_back(std::move(sql));
    done_ = std::move(done);
    pool_.set_state(this, ServerState::Internal);
  }
  bool session_changed() const override { return changed_session; }
  void forget_session() override {
    ++forgot_session;
    applied_unreported.clear();
  }

 protected:
  void start_connect() override { connecting = true; }

 private:
  Pool& pool_;
  bool open_ = true;
  SessionParams reported_;
  PoolClient* client_ = nullptr;
  QueryDone done_;
};

class FakeClient final : public PoolClient {
 public:
  FakeClient(std::string name, std::vector<std::string>& events) : name_(std::move(name)), events_(events) {}

  // As ClientConn::acquire.
  void ask(Pool& pool, double now) {
    started_ = now;
    pool.request(this);
  }
  // As ClientConn handing its server back at a transaction boundary or on leaving.
  void give_back(Pool& pool) {
    REQUIRE(server != nullptr);
    PoolServer* s = server;
    server = nullptr;
    pool.release(s);
  }

  SessionParams wanted;
  PoolServer* server = nullptr;
  std::string error_state;
  std::string error_message;
  std::string error_detail;
  std::optional<Failure> failure;
  bool fatal = false;
  int drained = 0;

  const SessionParams& wanted_params() const override { return wanted; }
  double wait_started() const override { return started_; }
  void on_server_ready(PoolServer* s) override {
    server = s;
    events_.push_back(name_ + " got S-" + std::to_string(s->id()));
  }
  void on_server_unavailable(const FailureReport& report) override {
    heard(report);
    events_.push_back(name_ + " refused " + error_state);
  }
  void on_pool_draining(Pool*) override { ++drained; }
  void fail(const FailureReport& report) override {
    fatal = true;
    heard(report);
  }

 private:
  void heard(const FailureReport& report) {
    failure = report.failure();
    error_state = report.sqlstate();
    error_message = report.message();
    error_detail = report.detail();
  }

  std::string name_;
  std::vector<std::string>& events_;
  double started_ = 0;
};

class FakeHost final : public PoolHost {
 public:
  double clock = 1000;
  Timeouts config_timeouts;
  bool stopping = false;
  WorkerMetrics counters;
  std::vector<std::unique_ptr<FakeServer>> servers;  // every one created, closed ones too
  int shed_requests = 0;
  ShedRequest shed_request;  // the last one
  std::vector<int> slots_given;  // to which worker, in order

  double now() const override { return clock; }
  const Timeouts& timeouts() const override { return config_timeouts; }
  bool shutting_down() const override { return stopping; }
  WorkerMetrics& metrics() override { return counters; }
  PoolServer* create_server(Pool& pool) override {
    servers.push_back(std::make_unique<FakeServer>(pool, servers.size() + 1));
    return servers.back().get();
  }
  void request_shed(const std::string&, const ShedRequest& request) override {
    ++shed_requests;
    shed_request = request;
  }
  void give_slot(const Pool&, int to_worker) override { slots_given.push_back(to_worker); }
  std::vector<Pool*> pools;  // this worker's, for evict_idle_server
  int evictions_elsewhere = 0;
  bool evict_idle_server(const Pool& starving) override {
    for (Pool* pool : pools) {
      if (pool != &starving && pool->evict_idle_for(starving.limits())) return true;
    }
    ++evictions_elsewhere;
    return false;
  }
  void report_refused(const std::string& backend, const std::string&) override { refused.push_back(backend); }
  std::vector<std::string> refused;  // backends whose connection was refused, in order
};

// Declaration order is destruction order reversed: the pool closes its servers and tells its waiting clients
// before they go.
struct PoolFixture {
  FakeHost host;
  std::vector<std::string> events;
  std::deque<FakeClient> clients;
  std::shared_ptr<PoolBudget> budget;
  std::unique_ptr<Pool> pool;

  void make_pool(int pool_size, PoolMode mode, int reserve = 0, int min_size = 0) {
    Pool::Limits limits;
    budget = std::make_shared<PoolBudget>(pool_size);
    limits.pool = budget;
    limits.reserve = reserve;
    limits.min_size = min_size;
    limits.login_params = std::make_shared<SharedLoginParams>();
    BackendAddress backend;
    backend.name = "b1";
    backend.host = "127.0.0.1";
    backend.port = 5432;
    ServerLogin login;
    login.user = "app";
    login.database = "app";
    pool = std::make_unique<Pool>(host, std::string("app\0app", 7), "app/app@b1", 0, backend, login, limits, mode);
  }
  FakeClient& client(const std::string& name) { return clients.emplace_back(name, events); }
  FakeServer& server(size_t number) { return *host.servers.at(number - 1); }  // S-1 is server(1)
  void tick() { pool->tick(host.clock, host.config_timeouts); }
  // A client asks, a new server is opened for it and logs in: the client holds it.
  FakeClient& client_holding_server(const std::string& name) {
    FakeClient& c = client(name);
    c.ask(*pool, host.clock);
    host.servers.back()->log_in();
    REQUIRE(c.server == host.servers.back().get());
    return c;
  }
};

inline SessionParams params(const std::string& name, const std::string& value) {
  SessionParams p;
  p.set(name, value);
  return p;
}

}  // namespace pool_fakes
