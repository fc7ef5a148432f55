// SHOW POOLS, BACKEND_POOLS, CLIENTS, SERVERS, LISTS, DATABASES, USERS: merged from every worker's snapshot.
// Where PgBouncer has the command, its 1.25 columns come first and in its order, so tools that read PgBouncer's
// console by position or by name (exporters, dashboards) work; pgmux's own columns follow. A PgBouncer concept
// pgmux does not have answers 0 or NULL (README, "The admin console").
#include <algorithm>
#include <cmath>
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

int64_t flag(bool value) { return value ? 1 : 0; }  // PgBouncer's 0/1 integer columns

// Whole seconds and the microseconds past them, as PgBouncer splits maxwait and wait.
// Rounded to the microsecond first: 0.3 s is 0.29999... in binary and was shown as 299999 us.
std::pair<int64_t, int64_t> split_seconds(double seconds) {
  const int64_t micros = std::llround(std::max(0.0, seconds) * 1e6);
  return {micros / 1000000, micros % 1000000};
}

// PgBouncer's pool: every backend's pool of one (database, user), with clients and servers counted by state.
struct UserPool {
  int64_t cl_active = 0, cl_waiting = 0, sv_active = 0, sv_idle = 0, sv_tested = 0, sv_login = 0;
  double maxwait = 0;
  std::string pool_mode, backends;
  int pool_size = 0;
  bool draining = false;
};

std::map<std::pair<std::string, std::string>, UserPool> user_pools(const Context& context) {
  std::map<std::pair<std::string, std::string>, UserPool> pools;
  for (const auto& [key, p] : merged_pools(context)) {
    UserPool& u = pools[{p.database, p.user}];
    u.maxwait = std::max(u.maxwait, p.maxwait);
    u.pool_mode = p.pool_mode;
    u.backends += (u.backends.empty() ? "" : ",") + p.backend;
    u.pool_size = std::max(u.pool_size, p.pool_size);
    u.draining = u.draining || p.draining;
  }
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      auto it = pools.find({c.database, c.user});
      if (c.admin || it == pools.end()) continue;
      if (c.state == "waiting") {  // for a server, or held by PAUSE (PgBouncer counts those too)
        ++it->second.cl_waiting;
        it->second.maxwait = std::max(it->second.maxwait, c.wait_seconds);
      }
      if (c.state == "active" || c.state == "idle") ++it->second.cl_active;
    }
    for (const ServerRow& sv : s.servers) {
      UserPool& u = pools[{sv.database, sv.user}];
      if (sv.state == "active" || (sv.state == "used" && sv.client_id != 0)) ++u.sv_active;
      if (sv.state == "used" && sv.client_id == 0) ++u.sv_tested;  // pgmux's own reset or sync queries
      if (sv.state == "idle") ++u.sv_idle;
      if (sv.state == "login") ++u.sv_login;
    }
  }
  return pools;
}

}  // namespace

Answer show_pools(const Input&, Context& context) {
  ResultSet r;
  r.column("database").column("user");
  for (const char* name : {"cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
                           "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
                           "maxwait", "maxwait_us"}) {
    r.column(name, kInt8);
  }
  r.column("pool_mode").column("load_balance_hosts");
  r.column("backends").column("pool_size", kInt8).column("paused", kBool).column("draining", kBool);
  const int64_t none = 0;  // cancel requests go out at once on their own connection: never queued or in flight
  for (const auto& [key, u] : user_pools(context)) {
    const auto [wait, wait_us] = split_seconds(u.maxwait);
    r.row().cell(key.first).cell(key.second).cell(u.cl_active).cell(u.cl_waiting).cell(none).cell(none);
    r.cell(u.sv_active).cell(none).cell(none).cell(u.sv_idle).cell(none).cell(u.sv_tested).cell(u.sv_login);
    r.cell(wait).cell(wait_us).cell(u.pool_mode).null_cell();
    r.cell(u.backends).cell(u.pool_size).cell(database_paused(context, key.first)).cell(u.draining);
  }
  return Answer::of(std::move(r));
}

Answer show_backend_pools(const Input&, Context& context) {
  ResultSet r;
  r.column("database").column("user").column("backend").column("role");
  r.column("cl_active", kInt8).column("cl_waiting", kInt8).column("sv_active", kInt8).column("sv_idle", kInt8);
  r.column("sv_login", kInt8).column("maxwait", kInt8).column("maxwait_us", kInt8).column("pool_mode");
  r.column("pool_size", kInt8).column("paused", kBool).column("draining", kBool);
  for (const auto& [key, p] : merged_pools(context)) {
    const auto [wait, wait_us] = split_seconds(p.maxwait);
    r.row().cell(p.database).cell(p.user).cell(p.backend).cell(backend_role(context, p.backend));
    r.cell(p.cl_active).cell(p.cl_waiting).cell(p.sv_active).cell(p.sv_idle).cell(p.sv_login);
    r.cell(wait).cell(wait_us).cell(p.pool_mode);
    r.cell(p.pool_size).cell(database_paused(context, p.database)).cell(p.draining);
  }
  return Answer::of(std::move(r));
}

namespace {

// PgBouncer's columns shared by SHOW CLIENTS and SHOW SERVERS, up to and including prepared_statements.
void connection_columns(ResultSet& r) {
  r.column("type").column("user").column("database").column("replication").column("state").column("addr");
  r.column("port", kInt8).column("local_addr").column("local_port", kInt8).column("connect_time");
  r.column("request_time").column("wait", kInt8).column("wait_us", kInt8).column("close_needed", kInt8);
  r.column("ptr").column("link").column("remote_pid", kInt8).column("tls").column("application_name");
  r.column("prepared_statements", kInt8).column("id");
}

}  // namespace

Answer show_clients(const Input&, Context& context) {
  ResultSet r;
  connection_columns(r);
  r.column("servers").column("pool_mode").column("worker", kInt8);
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) {
      const auto [wait, wait_us] = split_seconds(c.wait_seconds);
      const std::string id = "C-" + std::to_string(c.id);
      r.row().cell(c.admin ? "admin" : "C").cell(c.user).cell(c.database).cell("none").cell(c.state);
      r.cell(c.addr).cell(c.port).cell(c.socket.local_addr).cell(c.socket.local_port);
      r.cell(format_time(c.connect_time)).cell(format_time(c.request_time)).cell(wait).cell(wait_us);
      r.cell(int64_t{0}).cell(id).cell(c.servers).cell(int64_t{0}).cell(c.socket.tls).cell(c.application_name);
      r.cell(static_cast<uint64_t>(c.prepared_statements)).cell(id);
      r.cell(c.servers).cell(c.admin ? "" : c.pool_mode).cell(c.worker);
    }
  }
  return Answer::of(std::move(r));
}

Answer show_servers(const Input&, Context& context) {
  std::map<uint64_t, std::string> application_names;  // by client id: PgBouncer shows the linked client's
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ClientRow& c : s.clients) application_names[c.id] = c.application_name;
  }
  ResultSet r;
  connection_columns(r);
  r.column("backend").column("tx_status").column("worker", kInt8);
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ServerRow& sv : s.servers) {
      const std::string id = "S-" + std::to_string(sv.id);
      const auto app = sv.client_id ? application_names.find(sv.client_id) : application_names.end();
      r.row().cell("S").cell(sv.user).cell(sv.database).cell("none").cell(sv.state).cell(sv.addr).cell(sv.port);
      r.cell(sv.socket.local_addr).cell(sv.socket.local_port).cell(format_time(sv.connect_time));
      r.cell(format_time(sv.request_time)).cell(int64_t{0}).cell(int64_t{0}).cell(flag(sv.close_needed)).cell(id);
      r.cell(sv.client_id ? "C-" + std::to_string(sv.client_id) : "").cell(static_cast<int64_t>(sv.remote_pid));
      r.cell(sv.socket.tls).cell(app == application_names.end() ? "" : app->second);
      r.cell(static_cast<uint64_t>(sv.prepared_statements)).cell(id);
      r.cell(sv.backend).cell(std::string(1, sv.tx_status)).cell(sv.worker);
    }
  }
  return Answer::of(std::move(r));
}

Answer show_lists(const Input&, Context& context) {
  int64_t clients = 0, waiting = 0, login = 0, admin = 0, servers = 0, idle_servers = 0, login_servers = 0;
  for (const WorkerSnapshot& s : *context.snapshots) {
    clients += static_cast<int64_t>(s.clients.size());
    servers += static_cast<int64_t>(s.servers.size());
    for (const ClientRow& c : s.clients) {
      admin += c.admin ? 1 : 0;
      login += c.state == "login" ? 1 : 0;
      waiting += c.state == "waiting" ? 1 : 0;
    }
    for (const ServerRow& sv : s.servers) {
      idle_servers += sv.state == "idle" ? 1 : 0;
      login_servers += sv.state == "login" ? 1 : 0;
    }
  }
  ResultSet r;
  r.column("list").column("items", kInt8);
  auto item = [&](const char* name, int64_t value) { r.row().cell(name).cell(value); };
  // PgBouncer's rows, in its order. pgmux keeps no freed connection objects, has no peers and caches no DNS.
  item("databases", static_cast<int64_t>(context.config->databases.size()));
  item("users", static_cast<int64_t>(context.config->users.size()));
  item("peers", 0);
  item("pools", static_cast<int64_t>(user_pools(context).size()));
  item("peer_pools", 0);
  item("free_clients", 0);
  item("used_clients", clients);
  item("login_clients", login);
  item("free_servers", 0);
  item("used_servers", servers);
  for (const char* dns : {"dns_names", "dns_zones", "dns_queries", "dns_pending"}) item(dns, 0);
  // pgmux's own.
  item("backends", static_cast<int64_t>(context.config->backends.size()));
  item("backend_pools", static_cast<int64_t>(merged_pools(context).size()));
  item("waiting_clients", waiting);
  item("admin_clients", admin);
  item("idle_servers", idle_servers);
  item("login_servers", login_servers);
  item("workers", static_cast<int64_t>(context.snapshots->size()));
  item("paused_databases", static_cast<int64_t>(context.shared.paused.list().size()));
  return Answer::of(std::move(r));
}

Answer show_databases(const Input&, Context& context) {
  std::map<std::string, int64_t> connections, clients;  // server and client connections by database
  for (const WorkerSnapshot& s : *context.snapshots) {
    for (const ServerRow& sv : s.servers) ++connections[sv.database];
    for (const ClientRow& c : s.clients) clients[c.database] += c.admin ? 0 : 1;
  }
  const conf::Config& config = *context.config;
  ResultSet r;
  r.column("name").column("host").column("port", kInt8).column("database").column("force_user");
  r.column("pool_size", kInt8).column("min_pool_size", kInt8).column("reserve_pool_size", kInt8);
  r.column("server_lifetime", kInt8).column("pool_mode").column("load_balance_hosts");
  r.column("max_connections", kInt8).column("current_connections", kInt8).column("max_client_connections", kInt8);
  r.column("current_client_connections", kInt8).column("paused", kInt8).column("disabled", kInt8);
  r.column("backends").column("reserve_pool", kInt8);
  auto add = [&](const std::string& name, const conf::Database& d) {
    std::string backends, hosts;
    int64_t port = 0;
    for (const conf::Backend& b : config.backends) {
      if (!d.backends.empty() && std::find(d.backends.begin(), d.backends.end(), b.name) == d.backends.end()) continue;
      backends += (backends.empty() ? "" : ",") + b.name;
      hosts += (hosts.empty() ? "" : ",") + b.host;
      if (port == 0) port = b.port;
    }
    r.row().cell(name).cell(hosts).cell(port).cell(d.server_database_for(name)).null_cell();
    r.cell(d.pool_size).cell(d.min_pool_size).cell(d.reserve_pool_size);
    r.cell(static_cast<int64_t>(config.timeouts.server_lifetime)).cell(conf::to_string(d.pool_mode)).null_cell();
    r.cell(d.max_db_connections).cell(connections[name]).cell(int64_t{0}).cell(clients[name]);
    r.cell(flag(database_paused(context, name))).cell(int64_t{0});
    r.cell(backends).cell(d.reserve_pool_size);
  };
  for (const conf::Database& d : config.databases) add(d.name, d);
  // Then the databases clients opened through "*" (as PgBouncer lists its auto-databases), with its settings.
  const conf::Database* any = config.find_database("*");
  for (const std::string& name : context.shared.open_auto_databases()) {
    const conf::Database* listed = config.find_database(name);
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
