// Helpers shared by the read/write-split tests: a pgmux config over the whole cluster (primary + 2 standbys),
// "which server answered" probes, direct admin connections to each node, and bounded waits.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::test::routing {

// default_config() with backends primary/standby1/standby2 on `ports` (weights 1), the prober every 0.2 s as
// postgres, and a `routing` object to tweak. The application user "app" logs in with trust (fast connects).
nlohmann::json routing_config(int listen_port, const ClusterPorts& ports);
// One worker whose transaction pool of 2 reaches the primary at `backend_port` (a test's relay), no read/write
// split, server_check_delay 600 (a request goes to the idle server it is given, unchecked), the health checks
// every 60 s (the relay's ends, not the prober, tell pgmux of a lost server), failover_timeout 30.
nlohmann::json lost_server_config(int listen_port, int backend_port);

// Direct superuser connection to one node (no pgmux).
PgConn admin(int port, const std::string& db = "postgres");

// inet_server_port() as seen by `sql` run on conn (default: a plain autocommit read).
int server_port(PGconn* conn, const std::string& sql = "SELECT inet_server_port()");

// A new connection, one read, closed again: the port that served it, or -1 on any failure.
int fresh_read_port(const std::string& conninfo);

// Polls pred every `step` seconds until it holds or `seconds` pass.
bool wait_until(const std::function<bool()>& pred, double seconds, double step = 0.05);

// Waits up to `seconds` for the answer to the command `conn` sent (PQsendQuery*) and reads it whole: "" when it
// came and succeeded, kNoAnswer when nothing came (the command is still waiting), else its error. The connection
// is left in blocking mode.
inline constexpr const char* kNoAnswer = "no answer";
std::string await_command_ok(PGconn* conn, double seconds);

// Fresh-connection reads until every port in `ports` served at least one, within `seconds`.
bool wait_ports_serving(const std::string& conninfo, std::initializer_list<int> ports, double seconds);

// Waits until both standbys replayed everything the primary has written so far (direct connections).
bool wait_replayed(const ClusterPorts& ports, double seconds);

// Sets recovery_min_apply_delay on the standby at `port` ("" = back to immediate apply) and waits until it is in
// effect; throws when it is not within 10 s.
void set_apply_delay(int port, const std::string& value);

// Puts the standbys at `ports` back to immediate apply when it goes, whatever happened to the test.
struct ApplyDelayReset {
  std::vector<int> ports;
  ~ApplyDelayReset();
};

// Bytes the standby's replay position is behind the primary's current WAL position.
long long replay_lag_bytes(int primary_port, int standby_port);

// (Re)creates database `db` on the primary (as postgres), runs `setup` in it (as postgres), and waits until the
// standbys have it all.
void recreate_database(const ClusterPorts& ports, const std::string& db, const std::vector<std::string>& setup = {});
void drop_database(const ClusterPorts& ports, const std::string& db);

// One SHOW BACKENDS cell (`column`) of backend `name` on the admin console; "" when it cannot be read.
std::string backend_field(const std::string& admin_conninfo, const std::string& name, const std::string& column);

// Counts by port, for messages.
std::string describe(const std::map<int, int>& counts, const ClusterPorts& ports);

double now_seconds();  // monotonic

// Tests that stop or promote nodes run on a cluster of their own: cluster.sh start in a fresh directory under the
// suite's scratch dir (PGMUX_TEST_TMPDIR, which scripts/test.sh cleans after a test killed by its timeout), on
// PGMUX_TEST_FAILOVER_BASEPORT (default: the shared cluster's base + 100); stopped by its pids and removed when
// it goes. Such tests run serially (they share that base port).
struct OwnCluster {
  std::string dir;
  ClusterPorts ports;
  explicit OwnCluster(const std::string& tag);
  ~OwnCluster();
  OwnCluster(const OwnCluster&) = delete;
  OwnCluster& operator=(const OwnCluster&) = delete;
};
std::string cluster_sh();  // tests/support/cluster.sh (PGMUX_CLUSTER_SH overrides)
int run_cmd(const std::string& cmd);  // std::system, echoed on stderr; the exit status, -1 if it did not exit
// As the postgres OS user when we are root (the server refuses to run as root).
std::string as_pg(const std::string& cmd);

}  // namespace pgmux::test::routing
