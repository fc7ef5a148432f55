#include "proxy/ops/snapshot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include "proxy/client/client_conn.hpp"
#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/wall_clock.hpp"

namespace pgmux::proxy {

namespace {

// Loop times are monotonic seconds; rows carry unix seconds.
struct WallClock {
  double loop_now;
  double unix_now;
  double to_unix(double loop_time) const { return loop_time > 0 ? unix_now - (loop_now - loop_time) : 0; }
};

void split_peer(const std::string& peer, std::string* addr, int* port) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string::npos) {
    *addr = peer;
    return;
  }
  *addr = peer.substr(0, colon);
  *port = std::atoi(peer.c_str() + colon + 1);
}

const char* client_state_text(const ClientConn& c) {
  switch (c.state()) {
    case ClientState::Startup:
    case ClientState::AuthLookup:
    case ClientState::Auth: return "login";
    case ClientState::Closing: return "closing";
    case ClientState::LoginWait:
    case ClientState::LoginPrimaryWait:
    case ClientState::ServerWait: return "waiting";
    default: break;
  }
  if (c.is_admin() || c.in_transaction()) return "active";
  return c.waiting() ? "waiting" : "idle";
}

const char* server_state_text(ServerState s) {
  switch (s) {
    case ServerState::Connecting:
    case ServerState::Login: return "login";
    case ServerState::Idle: return "idle";
    case ServerState::Internal: return "used";  // pgmux's own reset or sync queries
    case ServerState::Linked: return "active";
    case ServerState::Closing: return "closing";
  }
  return "?";
}

// The session parameters SHOW FDS reports, from what the client asked for or the server reported.
template <typename Params>
void read_session_facts(const Params& params, SocketFacts* facts) {
  auto value = [&](const char* name) -> std::optional<std::string> {
    if (const std::string* v = params.find(name)) return *v;
    return std::nullopt;
  };
  facts->client_encoding = value("client_encoding");
  facts->std_strings = value("standard_conforming_strings");
  facts->datestyle = value("DateStyle");
  facts->timezone = value("TimeZone");
}

SocketFacts socket_facts(const StreamConn& conn) {
  SocketFacts facts;
  facts.fd = conn.socket_fd();
  conn.local_endpoint(&facts.local_addr, &facts.local_port);
  if (conn.tls()) facts.tls = conn.tls()->description();
  return facts;
}

}  // namespace

ObjectSizes object_sizes() { return {sizeof(ClientConn), sizeof(ServerConn), sizeof(Pool)}; }

namespace {

ClientRow client_row(const ClientConn* c, const WallClock& clock, int worker) {
  ClientRow row;
  row.id = c->id();
  row.user = c->user();
  row.database = c->database();
  row.state = client_state_text(*c);
  split_peer(c->peer(), &row.addr, &row.port);
  row.connect_time = clock.to_unix(c->created_at());
  row.request_time = clock.to_unix(c->last_activity());
  // (SHOW POOLS' maxwait is the longest of these: a wait for a primary counts as PgBouncer's wait for a server.)
  if (waits_for_pool(c->state()) || c->state() == ClientState::Paused || c->state() == ClientState::PrimaryWait ||
      c->state() == ClientState::LoginPrimaryWait) {
    row.wait_seconds = clock.loop_now - c->wait_started();
  }
  if (const std::string* app = c->wanted_params().find("application_name")) row.application_name = *app;
  row.pool_mode = conf::to_string(c->pool_mode());
  for (const ServerConn* s : {c->primary_server(), c->standby_server()}) {
    if (!s) continue;
    if (!row.servers.empty()) row.servers += ",";
    row.servers += "S-" + std::to_string(s->id());
  }
  row.admin = c->is_admin();
  row.in_transaction = c->in_transaction();
  row.worker = worker;
  row.prepared_statements = c->prepared_statement_count();
  row.socket = socket_facts(*c);
  read_session_facts(c->wanted_params(), &row.socket);
  return row;
}

ServerRow server_row(const ServerConn* s, Pool& pool, const WallClock& clock, int worker) {
  ServerRow row;
  row.id = s->id();
  row.user = pool.login().user;
  row.database = pool.database_name();
  row.backend = pool.backend().name;
  row.state = server_state_text(s->state());
  row.addr = pool.backend().host;
  row.port = pool.backend().port;
  row.connect_time = clock.to_unix(s->connect_started());
  row.request_time = clock.to_unix(s->last_request());
  row.client_id = s->client() ? s->client()->id() : 0;
  row.remote_pid = s->key().process_id;
  row.tx_status = s->tx_status();
  row.owes_replies = s->state() == ServerState::Linked && s->owed_depth() > 0;
  row.prepared_statements = s->server_statements.size() + s->prepared.size();
  row.close_needed = pool.draining();
  row.worker = worker;
  row.socket = socket_facts(*s);
  read_session_facts(s->params(), &row.socket);
  return row;
}

}  // namespace

WorkerSnapshot Worker::snapshot() {
  WorkerSnapshot out;
  out.worker = index_;
  // The loop's clock is in whole milliseconds and cached per loop turn: its distance to the wall clock jitters by a
  // millisecond or two between calls, and a time shown in whole seconds (connect_time) flipped between two SHOWs.
  // One offset, kept until the wall clock is set (NTP, an operator) by more than half a second.
  const double offset = wall_clock_seconds() - now();
  if (wall_offset_ == 0 || std::abs(offset - wall_offset_) > 0.5) wall_offset_ = offset;
  const WallClock clock{now(), now() + wall_offset_};
  clients_.for_each([&](ClientConn* c) { out.clients.push_back(client_row(c, clock, index_)); });
  for (auto& entry : pools_) {
    // A named reference, not a structured binding: clang before 16 cannot capture those in the lambdas below.
    auto& pool = entry.second;
    PoolRow p;
    p.database = pool->database_name();
    p.user = pool->login().user;
    p.backend = pool->backend().name;
    p.pool_mode = conf::to_string(pool->mode());
    p.draining = pool->draining();
    p.pool_size = pool->pool_size();
    p.cl_waiting = static_cast<int>(pool->waiting_count());
    pool->for_each_waiting([&](PoolClient* c) { p.maxwait = std::max(p.maxwait, clock.loop_now - c->wait_started()); });
    pool->for_each_server([&](PoolServer* pooled) {
      auto* s = static_cast<ServerConn*>(pooled);  // a worker's pools hold ServerConns only
      out.servers.push_back(server_row(s, *pool, clock, index_));
      if (s->state() == ServerState::Linked) {
        ++p.sv_active;
        ++p.cl_active;
      } else if (s->state() == ServerState::Idle) {
        ++p.sv_idle;
      } else if (s->logging_in()) {
        ++p.sv_login;
      } else if (s->state() == ServerState::Internal) {
        ++(s->client() ? p.sv_active : p.sv_idle);
      }
    });
    p.totals = pool->stats;
    out.pools.push_back(std::move(p));
  }
  out.retired = retired_pool_totals_;
  return out;
}

// A pool about to be deleted: its counters go on counting in SHOW STATS (PgBouncer's exporters read them as
// counters, which must not go backwards), one row per (database, user, backend).
void Worker::keep_totals_of(Pool& pool) {
  PoolRow row;
  row.database = pool.database_name();
  row.user = pool.login().user;
  row.backend = pool.backend().name;
  row.totals = pool.stats;
  if (row.totals.server_assignments == 0 && row.totals.query_count == 0) return;  // a "*" name no server ever served
  for (PoolRow& kept : retired_pool_totals_) {
    if (kept.database == row.database && kept.user == row.user && kept.backend == row.backend) {
      kept.totals += row.totals;
      return;
    }
  }
  retired_pool_totals_.push_back(std::move(row));
}

std::map<PoolKey, PoolRow> merge_pools(const std::vector<WorkerSnapshot>& snapshots) {
  std::map<PoolKey, PoolRow> pools;
  for (const WorkerSnapshot& s : snapshots) {
    for (const PoolRow& p : s.pools) {
      auto [it, fresh] = pools.try_emplace({p.database, p.user, p.backend}, p);
      if (fresh) continue;
      PoolRow& m = it->second;
      m.cl_active += p.cl_active;
      m.cl_waiting += p.cl_waiting;
      m.sv_active += p.sv_active;
      m.sv_idle += p.sv_idle;
      m.sv_login += p.sv_login;
      m.maxwait = std::max(m.maxwait, p.maxwait);
      m.draining = m.draining || p.draining;
      m.totals += p.totals;
    }
  }
  return pools;
}

size_t busy_servers_on(const std::vector<WorkerSnapshot>& snapshots, const std::string& backend) {
  size_t busy = 0;
  for (const WorkerSnapshot& s : snapshots) {
    for (const ServerRow& server : s.servers) {
      busy += server.backend == backend && (server.tx_status != 'I' || server.owes_replies);
    }
  }
  return busy;
}

void gather_snapshots(SharedState& shared, PostBack post_back, std::function<void(std::vector<WorkerSnapshot>)> done) {
  struct Gathering {
    std::mutex mutex;
    std::vector<WorkerSnapshot> parts;
    size_t remaining = 0;
    PostBack post_back;
    std::function<void(std::vector<WorkerSnapshot>)> done;
    void arrive(WorkerSnapshot* part) {
      std::unique_lock lock(mutex);
      if (part) parts.push_back(std::move(*part));
      if (--remaining > 0) return;
      std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.worker < b.worker; });
      lock.unlock();
      post_back([done = std::move(done), parts = std::move(parts)]() mutable { done(std::move(parts)); });
    }
  };
  auto gathering = std::make_shared<Gathering>();
  gathering->remaining = shared.workers.size();
  gathering->post_back = std::move(post_back);
  gathering->done = std::move(done);
  if (shared.workers.empty()) {
    gathering->post_back([gathering] { gathering->done({}); });
    return;
  }
  for (Worker* worker : shared.workers) {
    const bool posted = worker->post([gathering](Worker& w) {
      WorkerSnapshot part = w.snapshot();
      gathering->arrive(&part);
    });
    if (!posted) gathering->arrive(nullptr);
  }
}

}  // namespace pgmux::proxy
