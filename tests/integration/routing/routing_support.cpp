#include "tests/integration/routing/routing_support.hpp"

#include <cstdio>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pgmux::test::routing {

using nlohmann::json;

nlohmann::json routing_config(int listen_port, const ClusterPorts& ports) {
  json config = default_config(listen_port);
  config["backends"] = json::array({
      {{"name", "primary"}, {"host", "127.0.0.1"}, {"port", ports.primary}},
      {{"name", "standby1"}, {"host", "127.0.0.1"}, {"port", ports.standby1}},
      {{"name", "standby2"}, {"host", "127.0.0.1"}, {"port", ports.standby2}},
  });
  for (json& user : config["users"]) {
    // pgmux still logs in to PostgreSQL with the password; only the client side skips SCRAM.
    if (user["name"] == "app") user["auth_method"] = "trust";
  }
  config["health_check"] = {{"period", 0.2}, {"timeout", 1}, {"max_retries", 1}, {"user", "postgres"}};
  config["routing"] = json::object();
  return config;
}

namespace {
void quiet(void*, const char*) {}  // fixture DDL is chatty (NOTICE: ... skipping)
}  // namespace

PgConn admin(int port, const std::string& db) {
  PgConn conn = connect(conninfo(port, "postgres", "postgres", db));
  PQsetNoticeProcessor(conn.get(), quiet, nullptr);
  return conn;
}

int server_port(PGconn* conn, const std::string& sql) { return std::atoi(scalar(conn, sql).c_str()); }

int fresh_read_port(const std::string& conninfo) {
  PgConn conn = try_connect(conninfo);
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) return -1;
  PgResult res(PQexec(conn.get(), "SELECT inet_server_port()"));
  if (!res || PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1) return -1;
  return std::atoi(PQgetvalue(res.get(), 0, 0));
}

std::string backend_field(const std::string& admin_conninfo, const std::string& name, const std::string& column) {
  PgConn conn = try_connect(admin_conninfo);
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) return "";
  PgResult res(PQexec(conn.get(), "SHOW BACKENDS"));
  const int name_col = PQfnumber(res.get(), "name");
  const int col = PQfnumber(res.get(), column.c_str());
  for (int r = 0; r < PQntuples(res.get()) && name_col >= 0 && col >= 0; ++r) {
    if (PQgetvalue(res.get(), r, name_col) == name) return PQgetvalue(res.get(), r, col);
  }
  return "";
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool wait_until(const std::function<bool()>& pred, double seconds, double step) {
  const double deadline = now_seconds() + seconds;
  while (true) {
    if (pred()) return true;
    if (now_seconds() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::duration<double>(step));
  }
}

nlohmann::json lost_server_config(int listen_port, int backend_port) {
  nlohmann::json config = default_config(listen_port);
  config["workers"] = 1;
  config["backends"][0]["port"] = backend_port;
  config["databases"][0]["pool_mode"] = "transaction";
  config["databases"][0]["pool_size"] = 2;
  config["timeouts"]["server_check_delay"] = 600;
  config["routing"] = {{"read_write_split", false}, {"failover_timeout", 30}};
  config["health_check"] = {{"period", 60}};
  return config;
}

std::string await_command_ok(PGconn* conn, double seconds) {
  if (PQsetnonblocking(conn, 1) != 0) return PQerrorMessage(conn);
  const bool answered = wait_until([&] { return PQconsumeInput(conn) == 1 && PQisBusy(conn) == 0; }, seconds);
  PQsetnonblocking(conn, 0);
  if (!answered) return kNoAnswer;
  PgResult first(PQgetResult(conn));
  while (PgResult rest{PQgetResult(conn)}) {
  }
  if (!first) return "no result";
  return PQresultStatus(first.get()) == PGRES_COMMAND_OK ? "" : PQresultErrorMessage(first.get());
}

bool wait_ports_serving(const std::string& conninfo, std::initializer_list<int> ports, double seconds) {
  std::map<int, bool> seen;
  for (int p : ports) seen[p] = false;
  return wait_until(
      [&] {
        int p = fresh_read_port(conninfo);
        if (seen.count(p)) seen[p] = true;
        for (const auto& [port, ok] : seen) {
          if (!ok) return false;
        }
        return true;
      },
      seconds, 0.02);
}

void set_apply_delay(int port, const std::string& value) {
  PgConn s = admin(port);
  exec(s.get(), value.empty() ? "ALTER SYSTEM RESET recovery_min_apply_delay"
                              : "ALTER SYSTEM SET recovery_min_apply_delay = '" + value + "'");
  exec(s.get(), "SELECT pg_reload_conf()");
  const std::string expected = value.empty() ? "0" : value;
  if (!wait_until([&] { return scalar(s.get(), "SHOW recovery_min_apply_delay") == expected; }, 10)) {
    throw std::runtime_error("recovery_min_apply_delay did not become " + expected + " on port " +
                             std::to_string(port));
  }
}

ApplyDelayReset::~ApplyDelayReset() {
  for (int port : ports) {
    try {
      set_apply_delay(port, "");
    } catch (...) {
    }
  }
}

long long replay_lag_bytes(int primary_port, int standby_port) {
  PgConn p = admin(primary_port);
  PgConn s = admin(standby_port);
  std::string primary_lsn = scalar(p.get(), kPrimaryReplayTargetSql);
  std::string lag = scalar(s.get(), "SELECT pg_wal_lsn_diff('" + primary_lsn + "', pg_last_wal_replay_lsn())");
  return std::atoll(lag.c_str());
}

bool wait_replayed(const ClusterPorts& ports, double seconds) {
  PgConn p = admin(ports.primary);
  const std::string target = scalar(p.get(), kPrimaryReplayTargetSql);
  PgConn s1 = admin(ports.standby1);
  PgConn s2 = admin(ports.standby2);
  const std::string check = "SELECT pg_last_wal_replay_lsn() >= '" + target + "'::pg_lsn";
  return wait_until([&] { return scalar(s1.get(), check) == "t" && scalar(s2.get(), check) == "t"; }, seconds);
}

void recreate_database(const ClusterPorts& ports, const std::string& db, const std::vector<std::string>& setup) {
  PgConn p = admin(ports.primary);
  exec(p.get(), "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  exec(p.get(), "CREATE DATABASE " + db + " OWNER app");
  if (!setup.empty()) {
    PgConn in_db = admin(ports.primary, db);
    for (const std::string& sql : setup) exec(in_db.get(), sql);
  }
  if (!wait_replayed(ports, 30)) throw std::runtime_error("standbys did not replay CREATE DATABASE " + db);
}

void drop_database(const ClusterPorts& ports, const std::string& db) {
  PgConn p = admin(ports.primary);
  exec(p.get(), "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
}

std::string describe(const std::map<int, int>& counts, const ClusterPorts& ports) {
  std::ostringstream s;
  bool first = true;
  for (const auto& [port, n] : counts) {
    if (!first) s << ", ";
    first = false;
    if (port == ports.primary) {
      s << "primary";
    } else if (port == ports.standby1) {
      s << "standby1";
    } else if (port == ports.standby2) {
      s << "standby2";
    } else {
      s << "port " << port;
    }
    s << "=" << n;
  }
  return s.str();
}

std::string cluster_sh() {
  const char* env = std::getenv("PGMUX_CLUSTER_SH");
  return env && *env ? env : std::string(PGMUX_SOURCE_DIR) + "/tests/support/cluster.sh";
}

int run_cmd(const std::string& cmd) {
  std::fprintf(stderr, "$ %s\n", cmd.c_str());
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string as_pg(const std::string& cmd) { return geteuid() == 0 ? "runuser -u postgres -- " + cmd : cmd; }

namespace {
int own_cluster_base() {
  const char* env = std::getenv("PGMUX_TEST_FAILOVER_BASEPORT");
  return env && *env ? std::atoi(env) : cluster_ports().primary + 100;
}
}  // namespace

OwnCluster::OwnCluster(const std::string& tag) {
  const int base = own_cluster_base();
  ports = ClusterPorts{base, base + 1, base + 2};
  const char* scratch = std::getenv("PGMUX_TEST_TMPDIR");
  std::string tmpl = std::string(scratch && *scratch ? scratch : "/tmp") + "/pgmux-" + tag + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl + " failed");
  dir = tmpl;
  if (run_cmd(cluster_sh() + " start " + dir + " " + std::to_string(base) + " >" + dir + ".start.log 2>&1") != 0) {
    throw std::runtime_error("cluster.sh start failed; see " + dir + ".start.log");
  }
}

OwnCluster::~OwnCluster() {
  run_cmd(cluster_sh() + " stop " + dir + " >/dev/null");
  run_cmd("rm -rf '" + dir + "' '" + dir + ".start.log'");
}

}  // namespace pgmux::test::routing
