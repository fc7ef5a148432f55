// A plain-data picture of one worker's clients, servers and pools, taken on that worker's loop. The admin console,
// /status and the connection gauges of /metrics merge the pictures of every worker (gather_snapshots).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "proxy/ops/metrics.hpp"

namespace pgmux::proxy {

class Pool;

struct SharedState;

// What SHOW FDS and SHOW CLIENTS/SERVERS say about the socket itself.
struct SocketFacts {
  int fd = -1;
  std::string local_addr;  // this end; "" when unknown
  int local_port = 0;
  std::string tls;         // "TLSv1.3/TLS_AES_256_GCM_SHA384"; "" for plain text
  // The session's client_encoding, standard_conforming_strings, DateStyle, TimeZone, where known.
  std::optional<std::string> client_encoding, std_strings, datestyle, timezone;
};

struct ClientRow {
  uint64_t id = 0;
  std::string user, database, state;  // state: "login", "active", "idle", "waiting", "closing"
  std::string addr;
  int port = 0;
  double connect_time = 0;            // unix seconds
  double request_time = 0;            // unix seconds of the last request sent or reply finished
  double wait_seconds = 0;            // waiting for a server now: for how long
  std::string application_name;
  std::string pool_mode;
  std::string servers;                // "S-3,S-9": the servers it holds
  size_t prepared_statements = 0;
  // Inside a transaction (BEGIN answered by pgmux included) or owed replies: what PAUSE waits for.
  bool in_transaction = false;
  bool admin = false;                 // connected to the admin console
  int worker = 0;
  SocketFacts socket;
};

struct ServerRow {
  uint64_t id = 0;
  std::string user, database, backend, state;  // state: "login", "idle", "active", "used", "closing"
  std::string addr;
  int port = 0;
  double connect_time = 0;  // unix seconds
  double request_time = 0;  // unix seconds of its last request
  uint64_t client_id = 0;   // 0: not linked
  int32_t remote_pid = 0;
  char tx_status = 'I';
  bool owes_replies = false;  // linked, with a request whose replies are still coming (a switchover waits for it)
  size_t prepared_statements = 0;
  bool close_needed = false;  // its pool drains (backend removed or disabled): closed once released
  int worker = 0;
  SocketFacts socket;
};

// One pool (database, user, backend) on one worker; counters are totals since it was created.
struct PoolRow {
  std::string database, user, backend, pool_mode;
  int cl_active = 0;   // clients linked to a server of this pool
  int cl_waiting = 0;  // clients waiting for one
  int sv_active = 0;   // servers linked to a client
  int sv_idle = 0;
  int sv_login = 0;    // logging in
  double maxwait = 0;  // longest current wait, seconds
  bool draining = false;  // its backend was removed or disabled: no new work
  int pool_size = 0;
  PoolStats totals;  // since the pool was made; SHOW STATS adds those of deleted pools (WorkerSnapshot::retired)
};

struct WorkerSnapshot {
  int worker = 0;
  std::vector<ClientRow> clients;
  std::vector<ServerRow> servers;
  std::vector<PoolRow> pools;
  // The counters of pools deleted since start (a reload, an idle "*" database), one row per (database, user,
  // backend): SHOW STATS and SHOW TOTALS add them, SHOW POOLS does not show them.
  std::vector<PoolRow> retired;
};

// Pools of the same (database, user, backend) on different workers are one pool to the operator: their rows
// summed (maxwait: the longest), keyed by (database, user, backend).
using PoolKey = std::tuple<std::string, std::string, std::string>;
// The byte size of pgmux's per-connection and per-pool objects (SHOW MEM).
struct ObjectSizes {
  size_t client = 0, server = 0, pool = 0;
};
ObjectSizes object_sizes();
std::map<PoolKey, PoolRow> merge_pools(const std::vector<WorkerSnapshot>& snapshots);

// Asks every worker for its snapshot; `done` gets them all (in worker order), run through `post_back` on the
// caller's own loop. Thread-safe. If a worker has stopped, its snapshot is simply missing.
using PostBack = std::function<void(std::function<void()>)>;
void gather_snapshots(SharedState& shared, PostBack post_back, std::function<void(std::vector<WorkerSnapshot>)> done);

// Servers on `backend` inside a transaction or owing replies, in every worker: what a write hold waits for.
size_t busy_servers_on(const std::vector<WorkerSnapshot>& snapshots, const std::string& backend);

}  // namespace pgmux::proxy
