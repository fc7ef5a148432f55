// A backend named by host name. pgmux resolves it on the control thread, when probing; a worker never calls
// getaddrinfo, which would stop its loop (every client on it) for as long as DNS takes. Here getaddrinfo of the
// backend's name takes 1 s (tests/support/slow_dns.cpp, preloaded into pgmux): a client opening a new pool must
// not wait for it, nor may another client of the same worker. The name is looked up once before pgmux listens,
// so the first login finds its address. And a name repointed to another address (a DNS-based failover) takes the
// pool's server connections with it.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/tcp_relay.hpp"

using namespace pgmux::test;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Sets an environment variable for the pgmux processes started in its lifetime (they inherit it).
struct ScopedEnv {
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  const char* name_;
  std::optional<std::string> old_;
};

std::string hostname_config(int listen_port, const std::string& host) {
  nlohmann::json c = default_config(listen_port);
  c["workers"] = 1;  // every client on the one loop a lookup there would stop
  c["backends"][0]["host"] = host;
  return c.dump();
}

}  // namespace

TEST_CASE("a backend named localhost serves") {
  const int port = pick_listen_port();
  ProxyUnderTest proxy(hostname_config(port, "localhost"), port);
  PgConn conn = connect(proxy.app_conninfo());
  CHECK(scalar(conn.get(), "SELECT 'by name'") == "by name");
}

TEST_CASE("a slow lookup of a backend's host name stops no client") {
  std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
  ScopedEnv preload("LD_PRELOAD", PGMUX_SLOW_DNS_LIB);
  ScopedEnv asan_options("ASAN_OPTIONS", asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0");
  const int port = pick_listen_port();
  ProxyUnderTest proxy(hostname_config(port, "slow-dns.pgmux.test"), port);
  if (proxy.direct()) return;
  // At once: the lookup at startup gave the view the address, before any probe.
  const auto start = Clock::now();
  PgConn bystander = connect(proxy.app_conninfo());
  MESSAGE("first login: " << seconds_since(start) << " s");
  CHECK(scalar(bystander.get(), "SELECT 1") == "1");

  // A user with no pool yet: its pool is made now, for a backend named by host name.
  double login_took = -1;
  std::thread newcomer([&] {
    const auto t0 = Clock::now();
    PgConn conn = try_connect(conninfo(proxy.port(), "postgres", "postgres", "app"));
    if (PQstatus(conn.get()) == CONNECTION_OK && scalar(conn.get(), "SELECT 2") == "2") login_took = seconds_since(t0);
  });
  double slowest = 0;
  const auto t0 = Clock::now();
  while (seconds_since(t0) < 1.5) {
    const auto q0 = Clock::now();
    CHECK(scalar(bystander.get(), "SELECT 1") == "1");
    slowest = std::max(slowest, seconds_since(q0));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  newcomer.join();
  MESSAGE("new user's login and first query: " << login_took << " s; the bystander's slowest query: " << slowest
                                                 << " s");
  CHECK(login_took >= 0);
  CHECK(login_took < 0.7);
  CHECK(slowest < 0.7);
}

TEST_CASE("a backend's host name repointed to another address takes the pool's server connections with it") {
  std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
  ScopedEnv preload("LD_PRELOAD", PGMUX_SLOW_DNS_LIB);
  ScopedEnv asan_options("ASAN_OPTIONS", asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0");
  const char* tmp = std::getenv("PGMUX_TEST_TMPDIR");
  const std::string dns_file =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/moving-dns-" + std::to_string(getpid()) + ".txt";
  const auto point_name_at = [&](const char* address) { std::ofstream(dns_file, std::ios::trunc) << address << "\n"; };
  point_name_at("127.0.0.1");
  struct RemoveFile {
    const std::string& path;
    ~RemoveFile() { std::remove(path.c_str()); }
  } remove_dns_file{dns_file};
  ScopedEnv dns("PGMUX_TEST_DNS_FILE", dns_file);
  // The "other machine" the name is repointed to: 127.0.0.2 (loopback's whole 127/8 is local on Linux, and the
  // cluster listens on 127.0.0.1 only), relayed to the cluster. It outlives pgmux.
  TcpRelay relay("127.0.0.2", cluster_ports().primary, cluster_ports().primary);

  const int port = pick_listen_port();
  nlohmann::json config = nlohmann::json::parse(hostname_config(port, "moving.pgmux.test"));
  config["databases"][0]["pool_mode"] = "transaction";
  config["databases"][0]["pool_size"] = 1;  // one server connection: its pid says which one serves
  config["health_check"] = {{"period", 0.2}, {"timeout", 1}, {"user", "postgres"}};
  ProxyUnderTest proxy(config.dump(), port);
  if (proxy.direct()) return;

  PgConn conn = connect(proxy.app_conninfo());
  const std::string old_pid = scalar(conn.get(), "SELECT pg_backend_pid()");
  CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == old_pid);  // the pool's one server, reused

  point_name_at("127.0.0.2");
  std::string new_pid = old_pid;
  // Looked up again within 5 s (then a probe round, then the next transaction): 20 s leaves room for sanitizers.
  const auto moved = [&] { return (new_pid = scalar(conn.get(), "SELECT pg_backend_pid()")) != old_pid; };
  CHECK_MESSAGE(routing::wait_until(moved, 20), "transactions still ran on the connection to the old address");
  // The new server connection came through 127.0.0.2, and the old one is closed.
  const std::string client_port =
      scalar(conn.get(), "SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()");
  CHECK(relay.relayed_from_port(std::atoi(client_port.c_str())));
  PgConn direct = routing::admin(cluster_ports().primary);
  CHECK(routing::wait_until([&] {
    return scalar(direct.get(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + old_pid) == "0";
  }, 5));
  CHECK(scalar(conn.get(), "SELECT pg_backend_pid()") == new_pid);  // and the new one is reused in turn
}
