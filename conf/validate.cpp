#include "conf/validate.hpp"

#include <algorithm>
#include <set>
#include <string>

namespace pgmux::conf::detail {
namespace {

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

void check_listeners(const Config& c, Diagnostics& diags) {
  std::set<std::pair<std::string, uint16_t>> seen;
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const Listener& l = c.listeners[i];
    if (!seen.emplace(l.unix_socket() ? l.socket_path() : l.host, l.port).second) {
      diags.add_unless_covered(child_pointer("/listeners", i),
                               "duplicate listener " + l.host + ":" + std::to_string(l.port));
    }
    // sockaddr_un's sun_path holds 108 bytes, its NUL included (PostgreSQL's limit for the same reason).
    constexpr size_t kMaxSocketPath = 107;
    if (l.unix_socket() && l.socket_path().size() > kMaxSocketPath) {
      diags.add_unless_covered(child_pointer("/listeners", i) + "/host",
                               "socket path \"" + l.socket_path() + "\" is longer than " +
                                   std::to_string(kMaxSocketPath) + " bytes");
    }
  }
  const MetricsListen& m = c.metrics_listen;
  if (m.enabled && seen.count({m.host, m.port})) {
    diags.add_unless_covered("/metrics_listen", m.host + ":" + std::to_string(m.port) +
                                                    " is also a client listener; pick another port");
  }
}

// Names must be unique within a section; the later entry gets the diagnostic.
template <typename T>
void check_unique_names(const std::vector<T>& items, const std::string& section, std::string_view what,
                        Diagnostics& diags) {
  std::set<std::string> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string& name = items[i].name;
    if (name.empty()) continue;  // already reported as missing/empty
    if (!seen.insert(name).second) {
      diags.add_unless_covered(child_pointer(section, i) + "/name",
                               "duplicate " + std::string(what) + " name " + in_quotes(name));
    }
  }
}

void check_user_passwords(const Config& c, Diagnostics& diags) {
  for (size_t i = 0; i < c.users.size(); ++i) {
    const User& u = c.users[i];
    const std::string pointer = child_pointer("/users", i) + "/password";
    const AuthMethod method = c.effective_auth_method(u);
    if (method == AuthMethod::Trust) continue;  // the password only serves to log in to PostgreSQL
    if (u.password.empty()) {
      diags.add_unless_covered(pointer, "must not be empty unless auth_method is trust");
      continue;
    }
    const PasswordKind kind = password_kind(u.password);
    // The client's proof can only be checked against what was stored with the same mechanism.
    if (method == AuthMethod::ScramSha256 && kind == PasswordKind::Md5Hash) {
      diags.add_unless_covered(pointer, "an md5 hash cannot be used with auth_method scram-sha-256 "
                                        "(SCRAM cannot be verified from an md5 hash)");
    } else if (method == AuthMethod::Md5 && kind == PasswordKind::ScramSecret) {
      diags.add_unless_covered(pointer, "a SCRAM secret cannot be used with auth_method md5 "
                                        "(md5 cannot be verified from a SCRAM secret)");
    }
  }
}

void check_database_backends(const Config& c, Diagnostics& diags) {
  for (size_t i = 0; i < c.databases.size(); ++i) {
    const std::vector<std::string>& names = c.databases[i].backends;
    const std::string list_pointer = child_pointer("/databases", i) + "/backends";
    std::set<std::string> seen;
    for (size_t j = 0; j < names.size(); ++j) {
      const std::string pointer = child_pointer(list_pointer, j);
      if (c.find_backend(names[j]) == nullptr) {
        diags.add_unless_covered(pointer, "unknown backend " + in_quotes(names[j]));
      } else if (!seen.insert(names[j]).second) {
        diags.add_unless_covered(pointer, "duplicate backend " + in_quotes(names[j]));
      }
    }
  }
}

// True when a diagnostic sits exactly at `pointer`: that value kept its default, so comparing against it
// would report a problem the user did not write.
bool reported(const Diagnostics& diags, const std::string& pointer) {
  for (const Diagnostic& d : diags.items()) {
    if (d.pointer == pointer) return true;
  }
  return false;
}

// min_pool_size connections are opened per (database, user) pool, so it cannot exceed that pool's size nor
// the database-wide cap (those connections could never all be open).
void check_pool_limits(const Config& c, Diagnostics& diags) {
  for (size_t i = 0; i < c.databases.size(); ++i) {
    const Database& d = c.databases[i];
    const std::string base = child_pointer("/databases", i);
    const std::string pointer = base + "/min_pool_size";
    if (d.min_pool_size > d.pool_size && !reported(diags, base + "/pool_size")) {
      diags.add_unless_covered(pointer, "must be <= pool_size (" + std::to_string(d.pool_size) + ")");
    } else if (d.max_db_connections > 0 && d.min_pool_size > d.max_db_connections &&
               !reported(diags, base + "/max_db_connections")) {
      diags.add_unless_covered(pointer,
                               "must be <= max_db_connections (" + std::to_string(d.max_db_connections) + ")");
    }
  }
}

void check_user_list(const Config& c, const std::vector<std::string>& names, const std::string& section,
                     Diagnostics& diags) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (c.find_user(names[i]) == nullptr) {
      diags.add_unless_covered(child_pointer(section, i), "unknown user " + in_quotes(names[i]));
    }
  }
}

void check_health_check_user(const Config& c, Diagnostics& diags) {
  const std::string& user = c.health_check.user;
  if (!user.empty() && c.find_user(user) == nullptr) {
    diags.add_unless_covered("/health_check/user", "unknown user " + in_quotes(user));
  }
}

// "+name" in a rule must name a group of "groups": a typo would otherwise silently match nobody.
void check_hba_groups(const Config& c, Diagnostics& diags) {
  for (size_t i = 0; i < c.hba.size(); ++i) {
    const std::vector<std::string>& users = c.hba[i].users;
    for (size_t j = 0; j < users.size(); ++j) {
      if (users[j].size() < 2 || users[j][0] != '+') continue;
      const std::string group = users[j].substr(1);
      const bool known = std::any_of(c.groups.begin(), c.groups.end(), [&](const Group& g) { return g.name == group; });
      if (!known) {
        const std::string pointer = child_pointer("/hba", i) + "/user";
        diags.add_unless_covered(users.size() == 1 ? pointer : child_pointer(pointer, j),
                                 "unknown group " + in_quotes(group) + " (define it in \"groups\")");
      }
    }
  }
}

// PostgreSQL refuses such pg_hba.conf lines: a hostssl rule cannot match with TLS off, and a cert rule has no CAs
// to check a certificate against without ca_file. Either rule would silently admit nobody.
void check_hba_tls(const Config& c, Diagnostics& diags) {
  for (size_t i = 0; i < c.hba.size(); ++i) {
    const HbaRule& rule = c.hba[i];
    const std::string pointer = child_pointer("/hba", i);
    if (rule.connection == HbaConnection::HostSsl && !c.tls.client.enabled()) {
      diags.add_unless_covered(pointer + "/type", "hostssl cannot match while tls.client.mode is \"disable\" "
                                                  "(PostgreSQL: hostssl record cannot match because SSL is disabled)");
    } else if (rule.method == HbaMethod::Cert && c.tls.client.ca_file.empty()) {
      diags.add_unless_covered(pointer + "/method", "cert needs tls.client.ca_file: client certificates can only be "
                                                    "checked if a root certificate store is available");
    }
  }
}

// Patroni decides the primary: it needs an address to ask, and pgmux must not promote behind its back.
void check_topology_source(const Config& c, Diagnostics& diags) {
  if (!c.topology.etcd_urls.empty()) {
    if (c.topology.kind != TopologySourceKind::Patroni) {
      diags.add_unless_covered("/topology/etcd_urls", "needs source \"patroni\" (it watches Patroni's failover key)");
    }
    if (c.topology.patroni_scope.empty()) {
      diags.add_unless_covered("/topology/patroni_scope", "is needed with \"etcd_urls\": the \"scope\" of Patroni's "
                                                          "config (its keys live under <patroni_namespace>/<scope>/)");
    }
    if (c.topology.patroni_namespace.empty() || c.topology.patroni_namespace[0] != '/') {
      diags.add_unless_covered("/topology/patroni_namespace", "must start with \"/\" (Patroni's default: /service)");
    }
  }
  if (c.topology.kind != TopologySourceKind::Patroni) return;
  if (c.topology.patroni_urls.empty()) {
    diags.add_unless_covered("/topology", "source \"patroni\" needs \"patroni_urls\" (at least one REST API address)");
  }
  if (c.failover.mode == FailoverMode::Pgmux) {
    diags.add_unless_covered("/failover/mode", "must be \"external\" when topology.source is \"patroni\" "
                                               "(Patroni promotes; pgmux follows its leader)");
  }
}

// PostgreSQL (and pgmux, as a client logs in) cuts a database name to 63 bytes: a longer entry could never be the
// name a client logs in with. (Not checked for users: a long user entry may serve as health_check.user, a login of
// pgmux's own that PostgreSQL cuts.)
template <typename T>
void check_name_lengths(const std::vector<T>& items, const std::string& section, Diagnostics& diags) {
  constexpr size_t kNameMax = 63;  // NAMEDATALEN - 1
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].name.size() > kNameMax) {
      diags.add_unless_covered(child_pointer(section, i) + "/name",
                               "is longer than 63 bytes: PostgreSQL and pgmux cut a name a client logs in with to "
                               "63 bytes, so no client could use it");
    }
  }
}

}  // namespace

void validate(const Config& config, Diagnostics& diags) {
  check_listeners(config, diags);
  check_unique_names(config.backends, "/backends", "backend", diags);
  check_unique_names(config.users, "/users", "user", diags);
  check_user_passwords(config, diags);
  check_unique_names(config.databases, "/databases", "database", diags);
  check_name_lengths(config.databases, "/databases", diags);
  check_database_backends(config, diags);
  check_pool_limits(config, diags);
  check_user_list(config, config.admin_users, "/admin_users", diags);
  check_user_list(config, config.stats_users, "/stats_users", diags);
  check_health_check_user(config, diags);
  check_unique_names(config.groups, "/groups", "group", diags);
  check_hba_groups(config, diags);
  check_hba_tls(config, diags);
  check_topology_source(config, diags);
}

}  // namespace pgmux::conf::detail
