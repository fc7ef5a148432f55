#include "tests/integration/txpool/txpool_support.hpp"

#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace pgmux::test::txpool {

using nlohmann::json;

json txpool_config(int listen_port, const std::string& db, int pool_size, bool split) {
  const ClusterPorts ports = cluster_ports();
  json config = split ? routing::routing_config(listen_port, ports) : default_config(listen_port);
  for (json& user : config["users"]) {
    if (user["name"] == "app") user["auth_method"] = "trust";
  }
  json database = {{"name", db}, {"pool_mode", "transaction"}, {"pool_size", pool_size}};
  if (!split) {
    database["backends"] = json::array({"primary"});
    config["routing"] = {{"read_write_split", false}};
  }
  config["databases"] = json::array({database});
  return config;
}

json& database_entry(json& config) { return config["databases"][0]; }

std::string prepare_named(PGconn* conn, const std::string& name, const std::string& sql) {
  PgResult res(PQprepare(conn, name.c_str(), sql.c_str(), 0, nullptr));
  return PQresultStatus(res.get()) == PGRES_COMMAND_OK ? "" : sqlstate(res.get());
}

std::string run_named(PGconn* conn, const std::string& name) {
  PgResult res(PQexecPrepared(conn, name.c_str(), 0, nullptr, nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return "error " + sqlstate(res.get());
  return PQntuples(res.get()) > 0 ? PQgetvalue(res.get(), 0, 0) : "";
}

void fresh_database(const std::string& db, bool wait_standbys) {
  const ClusterPorts ports = cluster_ports();
  if (wait_standbys) {
    routing::recreate_database(ports, db);
    return;
  }
  PgConn p = routing::admin(ports.primary);
  exec(p.get(), "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  exec(p.get(), "CREATE DATABASE " + db + " OWNER app");
}

void drop_database_quietly(const std::string& db) {
  try {
    routing::drop_database(cluster_ports(), db);
  } catch (...) {
  }
}

std::string run_threads(int n, const std::function<void(int)>& body) {
  std::mutex mu;
  std::string first;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        body(i);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        if (first.empty()) first = "thread " + std::to_string(i) + ": " + e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return first;
}

std::string app_conninfo(int port, const std::string& db, const std::string& extra) {
  std::string ci = conninfo(port, "app", "app", db);
  return extra.empty() ? ci : ci + " " + extra;
}

void wait_serving(const std::string& ci, const std::string& sql) {
  std::string last;
  const bool ok = routing::wait_until(
      [&] {
        PgConn conn = try_connect(ci);
        if (PQstatus(conn.get()) != CONNECTION_OK) {
          last = PQerrorMessage(conn.get());
          return false;
        }
        PgResult res(PQexec(conn.get(), sql.c_str()));
        last = error_text(conn.get(), res.get());
        return PQresultStatus(res.get()) == PGRES_TUPLES_OK;
      },
      10.0, 0.05);
  if (!ok) throw std::runtime_error("proxy did not serve queries within 10 s: " + last);
}

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

long raise_nofile(long want) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  if (static_cast<long>(lim.rlim_cur) < want) {
    rlim_t target = static_cast<rlim_t>(want);
    if (lim.rlim_max != RLIM_INFINITY && target > lim.rlim_max) target = lim.rlim_max;
    lim.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  return static_cast<long>(lim.rlim_cur);
}

long process_nofile_limit(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    std::string soft;
    fields >> soft;
    return soft == "unlimited" ? 1L << 30 : std::atol(soft.c_str());
  }
  return -1;
}

int server_connections(const std::string& db, const std::string& user) {
  PgConn p = routing::admin(cluster_ports().primary);
  // Not the function-catalog loader's short connection (as the health-check user, who may be `user`).
  return std::atoi(scalar(p.get(), "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                   "AND application_name <> 'pgmux-catalog' "
                                   "AND datname = '" + db + "' AND usename = '" + user + "'")
                       .c_str());
}

namespace {
void capture_notice(void* arg, const PGresult* res) {
  auto* capture = static_cast<NoticeCapture*>(arg);
  if (!capture->message.empty()) return;
  capture->sqlstate = sqlstate(res);
  capture->message = PQresultErrorMessage(res);
}
}  // namespace

void NoticeCapture::install(PGconn* conn) { PQsetNoticeReceiver(conn, capture_notice, this); }

bool wait_closed_by_proxy(PGconn* conn, double seconds) {
  const double deadline = routing::now_seconds() + seconds;
  while (routing::now_seconds() < deadline) {
    if (!wait_readable(conn, std::max(0.01, deadline - routing::now_seconds()))) continue;
    // 0 = the read failed: EOF or reset. PQconsumeInput only reads; PQisBusy parses what arrived, handing an
    // ErrorResponse received while idle to the notice receiver.
    const bool alive = PQconsumeInput(conn) == 1;
    PQisBusy(conn);
    if (!alive || PQstatus(conn) == CONNECTION_BAD) return true;
  }
  return false;
}

std::string error_text(PGconn* conn, const PGresult* res) {
  std::string code = sqlstate(res);
  std::string msg = res ? PQresultErrorMessage(res) : "";
  if (msg.empty() && conn) msg = PQerrorMessage(conn);
  return (code.empty() ? "" : "[" + code + "] ") + msg;
}

namespace {
std::string tweaked_config(const std::string& db, int listen, int pool_size,
                           const std::function<void(json&)>& tweak, const std::function<void()>& first_setup) {
  static std::set<std::string> created;  // one fresh database per test binary
  if (created.insert(db).second) {
    fresh_database(db);
    if (first_setup) first_setup();
  }
  json config = txpool_config(listen, db, pool_size);
  tweak(config);
  return config.dump();
}
}  // namespace

TweakedProxy::TweakedProxy(const std::string& db, int pool_size, const std::function<void(json&)>& tweak, bool wait,
                           const std::function<void()>& first_setup)
    : listen(pick_listen_port()),
      proxy(tweaked_config(db, listen, pool_size, tweak, first_setup), listen),
      ci(app_conninfo(proxy.port(), db)) {
  if (wait) wait_serving(ci);
}

void TweakedProxy::log_if(bool failed) {
  if (failed && proxy.process()) MESSAGE("pgmux log:\n" << proxy.process()->log());
}

}  // namespace pgmux::test::txpool
