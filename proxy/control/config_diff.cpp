#include "proxy/control/config_diff.hpp"

#include <tuple>

namespace pgmux::proxy {

namespace {

std::string listeners_text(const conf::Config& c) {
  std::string out;
  for (const auto& l : c.listeners) {
    if (!out.empty()) out += ", ";
    out += l.host + ":" + std::to_string(l.port);
  }
  return out;
}

std::string metrics_text(const conf::Config& c) {
  if (!c.metrics_listen.enabled) return "off";
  return c.metrics_listen.host + ":" + std::to_string(c.metrics_listen.port);
}

auto backend_tuple(const conf::Backend& b) {
  return std::tie(b.host, b.port, b.standby_only, b.max_lag_bytes, b.max_lag_seconds);
}
auto database_tuple(const conf::Database& d) {
  return std::tie(d.server_database, d.backends, d.pool_mode, d.pool_size, d.min_pool_size, d.reserve_pool_size,
                  d.max_db_connections);
}
auto user_tuple(const conf::User& u) {
  return std::tie(u.password, u.auth_method, u.pool_mode, u.max_user_connections);
}
auto routing_tuple(const conf::Routing& r) {
  return std::tie(r.read_write_split, r.max_lag_bytes, r.max_lag_seconds, r.lag_hysteresis, r.fallback_to_primary,
                  r.consistency, r.causal_wait, r.causal_poll_interval, r.write_functions, r.failover_timeout,
                  r.function_catalog_refresh, r.remote_apply_reads);
}
auto timeouts_tuple(const conf::Timeouts& t) {
  return std::tie(t.query_wait_timeout, t.server_idle_timeout, t.server_connect_timeout, t.client_login_timeout,
                  t.shutdown_timeout, t.reserve_pool_timeout, t.idle_transaction_timeout, t.client_idle_timeout,
                  t.server_lifetime, t.server_check_delay, t.auto_database_idle_timeout);
}
auto health_tuple(const conf::HealthCheck& h) {
  return std::tie(h.period, h.timeout, h.max_retries, h.user, h.password, h.database);
}

// "+a -b ~c" for a named section: added, removed, changed (by `same`).
template <typename T>
const T* find_named(const std::vector<T>& items, const std::string& name) {
  for (const T& item : items) {
    if (item.name == name) return &item;
  }
  return nullptr;
}

template <typename T, typename Same>
std::string named_changes(const std::vector<T>& before, const std::vector<T>& after, Same same) {
  std::string out;
  auto add = [&](char sign, const std::string& name) {
    if (!out.empty()) out += ' ';
    out += sign;
    out += name;
  };
  for (const T& item : after) {
    const T* old = find_named(before, item.name);
    if (!old) {
      add('+', item.name);
    } else if (!same(*old, item)) {
      add('~', item.name);
    }
  }
  for (const T& item : before) {
    if (!find_named(after, item.name)) add('-', item.name);
  }
  return out;
}

}  // namespace

std::vector<std::string> settings_needing_restart(const conf::Config& current, const conf::Config& next) {
  std::vector<std::string> out;
  if (listeners_text(current) != listeners_text(next)) {
    out.push_back("/listeners: changed from " + listeners_text(current) + " to " + listeners_text(next) +
                  "; listeners change only with a restart");
  }
  if (current.effective_workers() != next.effective_workers()) {
    out.push_back("/workers: changed from " + std::to_string(current.effective_workers()) + " to " +
                  std::to_string(next.effective_workers()) + "; the worker count changes only with a restart");
  }
  if (metrics_text(current) != metrics_text(next)) {
    out.push_back("/metrics_listen: changed from " + metrics_text(current) + " to " + metrics_text(next) +
                  "; the metrics listener changes only with a restart");
  }
  if (current.logging.file != next.logging.file) {
    auto text = [](const std::string& file) { return file.empty() ? std::string("stderr") : file; };
    out.push_back("/logging/file: changed from " + text(current.logging.file) + " to " + text(next.logging.file) +
                  "; the log file changes only with a restart");
  }
  return out;
}

std::string describe_changes(const conf::Config& current, const conf::Config& next) {
  std::vector<std::string> parts;
  std::string backends = named_changes(
      current.backends, next.backends,
      [](const conf::Backend& a, const conf::Backend& b) { return backend_tuple(a) == backend_tuple(b); });
  for (const conf::Backend& b : next.backends) {
    const conf::Backend* old = current.find_backend(b.name);
    if (old && old->weight != b.weight) {
      if (!backends.empty()) backends += ", ";
      backends += "weight " + b.name + " " + std::to_string(old->weight) + "->" + std::to_string(b.weight);
    }
  }
  if (!backends.empty()) parts.push_back("backends " + backends);
  std::string databases = named_changes(
      current.databases, next.databases,
      [](const conf::Database& a, const conf::Database& b) { return database_tuple(a) == database_tuple(b); });
  if (!databases.empty()) parts.push_back("databases " + databases);
  std::string users = named_changes(
      current.users, next.users,
      [](const conf::User& a, const conf::User& b) { return user_tuple(a) == user_tuple(b); });
  if (!users.empty()) parts.push_back("users " + users);
  if (routing_tuple(current.routing) != routing_tuple(next.routing)) parts.push_back("routing");
  if (timeouts_tuple(current.timeouts) != timeouts_tuple(next.timeouts)) parts.push_back("timeouts");
  if (health_tuple(current.health_check) != health_tuple(next.health_check)) parts.push_back("health_check");
  if (current.logging.level != next.logging.level) {
    parts.push_back(std::string("log level ") + conf::to_string(next.logging.level));
  }
  if (current.logging.format != next.logging.format) {
    parts.push_back(std::string("log format ") + conf::to_string(next.logging.format));
  }
  if (current.max_client_conn != next.max_client_conn || current.max_auto_databases != next.max_auto_databases ||
      current.max_message_size != next.max_message_size ||
      current.admin_users != next.admin_users || current.stats_users != next.stats_users ||
      current.auth_method != next.auth_method ||
      current.prepared_statements.max_per_server != next.prepared_statements.max_per_server) {
    parts.push_back("limits/access");
  }
  if (current.hba != next.hba || current.groups != next.groups) parts.push_back("hba");
  if (!(current.auth_query == next.auth_query)) parts.push_back("auth_query");
  if (!(current.switchover == next.switchover)) parts.push_back("switchover");
  if (current.failover.mode != next.failover.mode) {
    parts.push_back(std::string("failover.mode ") + conf::to_string(current.failover.mode) + "->" +
                    conf::to_string(next.failover.mode));
  }
  if (current.consistency_check != next.consistency_check) parts.push_back("consistency_check");
  if (current.topology.kind != next.topology.kind) {
    parts.push_back(std::string("topology.source ") + conf::to_string(current.topology.kind) + "->" +
                    conf::to_string(next.topology.kind));
  } else if (current.topology != next.topology) {
    parts.push_back("topology");  // its Patroni URLs, credentials or timing
  }
  const conf::TlsClient& was = current.tls.client;
  const conf::TlsClient& now = next.tls.client;
  if (was.mode != now.mode) {
    parts.push_back(std::string("tls.client.mode ") + conf::to_string(was.mode) + "->" + conf::to_string(now.mode));
  }
  // The files are read again at every reload, changed or not: a renewed certificate under the same name counts.
  if (now.enabled()) parts.push_back("TLS certificate files read again (" + now.cert_file + ")");
  if (parts.empty()) return "no changes";
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += "; ";
    out += p;
  }
  return out;
}

}  // namespace pgmux::proxy
