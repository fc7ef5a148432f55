#include "tests/soak/soak_churn.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "tests/soak/soak_observe.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::soak {
namespace {

constexpr size_t kMostKillsPerTick = 16;
constexpr double kKilledShare = 0.25;
constexpr auto kTick = std::chrono::milliseconds(20);

double server_connects(int metrics_port) {
  auto metrics = scrape_metrics(metrics_port);
  return metrics ? metric_sum(*metrics, "pgmux_server_connects_total") : -1;
}

// remote_pid of every server connection pgmux has logged in (SHOW SERVERS); nullopt when the console failed.
std::optional<std::vector<int>> server_pids(PGconn* admin) {
  test::PgResult res(PQexec(admin, "SHOW SERVERS"));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return std::nullopt;
  const int column = PQfnumber(res.get(), "remote_pid");
  if (column < 0) return std::nullopt;
  std::vector<int> pids;
  for (int row = 0; row < PQntuples(res.get()); ++row) {
    const int pid = std::atoi(PQgetvalue(res.get(), row, column));
    if (pid > 0) pids.push_back(pid);
  }
  return pids;
}

bool usable(const test::PgConn& conn) { return conn && PQstatus(conn.get()) == CONNECTION_OK; }

// pg_terminate_backend of a server that has just gone by itself warns "PID ... is not a PostgreSQL backend
// process": expected here, so not printed.
void ignore_notice(void*, const char*) {}

test::PgConn connect_quietly(const std::string& conninfo) {
  test::PgConn conn = test::try_connect(conninfo);
  if (conn) PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
  return conn;
}

}  // namespace

ServerChurn::ServerChurn(ChurnOptions options) : options_(std::move(options)) {}

ServerChurn::~ServerChurn() { stop(); }

void ServerChurn::start() {
  connects_at_start_ = std::max(0.0, server_connects(options_.metrics_port));
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void ServerChurn::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ServerChurn::loop() {
  test::PgConn admin;
  test::PgConn superuser;
  while (!stop_) {
    if (!usable(admin)) {
      admin = connect_quietly(
          test::conninfo(options_.pgmux_port, options_.admin_user, options_.admin_password, "pgmux"));
    }
    if (!usable(superuser)) {
      superuser = connect_quietly(
          test::conninfo(options_.primary_port, options_.superuser, options_.superuser_password, "postgres"));
    }
    if (!usable(admin) || !usable(superuser) || !kill_servers(admin.get(), superuser.get()) ||
        !kill_clients(admin.get())) {
      errors_.fetch_add(1);
      if (!usable(admin)) admin.reset();
      if (!usable(superuser)) superuser.reset();
    }
    std::this_thread::sleep_for(kTick);
  }
}

// One pacing step: kill as many servers as the count of opened ones lags behind where it should be by now.
bool ServerChurn::kill_servers(PGconn* admin, PGconn* superuser) {
  const double now_total = server_connects(options_.metrics_port);
  if (now_total < 0) return false;
  opened_ = now_total - connects_at_start_;
  // Ten percent ahead of the clients, so the target is met before the last of them is done.
  const double share = std::min(1.0, options_.progress() * 1.1);
  const double target = static_cast<double>(options_.server_target) * share;
  // Vanishing clients and server_lifetime make pgmux open servers too; a quarter of the target is killed anyway,
  // so killed backends stay part of the mix however much churn the rest brings.
  const double behind = std::max(std::ceil(target) - opened_.load(),
                                 std::ceil(target * kKilledShare) - static_cast<double>(killed_.load()));
  if (behind <= 0) return true;
  auto pids = server_pids(admin);
  if (!pids) return false;
  std::shuffle(pids->begin(), pids->end(), random_);
  pids->resize(std::min({pids->size(), kMostKillsPerTick, static_cast<size_t>(behind)}));
  if (pids->empty()) return true;
  std::string list;
  for (int pid : *pids) list += (list.empty() ? "" : ",") + std::to_string(pid);
  const std::string sql = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest('{" + list +
                          "}'::int[]) AS pid";
  test::PgResult res(PQexec(superuser, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return false;
  killed_.fetch_add(static_cast<size_t>(std::atol(PQgetvalue(res.get(), 0, 0))));
  return true;
}

// Disconnects application clients from the admin console (KILL_CLIENT), paced to client_kill_share of the clients
// done: they get 57P01 in whatever state they are, logging in included.
bool ServerChurn::kill_clients(PGconn* admin) {
  const double want = std::floor(static_cast<double>(options_.clients) * options_.client_kill_share *
                                 std::min(1.0, options_.progress()));
  if (static_cast<double>(clients_killed_.load()) >= want) return true;
  test::PgResult res(PQexec(admin, "SHOW CLIENTS"));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return false;
  const int id_column = PQfnumber(res.get(), "id");
  const int database_column = PQfnumber(res.get(), "database");
  if (id_column < 0 || database_column < 0) return false;
  std::vector<std::string> ids;
  for (int row = 0; row < PQntuples(res.get()); ++row) {
    // Not a console session: this thread's own among them.
    if (std::string(PQgetvalue(res.get(), row, database_column)) != "pgmux") {
      ids.emplace_back(PQgetvalue(res.get(), row, id_column));
    }
  }
  if (ids.empty()) return true;
  const std::string command = "KILL_CLIENT " + ids[random_() % ids.size()];
  test::PgResult killed(PQexec(admin, command.c_str()));
  // The client may have left since SHOW CLIENTS: the console then answers an error, and the next tick tries again.
  if (PQresultStatus(killed.get()) == PGRES_COMMAND_OK || PQresultStatus(killed.get()) == PGRES_TUPLES_OK) {
    clients_killed_.fetch_add(1);
  }
  return true;
}

}  // namespace pgmux::soak
