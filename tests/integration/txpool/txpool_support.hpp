// Helpers shared by the transaction-pooling tests (issue 4): a pgmux config with one database in transaction
// mode on the primary only (read/write split off, so pooling is tested alone) or over the whole cluster, a
// fresh database per test, bounded thread fan-out, and libpq result checks.
#pragma once
#include <sys/types.h>

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/integration/routing/routing_support.hpp"

namespace pgmux::test::txpool {

// default_config() reduced to one database `db` (pool_mode "transaction", `pool_size`), user app logging in
// with trust (thousands of fast connects). Without `split`: backends = the primary only and
// routing.read_write_split false. With `split`: primary + both standbys (routing_config()), split on.
// The result is a JSON object to tweak further (timeouts, limits) before dump().
nlohmann::json txpool_config(int listen_port, const std::string& db, int pool_size, bool split = false);

// The database entry of a config made by txpool_config (to set pool keys on it).
nlohmann::json& database_entry(nlohmann::json& config);

// (Re)creates `db` owned by app on the primary; with `wait_standbys`, waits until both standbys have it.
void fresh_database(const std::string& db, bool wait_standbys = false);
void drop_database_quietly(const std::string& db);

// Runs body(i) for i in [0, n) on n threads and joins them; every exception is caught and its text returned
// (first one), "" when all succeeded.
std::string run_threads(int n, const std::function<void(int)>& body);

// "host=... user=app dbname=db" through the proxy under test (trust: no password needed, one is sent anyway).
std::string app_conninfo(int port, const std::string& db, const std::string& extra = "");

// Waits (up to 10 s) until a fresh connection through `ci` runs a query (`sql`). pgmux accepts clients before its
// prober has found the primary and refuses their queries with 57P03 meanwhile (reported); tests of pooling
// start once it serves.
void wait_serving(const std::string& ci, const std::string& sql = "SELECT 1");

// Current resident set size (VmRSS) of pid in KiB, -1 when unreadable.
long rss_kb(pid_t pid);

// Soft RLIMIT_NOFILE raised to at least `want` (bounded by the hard limit); returns the new soft limit.
long raise_nofile(long want);

// "Max open files" soft limit of a running process from /proc/PID/limits, -1 when unreadable.
long process_nofile_limit(pid_t pid);

// Server connections (client backends) the primary has for `db` as `user`, from pg_stat_activity.
int server_connections(const std::string& db, const std::string& user = "app");

// Records the first NOTICE/WARNING/ERROR libpq hands to the notice receiver: an ErrorResponse a proxy sends to
// an idle client (a timeout) arrives there, not as a query result. Install on a connection that outlives it.
struct NoticeCapture {
  std::string sqlstate, message;
  void install(PGconn* conn);
};

// Waits up to `seconds` for the proxy to close an idle connection: true when it did (EOF seen); any message it
// sent first ends up in `capture` (installed beforehand).
bool wait_closed_by_proxy(PGconn* conn, double seconds);

// Prepares `name` as `sql` (libpq: Parse and Sync): "" or the SQLSTATE.
std::string prepare_named(PGconn* conn, const std::string& name, const std::string& sql);
// Executes the prepared statement `name` without parameters: its first value, or "error <SQLSTATE>".
std::string run_named(PGconn* conn, const std::string& name);

// Text of the ErrorResponse (severity + SQLSTATE + message) of a failed result, for messages.
std::string error_text(PGconn* conn, const PGresult* res);

// pgmux in transaction mode on `db` (txpool_config with `tweak` applied). The database is made fresh once per
// test binary, and `first_setup` (tables) runs on it then. With `wait`, the constructor waits until it serves.
struct TweakedProxy {
  TweakedProxy(const std::string& db, int pool_size, const std::function<void(nlohmann::json&)>& tweak,
               bool wait = true, const std::function<void()>& first_setup = {});
  void log_if(bool failed);  // prints pgmux's log when a check failed

  int listen;
  ProxyUnderTest proxy;
  std::string ci;
};

}  // namespace pgmux::test::txpool
