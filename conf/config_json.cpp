#include "conf/config_json.hpp"

#include <limits>

namespace pgmux::conf::detail {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr double kMaxTimeoutSeconds = 365.0 * 24 * 3600;  // keeps seconds -> ms/ns conversions finite
constexpr std::string_view kAuthMethods = "\"scram-sha-256\", \"md5\", \"trust\"";
constexpr std::string_view kPoolModes = "\"session\", \"transaction\", \"statement\"";
constexpr std::string_view kLogLevels = "\"debug\", \"info\", \"warn\", \"error\"";
constexpr std::string_view kLogFormats = "\"text\", \"json\"";
constexpr std::string_view kConsistencies = "\"causal\", \"session\", \"eventual\"";
constexpr std::string_view kFailoverModes = "\"external\", \"pgmux\"";
constexpr std::string_view kTopologySources = "\"probe\", \"patroni\"";

enum class Presence { Optional, RequiredNonEmpty };

// Calls element(value, pointer, index) for each element of the array at `key`. Returns false when the key
// is absent or not an array (nothing was read), so the caller keeps its default.
template <typename Element>
bool for_each_element(ObjectReader& r, std::string_view key, Presence presence, Element element) {
  const Json* value = presence == Presence::RequiredNonEmpty ? r.require(key) : r.get(key);
  if (value == nullptr) return false;
  const std::string pointer = r.pointer_of(key);
  if (!check_array(*value, pointer, r.diags())) return false;
  if (presence == Presence::RequiredNonEmpty && value->empty()) {
    r.diags().add(pointer, "must not be empty");
    return false;
  }
  for (size_t i = 0; i < value->size(); ++i) element((*value)[i], child_pointer(pointer, i), i);
  return true;
}

template <typename T>
void assign(std::optional<T> value, T& out) {
  if (value) out = std::move(*value);
}

template <typename Out>
void assign_int(std::optional<int64_t> value, Out& out) {
  if (value) out = static_cast<Out>(*value);
}

// A backend's host: pgmux reaches backends over TCP only, so a path (libpq's way to name a Unix-domain socket
// directory) is refused by name (the prober, through libpq, would have taken it and found the server).
void read_backend_host(ObjectReader& r, std::string& out) {
  std::optional<std::string> host = r.string("host", /*non_empty=*/true);
  if (host && host->front() == '/') {
    r.diags().add(r.pointer_of("host"), "is a Unix-domain socket directory; pgmux connects to backends over TCP "
                                        "only (use an address such as 127.0.0.1)");
    return;
  }
  assign(std::move(host), out);
}

std::vector<Listener> parse_listeners(ObjectReader& root) {
  std::vector<Listener> out;
  const bool present =
      for_each_element(root, "listeners", Presence::Optional, [&](const Json& v, std::string p, size_t) {
        Listener l;
        ObjectReader r(v, std::move(p), root.diags());
        assign(r.string("host", /*non_empty=*/true), l.host);
        assign_int(r.integer("port", 1, 65535), l.port);
        r.finish();
        out.push_back(std::move(l));
      });
  if (!present) return {Listener{}};
  if (out.empty()) root.diags().add(root.pointer_of("listeners"), "must not be empty");
  return out;
}

// A duration in seconds, > 0 (or >= 0 when zero_allowed), at most a year. True when `out` was set.
bool read_duration(ObjectReader& r, std::string_view key, double& out, bool zero_allowed) {
  std::optional<double> value = r.number(key);
  if (!value) return false;
  if (zero_allowed ? *value < 0 : *value <= 0) {
    r.diags().add(r.pointer_of(key), zero_allowed ? "must be >= 0" : "must be > 0");
  } else if (*value > kMaxTimeoutSeconds) {
    r.diags().add(r.pointer_of(key), "must be <= " + std::to_string(static_cast<int64_t>(kMaxTimeoutSeconds)));
  } else {
    out = *value;
    return true;
  }
  return false;
}

// JSON true/false only (the reader has no boolean accessor).
void read_boolean(ObjectReader& r, std::string_view key, bool& out) {
  const Json* value = r.get(key);
  if (value == nullptr) return;
  if (!value->is_boolean()) {
    r.diags().add(r.pointer_of(key), "must be a boolean");
    return;
  }
  out = value->get<bool>();
}

std::vector<Backend> parse_backends(ObjectReader& root) {
  std::vector<Backend> out;
  for_each_element(root, "backends", Presence::RequiredNonEmpty, [&](const Json& v, std::string p, size_t i) {
    Backend b;
    b.name = "backend" + std::to_string(i);
    ObjectReader r(v, std::move(p), root.diags());
    assign(r.string("name", /*non_empty=*/true), b.name);
    if (r.require("host") != nullptr) read_backend_host(r, b.host);
    assign_int(r.integer("port", 1, 65535), b.port);
    assign_int(r.integer("weight", 0, kIntMax), b.weight);
    assign(r.string("application_name", /*non_empty=*/true), b.application_name);
    if (std::optional<std::string> role = r.string("role")) {
      // Roles are discovered; the only override is to keep a not-in-recovery server read-only.
      if (*role == "standby") {
        b.standby_only = true;
      } else {
        r.diags().add(r.pointer_of("role"), "must be one of \"standby\"");
      }
    }
    b.max_lag_bytes = r.integer("max_lag_bytes", 0, kInt64Max);
    double seconds = 0;
    if (read_duration(r, "max_lag_seconds", seconds, false)) b.max_lag_seconds = seconds;
    parse_backend_tls(r, b);
    r.finish();
    out.push_back(std::move(b));
  });
  return out;
}

std::vector<User> parse_users(ObjectReader& root) {
  std::vector<User> out;
  for_each_element(root, "users", Presence::Optional, [&](const Json& v, std::string p, size_t) {
    User u;
    ObjectReader r(v, std::move(p), root.diags());
    if (r.require("name") != nullptr) assign(r.string("name", /*non_empty=*/true), u.name);
    assign(r.string("password"), u.password);
    u.auth_method = r.enumeration("auth_method", parse_auth_method, kAuthMethods);
    u.pool_mode = r.enumeration("pool_mode", parse_pool_mode, kPoolModes);
    assign_int(r.integer("max_user_connections", 0, kIntMax), u.max_user_connections);
    r.finish();
    out.push_back(std::move(u));
  });
  return out;
}

std::vector<std::string> parse_name_list(const Json& v, const std::string& pointer, Diagnostics& diags) {
  std::vector<std::string> out;
  if (!check_array(v, pointer, diags)) return out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(read_string(v[i], child_pointer(pointer, i), diags).value_or(""));
  }
  return out;
}

std::vector<Database> parse_databases(ObjectReader& root) {
  std::vector<Database> out;
  for_each_element(root, "databases", Presence::RequiredNonEmpty, [&](const Json& v, std::string p, size_t) {
    Database d;
    ObjectReader r(v, std::move(p), root.diags());
    if (r.require("name") != nullptr) assign(r.string("name", /*non_empty=*/true), d.name);
    assign(r.string("server_database"), d.server_database);
    // Empty means "same as the requested name"; for "*" that is only known per connection, so it stays "".
    if (d.server_database.empty() && d.name != "*") d.server_database = d.name;
    if (const Json* backends = r.get("backends")) {
      d.backends = parse_name_list(*backends, r.pointer_of("backends"), root.diags());
    }
    assign(r.enumeration("pool_mode", parse_pool_mode, kPoolModes), d.pool_mode);
    assign_int(r.integer("pool_size", 1, 10000), d.pool_size);
    assign_int(r.integer("min_pool_size", 0, 10000), d.min_pool_size);  // <= pool_size: checked in validate
    assign_int(r.integer("reserve_pool_size", 0, 10000), d.reserve_pool_size);
    assign_int(r.integer("max_db_connections", 0, kIntMax), d.max_db_connections);
    r.finish();
    out.push_back(std::move(d));
  });
  return out;
}

Timeouts parse_timeouts(ObjectReader& root) {
  Timeouts t;
  const Json* value = root.get("timeouts");
  if (value == nullptr) return t;
  ObjectReader r(*value, root.pointer_of("timeouts"), root.diags());
  read_duration(r, "query_wait_timeout", t.query_wait_timeout, false);
  read_duration(r, "server_idle_timeout", t.server_idle_timeout, true);  // 0 = never close idle servers
  read_duration(r, "server_connect_timeout", t.server_connect_timeout, false);
  read_duration(r, "client_login_timeout", t.client_login_timeout, false);
  read_duration(r, "shutdown_timeout", t.shutdown_timeout, false);
  read_duration(r, "reserve_pool_timeout", t.reserve_pool_timeout, true);  // 0 = never use the reserve
  read_duration(r, "idle_transaction_timeout", t.idle_transaction_timeout, true);  // 0 = off
  read_duration(r, "client_idle_timeout", t.client_idle_timeout, true);            // 0 = off
  read_duration(r, "server_lifetime", t.server_lifetime, true);                    // 0 = off
  read_duration(r, "server_check_delay", t.server_check_delay, true);  // 0 = check before every reuse
  read_duration(r, "auto_database_idle_timeout", t.auto_database_idle_timeout, false);
  r.finish();
  return t;
}

// routing.consistency, or the key it replaced: read_your_writes true (on by default, so it meant "reads see the
// writes they must") is causal, false is eventual. Both at once are refused rather than guessed between.
void read_consistency(ObjectReader& r, Routing& out) {
  const bool has_consistency = r.get("consistency") != nullptr;
  assign(r.enumeration("consistency", parse_consistency, kConsistencies), out.consistency);
  if (r.get("read_your_writes") == nullptr) return;
  if (has_consistency) {
    r.diags().add(r.pointer_of("read_your_writes"), "is replaced by consistency; give only consistency");
    return;
  }
  bool read_your_writes = true;
  read_boolean(r, "read_your_writes", read_your_writes);
  out.consistency = read_your_writes ? Consistency::Causal : Consistency::Eventual;
}

Routing parse_routing(ObjectReader& root) {
  Routing out;
  const Json* value = root.get("routing");
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of("routing"), root.diags());
  read_boolean(r, "read_write_split", out.read_write_split);
  assign(r.integer("max_lag_bytes", 0, kInt64Max), out.max_lag_bytes);
  read_duration(r, "max_lag_seconds", out.max_lag_seconds, false);
  read_duration(r, "lag_hysteresis", out.lag_hysteresis, true);
  read_boolean(r, "fallback_to_primary", out.fallback_to_primary);
  read_boolean(r, "remote_apply_reads", out.remote_apply_reads);
  read_consistency(r, out);
  if (const Json* list = r.get("write_functions")) {
    const std::string pointer = r.pointer_of("write_functions");
    if (check_array(*list, pointer, root.diags())) {
      for (size_t i = 0; i < list->size(); ++i) {
        auto name = read_string((*list)[i], child_pointer(pointer, i), root.diags(), /*non_empty=*/true);
        if (name) out.write_functions.push_back(std::move(*name));
      }
    }
  }
  read_duration(r, "failover_timeout", out.failover_timeout, true);  // 0 = fail writes at once
  read_duration(r, "function_catalog_refresh", out.function_catalog_refresh, false);
  read_duration(r, "causal_wait", out.causal_wait, true);
  read_duration(r, "causal_poll_interval", out.causal_poll_interval, true);  // 0 = no replay poller
  r.finish();
  return out;
}

HealthCheck parse_health_check(ObjectReader& root) {
  HealthCheck out;
  const Json* value = root.get("health_check");
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of("health_check"), root.diags());
  double period = out.period;
  if (read_duration(r, "period", period, false)) {
    // Faster than 10 probes a second is load on the servers for no gain.
    if (period < 0.1) {
      r.diags().add(r.pointer_of("period"), "must be >= 0.1");
    } else {
      out.period = period;
    }
  }
  read_duration(r, "timeout", out.timeout, false);
  assign_int(r.integer("max_retries", 0, 100), out.max_retries);
  assign(r.string("user"), out.user);
  assign(r.string("password"), out.password);
  assign(r.string("database", /*non_empty=*/true), out.database);
  r.finish();
  return out;
}

PreparedStatements parse_prepared_statements(ObjectReader& root) {
  PreparedStatements out;
  const Json* value = root.get("prepared_statements");
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of("prepared_statements"), root.diags());
  assign_int(r.integer("max_per_server", 1, 100000), out.max_per_server);
  r.finish();
  return out;
}

Logging parse_logging(ObjectReader& root) {
  Logging l;
  const Json* value = root.get("logging");
  if (value == nullptr) return l;
  ObjectReader r(*value, root.pointer_of("logging"), root.diags());
  assign(r.enumeration("level", parse_log_level, kLogLevels), l.level);
  assign(r.string("file"), l.file);
  assign(r.enumeration("format", parse_log_format, kLogFormats), l.format);
  r.finish();
  return l;
}

// "host:port" (the last colon splits, so "[::1]:9930" and "::1:9930" both work), or "" for off.
// "schema.name": two plain identifiers (letters, digits, _ and $, not starting with a digit), taken as written.
bool is_qualified_function_name(const std::string& text) {
  const size_t dot = text.find('.');
  if (dot == std::string::npos || text.find('.', dot + 1) != std::string::npos) return false;
  auto identifier = [](std::string_view part) {
    if (part.empty() || part.size() > 63 || (part[0] >= '0' && part[0] <= '9') || part[0] == '$') return false;
    for (char ch : part) {
      const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                      ch == '$';
      if (!ok) return false;
    }
    return true;
  };
  return identifier(std::string_view(text).substr(0, dot)) && identifier(std::string_view(text).substr(dot + 1));
}

AuthQuery parse_auth_query(ObjectReader& root) {
  AuthQuery out;
  const Json* value = root.get("auth_query");
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of("auth_query"), root.diags());
  assign(r.string("user", /*non_empty=*/true), out.user);
  assign(r.string("password"), out.password);
  assign(r.string("database", /*non_empty=*/true), out.database);
  if (auto function = r.string("function")) {
    if (!function->empty() && !is_qualified_function_name(*function)) {
      r.diags().add(r.pointer_of("function"),
                    "must be a schema-qualified name \"schema.function\" (letters, digits, _ and $), got \"" +
                        *function + "\"");
    } else {
      out.function = *function;
    }
  }
  read_duration(r, "cache_ttl", out.cache_ttl, true);
  read_duration(r, "negative_cache_ttl", out.negative_cache_ttl, true);
  read_duration(r, "timeout", out.timeout, false);
  if (out.user.empty() && r.valid()) r.diags().add(root.pointer_of("auth_query"), "needs \"user\"");
  r.finish();
  return out;
}

// An optional object at `key`: `fill` reads its fields into a default T (absent: T's defaults), then unknown
// keys are reported.
template <class T, class Fill>
T read_section(ObjectReader& root, const char* key, Fill fill) {
  T out;
  const Json* value = root.get(key);
  if (value == nullptr) return out;
  ObjectReader r(*value, root.pointer_of(key), root.diags());
  fill(r, out);
  r.finish();
  return out;
}

Switchover parse_switchover(ObjectReader& root) {
  return read_section<Switchover>(root, "switchover", [](ObjectReader& r, Switchover& out) {
    read_duration(r, "drain_timeout", out.drain_timeout, false);
    read_duration(r, "catchup_timeout", out.catchup_timeout, false);
    read_duration(r, "command_timeout", out.command_timeout, false);
    assign(r.string("demote_command"), out.demote_command);
    assign(r.string("promote_command"), out.promote_command);
    assign(r.string("follow_primary_command"), out.follow_primary_command);
  });
}

Failover parse_failover(ObjectReader& root) {
  return read_section<Failover>(root, "failover", [](ObjectReader& r, Failover& out) {
    assign(r.enumeration("mode", parse_failover_mode, kFailoverModes), out.mode);
  });
}

// A list of "http://host:port" addresses; `what` names them in the error.
void read_http_urls(ObjectReader& r, const char* key, const char* what, std::vector<std::string>& out) {
  const Json* urls = r.get(key);
  if (urls == nullptr) return;
  const std::string pointer = r.pointer_of(key);
  out = parse_name_list(*urls, pointer, r.diags());
  for (size_t i = 0; i < out.size(); ++i) {
    if (!parse_http_url(out[i])) {
      r.diags().add(child_pointer(pointer, i),
                    "must be \"http://host:port\" (" + std::string(what) + "), got \"" + out[i] + "\"");
    }
  }
}

TopologySource parse_topology(ObjectReader& root) {
  return read_section<TopologySource>(root, "topology", [](ObjectReader& r, TopologySource& out) {
    assign(r.enumeration("source", parse_topology_source, kTopologySources), out.kind);
    read_http_urls(r, "patroni_urls", "Patroni's REST API", out.patroni_urls);
    read_http_urls(r, "etcd_urls", "etcd's client URL", out.etcd_urls);
    assign(r.string("patroni_scope"), out.patroni_scope);
    assign(r.string("patroni_namespace"), out.patroni_namespace);
    read_duration(r, "poll_interval", out.poll_interval, false);
    read_duration(r, "timeout", out.timeout, false);
    assign(r.string("patroni_username"), out.patroni_username);
    assign(r.string("patroni_password"), out.patroni_password);
  });
}

ConsistencyCheckSchedule parse_consistency_check(ObjectReader& root) {
  return read_section<ConsistencyCheckSchedule>(root, "consistency_check", [](ObjectReader& r, auto& out) {
    read_duration(r, "interval", out.interval, true);
    assign(r.string("database"), out.database);
    if (const Json* tables = r.get("tables")) out.tables = parse_name_list(*tables, r.pointer_of("tables"), r.diags());
  });
}

MetricsListen parse_metrics_listen(ObjectReader& r) {
  MetricsListen m;
  std::optional<std::string> text = r.string("metrics_listen");
  if (!text) return m;
  if (text->empty()) {
    m.enabled = false;
    return m;
  }
  const size_t colon = text->rfind(':');
  std::string host = colon == std::string::npos ? "" : text->substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = colon == std::string::npos ? "" : text->substr(colon + 1);
  int value = 0;
  bool digits = !port.empty() && port.size() <= 5;
  for (char ch : port) digits = digits && ch >= '0' && ch <= '9';
  if (digits) value = std::stoi(port);
  if (host.empty() || !digits || value < 1 || value > 65535) {
    r.diags().add(r.pointer_of("metrics_listen"),
                  "must be \"host:port\" with a port 1..65535 (or \"\" to turn the metrics listener off), got \"" +
                      *text + "\"");
    return m;
  }
  m.host = host;
  m.port = static_cast<uint16_t>(value);
  return m;
}

}  // namespace

Config config_from_json(const Json& root, Diagnostics& diags) {
  Config c;
  ObjectReader r(root, "", diags);
  if (!r.valid()) return c;
  // Read in the order the keys are documented, so diagnostics come out in a predictable order.
  c.listeners = parse_listeners(r);
  assign_int(r.integer("workers", 0, 64), c.workers);
  c.backends = parse_backends(r);
  assign(r.enumeration("auth_method", parse_auth_method, kAuthMethods), c.auth_method);
  c.users = parse_users(r);
  c.databases = parse_databases(r);
  c.timeouts = parse_timeouts(r);
  c.prepared_statements = parse_prepared_statements(r);
  c.logging = parse_logging(r);
  c.routing = parse_routing(r);
  c.health_check = parse_health_check(r);
  c.auth_query = parse_auth_query(r);
  c.switchover = parse_switchover(r);
  c.failover = parse_failover(r);
  c.topology = parse_topology(r);
  c.consistency_check = parse_consistency_check(r);
  assign_int(r.integer("max_message_size", 1024, 1073741824), c.max_message_size);
  assign_int(r.integer("max_client_conn", 1, kIntMax), c.max_client_conn);
  assign_int(r.integer("max_auto_databases", 1, 1000000), c.max_auto_databases);
  if (const Json* v = r.get("admin_users")) c.admin_users = parse_name_list(*v, r.pointer_of("admin_users"), diags);
  if (const Json* v = r.get("stats_users")) c.stats_users = parse_name_list(*v, r.pointer_of("stats_users"), diags);
  c.metrics_listen = parse_metrics_listen(r);
  c.groups = parse_groups(r);
  c.hba = parse_hba(r);
  c.tls = parse_tls(r);
  r.finish();
  return c;
}

}  // namespace pgmux::conf::detail
