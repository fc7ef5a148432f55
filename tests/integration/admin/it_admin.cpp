// The admin console end to end (issue 5): every command through libpq against pgmux over the real primary and two
// standbys, with its output checked; permissions; bad commands answered with an error and a hint while the session
// goes on; PAUSE holding new transactions of a pgbench run and RESUME releasing them with no client error.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

namespace pgmux::test {
namespace {

using nlohmann::json;
using routing::now_seconds;
using routing::wait_until;

const char* const kDb = "admin_it";

// A result as rows of column name -> text, for readable checks.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::map<std::string, std::string>> rows;
  const std::map<std::string, std::string>* find(const std::string& column, const std::string& value) const {
    for (const auto& row : rows) {
      auto it = row.find(column);
      if (it != row.end() && it->second == value) return &row;
    }
    return nullptr;
  }
};

Table query(PGconn* conn, const std::string& sql) {
  PgResult res = exec(conn, sql);
  Table t;
  for (int c = 0; c < PQnfields(res.get()); ++c) t.columns.emplace_back(PQfname(res.get(), c));
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    std::map<std::string, std::string> row;
    for (int c = 0; c < PQnfields(res.get()); ++c) row[t.columns[static_cast<size_t>(c)]] = PQgetvalue(res.get(), r, c);
    t.rows.push_back(std::move(row));
  }
  return t;
}

// The error of a statement that must fail: SQLSTATE and hint.
struct Failure {
  std::string sqlstate, message, hint;
};
Failure failure(PGconn* conn, const std::string& sql) {
  PgResult res(PQexec(conn, sql.c_str()));
  Failure f;
  if (PQresultStatus(res.get()) != PGRES_FATAL_ERROR) return f;
  const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY);
  const char* hint = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_HINT);
  f.sqlstate = state ? state : "";
  f.message = message ? message : "";
  f.hint = hint ? hint : "";
  return f;
}

bool has_columns(const Table& t, std::initializer_list<const char*> names) {
  std::set<std::string> have(t.columns.begin(), t.columns.end());
  for (const char* n : names) {
    if (!have.count(n)) {
      MESSAGE("missing column " << n);
      return false;
    }
  }
  return true;
}

class Fixture {
 public:
  Fixture() : ports(cluster_ports()), listen_port(pick_listen_port()) {
    routing::recreate_database(ports, kDb);
    config = routing::routing_config(listen_port, ports);
    config["users"].push_back({{"name", "admin"}, {"password", "admin-secret"}});
    config["users"].push_back({{"name", "watcher"}, {"password", "watcher-secret"}});
    config["admin_users"] = json::array({"admin"});
    config["stats_users"] = json::array({"watcher"});
    config["databases"].push_back({{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 4}});
    proxy = std::make_unique<ProxyUnderTest>(config.dump(2), listen_port);
    REQUIRE(routing::wait_ports_serving(app(), {ports.standby1, ports.standby2}, 15));
  }
  ~Fixture() { routing::drop_database(ports, kDb); }

  std::string app(const std::string& extra = "") const {
    return conninfo(listen_port, "app", "app", kDb) + " " + extra;
  }
  std::string console(const std::string& user = "admin", const std::string& password = "admin-secret") const {
    return conninfo(listen_port, user, password, "pgmux");
  }
  // Rewrites the file pgmux was started with.
  void write_config(const std::string& text) {
    std::ofstream out(proxy->process()->config_path(), std::ios::trunc);
    out << text;
  }

  ClusterPorts ports;
  int listen_port;
  json config;
  std::unique_ptr<ProxyUnderTest> proxy;
};

// Reads over fresh connections: how many each port served.
std::map<int, int> read_split(const std::string& conninfo, int reads) {
  std::map<int, int> counts;
  for (int i = 0; i < reads; ++i) ++counts[routing::fresh_read_port(conninfo)];
  return counts;
}

// SHOW BACKENDS (and its Pgpool-II name SHOW POOL_NODES), SHOW POOLS and SHOW BACKEND_POOLS, after reads.
void check_show_backends_and_pools(PGconn* conn, const ClusterPorts& ports) {
  Table backends = query(conn, "SHOW BACKENDS");
  CHECK(has_columns(backends, {"node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
                               "select_cnt", "load_balance_node", "replication_delay", "last_status_change",
                               "lag_bytes", "lag_seconds", "timeline", "excluded_reason"}));
  REQUIRE(backends.rows.size() == 3);
  CHECK(backends.rows[0]["port"] == std::to_string(ports.primary));
  CHECK(backends.rows[0]["role"] == "primary");
  CHECK(backends.rows[0]["pg_role"] == "primary");
  CHECK(backends.rows[1]["role"] == "standby");
  CHECK(backends.rows[2]["pg_role"] == "standby");
  CHECK(backends.rows[1]["status"] == "up");
  CHECK(backends.rows[1]["lb_weight"] == "0.5");
  CHECK(backends.rows[1]["load_balance_node"] == "t");
  CHECK(backends.rows[0]["timeline"] != "0");
  // The reads above were counted where they went.
  const long selects =
      std::atol(backends.rows[1]["select_cnt"].c_str()) + std::atol(backends.rows[2]["select_cnt"].c_str());
  CHECK(selects >= 2);
  CHECK(query(conn, "SHOW POOL_NODES").columns == backends.columns);

  Table pools = query(conn, "SHOW POOLS");  // PgBouncer's: one row per (database, user)
  const auto* app_pool = pools.find("database", kDb);
  REQUIRE(app_pool != nullptr);
  CHECK(app_pool->at("user") == "app");
  CHECK(std::atoi(app_pool->at("cl_active").c_str()) >= 1);
  CHECK(app_pool->at("pool_mode") == "transaction");
  CHECK(app_pool->at("backends").find("primary") != std::string::npos);
  Table backend_pools = query(conn, "SHOW BACKEND_POOLS");  // pgmux's: one per (database, user, backend)
  bool primary_pool = false;
  for (const auto& row : backend_pools.rows) {
    if (row.at("database") == kDb && row.at("user") == "app" && row.at("backend") == "primary") {
      primary_pool = true;
      CHECK(row.at("pool_mode") == "transaction");
      CHECK(row.at("pool_size") == "4");
      CHECK(row.at("role") == "primary");
      CHECK(std::atoi(row.at("sv_idle").c_str()) + std::atoi(row.at("sv_active").c_str()) >= 1);
    }
  }
  CHECK(primary_pool);
}

// SHOW STATS, LISTS, DATABASES, USERS and CONFIG; `client` is the transaction-pooled app client.
void check_show_stats_and_settings(PGconn* conn, PGconn* client) {
  // Ten more queries: the database's totals move by at least that much.
  auto total = [&](const char* column) {
    const Table stats = query(conn, "SHOW STATS");
    const auto* row = stats.find("database", kDb);
    return row ? std::atol(row->at(column).c_str()) : -1L;
  };
  const long queries_before = total("total_query_count");
  const long xacts_before = total("total_xact_count");
  for (int i = 0; i < 10; ++i) exec(client, "SELECT 1");
  CHECK(total("total_query_count") >= queries_before + 10);
  CHECK(total("total_xact_count") >= xacts_before + 10);
  Table stats = query(conn, "SHOW STATS");
  CHECK(has_columns(stats, {"database", "total_xact_count", "total_query_count", "total_received", "total_sent",
                            "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_time",
                            "avg_query_time"}));
  CHECK(std::atol(stats.find("database", kDb)->at("total_sent").c_str()) > 0);

  Table lists = query(conn, "SHOW LISTS");
  CHECK(lists.find("list", "backends")->at("items") == "3");
  CHECK(std::atoi(lists.find("list", "admin_clients")->at("items").c_str()) >= 1);
  CHECK(std::atoi(lists.find("list", "used_clients")->at("items").c_str()) >= 1);

  Table databases = query(conn, "SHOW DATABASES");
  CHECK(has_columns(databases, {"name", "database", "pool_size", "min_pool_size", "reserve_pool", "pool_mode",
                                "max_connections", "current_connections", "paused"}));
  REQUIRE(databases.find("name", kDb) != nullptr);
  CHECK(databases.find("name", kDb)->at("pool_mode") == "transaction");

  Table users = query(conn, "SHOW USERS");
  CHECK(users.find("name", "admin")->at("console") == "admin");
  CHECK(users.find("name", "watcher")->at("console") == "stats");
  CHECK(users.find("name", "app")->at("auth_method") == "trust");

  Table config = query(conn, "SHOW CONFIG");
  CHECK(has_columns(config, {"key", "value", "default", "changeable"}));
  CHECK(config.find("key", "routing.max_lag_bytes")->at("value") == "16777216");
  CHECK(config.find("key", "routing.max_lag_bytes")->at("changeable") == "yes");
  CHECK(config.find("key", "listeners")->at("changeable") == "restart");
  CHECK(config.find("key", "health_check.period")->at("value") == "0.2");
}

}  // namespace

TEST_CASE_FIXTURE(Fixture, "console access: admin_users, stats_users, everyone else refused") {
  SUBCASE("an application user may not log in to the console") {
    PgConn conn = try_connect(conninfo(listen_port, "app", "app", "pgmux"));
    CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
    CHECK(std::string(PQerrorMessage(conn.get())).find("may not use the admin console") != std::string::npos);
  }
  SUBCASE("a wrong password is refused") {
    PgConn conn = try_connect(console("admin", "wrong"));
    CHECK(PQstatus(conn.get()) == CONNECTION_BAD);
    CHECK(std::string(PQerrorMessage(conn.get())).find("password authentication failed") != std::string::npos);
  }
  SUBCASE("stats_users may SHOW but not change anything, and the session goes on") {
    PgConn conn = connect(console("watcher", "watcher-secret"));
    CHECK(query(conn.get(), "SHOW VERSION").rows.size() == 1);
    for (const char* command : {"PAUSE", "RESUME", "RELOAD", "SET routing.max_lag_bytes = 5", "DISABLE BACKEND 1",
                                "SET BACKEND 1 WEIGHT 2", "KILL_CLIENT C-1", "SHUTDOWN"}) {
      Failure f = failure(conn.get(), command);
      CHECK_MESSAGE(f.sqlstate == "42501", command);
      CHECK(f.hint.find("stats_users") != std::string::npos);
    }
    CHECK(query(conn.get(), "SHOW BACKENDS").rows.size() == 3);
  }
}

// PgBouncer 1.25's columns (src/admin.c and src/stats.c of that release), which tools read by name or position.
const std::map<std::string, std::vector<std::string>> kPgBouncerColumns = {
    {"SHOW POOLS",
     {"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
      "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait",
      "maxwait_us", "pool_mode", "load_balance_hosts"}},
    {"SHOW STATS",
     {"database", "total_server_assignment_count", "total_xact_count", "total_query_count", "total_received",
      "total_sent", "total_xact_time", "total_query_time", "total_wait_time", "total_client_parse_count",
      "total_server_parse_count", "total_bind_count", "avg_server_assignment_count", "avg_xact_count",
      "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time",
      "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"}},
    {"SHOW STATS_TOTALS",
     {"database", "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
      "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"}},
    {"SHOW DATABASES",
     {"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool_size",
      "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections",
      "max_client_connections", "current_client_connections", "paused", "disabled"}},
    {"SHOW LISTS", {"list", "items"}},
    {"SHOW CLIENTS",
     {"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
      "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
      "application_name", "prepared_statements", "id"}},
    {"SHOW MEM", {"name", "size", "used", "free", "memtotal"}},
    {"SHOW FDS",
     {"fd", "task", "user", "database", "addr", "port", "cancel", "link", "client_encoding", "std_strings",
      "datestyle", "timezone", "password", "scram_client_key", "scram_server_key"}},
};

TEST_CASE_FIXTURE(Fixture, "PgBouncer's SHOW commands answer PgBouncer 1.25's columns first, in its order") {
  PgConn client = connect(app());
  exec(client.get(), "SELECT 1");
  PgConn conn = connect(console("watcher", "watcher-secret"));  // a stats user may read them all
  std::map<std::string, std::vector<std::string>> expected = kPgBouncerColumns;
  expected["SHOW SERVERS"] = expected.at("SHOW CLIENTS");  // the same columns
  for (const auto& entry : expected) {  // named, not a structured binding: INFO captures it (clang 14)
    const std::string& command = entry.first;
    const std::vector<std::string>& columns = entry.second;
    const Table t = query(conn.get(), command);
    INFO(command);
    REQUIRE(t.columns.size() >= columns.size());
    CHECK(std::vector<std::string>(t.columns.begin(), t.columns.begin() + static_cast<long>(columns.size())) ==
          columns);
  }
  // SHOW LISTS: PgBouncer's rows first, in its order.
  const Table lists = query(conn.get(), "SHOW LISTS");
  const std::vector<std::string> rows = {"databases",    "users",        "peers",       "pools",
                                         "peer_pools",   "free_clients", "used_clients", "login_clients",
                                         "free_servers", "used_servers", "dns_names",   "dns_zones",
                                         "dns_queries",  "dns_pending"};
  REQUIRE(lists.rows.size() >= rows.size());
  for (size_t i = 0; i < rows.size(); ++i) CHECK(lists.rows[i].at("list") == rows[i]);
  // Values pgmux has are real: the app client and this session are used clients; its server has an fd.
  CHECK(std::atoi(lists.find("list", "used_clients")->at("items").c_str()) >= 2);
  const Table fds = query(conn.get(), "SHOW FDS");
  const auto* server_fd = fds.find("task", "server");
  REQUIRE(server_fd != nullptr);
  CHECK(std::atoi(server_fd->at("fd").c_str()) > 2);
  CHECK(server_fd->at("password").empty());  // NULL: no secret leaves pgmux
  const Table mem = query(conn.get(), "SHOW MEM");
  CHECK(std::atol(mem.find("name", "client_cache")->at("used").c_str()) >= 2);
  CHECK(std::atol(mem.find("name", "client_cache")->at("size").c_str()) > 0);
  const Table clients = query(conn.get(), "SHOW CLIENTS");
  const auto* me = clients.find("user", "watcher");
  REQUIRE(me != nullptr);
  CHECK(me->at("local_port") == std::to_string(listen_port));
  CHECK(me->at("replication") == "none");
  // Transaction pooling's named prepared statements are counted as PgBouncer counts them: a PQprepare and two
  // executions make 1 client Parse, 2 Binds, and a Parse on the server the PQprepare went to and on each other
  // server the reads went to (one or two standbys).
  auto totals = [&](const char* column) {
    const Table stats = query(conn.get(), "SHOW STATS_TOTALS");
    const auto* row = stats.find("database", kDb);
    return row ? std::atol(row->at(column).c_str()) : -1L;
  };
  const long client_parses = totals("client_parse_count"), server_parses = totals("server_parse_count");
  const long binds = totals("bind_count");
  PgResult prepared(PQprepare(client.get(), "counted", "SELECT $1::int + 1", 1, nullptr));
  REQUIRE(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
  for (const char* value : {"1", "2"}) {
    PgResult run(PQexecPrepared(client.get(), "counted", 1, &value, nullptr, nullptr, 0));
    CHECK(PQresultStatus(run.get()) == PGRES_TUPLES_OK);
  }
  CHECK(totals("client_parse_count") == client_parses + 1);
  const long server_parses_now = totals("server_parse_count");
  CHECK(server_parses_now >= server_parses + 1);
  CHECK(server_parses_now <= server_parses + 3);
  CHECK(totals("bind_count") == binds + 2);
  // PgBouncer's tools open the console as "pgbouncer": the same console.
  PgConn as_pgbouncer = connect(conninfo(listen_port, "watcher", "watcher-secret", "pgbouncer"));
  CHECK(query(as_pgbouncer.get(), "SHOW VERSION").rows.size() == 1);
}

TEST_CASE_FIXTURE(Fixture, "SHOW commands answer tables with PgBouncer's and Pgpool-II's columns") {
  PgConn client = connect(app("application_name=admin_it_client"));
  exec(client.get(), "SELECT 1");
  exec(client.get(), "CREATE TABLE IF NOT EXISTS t (id int)");
  PgConn conn = connect(console());

  Table version = query(conn.get(), "SHOW VERSION");
  REQUIRE(version.rows.size() == 1);
  CHECK(version.rows[0]["version"].rfind("pgmux ", 0) == 0);

  Table help = query(conn.get(), "show help;");  // any case, trailing semicolon
  CHECK(help.rows.size() >= 20);
  CHECK(help.find("command", "EXPLAIN ROUTE <sql>") != nullptr);

  check_show_backends_and_pools(conn.get(), ports);

  const Table clients = query(conn.get(), "SHOW CLIENTS");
  CHECK(has_columns(clients, {"id", "type", "user", "database", "state", "addr", "port", "connect_time",
                              "request_time", "wait", "wait_us", "application_name"}));
  const auto* me = clients.find("application_name", "admin_it_client");
  REQUIRE(me != nullptr);
  CHECK(me->at("user") == "app");
  CHECK(me->at("database") == kDb);
  CHECK(me->at("state") == "idle");
  CHECK(me->at("addr") == "127.0.0.1");
  CHECK(me->at("id").rfind("C-", 0) == 0);
  CHECK(clients.find("type", "admin") != nullptr);

  // A transaction holds its server: SHOW SERVERS links it to the client.
  exec(client.get(), "BEGIN");
  exec(client.get(), "INSERT INTO t VALUES (1)");
  Table servers = query(conn.get(), "SHOW SERVERS");
  CHECK(has_columns(servers, {"id", "type", "user", "database", "state", "addr", "port", "connect_time",
                              "request_time", "link", "remote_pid"}));
  const auto* linked = servers.find("link", me->at("id"));
  REQUIRE(linked != nullptr);
  CHECK(linked->at("backend") == "primary");
  CHECK(linked->at("port") == std::to_string(ports.primary));
  CHECK(linked->at("tx_status") == "T");
  CHECK(std::atoi(linked->at("remote_pid").c_str()) ==
        std::atoi(scalar(client.get(), "SELECT pg_backend_pid()").c_str()));
  const Table during = query(conn.get(), "SHOW CLIENTS");
  CHECK(during.find("application_name", "admin_it_client")->at("state") == "active");
  exec(client.get(), "COMMIT");

  check_show_stats_and_settings(conn.get(), client.get());
}

TEST_CASE_FIXTURE(Fixture, "bad commands get an error with a hint and the session goes on") {
  PgConn conn = connect(console());
  Failure unknown = failure(conn.get(), "SHOW NOTHING");
  CHECK(unknown.sqlstate == "42601");
  CHECK(unknown.hint == "SHOW HELP lists the commands");
  CHECK(failure(conn.get(), "SELECT 1").sqlstate == "42601");
  CHECK(failure(conn.get(), "DISABLE BACKEND 7").sqlstate == "42704");
  CHECK(failure(conn.get(), "DISABLE BACKEND").sqlstate == "42601");
  CHECK(failure(conn.get(), "SET BACKEND 1 WEIGHT -3").sqlstate == "22023");
  CHECK(failure(conn.get(), "KILL_CLIENT C-999999").sqlstate == "42704");
  CHECK(failure(conn.get(), "RESUME").sqlstate == "55000");  // nothing is paused
  CHECK(failure(conn.get(), "PAUSE a b").sqlstate == "42601");
  Failure set_bad = failure(conn.get(), "SET routing.max_lag_seconds = soon");
  CHECK(set_bad.sqlstate == "22023");
  CHECK(set_bad.message.find("routing.max_lag_seconds") != std::string::npos);
  CHECK(failure(conn.get(), "SET workers = 8").sqlstate == "55P02");
  CHECK(failure(conn.get(), "SET no_such_setting = 1").sqlstate == "42704");
  // The extended protocol is refused politely.
  PgResult params(PQexecParams(conn.get(), "SHOW VERSION", 0, nullptr, nullptr, nullptr, nullptr, 0));
  CHECK(sqlstate(params.get()) == "0A000");
  // An empty query is answered like PostgreSQL does.
  PgResult empty(PQexec(conn.get(), ""));
  CHECK(PQresultStatus(empty.get()) == PGRES_EMPTY_QUERY);
  CHECK(query(conn.get(), "SHOW VERSION").rows.size() == 1);
}

TEST_CASE_FIXTURE(Fixture, "SET changes a live setting; SET BACKEND WEIGHT, DISABLE and ENABLE BACKEND move reads") {
  PgConn conn = connect(console());
  exec(conn.get(), "SET routing.max_lag_bytes = 1234");
  CHECK(query(conn.get(), "SHOW CONFIG").find("key", "routing.max_lag_bytes")->at("value") == "1234");
  exec(conn.get(), "SET max_lag_bytes TO '16777216'");  // the short name and TO work too
  CHECK(query(conn.get(), "SHOW CONFIG").find("key", "routing.max_lag_bytes")->at("value") == "16777216");

  exec(conn.get(), "SET BACKEND 1 WEIGHT 0");
  std::map<int, int> split = read_split(app(), 20);
  CHECK_MESSAGE(split[ports.standby2] == 20, routing::describe(split, ports));
  CHECK(query(conn.get(), "SHOW BACKENDS").rows[1]["weight"] == "0");
  exec(conn.get(), "SET BACKEND 1 WEIGHT 1");

  // A read-only transaction running on standby1 when it is disabled finishes there; new reads go elsewhere.
  exec(conn.get(), "SET BACKEND 2 WEIGHT 0");
  PgConn reader = connect(app());
  exec(reader.get(), "BEGIN READ ONLY");
  CHECK(routing::server_port(reader.get()) == ports.standby1);
  exec(conn.get(), "SET BACKEND 2 WEIGHT 1");
  exec(conn.get(), "DISABLE BACKEND 1");
  CHECK(routing::server_port(reader.get()) == ports.standby1);
  exec(reader.get(), "COMMIT");
  Table backends = query(conn.get(), "SHOW BACKENDS");
  CHECK(backends.rows[1]["status"] == "disabled");
  CHECK(backends.rows[1]["excluded_reason"].find("disabled by the operator") != std::string::npos);
  split = read_split(app(), 20);
  CHECK_MESSAGE(split[ports.standby2] == 20, routing::describe(split, ports));
  CHECK(routing::server_port(reader.get()) == ports.standby2);

  Failure primary = failure(conn.get(), "DISABLE BACKEND 0");
  CHECK(primary.sqlstate == "55000");
  CHECK(primary.message.find("is the primary") != std::string::npos);

  exec(conn.get(), "ENABLE BACKEND 1");
  CHECK(routing::wait_ports_serving(app(), {ports.standby1, ports.standby2}, 10));
}

TEST_CASE_FIXTURE(Fixture, "KILL_CLIENT disconnects that client only") {
  PgConn victim = connect(app("application_name=victim"));
  PgConn bystander = connect(app("application_name=bystander"));
  PgConn conn = connect(console());
  const Table clients = query(conn.get(), "SHOW CLIENTS");
  const auto* row = clients.find("application_name", "victim");
  REQUIRE(row != nullptr);
  exec(conn.get(), "KILL_CLIENT " + row->at("id"));
  CHECK(wait_until([&] { return query(conn.get(), "SHOW CLIENTS").find("application_name", "victim") == nullptr; }, 5));
  PgResult res(PQexec(victim.get(), "SELECT 1"));
  CHECK(PQresultStatus(res.get()) != PGRES_TUPLES_OK);
  CHECK(std::string(PQerrorMessage(victim.get())).find("KILL_CLIENT") != std::string::npos);
  CHECK(scalar(bystander.get(), "SELECT 7") == "7");
  CHECK(failure(conn.get(), "KILL_CLIENT " + row->at("id")).sqlstate == "42704");
}

TEST_CASE_FIXTURE(Fixture, "PAUSE waits for running transactions, holds new ones; RESUME releases them") {
  PgConn conn = connect(console());
  PgConn busy = connect(app());
  exec(busy.get(), "CREATE TABLE t (id int)");
  exec(busy.get(), "BEGIN");
  exec(busy.get(), "SELECT 1");

  // PAUSE does not answer while a transaction is open...
  REQUIRE(PQsendQuery(conn.get(), (std::string("PAUSE ") + kDb).c_str()) == 1);
  CHECK_FALSE(wait_readable(conn.get(), 0.8));
  // ...and the open transaction goes on normally.
  exec(busy.get(), "INSERT INTO t VALUES (2)");
  exec(busy.get(), "COMMIT");
  REQUIRE(wait_readable(conn.get(), 3));
  PQconsumeInput(conn.get());
  PgResult paused(PQgetResult(conn.get()));
  CHECK(PQresultStatus(paused.get()) == PGRES_COMMAND_OK);
  CHECK(std::string(PQcmdStatus(paused.get())) == "PAUSE");
  while (PGresult* r = PQgetResult(conn.get())) PQclear(r);

  // A new transaction of the paused database waits; other databases do not.
  REQUIRE(PQsendQuery(busy.get(), "SELECT 42") == 1);
  CHECK_FALSE(wait_readable(busy.get(), 0.8));
  PgConn other = connect(conninfo(listen_port, "app", "app", "app"));
  CHECK(scalar(other.get(), "SELECT 5") == "5");
  CHECK(query(conn.get(), "SHOW DATABASES").find("name", kDb)->at("paused") == "1");

  exec(conn.get(), std::string("RESUME ") + kDb);
  REQUIRE(wait_readable(busy.get(), 3));
  PQconsumeInput(busy.get());
  PgResult held(PQgetResult(busy.get()));
  CHECK(std::string(PQgetvalue(held.get(), 0, 0)) == "42");
  while (PGresult* r = PQgetResult(busy.get())) PQclear(r);
}

TEST_CASE_FIXTURE(Fixture, "PAUSE during a pgbench run: no transaction runs while paused, none fails") {
  const std::string bin = "/usr/lib/postgresql/15/bin/";
  const std::string direct = "-h 127.0.0.1 -p " + std::to_string(ports.primary) + " -U postgres";
  REQUIRE(std::system(("PGPASSWORD=postgres " + bin + "pgbench -q -i -s 1 " + direct + " " + kDb +
                       " >/dev/null 2>&1").c_str()) == 0);
  PgConn grant = routing::admin(ports.primary, kDb);
  exec(grant.get(), "GRANT ALL ON ALL TABLES IN SCHEMA public TO app");
  REQUIRE(routing::wait_replayed(ports, 15));  // pgbench's first read goes to a standby
  const std::string tmp = std::getenv("PGMUX_TEST_TMPDIR") ? std::getenv("PGMUX_TEST_TMPDIR") : "/tmp";
  std::filesystem::create_directories(tmp);
  const std::string log = tmp + "/admin_pgbench_" + std::to_string(getpid()) + ".log";
  const std::string run = "PGPASSWORD=app timeout 60 " + bin + "pgbench -n -c 6 -T 6 -h 127.0.0.1 -p " +
                          std::to_string(listen_port) + " -U app " + kDb + " > " + log + " 2>&1";
  int status = -1;
  std::thread pgbench([&] { status = std::system(run.c_str()); });

  PgConn conn = connect(console());
  auto xacts = [&] {
    const Table stats = query(conn.get(), "SHOW STATS");
    const auto* row = stats.find("database", kDb);
    return row ? std::atol(row->at("total_xact_count").c_str()) : -1L;
  };
  CHECK(wait_until([&] { return xacts() > 50; }, 10));
  const double pause_started = now_seconds();
  exec(conn.get(), std::string("PAUSE ") + kDb);  // returns once the running transactions finished
  const double pause_took = now_seconds() - pause_started;
  const long at_pause = xacts();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long after_hold = xacts();
  exec(conn.get(), std::string("RESUME ") + kDb);
  const long at_resume = xacts();
  pgbench.join();
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(log.c_str());
  MESSAGE("pgbench: " << output);
  CHECK(pause_took < 5);
  CHECK_MESSAGE(after_hold == at_pause, "transactions ran while paused");
  CHECK(at_resume == at_pause);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(output.find("number of failed transactions: 0 (0.000%)") != std::string::npos);
  CHECK(xacts() > at_resume);  // RESUME let pgbench go on
}

TEST_CASE_FIXTURE(Fixture, "RELOAD applies a valid file and rejects an invalid one, keeping the old config") {
  PgConn conn = connect(console());
  json next = config;
  next["routing"]["max_lag_bytes"] = 4321;
  write_config(next.dump(2));
  PgResult ok(PQexec(conn.get(), "RELOAD"));
  CHECK(PQresultStatus(ok.get()) == PGRES_COMMAND_OK);
  CHECK(query(conn.get(), "SHOW CONFIG").find("key", "routing.max_lag_bytes")->at("value") == "4321");

  json bad = next;
  bad["backends"][1]["port"] = 70000;
  bad["timeouts"]["query_wait_timeout"] = "soon";
  write_config(bad.dump(2));
  Failure f = failure(conn.get(), "RELOAD");
  CHECK(f.sqlstate == "F0000");
  CHECK(f.message.find("/backends/1/port") != std::string::npos);
  CHECK(f.message.find("/timeouts/query_wait_timeout") != std::string::npos);
  CHECK(f.hint.find("unchanged") != std::string::npos);
  CHECK(query(conn.get(), "SHOW CONFIG").find("key", "routing.max_lag_bytes")->at("value") == "4321");
  CHECK(routing::fresh_read_port(app()) > 0);  // still serving
  CHECK(proxy->process()->log().find("/backends/1/port") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "EXPLAIN ROUTE explains for the console and for an application session") {
  PgConn conn = connect(console());
  Table read = query(conn.get(), "EXPLAIN ROUTE SELECT * FROM t");
  REQUIRE(read.rows.size() == 1);
  CHECK(read.rows[0]["statement_class"] == "read");
  CHECK(read.rows[0]["target"] == "standby");
  CHECK(read.rows[0]["route_reason"] == "read");
  CHECK(read.rows[0]["standbys"].find("standby1: eligible") != std::string::npos);
  Table write = query(conn.get(), "explain route UPDATE t SET id = 2");
  CHECK(write.rows[0]["target"] == "primary");
  CHECK(write.rows[0]["backend"] == "primary");
  CHECK(write.rows[0]["route_reason"] == "write");
  CHECK(write.rows[0]["classifier_reason"] == "UPDATE");

  // In an application session the answer is that session's: a temp table pins it to the primary.
  PgConn client = connect(conninfo(listen_port, "app", "app", "app"));
  CHECK(query(client.get(), "EXPLAIN ROUTE SELECT 1").rows[0]["target"] == "standby");
  exec(client.get(), "CREATE TEMP TABLE pinned_here (x int)");
  Table pinned = query(client.get(), "EXPLAIN ROUTE SELECT 1");
  CHECK(pinned.rows[0]["target"] == "primary");
  CHECK(pinned.rows[0]["route_reason"] == "pinned");
  // Inside a transaction the answer keeps the transaction status.
  exec(client.get(), "BEGIN");
  exec(client.get(), "SELECT 1");
  query(client.get(), "EXPLAIN ROUTE SELECT 1");
  CHECK(PQtransactionStatus(client.get()) == PQTRANS_INTRANS);
  exec(client.get(), "COMMIT");
}

TEST_CASE_FIXTURE(Fixture, "SHUTDOWN stops pgmux") {
  PgConn conn = connect(console());
  exec(conn.get(), "SHUTDOWN");
  int status = 0;
  REQUIRE(proxy->process()->wait_exit(10, &status));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace pgmux::test
