// Admin SWITCHOVER on a cluster of its own, under a pgbench tpcb-like run with 32 clients through pgmux, in session
// and transaction pooling: the switchover holds writes, lets running transactions finish, stops the old primary
// and restarts it as a standby (switchover.demote_command = cluster.sh rejoin), promotes standby1 with
// pg_promote(), repoints standby2 (follow_primary_command = cluster.sh follow) and releases the held writes.
// pgbench must end with zero failed transactions and consistent balances on the new primary; the old primary
// must come back as a readable standby of the new timeline. Before that: refusals, and a switchover canceled by
// a transaction that stays open past switchover.drain_timeout.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kBin = "/usr/lib/postgresql/15/bin";
constexpr int kClients = 32;
constexpr int kSeconds = 14;

struct AdminOutcome {
  std::string sqlstate, message, hint;
  std::vector<std::string> notices;
  bool ok = false;
};

void collect_notice(void* arg, const PGresult* result) {
  const char* text = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  static_cast<std::vector<std::string>*>(arg)->push_back(text ? text : "");
}

// One console command; no doctest macro, so another thread may run it.
AdminOutcome run_console(const std::string& conninfo, const std::string& command) {
  AdminOutcome out;
  PgConn conn = connect(conninfo);
  PQsetNoticeReceiver(conn.get(), collect_notice, &out.notices);
  PgResult res(PQexec(conn.get(), command.c_str()));
  out.ok = PQresultStatus(res.get()) == PGRES_COMMAND_OK || PQresultStatus(res.get()) == PGRES_TUPLES_OK;
  auto field = [&](int code) {
    const char* v = PQresultErrorField(res.get(), code);
    return std::string(v ? v : "");
  };
  out.sqlstate = field(PG_DIAG_SQLSTATE);
  out.message = field(PG_DIAG_MESSAGE_PRIMARY);
  out.hint = field(PG_DIAG_MESSAGE_HINT);
  return out;
}

void report(const std::string& command, const AdminOutcome& out) {
  std::string all;
  for (const std::string& n : out.notices) all += "\n  NOTICE: " + n;
  MESSAGE(command << " -> " << (out.ok ? "ok" : out.sqlstate + " " + out.message) << all);
}

AdminOutcome console(const std::string& conninfo, const std::string& command) {
  AdminOutcome out = run_console(conninfo, command);
  report(command, out);
  return out;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& text) {
  for (const std::string& line : lines) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

// Runs a command in the background and keeps its output and exit status.
struct Background {
  std::string output;
  int status = -1;
  std::thread thread;
  explicit Background(const std::string& cmd) {
    thread = std::thread([this, cmd] { status = run_shell(cmd, &output); });
  }
  void join() {
    if (thread.joinable()) thread.join();
  }
  ~Background() { join(); }
};

long long sum_of(PGconn* conn, const std::string& sql) { return std::atoll(scalar(conn, sql).c_str()); }

// A transaction left open past drain_timeout cancels the switchover; nothing changes and it can still commit.
void check_canceled_by_open_transaction(const std::string& admin_ci, const std::string& app_ci, int primary_port) {
  PgConn open = connect(app_ci);
  exec(open.get(), "BEGIN");
  exec(open.get(), "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1");
  const AdminOutcome canceled = console(admin_ci, "SWITCHOVER TO standby1");
  CHECK_FALSE(canceled.ok);
  CHECK(canceled.sqlstate == "55000");
  CHECK(canceled.message.find("switchover canceled: 1 transaction(s) on primary were still running after "
                              "switchover.drain_timeout") == 0);
  CHECK(canceled.message.find("writes resume on primary") != std::string::npos);
  exec(open.get(), "COMMIT");
  PgConn after = connect(app_ci);
  CHECK(server_port(after.get(), "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1 "
                                 "RETURNING inet_server_port()") == primary_port);
}

// pgmux over the cluster's three nodes as primary/standby1/standby2, pooled by `pool_mode`, with an admin user and
// the switchover commands of cluster.sh (rejoin the old primary, repoint the other standby).
nlohmann::json switchover_config(const OwnCluster& cluster, int listen, const char* pool_mode) {
  nlohmann::json config = routing_config(listen, cluster.ports);
  config["users"].push_back({{"name", "admin"}, {"password", "admin"}});
  config["admin_users"] = nlohmann::json::array({"admin"});
  config["routing"] = {{"failover_timeout", 30}};
  for (nlohmann::json& database : config["databases"]) {
    database["pool_mode"] = pool_mode;
    database["pool_size"] = kClients + 8;  // session pooling: every pgbench client holds a server
  }
  const std::string sh = "bash " + cluster_sh() + " ";
  config["switchover"] = {{"drain_timeout", 2},
                          {"catchup_timeout", 20},
                          {"command_timeout", 60},
                          {"demote_command", sh + "rejoin " + cluster.dir + " %n %N"},
                          {"follow_primary_command", sh + "follow " + cluster.dir + " %n %N"}};
  return config;
}

// pgbench -i on the primary, then waits until standby1 can be the switchover's target.
void init_pgbench_tables(const OwnCluster& cluster, const std::string& pgbench, const std::string& admin_ci) {
  const ClusterPorts& ports = cluster.ports;
  REQUIRE(run_cmd("PGPASSWORD=app " + pgbench + "-p " + std::to_string(ports.primary) + " -i -s 2 -q app >" +
                  cluster.dir + ".init.log 2>&1") == 0);
  REQUIRE(wait_replayed(ports, 20));
  // In the read set again after pgbench -i (a lagging standby is refused as the target, see switchover_plan).
  REQUIRE(wait_until([&] {
    return backend_field(admin_ci, "standby1", "sync_state") == "async" &&
           backend_field(admin_ci, "standby1", "excluded_reason").empty();
  }, 30));
}

// Refused before anything is held.
void check_refusals(const std::string& admin_ci) {
  CHECK(console(admin_ci, "SWITCHOVER TO nosuch").sqlstate == "42704");
  CHECK(console(admin_ci, "SWITCHOVER TO primary").message ==
        "switchover refused: backend \"primary\" is already the primary");
  CHECK(console(admin_ci, "SWITCHOVER FROM x").sqlstate == "42601");
}

// SWITCHOVER TO standby1 while pgbench runs through pgmux on `listen`: it succeeds, a RELOAD meanwhile is refused,
// and pgbench ends with no failed transaction.
void check_switchover_under_pgbench(const std::string& admin_ci, const std::string& pgbench, int listen,
                                    const char* pool_mode) {
  Background run("timeout 120 " + pgbench + "-p " + std::to_string(listen) + " -n -c " + std::to_string(kClients) +
                 " -j 4 -T " + std::to_string(kSeconds) + " app");
  std::this_thread::sleep_for(std::chrono::seconds(4));
  const double t0 = now_seconds();
  AdminOutcome done;
  std::thread switchover([&] { done = run_console(admin_ci, "SWITCHOVER TO standby1"); });
  // Meanwhile a reload is refused: the switchover's backends and settings stay put (the demote alone takes longer).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const AdminOutcome reload = run_console(admin_ci, "RELOAD");
  switchover.join();
  report("SWITCHOVER TO standby1", done);
  MESSAGE("SWITCHOVER answered after " << now_seconds() - t0 << " s");
  report("RELOAD during it", reload);
  CHECK(reload.sqlstate == "F0000");
  CHECK(reload.message.find("a SWITCHOVER is running; the old config stays") != std::string::npos);
  run.join();
  MESSAGE("pgbench (" << pool_mode << ") exit " << run.status << ":\n" << run.output);

  CHECK(done.ok);
  CHECK(any_contains(done.notices, "switchover from primary to standby1 done"));
  CHECK(any_contains(done.notices, "writes were held for "));
  CHECK(any_contains(done.notices, "standby1 is the primary on timeline 2"));
  CHECK(run.status == 0);
  CHECK(run.output.find("number of failed transactions: 0 ") != std::string::npos);
  CHECK(run.output.find("abort") == std::string::npos);
  CHECK(run.output.find("rror") == std::string::npos);
}

// Every committed transaction's history row and its balance changes, on the new primary.
void check_balances_on_new_primary(int new_primary_port) {
  PgConn np = admin(new_primary_port, "app");
  CHECK(scalar(np.get(), "SELECT pg_is_in_recovery()") == "f");
  const long long delta = sum_of(np.get(), "SELECT coalesce(sum(delta), 0) FROM pgbench_history");
  CHECK(sum_of(np.get(), "SELECT sum(abalance) FROM pgbench_accounts") == delta);
  CHECK(sum_of(np.get(), "SELECT sum(bbalance) FROM pgbench_branches") == delta);
  CHECK(sum_of(np.get(), "SELECT sum(tbalance) FROM pgbench_tellers") == delta);
  CHECK(sum_of(np.get(), "SELECT count(*) FROM pgbench_history") > 0);
}

// Writes go to standby1 now; the old primary, rejoined as a standby of timeline 2, and the repointed standby2
// serve reads again.
void check_roles_after_switchover(const std::string& admin_ci, const std::string& app_ci, const ClusterPorts& ports) {
  PgConn after = connect(app_ci);
  CHECK(server_port(after.get(), "INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 0) "
                                 "RETURNING inet_server_port()") == ports.standby1);
  CHECK(wait_until([&] { return backend_field(admin_ci, "primary", "role") == "standby"; }, 40));
  CHECK(backend_field(admin_ci, "primary", "timeline") == "2");
  CHECK(wait_until([&] { return backend_field(admin_ci, "standby2", "timeline") == "2"; }, 40));
  CHECK(wait_ports_serving(app_ci, {ports.primary, ports.standby2}, 30));
}

void check_switchover(const char* pool_mode) {
  const std::string mode = pool_mode;  // CAPTURE prints a char pointer as an address
  CAPTURE(mode);
  OwnCluster cluster(std::string("rt-switchover-") + pool_mode);
  const ClusterPorts& ports = cluster.ports;
  int listen = pick_listen_port();
  if (listen >= ports.primary && listen <= ports.standby2) listen = free_port_from(ports.standby2 + 1);
  ProxyUnderTest proxy(switchover_config(cluster, listen, pool_mode).dump(), listen);
  const std::string app_ci = proxy.conninfo("app", "app", "app");
  const std::string admin_ci = proxy.conninfo("admin", "admin", "pgmux");
  const std::string pgbench = std::string(kBin) + "/pgbench -h 127.0.0.1 -U app ";
  init_pgbench_tables(cluster, pgbench, admin_ci);

  check_refusals(admin_ci);
  check_canceled_by_open_transaction(admin_ci, app_ci, ports.primary);
  check_switchover_under_pgbench(admin_ci, pgbench, listen, pool_mode);
  check_balances_on_new_primary(ports.standby1);
  check_roles_after_switchover(admin_ci, app_ci, ports);
  CHECK_FALSE(proxy.process()->wait_exit(0));
}

}  // namespace

TEST_CASE("SWITCHOVER under pgbench: zero failed transactions, consistent balances: transaction pooling") {
  if (direct_mode()) {
    MESSAGE("PGMUX_TEST_DIRECT=1: SWITCHOVER is pgmux's; nothing to check against a bare server");
    return;
  }
  check_switchover("transaction");
}

TEST_CASE("SWITCHOVER under pgbench: zero failed transactions, consistent balances: session pooling") {
  if (direct_mode()) return;
  check_switchover("session");
}
