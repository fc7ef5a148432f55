// Typed, validated, immutable configuration. Built only by the loader; readers hold a
// std::shared_ptr<const Config> snapshot. Durations are in seconds (JSON numbers may be fractional).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/hba.hpp"

namespace pgmux::conf {

enum class AuthMethod { ScramSha256, Md5, Trust };
enum class PoolMode { Session, Transaction, Statement };
// How fresh a read a standby serves must be: causal (every commit acknowledged to any client before the read),
// session (the client's own commits), eventual (lag limits only).
enum class Consistency { Causal, Session, Eventual };
// Who promotes a standby when the primary is lost: something else (pgmux follows), or pgmux itself.
enum class FailoverMode { External, Pgmux };
enum class TopologySourceKind { Probe, Patroni };
enum class LogLevel { Debug, Info, Warn, Error };
enum class LogFormat { Text, Json };  // one line per event: plain text, or one JSON object
// tls.client.mode, with PgBouncer's client_tls_sslmode meanings: disable answers every SSLRequest 'N'; allow and
// prefer take TLS when a client asks and plain text otherwise; require refuses plain text; verify-ca and
// verify-full also want a client certificate signed by ca_file (verify-full: its CN is the user name).
enum class TlsMode { Disable, Allow, Prefer, Require, VerifyCa, VerifyFull };

struct Listener {
  // An address or name; or, starting with '/', a directory for a Unix-domain socket (as libpq's host and
  // PostgreSQL's unix_socket_directories take it): the socket is <host>/.s.PGSQL.<port>.
  std::string host = "127.0.0.1";
  uint16_t port = 9999;
  bool unix_socket() const { return !host.empty() && host.front() == '/'; }
  std::string socket_path() const {
    const size_t end = host.find_last_not_of('/');  // "/tmp/" is "/tmp"
    return host.substr(0, end == std::string::npos ? 1 : end + 1) + "/.s.PGSQL." + std::to_string(port);
  }
};

struct Backend {
  std::string name;  // default "backend<index>"
  std::string host;
  uint16_t port = 5432;
  int weight = 1;  // >= 0
  bool standby_only = false;  // "role": "standby": reads only, even when not in recovery (logical subscriber)
  std::optional<int64_t> max_lag_bytes = std::nullopt;   // overrides Routing::max_lag_bytes
  std::optional<double> max_lag_seconds = std::nullopt;  // overrides Routing::max_lag_seconds
  // The name this server's WAL receiver gives the primary (pg_stat_replication.application_name: its
  // primary_conninfo application_name, else its cluster_name); empty = the backend's name.
  std::string application_name = {};
  // TLS towards this server, with libpq's sslmode meanings (allow is not offered): pooled server connections
  // and the prober alike. verify-ca and verify-full need sslrootcert; sslcert and sslkey go together.
  TlsMode sslmode = TlsMode::Disable;
  std::string sslrootcert = {};
  std::string sslcert = {};
  std::string sslkey = {};
};

struct User {
  std::string name;
  // Plaintext, a "SCRAM-SHA-256$..." secret or an "md5..." hash. Plaintext (or, for SCRAM, the client's
  // recovered key) is what pgmux uses to log in to PostgreSQL as this user.
  std::string password;
  std::optional<AuthMethod> auth_method;  // falls back to Config::auth_method
  std::optional<PoolMode> pool_mode;      // overrides the database's
  int max_user_connections = 0;           // server connections of this user over all databases; 0 = no limit
};

struct Database {
  std::string name;              // what clients ask for
  std::string server_database;   // database name on the server; default = name
  bool is_wildcard() const { return name == "*"; }  // the entry for database names no other entry has
  std::vector<std::string> backends;  // backend names; empty = all
  PoolMode pool_mode = PoolMode::Session;
  int pool_size = 20;            // server connections per (database, user), split across workers
  int min_pool_size = 0;         // per (database, user): kept open even when idle; <= pool_size
  int reserve_pool_size = 0;     // per (database, user): extra connections after reserve_pool_timeout
  int max_db_connections = 0;    // server connections of this database over all users; 0 = no limit

  // The database a client that asked for `requested` gets on the servers: server_database, else the name it asked
  // for (the "*" entry leaves server_database empty). A reference to one of the two: pass an lvalue.
  const std::string& server_database_for(const std::string& requested) const {
    return server_database.empty() ? requested : server_database;
  }
};

struct Timeouts {
  double query_wait_timeout = 120;   // client waiting for a server connection
  double server_idle_timeout = 600;  // idle server connection closed after this
  double server_connect_timeout = 5;
  double client_login_timeout = 60;
  double shutdown_timeout = 30;      // SIGTERM: how long sessions may finish
  double reserve_pool_timeout = 5;   // a client waiting this long may use the reserve pool
  double idle_transaction_timeout = 0;  // client idle inside a transaction is closed; 0 = off
  double client_idle_timeout = 0;    // client idle (outside a transaction) is closed; 0 = off
  double server_lifetime = 3600;     // an unused server connection older than this is closed; 0 = off
  double server_check_delay = 30;    // a server idle longer is checked before reuse; 0 = always check
  // A pool of a database that came through the "*" entry, without a busy server or a waiting client this long,
  // closes its idle servers and goes (with what pgmux kept for the name).
  double auto_database_idle_timeout = 3600;
};

// Protocol-level prepared statements that pgmux renames and re-prepares in transaction/statement mode.
struct PreparedStatements {
  int max_per_server = 1000;  // LRU capacity per server connection, 1..100000
};

// Read/write split over the primary and hot standbys (roles discovered by the health check).
struct Routing {
  bool read_write_split = true;
  int64_t max_lag_bytes = 16 * 1024 * 1024;  // a standby further behind gets no reads
  double max_lag_seconds = 10;
  double lag_hysteresis = 5;        // seconds under both limits before a lagging standby is back
  bool fallback_to_primary = true;  // reads go to the primary when no standby is eligible
  // routing.read_your_writes, the key before this one, is read as an alias: true = causal, false = eventual.
  Consistency consistency = Consistency::Causal;
  double causal_wait = 0;              // seconds a read may wait for a standby to catch up; 0 = none
  double causal_poll_interval = 0.002;  // seconds between the replay poller's queries; 0 = probe rounds only
  // Reads after a commit go at once to standbys every commit waits for (remote_apply, BackendStatus::applies_commits).
  bool remote_apply_reads = false;
  std::vector<std::string> write_functions;  // calling one of these makes a statement a write
  // Seconds between reloads of each database's function catalog (volatile functions and the views over them)
  // from the primary; DDL sent through pgmux reloads it at once.
  double function_catalog_refresh = 30;
  double failover_timeout = 30;     // how long writes wait for a new primary
};

// The prober: one libpq connection per backend, one query per period.
struct HealthCheck {
  double period = 1;       // >= 0.1
  double timeout = 2;      // a round not answered in time counts as a failure
  int max_retries = 2;     // consecutive failures tolerated before a backend is down
  std::string user;        // empty = the first entry of Config::users ("postgres" when there is none)
  std::string password;    // empty = that user's password when it is plaintext
  std::string database = "postgres";
};

// auth_query: users the config does not list are looked up in the database, through a connection of their own
// as `user`, with a fixed, schema-qualified query (no search_path in play): pg_catalog.pg_authid directly (user
// must be a superuser), or `function`, a schema-qualified SECURITY DEFINER function returning (rolpassword
// text, rolvaliduntil timestamptz, rolcanlogin boolean) for a role name. Off while user is empty.
struct AuthQuery {
  std::string user;
  std::string password;               // never logged; empty = trust or .pgpass
  std::string database = "postgres";  // where the lookup runs (pg_authid is shared: any database answers)
  std::string function;               // "schema.name"; empty = read pg_catalog.pg_authid
  double cache_ttl = 15;              // seconds a found role's secret is kept (a changed password waits that long)
  double negative_cache_ttl = 5;      // seconds "no such role" is kept (a role created meanwhile waits that long)
  double timeout = 5;                 // connect + query; a lookup not answered in time fails the login
  bool enabled() const { return !user.empty(); }
  bool operator==(const AuthQuery&) const = default;
};

// Admin SWITCHOVER [TO backend] (a planned change of primary). Commands run with /bin/sh -c; placeholders: %n %h %p
// the backend the command acts on (name, host, port), %N %H %P the new primary, %o the old primary's name, %%.
struct Switchover {
  double drain_timeout = 10;    // running transactions on the old primary get this long to finish, else canceled
  double catchup_timeout = 30;  // the target gets this long to replay the old primary's last WAL
  double command_timeout = 60;  // each command (and pg_promote's wait) gets this long
  // Stops or demotes the old primary once its transactions are done (e.g. pg_ctl stop -m fast, then restart it as
  // a standby of %H:%P). Empty: the old primary keeps running, fenced by pgmux until it reports as a standby.
  std::string demote_command;
  std::string promote_command;  // empty: SELECT pg_promote() on the target, as the health-check user
  std::string follow_primary_command;  // run for each other standby once the target is primary; empty = none
  bool operator==(const Switchover&) const = default;
};

// failover.mode pgmux: when the primary fails its probes and every reachable standby confirms it lost its WAL
// sender, pgmux promotes the standby that received the most WAL (switchover.promote_command, or pg_promote()),
// fences the old primary until it rejoins as a standby of the new timeline, and runs
// switchover.follow_primary_command for the other standbys. For a single pgmux instance: several would each decide.
struct Failover {
  FailoverMode mode = FailoverMode::External;
  bool operator==(const Failover&) const = default;
};

// Who decides which backend is the primary. probe: pgmux's own probes (pg_is_in_recovery(), timelines). patroni:
// the member Patroni's REST API (/cluster) names leader, and only while it is out of recovery; every other backend
// that claims to be a primary is fenced. Probes still measure health and lag. Several pgmux instances in front of
// one Patroni cluster then agree on the primary, because its DCS decides.
struct TopologySource {
  TopologySourceKind kind = TopologySourceKind::Probe;
  std::vector<std::string> patroni_urls;  // "http://host:port" of each member's REST API, asked in turn
  double poll_interval = 1;  // seconds between /cluster requests
  double timeout = 2;        // one request's limit; then the next URL
  // Patroni's restapi.authentication, sent as HTTP basic auth (its unsafe endpoints, such as /switchover, need it
  // when configured); empty = none.
  std::string patroni_username;
  std::string patroni_password;
  // etcd's client URLs ("http://host:port", v3 API): pgmux watches Patroni's failover key there, so a switchover
  // Patroni is asked for behind pgmux's back (patronictl switchover) is drained like pgmux's own SWITCHOVER.
  // Empty = not watched. The key is <patroni_namespace>/<patroni_scope>/failover, as in Patroni's own config.
  std::vector<std::string> etcd_urls;
  std::string patroni_scope;
  std::string patroni_namespace = "/service";
  bool operator==(const TopologySource&) const = default;
};

// The admin console's CHECK CONSISTENCY, run by pgmux itself every `interval` (0 = never), for the metrics
// pgmux_consistency_* (alert on pgmux_consistency_differences).
struct ConsistencyCheckSchedule {
  double interval = 0;
  std::string database;             // "" = the first configured database's server name
  std::vector<std::string> tables;  // empty = every permanent table up to 64 MiB
  bool operator==(const ConsistencyCheckSchedule&) const = default;
};

// "http://host:port[/]" (no TLS, no path): what topology.patroni_urls accepts.
struct HttpUrl {
  std::string host;
  uint16_t port = 80;
};
std::optional<HttpUrl> parse_http_url(std::string_view text);

// The HTTP listener for /metrics, /healthz, /readyz and /status. JSON: "host:port", or "" to turn it off.
struct MetricsListen {
  bool enabled = true;
  std::string host = "127.0.0.1";
  uint16_t port = 9930;
};

struct Logging {
  LogLevel level = LogLevel::Info;
  std::string file;  // empty = stderr; reopened on SIGHUP and SIGUSR1 (logrotate)
  LogFormat format = LogFormat::Text;
};

// TLS towards clients (SSLRequest and PostgreSQL 17's direct TLS). Files are read at startup and at every
// reload; new connections use what was read last, connected clients keep theirs.
struct TlsClient {
  TlsMode mode = TlsMode::Disable;
  std::string cert_file;  // PEM certificate (chain) pgmux presents; required unless mode is disable
  std::string key_file;   // its PEM private key
  std::string ca_file;    // PEM CAs client certificates must chain to; required by verify-ca and verify-full
  std::string min_protocol = "TLSv1.2";  // "TLSv1.2" or "TLSv1.3"
  std::string ciphers;    // OpenSSL cipher list for TLS 1.2 ("" = PostgreSQL's default, HIGH:MEDIUM:+3DES:!aNULL)
  bool enabled() const { return mode != TlsMode::Disable; }
  bool requires_tls() const { return mode >= TlsMode::Require; }
  bool wants_client_cert() const { return mode >= TlsMode::VerifyCa; }
};

struct Tls {
  TlsClient client;
};

struct Config {
  std::vector<Listener> listeners{Listener{}};
  int workers = 0;  // 0 = number of cores
  std::vector<Backend> backends;
  std::vector<User> users;
  std::vector<Database> databases;
  AuthMethod auth_method = AuthMethod::ScramSha256;
  uint32_t max_message_size = 64u * 1024 * 1024;
  int max_client_conn = 10000;
  // Distinct database names clients may open through the "*" entry at once (each brings pools, budgets and a
  // function catalog): a client chooses the name, so the number is bounded.
  int max_auto_databases = 100;
  std::vector<std::string> admin_users;
  std::vector<std::string> stats_users;
  // Access rules, first match wins (conf/hba.hpp). Empty: every address may log in with the users' own
  // auth_method, as before hba existed.
  std::vector<HbaRule> hba;
  std::vector<Group> groups;  // for "+group" in hba rules
  MetricsListen metrics_listen;
  Timeouts timeouts;
  PreparedStatements prepared_statements;
  Logging logging;
  Routing routing;
  HealthCheck health_check;
  AuthQuery auth_query;
  Switchover switchover;
  Failover failover;
  TopologySource topology;
  ConsistencyCheckSchedule consistency_check;
  Tls tls;

  const User* find_user(std::string_view name) const;
  const Database* find_database(std::string_view name) const;
  const Backend* find_backend(std::string_view name) const;
  int effective_workers() const;  // workers, or hardware concurrency when 0 (at least 1)
  AuthMethod effective_auth_method(const User& user) const;  // user's own, else the global one
  // The user the prober logs in as: health_check.user, else the first user, else "postgres".
  std::string health_check_user() const;
  // health_check.password, else that user's password when it is plaintext, else "" (trust or .pgpass).
  std::string health_check_password() const;
  // The user's pool_mode when set, else the database's.
  static PoolMode effective_pool_mode(const User* user, const Database& database);
};

const char* to_string(AuthMethod m);   // "scram-sha-256", "md5", "trust"
const char* to_string(PoolMode m);     // "session", "transaction", "statement"
const char* to_string(LogLevel l);     // "debug", "info", "warn", "error"
const char* to_string(LogFormat f);    // "text", "json"
const char* to_string(Consistency c);  // "causal", "session", "eventual"
const char* to_string(FailoverMode m);  // "external", "pgmux"
const char* to_string(TopologySourceKind k);  // "probe", "patroni"
const char* to_string(TlsMode m);      // "disable", "allow", "prefer", "require", "verify-ca", "verify-full"

// Inverses of to_string; nullopt for any other text (exact, case-sensitive).
std::optional<AuthMethod> parse_auth_method(std::string_view text);
std::optional<PoolMode> parse_pool_mode(std::string_view text);
std::optional<LogLevel> parse_log_level(std::string_view text);
std::optional<LogFormat> parse_log_format(std::string_view text);
std::optional<Consistency> parse_consistency(std::string_view text);
std::optional<FailoverMode> parse_failover_mode(std::string_view text);
std::optional<TopologySourceKind> parse_topology_source(std::string_view text);
std::optional<TlsMode> parse_tls_mode(std::string_view text);

// What a configured password string holds, by PostgreSQL's own formats:
// "md5" + 32 lowercase hex digits, or "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
enum class PasswordKind { Plain, Md5Hash, ScramSecret };
PasswordKind password_kind(std::string_view password);

}  // namespace pgmux::conf
