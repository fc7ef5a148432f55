// failover.mode pgmux on a cluster of its own (issue 12, item 3): pgmux promotes a standby itself, but only once the
// standbys confirm they lost the primary too. Case 1: pgmux loses its own path to the primary (a relay in front of
// it is killed) while the standbys still stream from it: nothing is promoted and writes wait, then go on to the same
// primary when the path is back. Case 2: the primary is killed: the standby that received the most WAL is promoted,
// held writes go there, the other standby is repointed (follow_primary_command), and the old primary, started again
// as a primary on the old timeline, never gets a write.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const std::string kPgCtl = "/usr/lib/postgresql/15/bin/pg_ctl";

// bench/bare_relay in front of the primary: pgmux's only path to it. Stopped by pid.
class Relay {
 public:
  Relay(int listen, int backend) : listen_(listen), backend_(backend) { start(); }
  ~Relay() { stop(); }
  void start() {
    pid_ = fork();
    if (pid_ == 0) {
      const std::string l = std::to_string(listen_), b = std::to_string(backend_);
      execl(PGMUX_BARE_RELAY, "bare_relay", l.c_str(), b.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    REQUIRE(pid_ > 0);
    // Up once a connection through it reaches the primary.
    REQUIRE(wait_until([&] {
      PgConn c = try_connect(conninfo(listen_, "postgres", "postgres", "postgres"));
      return c && PQstatus(c.get()) == CONNECTION_OK;
    }, 10));
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);  // its open connections close with it: pgmux's probes see the primary go
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int listen_, backend_;
  pid_t pid_ = -1;
};

// A write on a new connection through pgmux: the port of the server that took it, or -1 (error in *error).
int write_port(const std::string& ci, int id, std::string* error) {
  PgConn conn = try_connect(ci);
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    *error = conn ? PQerrorMessage(conn.get()) : "no connection";
    return -1;
  }
  PgResult res(PQexec(conn.get(), ("INSERT INTO af (id) VALUES (" + std::to_string(id) +
                                   ") RETURNING inet_server_port()").c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    *error = PQresultErrorMessage(res.get());
    return -1;
  }
  return std::atoi(PQgetvalue(res.get(), 0, 0));
}

bool in_recovery(int port) {
  PgConn conn = try_connect(conninfo(port, "postgres", "postgres", "postgres"));
  return conn && PQstatus(conn.get()) == CONNECTION_OK && scalar(conn.get(), "SELECT pg_is_in_recovery()") == "t";
}

// pgmux with failover.mode pgmux, reaching the primary only through the relay on `relay_port`; the other standby
// follows a new primary through cluster.sh follow.
nlohmann::json autofailover_config(int listen, const OwnCluster& cluster, int relay_port) {
  ClusterPorts via_relay = cluster.ports;
  via_relay.primary = relay_port;
  nlohmann::json config = routing_config(listen, via_relay);
  config["users"].push_back({{"name", "admin"}, {"password", "admin"}});
  config["admin_users"] = nlohmann::json::array({"admin"});
  config["routing"] = {{"failover_timeout", 6}};
  config["failover"] = {{"mode", "pgmux"}};
  config["switchover"] = {{"follow_primary_command", "bash " + cluster_sh() + " follow " + cluster.dir + " %n %N"}};
  return config;
}

// Table af on the primary, replayed, and a first write through pgmux that reached the primary.
void create_table_and_write(const ClusterPorts& ports, const std::string& app_ci) {
  {
    PgConn p = admin(ports.primary, "app");
    exec(p.get(), "CREATE TABLE af (id int PRIMARY KEY)");
    exec(p.get(), "ALTER TABLE af OWNER TO app");
  }
  REQUIRE(wait_replayed(ports, 20));
  std::string error;
  REQUIRE(wait_until([&] { return write_port(app_ci, 1, &error) == ports.primary; }, 20));
}

// Act 1: only pgmux's path to the primary is gone. The standbys still stream: nothing is promoted, and a write
// waits failover_timeout, then fails; once the path is back, writes go to the same primary.
void check_lost_path_promotes_nothing(Relay& relay, const ClusterPorts& ports, const std::string& app_ci,
                                      const std::string& admin_ci) {
  std::string error;
  relay.stop();
  const double t0 = now_seconds();
  CHECK(write_port(app_ci, 2, &error) == -1);
  const double held = now_seconds() - t0;
  CHECK_MESSAGE(held > 4, "the write was not held: " << error);
  CHECK(in_recovery(ports.standby1));
  CHECK(in_recovery(ports.standby2));
  CHECK(backend_field(admin_ci, "primary", "role") == "down");
  {
    // A failover still confirming does not hold a reload up: it is abandoned and starts again at the next view.
    PgConn console = connect(admin_ci);
    PgResult reload(PQexec(console.get(), "RELOAD"));
    CHECK_MESSAGE(PQresultStatus(reload.get()) == PGRES_COMMAND_OK, PQresultErrorMessage(reload.get()));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(in_recovery(ports.standby1));
  CHECK(in_recovery(ports.standby2));
  relay.start();
  CHECK(wait_until([&] { return write_port(app_ci, 3, &error) == ports.primary; }, 20));
}

// Act 2: the primary dies. A write started right after is held, then taken by the promoted standby, whose port
// this returns; the other standby follows it.
int check_killed_primary_replaced(const OwnCluster& cluster, const std::string& app_ci, const std::string& admin_ci) {
  const ClusterPorts& ports = cluster.ports;
  REQUIRE(run_cmd(as_pg(kPgCtl + " stop -m immediate -D " + cluster.dir + "/primary") + " >/dev/null") == 0);
  const double killed = now_seconds();
  std::string error;
  int new_port = write_port(app_ci, 4, &error);
  if (new_port < 0 && error.find("server connection lost") != std::string::npos) {
    // It met a pooled connection to the primary that the relay had not closed yet: lost in flight, as a write
    // already running at the kill is (issue 12 item 1's remaining gap). The next one must be held.
    MESSAGE("the first write after the kill was lost in flight: " << error);
    error.clear();
    new_port = write_port(app_ci, 5, &error);
  }
  MESSAGE("write after the kill answered in " << now_seconds() - killed << " s by port " << new_port << " " << error);
  REQUIRE((new_port == ports.standby1 || new_port == ports.standby2));
  const std::string new_name = new_port == ports.standby1 ? "standby1" : "standby2";
  const std::string other = new_port == ports.standby1 ? "standby2" : "standby1";
  CHECK_FALSE(in_recovery(new_port));
  CHECK(backend_field(admin_ci, new_name, "role") == "primary");
  // The other standby follows the new primary (follow_primary_command) and serves reads on timeline 2.
  CHECK(wait_until([&] { return backend_field(admin_ci, other, "timeline") == "2"; }, 40));
  return new_port;
}

// The old primary comes back as a primary on timeline 1 (what a restart after a crash does): fenced for good.
void check_old_primary_fenced(const OwnCluster& cluster, int new_port, const std::string& app_ci,
                              const std::string& admin_ci) {
  REQUIRE(run_cmd(as_pg(kPgCtl + " start -w -t 30 -D " + cluster.dir + "/primary -l " + cluster.dir +
                        "/primary.restart.log") + " >/dev/null") == 0);
  CHECK(wait_until([&] { return backend_field(admin_ci, "primary", "role") == "fenced"; }, 20));
  std::string error;
  for (int id = 6; id < 26; ++id) CHECK(write_port(app_ci, id, &error) == new_port);
  {
    PgConn old = admin(cluster.ports.primary, "app");
    CHECK(scalar(old.get(), "SELECT count(*) FROM af WHERE id >= 4") == "0");
  }
}

}  // namespace

TEST_CASE("failover.mode pgmux: promotes only once the standbys lost the primary; the old one never writes again") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: pgmux's own failover; nothing to check against a bare server");
    return;
  }
  OwnCluster cluster("rt-autofailover");
  const ClusterPorts& ports = cluster.ports;
  const int relay_port = free_port_from(ports.standby2 + 1);
  int listen = free_port_from(relay_port + 1);
  Relay relay(relay_port, ports.primary);
  ProxyUnderTest proxy(autofailover_config(listen, cluster, relay_port).dump(), listen);
  const std::string app_ci = proxy.conninfo("app", "app", "app");
  const std::string admin_ci = proxy.conninfo("admin", "admin", "pgmux");
  create_table_and_write(ports, app_ci);

  check_lost_path_promotes_nothing(relay, ports, app_ci, admin_ci);
  const int new_port = check_killed_primary_replaced(cluster, app_ci, admin_ci);
  check_old_primary_fenced(cluster, new_port, app_ci, admin_ci);
  CHECK_FALSE(proxy.process()->wait_exit(0));
}
