// A backend named by host name. pgmux resolves it on the control thread, when probing; a worker never calls
// getaddrinfo, which would stop its loop (every client on it) for as long as DNS takes. Here getaddrinfo of the
// backend's name takes 1 s (tests/support/slow_dns.cpp, preloaded into pgmux): a client opening a new pool must
// not wait for it, nor may another client of the same worker. The name is looked up once before pgmux listens,
// so the first login finds its address.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

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
