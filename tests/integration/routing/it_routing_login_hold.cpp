// A login with the read/write split off waits for the primary when it cannot have it (a new connection to it
// failed, or no primary is known), instead of going through a standby: every statement of such a session goes to
// the primary, and its pid (BackendKeyData) must be the primary connection's, as pg_backend_pid() says. The
// primary is reached through a relay of the test's own, which refuses logins by user name (a reset during login)
// and cuts connections; the standbys are reached directly.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/tcp_relay.hpp"

using namespace pgmux::test;
using pgmux::test::routing::wait_until;

namespace {

nlohmann::json split_off_config(int listen, const ClusterPorts& ports, int primary_port, const char* pool_mode,
                                int failover_timeout) {
  nlohmann::json config = routing::routing_config(listen, ports);
  config["backends"][0]["port"] = primary_port;
  config["routing"] = {{"read_write_split", false}, {"failover_timeout", failover_timeout}};
  for (nlohmann::json& database : config["databases"]) database["pool_mode"] = pool_mode;
  return config;
}

// The prober (user postgres) has found the primary: a statement through pgmux, as postgres, reaches it.
void wait_for_primary_known(ProxyUnderTest& proxy) {
  PgConn warm = connect(proxy.conninfo("postgres", "postgres", "app"));
  REQUIRE(scalar(warm.get(), "SELECT pg_is_in_recovery()") == "f");
}

}  // namespace

TEST_CASE("split off: a login whose primary connection failed waits for the primary, not a standby's pid") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  for (const char* mode : {"session", "transaction"}) {
    const std::string mode_name(mode);  // CAPTURE keeps a reference
    CAPTURE(mode_name);
    TcpRelay relay("127.0.0.1", 0, ports.primary);
    const int listen = pick_listen_port();
    ProxyUnderTest proxy(split_off_config(listen, ports, relay.port(), mode, 30).dump(2), listen);
    wait_for_primary_known(proxy);
    relay.refuse_logins_of("app", 1);  // the app pool's first connection: reset during login
    PgConn client = connect(proxy.app_conninfo());
    CHECK(relay.refused_logins() == 1);  // the login did meet the failure
    CHECK(scalar(client.get(), "SELECT inet_server_port()") == std::to_string(ports.primary));
    if (mode_name == "session") {
      // The old binary logged in through a standby: BackendKeyData had the standby connection's pid.
      CHECK(std::to_string(PQbackendPID(client.get())) == scalar(client.get(), "SELECT pg_backend_pid()"));
    }
    // Transaction pooling's pid is pgmux's own either way: the login's server is the one to check.
    const std::string log = proxy.process()->full_log();
    const size_t login = log.find("user=app db=app: login ok");
    REQUIRE(login != std::string::npos);
    const std::string line = log.substr(login, log.find('\n', login) - login);
    CHECK_MESSAGE(line.find("parameters from primary") != std::string::npos, line);
    CHECK(log.find("holding the login") != std::string::npos);
  }
}

TEST_CASE("split off: a login the primary keeps refusing fails with 57P03 after failover_timeout") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(split_off_config(listen, ports, relay.port(), "session", 2).dump(2), listen);
  wait_for_primary_known(proxy);
  relay.refuse_logins_of("app", 1000);
  const auto start = std::chrono::steady_clock::now();
  PgConn client = try_connect(proxy.app_conninfo() + " connect_timeout=20");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(client);
  // The old binary logged in through a standby at once.
  CHECK(PQstatus(client.get()) == CONNECTION_BAD);
  const std::string error = PQerrorMessage(client.get());
  CHECK_MESSAGE(error.find("failover_timeout") != std::string::npos, error);
  CHECK(waited >= 1.5);
  CHECK(relay.refused_logins() >= 1);
  // Everyone else is served meanwhile and after.
  PgConn other = connect(proxy.conninfo("postgres", "postgres", "app"));
  CHECK(scalar(other.get(), "SELECT 1") == "1");
}

TEST_CASE("split off: a login while no primary is known waits for one and gets the primary's pid") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  nlohmann::json config = split_off_config(listen, ports, relay.port(), "session", 30);
  config["admin_users"] = nlohmann::json::array({"postgres"});
  ProxyUnderTest proxy(config.dump(2), listen);
  wait_for_primary_known(proxy);
  PgConn console = connect(proxy.conninfo("postgres", "postgres", "pgmux"));
  // The prober's connection is cut and its new ones refused: the primary leaves the view, the standbys stay.
  const size_t logged = proxy.process()->full_log().size();
  relay.refuse_logins_of("postgres", 100000);
  relay.cut();
  REQUIRE(wait_until([&] { return proxy.process()->full_log().find("no primary", logged) != std::string::npos; }, 15));
  // The prober logs before its view reaches the workers.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto login =
      std::async(std::launch::async, [&] { return try_connect(proxy.app_conninfo() + " connect_timeout=20"); });
  // Held: the old binary logged in through a standby at once.
  CHECK(login.wait_for(std::chrono::seconds(2)) == std::future_status::timeout);
  // The console shows the wait, as PgBouncer's shows a wait for a server (it showed 0 before).
  PgResult clients = exec(console.get(), "SHOW CLIENTS");
  const int state = PQfnumber(clients.get(), "state"), user = PQfnumber(clients.get(), "user");
  const int wait = PQfnumber(clients.get(), "wait");
  REQUIRE(state >= 0);
  REQUIRE(wait >= 0);
  std::string waits;
  for (int row = 0; row < PQntuples(clients.get()); ++row) {
    if (std::string(PQgetvalue(clients.get(), row, user)) != "app") continue;
    waits += std::string(PQgetvalue(clients.get(), row, state)) + " " + PQgetvalue(clients.get(), row, wait) + ";";
  }
  CHECK_MESSAGE((waits == "waiting 1;" || waits == "waiting 2;"), waits);
  relay.refuse_logins_of("postgres", 0);  // the primary answers the prober again
  REQUIRE(login.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  PgConn client = login.get();
  REQUIRE(client);
  REQUIRE_MESSAGE(PQstatus(client.get()) == CONNECTION_OK, PQerrorMessage(client.get()));
  CHECK(std::to_string(PQbackendPID(client.get())) == scalar(client.get(), "SELECT pg_backend_pid()"));
  CHECK(scalar(client.get(), "SELECT inet_server_port()") == std::to_string(ports.primary));
  CHECK(proxy.process()->full_log().find("holding the login for one") != std::string::npos);
}

// Logins held while the prober cannot reach the primary either (a primary going down, in crash recovery) try it
// again only once a probe sent after their failure reached it: the binary before tried it at every view and tick,
// one refused connection (or a backend forked for 57P03) per held login each time.
TEST_CASE("split off: held logins do not try an unreachable primary at every view") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  nlohmann::json config = split_off_config(listen, ports, relay.port(), "session", 30);
  // The primary stays in the view for seconds after its first refusal (three failed probes a second apart).
  config["health_check"]["period"] = 1;
  config["health_check"]["max_retries"] = 2;
  ProxyUnderTest proxy(config.dump(2), listen);
  wait_for_primary_known(proxy);
  relay.refuse_logins_of("*", 100000);
  relay.cut();  // the prober's connection too: its next ones are refused
  constexpr int kLogins = 8;
  std::vector<std::future<PgConn>> logins;
  for (int i = 0; i < kLogins; ++i) {
    logins.push_back(
        std::async(std::launch::async, [&] { return try_connect(proxy.app_conninfo() + " connect_timeout=30"); }));
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the prober's round every 0.2 s: views keep coming
  const size_t tries =
      count_occurrences(proxy.process()->full_log(), "app/app@primary: server closed the connection during login");
  relay.refuse_logins_of("*", 0);
  // About one try per login (the prober's tries are its own); the binary before: several per login.
  CHECK_MESSAGE(tries <= 2 * kLogins, tries << " logins' connections to the primary refused in 3 s");
  for (auto& login : logins) {
    REQUIRE(login.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    PgConn client = login.get();
    REQUIRE(client);
    CHECK_MESSAGE(PQstatus(client.get()) == CONNECTION_OK, PQerrorMessage(client.get()));
  }
}

// A wait for the primary ends failover_timeout after it began, as the config says at each moment: a reload that
// raises the timeout keeps a held login waiting. The binary before 5efa180 fixed the deadline when the wait began
// (the login failed after the old 2 s, its message naming the new 30 s).
TEST_CASE("split off: a held login waits as long as a reloaded failover_timeout says") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  TcpRelay relay("127.0.0.1", 0, ports.primary);
  const int listen = pick_listen_port();
  ProxyUnderTest proxy(split_off_config(listen, ports, relay.port(), "session", 2).dump(2), listen);
  wait_for_primary_known(proxy);
  relay.refuse_logins_of("app", 100000);
  auto login =
      std::async(std::launch::async, [&] { return try_connect(proxy.app_conninfo() + " connect_timeout=20"); });
  REQUIRE(wait_until([&] { return relay.refused_logins() >= 1; }, 5));
  const size_t logged = proxy.process()->full_log().size();
  proxy.process()->write_config(split_off_config(listen, ports, relay.port(), "session", 30).dump(2));
  proxy.process()->send_signal(SIGHUP);
  REQUIRE(wait_until([&] { return proxy.process()->full_log().find("config reloaded", logged) != std::string::npos; },
                     5));
  // Past the 2 s the wait began with: still held.
  CHECK(login.wait_for(std::chrono::milliseconds(3000)) == std::future_status::timeout);
  relay.refuse_logins_of("app", 0);
  REQUIRE(login.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  PgConn client = login.get();
  REQUIRE(client);
  REQUIRE_MESSAGE(PQstatus(client.get()) == CONNECTION_OK, PQerrorMessage(client.get()));
  CHECK(scalar(client.get(), "SELECT inet_server_port()") == std::to_string(ports.primary));
}
