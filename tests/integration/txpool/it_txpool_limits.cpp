// Server-side pool limits in transaction mode (issue 4 item 4, docs/CONFIG.md), observed from the primary's
// pg_stat_activity: pool_size, max_db_connections and max_user_connections cap the server connections under
// load; reserve_pool_size serves a client that waited reserve_pool_timeout; min_pool_size keeps connections
// open; server_idle_timeout closes idle ones; server_lifetime recycles old ones (never mid-transaction);
// server_check_delay 0 hides a server terminated while idle; a client preparing a statement does not wait for a
// full pool.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>
#include <thread>

#include "tests/integration/txpool/txpool_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::txpool;
using routing::now_seconds;

namespace {

const char* const kDb = "txp_limits";

struct Fixture : TweakedProxy {
  Fixture(int pool_size, const std::function<void(nlohmann::json&)>& tweak) : TweakedProxy(kDb, pool_size, tweak) {}
  ~Fixture() {
    // Leave no server connections behind for the next case's counts.
    PgConn p = routing::admin(cluster_ports().primary);
    exec(p.get(), std::string("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '") + kDb +
                      "' AND pid <> pg_backend_pid()");
  }
};

// The primary's pool connections for kDb: not the function-catalog loader's (it logs in as the health-check user,
// "app" here).
std::string pool_backends(const std::string& what) {
  return "SELECT " + what + " FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name <> "
         "'pgmux-catalog' AND datname = '" + kDb + "' AND usename = 'app'";
}

// `clients` threads run short transactions (50 ms of pg_sleep) for `seconds` while the primary's server
// connections for kDb are sampled; returns the highest count seen. Query failures go to *failure; the fewest
// transactions one client ran to *fewest.
int peak_under_load(const std::string& ci, int clients, double seconds, std::string* failure, long* done,
                    long* fewest) {
  std::atomic<bool> stop{false};
  std::atomic<long> transactions{0};
  std::vector<long> per_client(clients, 0);
  int peak = 0;
  std::thread sampler([&] {
    PgConn p = routing::admin(cluster_ports().primary);
    const std::string q = pool_backends("count(*)");
    while (!stop) {
      peak = std::max(peak, std::atoi(scalar(p.get(), q).c_str()));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const double end = now_seconds() + seconds;
  *failure = run_threads(clients, [&](int t) {
    PgConn conn = connect(ci);
    while (now_seconds() < end) {
      exec(conn.get(), "BEGIN");
      exec(conn.get(), "SELECT pg_sleep(0.05)");
      exec(conn.get(), "COMMIT");
      transactions++;
      per_client[t]++;
    }
  });
  stop = true;
  sampler.join();
  *done = transactions.load();
  *fewest = *std::min_element(per_client.begin(), per_client.end());
  return peak;
}

void check_cap(int pool_size, int cap, const std::function<void(nlohmann::json&)>& tweak) {
  Fixture f(pool_size, tweak);
  std::string failure;
  long done = 0;
  long fewest = 0;
  const int peak = peak_under_load(f.ci, 8, 2.0, &failure, &done, &fewest);
  MESSAGE("8 clients, " << done << " transactions, the fewest for one client " << fewest
                        << "; peak server connections " << peak << " (cap " << cap << ")");
  CHECK_MESSAGE(failure.empty(), failure);
  CHECK(peak >= 1);
  CHECK(peak <= cap);
  // Served about in turn, on both workers: a client whose worker never got a server ran none (before
  // Pool::shed_for passed slots between workers, the clients of one worker could wait the whole run).
  CHECK(fewest * 8 * 3 >= done);
  f.log_if(!failure.empty() || peak > cap || fewest * 8 * 3 < done);
}

}  // namespace

TEST_CASE("pool_size caps server connections under load") {
  if (direct_mode()) return;
  check_cap(3, 3, [](nlohmann::json&) {});
}

TEST_CASE("max_db_connections caps the database below pool_size") {
  if (direct_mode()) return;
  check_cap(5, 2, [](nlohmann::json& c) { database_entry(c)["max_db_connections"] = 2; });
}

TEST_CASE("max_user_connections caps the user below pool_size") {
  if (direct_mode()) return;
  check_cap(5, 2, [](nlohmann::json& c) {
    for (nlohmann::json& u : c["users"]) {
      if (u["name"] == "app") u["max_user_connections"] = 2;
    }
  });
}

// A user's servers idle in one database's pool while the user waits in another's with max_user_connections
// spent: the idle one closes for it, as PgBouncer evicts (before, the client waited query_wait_timeout and got
// 53300, with every server connection of the user idle).
TEST_CASE("max_user_connections: an idle server of another database's pool closes for a waiting client") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) {
    c["timeouts"]["query_wait_timeout"] = 3;
    c["databases"].push_back({{"name", "app"}, {"pool_mode", "transaction"}, {"pool_size", 2}});
    for (nlohmann::json& u : c["users"]) {
      if (u["name"] == "app") u["max_user_connections"] = 1;
    }
  });
  PgConn first = connect(f.ci);
  CHECK(scalar(first.get(), "SELECT current_database()") == kDb);  // its server stays idle in the pool
  const double t0 = now_seconds();
  PgConn second = connect(app_conninfo(f.proxy.port(), "app"));
  CHECK(scalar(second.get(), "SELECT current_database()") == "app");
  CHECK(now_seconds() - t0 < 2);
  CHECK(scalar(first.get(), "SELECT current_database()") == kDb);  // and back
}

// The same for max_db_connections: one user's server idles in its pool of the database while another user waits
// for the database's last slot; the idle one closes for it, whichever worker each client is on.
TEST_CASE("max_db_connections: an idle server of another user's pool closes for a waiting client") {
  if (direct_mode()) return;
  Fixture f(2, [](nlohmann::json& c) {
    c["timeouts"]["query_wait_timeout"] = 3;
    database_entry(c)["max_db_connections"] = 1;
  });
  const std::string other = conninfo(f.proxy.port(), "md5user", "md5user", kDb);
  for (int round = 0; round < 2; ++round) {  // each way: app's server goes for md5user's client, then back
    PgConn first = connect(round == 0 ? f.ci : other);
    CHECK(scalar(first.get(), "SELECT 1") == "1");  // its server stays idle in its pool
    const double t0 = now_seconds();
    PgConn second = connect(round == 0 ? other : f.ci);
    CHECK(scalar(second.get(), "SELECT current_user") == (round == 0 ? "md5user" : "app"));
    CHECK(now_seconds() - t0 < 2);
    CHECK(scalar(first.get(), "SELECT current_user") == (round == 0 ? "app" : "md5user"));
  }
}

// Two workers share pool_size. Under overload (16 clients on 4 servers, transactions of one quick statement) the
// servers must stay where they are: before, a server moved to the other worker whenever nobody happened to wait
// for it at the instant it came back, and moved back the next moment (a black-box run: 103 new server
// connections in 10 s, half the throughput). Counted by the primary's distinct backend pids for the database.
TEST_CASE("two workers under overload keep their servers instead of passing them back and forth") {
  if (direct_mode()) return;
  Fixture f(4, [](nlohmann::json& c) { c["workers"] = 2; });
  std::atomic<bool> stop{false};
  std::set<std::string> pids;
  std::thread sampler([&] {
    PgConn p = routing::admin(cluster_ports().primary);
    const std::string q = pool_backends("pid");
    while (!stop) {
      PgResult res(PQexec(p.get(), q.c_str()));
      for (int i = 0; i < PQntuples(res.get()); ++i) pids.insert(PQgetvalue(res.get(), i, 0));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  std::atomic<long> transactions{0};
  const double end = now_seconds() + 3.0;
  const std::string failure = run_threads(16, [&](int) {
    PgConn conn = connect(f.ci);
    while (now_seconds() < end) {
      exec(conn.get(), "SELECT 1");
      transactions++;
    }
  });
  stop = true;
  sampler.join();
  MESSAGE(transactions.load() << " transactions on " << pids.size() << " server connections");
  CHECK_MESSAGE(failure.empty(), failure);
  CHECK(pids.size() <= 8);  // the 4 of pool_size, and a few moves while the split settles
  f.log_if(!failure.empty() || pids.size() > 8);
}

TEST_CASE("reserve_pool_size serves a client that waited reserve_pool_timeout") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) {
    database_entry(c)["reserve_pool_size"] = 1;
    c["timeouts"]["reserve_pool_timeout"] = 0.5;
    c["timeouts"]["query_wait_timeout"] = 3;
  });
  PgConn holder = connect(f.ci);
  PgConn waiter = connect(f.ci);  // before the pool is busy: a login needs a server connection too
  exec(holder.get(), "BEGIN");
  exec(holder.get(), "SELECT 1");
  const double t0 = now_seconds();
  PgResult res(PQexec(waiter.get(), "SELECT 1"));
  const double waited = now_seconds() - t0;
  MESSAGE("served after " << waited << " s: " << error_text(waiter.get(), res.get()));
  CHECK(PQresultStatus(res.get()) == PGRES_TUPLES_OK);
  CHECK(waited >= 0.4);
  CHECK(waited < 2.5);
  exec(holder.get(), "COMMIT");
  f.log_if(PQresultStatus(res.get()) != PGRES_TUPLES_OK);
}

TEST_CASE("server_idle_timeout closes idle server connections") {
  if (direct_mode()) return;
  Fixture f(3, [](nlohmann::json& c) { c["timeouts"]["server_idle_timeout"] = 1; });
  std::string failure;
  long done = 0;
  long fewest = 0;
  peak_under_load(f.ci, 3, 0.5, &failure, &done, &fewest);
  REQUIRE_MESSAGE(failure.empty(), failure);
  const bool drained = routing::wait_until([] { return server_connections(kDb) == 0; }, 4.0, 0.1);
  CHECK_MESSAGE(drained, server_connections(kDb) << " server connections still open 4 s after use");
}

TEST_CASE("min_pool_size keeps connections open past server_idle_timeout") {
  if (direct_mode()) return;
  Fixture f(5, [](nlohmann::json& c) {
    database_entry(c)["min_pool_size"] = 3;
    c["timeouts"]["server_idle_timeout"] = 0.5;
  });
  PgConn conn = connect(f.ci);
  exec(conn.get(), "SELECT 1");  // the pool has been used: it fills up to its minimum
  const bool filled = routing::wait_until([] { return server_connections(kDb) >= 3; }, 3.0, 0.1);
  CHECK_MESSAGE(filled, "only " << server_connections(kDb) << " server connections, min_pool_size 3");
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  CHECK(server_connections(kDb) >= 3);
}

TEST_CASE("server_lifetime recycles server connections, never inside a transaction") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) { c["timeouts"]["server_lifetime"] = 0.5; });
  PgConn conn = connect(f.ci);
  std::set<std::string> pids;
  for (int i = 0; i < 15; ++i) {
    pids.insert(scalar(conn.get(), "SELECT pg_backend_pid()"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  MESSAGE(pids.size() << " distinct server connections over 1.5 s with server_lifetime 0.5");
  CHECK(pids.size() >= 2);
  // A transaction longer than the lifetime keeps its server to the end.
  exec(conn.get(), "BEGIN");
  const std::string first = scalar(conn.get(), "SELECT pg_backend_pid()");
  exec(conn.get(), "SELECT pg_sleep(1)");
  CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == first);
  CHECK(exec_sqlstate(conn.get(), "COMMIT") == "");
  CHECK(exec_sqlstate(conn.get(), "SELECT 1") == "");
}

TEST_CASE("server_check_delay 0: a server terminated while idle is never handed out") {
  if (direct_mode()) return;
  Fixture f(1, [](nlohmann::json& c) { c["timeouts"]["server_check_delay"] = 0; });
  PgConn conn = connect(f.ci);
  PgConn admin = routing::admin(cluster_ports().primary);
  int errors = 0;
  std::string first_error;
  for (int i = 0; i < 10; ++i) {
    const std::string pid = scalar(conn.get(), "SELECT pg_backend_pid()");
    exec(admin.get(), "SELECT pg_terminate_backend(" + pid + ")");
    PgResult res(PQexec(conn.get(), "SELECT pg_backend_pid()"));  // at once: the close may not be seen yet
    if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
      ++errors;
      if (first_error.empty()) first_error = error_text(conn.get(), res.get());
      if (PQstatus(conn.get()) != CONNECTION_OK) conn = connect(f.ci);
    } else if (pid == PQgetvalue(res.get(), 0, 0)) {
      ++errors;
      if (first_error.empty()) first_error = "the terminated server answered";
    }
  }
  CHECK_MESSAGE(errors == 0, errors << " of 10 queries after a terminate failed; first: " << first_error);
  f.log_if(errors != 0);
}

// libpq's PQprepare (Parse and Sync) from a client that holds no server while the pool is full: directly, the
// Parse has a backend of its own and never waits, and drivers prepare at connect or before a statement's first
// use. pgmux answers it itself (answer_parse_instead_of_waiting) rather than hold it until a server is free, and
// prepares the statement where the client's next request runs.
TEST_CASE("a Parse-only request does not wait for a full pool") {
  Fixture f(1, [](nlohmann::json& c) {
    c["workers"] = 1;
    c["timeouts"]["query_wait_timeout"] = 4;  // a wait for the server fails the request after this
  });
  PgConn holder = connect(f.ci);
  exec(holder.get(), "BEGIN");
  CHECK(scalar(holder.get(), "SELECT 'holding'") == "holding");  // the pool's one server, until COMMIT
  PgConn client = connect(f.ci);
  const double started = now_seconds();
  PgResult prepared(PQprepare(client.get(), "plus_one", "SELECT $1::int + 1", 0, nullptr));
  const double waited = now_seconds() - started;
  CHECK(PQresultStatus(prepared.get()) == PGRES_COMMAND_OK);
  CHECK_MESSAGE(waited < 2.0, "PQprepare took " << waited << " s with the pool full");
  exec(holder.get(), "COMMIT");
  const char* const values[] = {"41"};
  PgResult ran(PQexecPrepared(client.get(), "plus_one", 1, values, nullptr, nullptr, 0));
  REQUIRE(PQresultStatus(ran.get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(ran.get(), 0, 0)) == "42");
  f.log_if(waited >= 2.0 || PQresultStatus(prepared.get()) != PGRES_COMMAND_OK);
}
