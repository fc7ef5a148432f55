// SHOW STATS, STATS_TOTALS, STATS_AVERAGES, TOTALS, MEM and FDS with PgBouncer 1.25's columns in its order, then
// pgmux's own. PgBouncer averages over its last stats_period; pgmux has no such period and averages since start
// (per second for counts and bytes, per transaction, query or assignment for times).
#include <map>

#include "proxy/ops/admin/commands.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/net/wall_clock.hpp"

namespace pgmux::proxy::admin {

namespace {

uint64_t average(uint64_t total, uint64_t count) { return count == 0 ? 0 : total / count; }

// A database's counters since start. received / sent are PgBouncer's sense: what clients sent (and pgmux passed
// on to servers) and what clients were sent (from servers).
struct Totals {
  uint64_t assignments = 0, xacts = 0, queries = 0, received = 0, sent = 0;
  uint64_t xact_us = 0, query_us = 0, wait_us = 0;
  uint64_t client_parses = 0, server_parses = 0, binds = 0;  // named prepared statements, transaction pooling
};

Totals totals_of(const PoolStats& p) {
  return {p.server_assignments, p.xact_count, p.query_count, p.bytes_sent,    p.bytes_received, p.xact_time_us,
          p.query_time_us,      p.wait_time_us, p.client_parses, p.server_parses, p.binds};
}

std::map<std::string, Totals> totals_by_database(const Context& context) {
  std::map<std::string, PoolStats> by_database;
  for (const auto& [key, p] : merge_pools(*context.snapshots)) by_database[p.database] += p.totals;
  for (const WorkerSnapshot& w : *context.snapshots) {
    for (const PoolRow& p : w.retired) by_database[p.database] += p.totals;
  }
  std::map<std::string, Totals> out;
  for (const auto& [database, p] : by_database) out[database] = totals_of(p);
  return out;
}

// Counts per second since start, and times per event, in PgBouncer's order of the averages.
std::vector<uint64_t> averages(const Totals& t, const Context& context) {
  const double uptime = std::max(1.0, wall_clock_seconds() - context.shared.started_unix);
  auto rate = [&](uint64_t total) { return static_cast<uint64_t>(static_cast<double>(total) / uptime); };
  return {rate(t.assignments),         rate(t.xacts),        rate(t.queries),
          rate(t.received),            rate(t.sent),         average(t.xact_us, t.xacts),
          average(t.query_us, t.queries), average(t.wait_us, t.assignments), rate(t.client_parses),
          rate(t.server_parses),       rate(t.binds)};
}

std::vector<uint64_t> totals_row(const Totals& t) {
  return {t.assignments, t.xacts,   t.queries,       t.received,      t.sent, t.xact_us,
          t.query_us,    t.wait_us, t.client_parses, t.server_parses, t.binds};
}

const std::vector<const char*> kTotalNames = {"server_assignment_count", "xact_count", "query_count", "received",
                                               "sent", "xact_time", "query_time", "wait_time",
                                               "client_parse_count", "server_parse_count", "bind_count"};
const std::vector<const char*> kAverageNames = {"server_assignment_count", "xact_count", "query_count", "recv",
                                                 "sent", "xact_time", "query_time", "wait_time",
                                                 "client_parse_count", "server_parse_count", "bind_count"};

}  // namespace

Answer show_stats(const Input&, Context& context) {
  ResultSet r;
  r.column("database");
  for (const char* name : kTotalNames) r.column(std::string("total_") + name, kInt8);
  for (const char* name : kAverageNames) r.column(std::string("avg_") + name, kInt8);
  r.column("total_requests", kInt8);  // PgBouncer's name for total_query_count before 1.8; old exporters read it
  for (const auto& [database, t] : totals_by_database(context)) {
    r.row().cell(database);
    for (uint64_t v : totals_row(t)) r.cell(v);
    for (uint64_t v : averages(t, context)) r.cell(v);
    r.cell(t.queries);
  }
  return Answer::of(std::move(r));
}

Answer show_stats_totals(const Input&, Context& context) {
  ResultSet r;
  r.column("database");
  for (const char* name : {"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
                           "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
                           "bind_count"}) {
    r.column(name, kInt8);
  }
  for (const auto& [database, t] : totals_by_database(context)) {
    r.row().cell(database);
    for (uint64_t v : totals_row(t)) r.cell(v);
  }
  return Answer::of(std::move(r));
}

Answer show_stats_averages(const Input&, Context& context) {
  ResultSet r;
  r.column("database");
  for (const char* name : {"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
                           "xact_time", "query_time", "wait_time", "avg_client_parse_count",
                           "avg_server_parse_count", "avg_bind_count"}) {
    r.column(name, kInt8);
  }
  for (const auto& [database, t] : totals_by_database(context)) {
    r.row().cell(database);
    for (uint64_t v : averages(t, context)) r.cell(v);
  }
  return Answer::of(std::move(r));
}

Answer show_totals(const Input&, Context& context) {
  PoolStats sum;
  for (const auto& [key, p] : merge_pools(*context.snapshots)) sum += p.totals;
  for (const WorkerSnapshot& w : *context.snapshots) {
    for (const PoolRow& p : w.retired) sum += p.totals;
  }
  const Totals all = totals_of(sum);
  ResultSet r;
  r.column("name").column("value", kInt8);
  const std::vector<uint64_t> total_values = totals_row(all), average_values = averages(all, context);
  for (size_t i = 0; i < kTotalNames.size(); ++i) {
    r.row().cell(std::string("total_") + kTotalNames[i]).cell(total_values[i]);
  }
  for (size_t i = 0; i < kAverageNames.size(); ++i) {
    r.row().cell(std::string("avg_") + kAverageNames[i]).cell(average_values[i]);
  }
  return Answer::of(std::move(r));
}

// PgBouncer's slab caches; pgmux allocates each connection and pool on its own and keeps no free ones.
Answer show_mem(const Input&, Context& context) {
  uint64_t clients = 0, servers = 0, pools = 0;
  for (const WorkerSnapshot& s : *context.snapshots) {
    clients += s.clients.size();
    servers += s.servers.size();
    pools += s.pools.size();
  }
  const ObjectSizes sizes = object_sizes();
  ResultSet r;
  r.column("name").column("size", kInt8).column("used", kInt8).column("free", kInt8).column("memtotal", kInt8);
  auto add = [&](const char* name, size_t size, uint64_t used) {
    r.row().cell(name).cell(static_cast<uint64_t>(size)).cell(used).cell(uint64_t{0}).cell(size * used);
  };
  add("client_cache", sizes.client, clients);
  add("server_cache", sizes.server, servers);
  add("pool_cache", sizes.pool, pools);
  return Answer::of(std::move(r));
}

// Every client and server socket. pgmux does no online restart, so the columns PgBouncer fills to hand a
// connection to its successor (cancel key, password, SCRAM keys) stay NULL: no secret leaves the process.
Answer show_fds(const Input&, Context& context) {
  std::map<uint64_t, int> client_fds, server_fds;  // by id, for the link column
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) client_fds[c.id] = c.socket.fd;
    for (const ServerRow& sv : s.servers) server_fds[sv.id] = sv.socket.fd;
  }
  ResultSet r;
  r.column("fd", kInt8).column("task").column("user").column("database").column("addr").column("port", kInt8);
  r.column("cancel", kInt8).column("link", kInt8).column("client_encoding").column("std_strings");
  r.column("datestyle").column("timezone").column("password").column("scram_client_key").column("scram_server_key");
  auto optional_cell = [&](const std::optional<std::string>& value) {
    if (value) {
      r.cell(*value);
    } else {
      r.null_cell();
    }
  };
  auto add = [&](const char* task, const std::string& user, const std::string& database, const std::string& addr,
                 int port, std::optional<int> link, const SocketFacts& socket) {
    r.row().cell(socket.fd).cell(task).cell(user).cell(database).cell(addr).cell(port).null_cell();
    optional_cell(link ? std::optional<std::string>(std::to_string(*link)) : std::nullopt);
    for (const auto* value : {&socket.client_encoding, &socket.std_strings, &socket.datestyle, &socket.timezone}) {
      optional_cell(*value);
    }
    r.null_cell().null_cell().null_cell();
  };
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      std::optional<int> link;
      if (c.servers.rfind("S-", 0) == 0) link = server_fds[std::stoull(c.servers.substr(2))];
      add("client", c.user, c.database, c.addr, c.port, link, c.socket);
    }
    for (const ServerRow& sv : s.servers) {
      std::optional<int> link;
      if (sv.client_id) link = client_fds[sv.client_id];
      add("server", sv.user, sv.database, sv.addr, sv.port, link, sv.socket);
    }
  }
  return Answer::of(std::move(r));
}

}  // namespace pgmux::proxy::admin
