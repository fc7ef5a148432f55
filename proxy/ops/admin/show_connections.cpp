// SHOW POOLS, CLIENTS, SERVERS, STATS, LISTS, DATABASES, USERS: merged from every worker's snapshot. Column names
// follow PgBouncer's where the concept is the same.
#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "proxy/ops/admin/commands.hpp"
#include "proxy/control/shared_state.hpp"

namespace pgmux::proxy::admin {

namespace {

std::map<PoolKey, PoolRow> merged_pools(const Context& context) { return merge_pools(*context.snapshots); }

std::string backend_role(const Context& context, const std::string& backend) {
  for (const routing::BackendStatus& b : context.view->backends) {
    if (b.spec.name == backend) return routing::to_string(b.role);
  }
  return "removed";
}

bool database_paused(const Context& context, const std::string& database) {
  return context.shared.paused.is_paused(database);
}

uint64_t average(uint64_t total, uint64_t count) { return count == 0 ? 0 : total / count; }

}  // namespace

Answer show_pools(const Input&, Context& context) {
  ResultSet r;
  r.column("database").column("user").column("backend").column("role");
  r.column("cl_active", kInt8).column("cl_waiting", kInt8).column("sv_active", kInt8).column("sv_idle", kInt8);
  r.column("sv_login", kInt8).column("maxwait", kInt8).column("maxwait_us", kInt8).column("pool_mode");
  r.column("pool_size", kInt8).column("paused", kBool).column("draining", kBool);
  for (const auto& [key, p] : merged_pools(context)) {
    const auto seconds = static_cast<int64_t>(p.maxwait);
    r.row().cell(p.database).cell(p.user).cell(p.backend).cell(backend_role(context, p.backend));
    r.cell(p.cl_active).cell(p.cl_waiting).cell(p.sv_active).cell(p.sv_idle).cell(p.sv_login);
    r.cell(seconds).cell(static_cast<int64_t>((p.maxwait - static_cast<double>(seconds)) * 1e6)).cell(p.pool_mode);
    r.cell(p.pool_size).cell(database_paused(context, p.database)).cell(p.draining);
  }
  return Answer::of(std::move(r));
}

Answer show_clients(const Input&, Context& context) {
  ResultSet r;
  r.column("id").column("type").column("user").column("database").column("state").column("addr");
  r.column("port", kInt8).column("connect_time").column("request_time").column("wait", kInt8);
  r.column("wait_us", kInt8).column("servers").column("pool_mode").column("application_name");
  r.column("worker", kInt8);
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      const auto wait = static_cast<int64_t>(c.wait_seconds);
      r.row().cell("C-" + std::to_string(c.id)).cell(c.admin ? "admin" : "C").cell(c.user).cell(c.database);
      r.cell(c.state).cell(c.addr).cell(c.port).cell(format_time(c.connect_time)).cell(format_time(c.request_time));
      r.cell(wait).cell(static_cast<int64_t>((c.wait_seconds - static_cast<double>(wait)) * 1e6)).cell(c.servers);
      r.cell(c.admin ? "" : c.pool_mode).cell(c.application_name).cell(c.worker);
    }
  }
  return Answer::of(std::move(r));
}

Answer show_servers(const Input&, Context& context) {
  ResultSet r;
  r.column("id").column("type").column("user").column("database").column("backend").column("state");
  r.column("addr").column("port", kInt8).column("connect_time").column("request_time").column("link");
  r.column("remote_pid", kInt8).column("tx_status").column("prepared_statements", kInt8).column("worker", kInt8);
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ServerRow& sv : s.servers) {
      r.row().cell("S-" + std::to_string(sv.id)).cell("S").cell(sv.user).cell(sv.database).cell(sv.backend);
      r.cell(sv.state).cell(sv.addr).cell(sv.port).cell(format_time(sv.connect_time));
      r.cell(format_time(sv.request_time)).cell(sv.client_id ? "C-" + std::to_string(sv.client_id) : "");
      r.cell(static_cast<int64_t>(sv.remote_pid)).cell(std::string(1, sv.tx_status));
      r.cell(static_cast<uint64_t>(sv.prepared_statements)).cell(sv.worker);
    }
  }
  return Answer::of(std::move(r));
}

Answer show_stats(const Input&, Context& context) {
  std::map<std::string, PoolRow> by_database;
  for (const auto& [key, p] : merged_pools(context)) add_pool_totals(by_database[p.database], p);
  ResultSet r;
  r.column("database");
  for (const char* name : {"total_xact_count", "total_query_count", "total_received", "total_sent",
                           "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_time",
                           "avg_query_time"}) {
    r.column(name, kInt8);
  }
  for (const auto& [database, d] : by_database) {
    r.row().cell(database).cell(d.xact_count).cell(d.query_count).cell(d.bytes_received).cell(d.bytes_sent);
    r.cell(d.xact_time_us).cell(d.query_time_us).cell(d.wait_time_us);
    r.cell(average(d.xact_time_us, d.xact_count)).cell(average(d.query_time_us, d.query_count));
  }
  return Answer::of(std::move(r));
}

Answer show_lists(const Input&, Context& context) {
  int64_t clients = 0, waiting = 0, login = 0, admin = 0, active_servers = 0, idle_servers = 0, login_servers = 0;
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      if (c.admin) {
        ++admin;
      } else if (c.state == "login") {
        ++login;
      } else if (c.state == "waiting") {
        ++waiting;
      } else {
        ++clients;
      }
    }
    for (const ServerRow& sv : s.servers) {
      if (sv.state == "idle") {
        ++idle_servers;
      } else if (sv.state == "login") {
        ++login_servers;
      } else {
        ++active_servers;
      }
    }
  }
  ResultSet r;
  r.column("list").column("items", kInt8);
  auto item = [&](const char* name, int64_t value) { r.row().cell(name).cell(value); };
  item("databases", static_cast<int64_t>(context.config->databases.size()));
  item("users", static_cast<int64_t>(context.config->users.size()));
  item("backends", static_cast<int64_t>(context.config->backends.size()));
  item("pools", static_cast<int64_t>(merged_pools(context).size()));
  item("used_clients", clients);
  item("waiting_clients", waiting);
  item("login_clients", login);
  item("admin_clients", admin);
  item("used_servers", active_servers);
  item("free_servers", idle_servers);
  item("login_servers", login_servers);
  item("workers", static_cast<int64_t>(context.snapshots->size()));
  item("paused_databases", static_cast<int64_t>(context.shared.paused.list().size()));
  return Answer::of(std::move(r));
}

Answer show_databases(const Input&, Context& context) {
  std::map<std::string, int64_t> connections;  // server connections by database
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ServerRow& sv : s.servers) ++connections[sv.database];
  }
  ResultSet r;
  r.column("name").column("database").column("backends").column("pool_size", kInt8).column("min_pool_size", kInt8);
  r.column("reserve_pool", kInt8).column("pool_mode").column("max_connections", kInt8);
  r.column("current_connections", kInt8).column("paused", kBool);
  auto add = [&](const std::string& name, const conf::Database& d) {
    std::string backends;
    for (const std::string& b : d.backends) backends += (backends.empty() ? "" : ",") + b;
    r.row().cell(name).cell(d.server_database.empty() ? name : d.server_database);
    r.cell(backends.empty() ? "*" : backends).cell(d.pool_size).cell(d.min_pool_size).cell(d.reserve_pool_size);
    r.cell(conf::to_string(d.pool_mode)).cell(d.max_db_connections).cell(connections[name]);
    r.cell(database_paused(context, name));
  };
  for (const conf::Database& d : context.config->databases) add(d.name, d);
  // Then the databases clients opened through "*" (as PgBouncer lists its auto-databases), with its settings.
  const conf::Database* any = context.config->find_database("*");
  for (const std::string& name : context.shared.open_auto_databases()) {
    const conf::Database* listed = context.config->find_database(name);
    if (any && listed == any) add(name, *any);
  }
  return Answer::of(std::move(r));
}

Answer show_users(const Input&, Context& context) {
  std::map<std::string, int64_t> clients, servers;
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) ++clients[c.user];
    for (const ServerRow& sv : s.servers) ++servers[sv.user];
  }
  const auto& admins = context.config->admin_users;
  const auto& stats = context.config->stats_users;
  ResultSet r;
  r.column("name").column("auth_method").column("pool_mode").column("max_user_connections", kInt8);
  r.column("current_clients", kInt8).column("current_connections", kInt8).column("console");
  for (const conf::User& u : context.config->users) {
    const char* console = std::find(admins.begin(), admins.end(), u.name) != admins.end()   ? "admin"
                          : std::find(stats.begin(), stats.end(), u.name) != stats.end() ? "stats"
                                                                                           : "";
    r.row().cell(u.name).cell(conf::to_string(context.config->effective_auth_method(u)));
    r.cell(u.pool_mode ? conf::to_string(*u.pool_mode) : "").cell(u.max_user_connections);
    r.cell(clients[u.name]).cell(servers[u.name]).cell(console);
  }
  return Answer::of(std::move(r));
}

}  // namespace pgmux::proxy::admin
