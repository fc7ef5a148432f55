// Service integration (issue 14 item 4), pgmux as systemd and logrotate drive it:
// - sd_notify: with $NOTIFY_SOCKET set, READY=1 once the client and metrics ports accept, RELOADING=1 then
//   READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM;
// - log rotation under load: the log file renamed twice (SIGUSR1, then SIGHUP) while clients log in and out; every
//   login's line is in exactly one of the three files, each line whole (JSON lines, so each must parse).
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

namespace pgmux::test {
namespace {

using nlohmann::json;
using routing::wait_until;

// A private directory for the test's files, removed when it goes.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char pattern[] = "/tmp/pgmux-it-service-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
    std::filesystem::permissions(path, std::filesystem::perms::all);  // pgmux may run as another user
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The socket systemd would bind: a unix datagram socket whose path goes to pgmux in $NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  }
  ~NotifySocket() { close(fd_); }
  // The next datagram within `seconds`, or "" when none came.
  std::string receive(double seconds) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(seconds * 1000)) <= 0) return "";
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool port_accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = loopback_address(port);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

TEST_CASE("sd_notify: READY=1 once the ports accept, RELOADING=1 and READY=1 on SIGHUP, STOPPING=1 on SIGTERM") {
  TempDir dir;
  NotifySocket notify((dir.path / "notify.sock").string());
  const int listen_port = pick_listen_port();
  const int metrics_port = free_port_from(listen_port + 1);
  json config = default_config(listen_port);
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(metrics_port);
  setenv("NOTIFY_SOCKET", (dir.path / "notify.sock").c_str(), 1);
  PgmuxProcess pgmux(config.dump(), listen_port);
  unsetenv("NOTIFY_SOCKET");
  INFO("pgmux log:\n" << pgmux.log());

  const std::string ready = notify.receive(10);
  CHECK(ready.rfind("READY=1\n", 0) == 0);
  CHECK(ready.find("STATUS=") != std::string::npos);
  CHECK(port_accepts(listen_port));
  CHECK(port_accepts(metrics_port));
  CHECK(notify.receive(0.3).empty());  // said once

  pgmux.send_signal(SIGHUP);
  const std::string reloading = notify.receive(10);
  CHECK(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  CHECK(notify.receive(10).rfind("READY=1\n", 0) == 0);

  pgmux.send_signal(SIGTERM);
  CHECK(notify.receive(10) == "STOPPING=1");
  CHECK(pgmux.wait_exit(15));
}

TEST_CASE("sd_notify: without NOTIFY_SOCKET pgmux starts as before; a socket nobody binds is a warning") {
  TempDir dir;
  const int listen_port = pick_listen_port();
  setenv("NOTIFY_SOCKET", (dir.path / "nobody.sock").c_str(), 1);
  PgmuxProcess pgmux(default_config_json(listen_port), listen_port);
  unsetenv("NOTIFY_SOCKET");
  CHECK(port_accepts(listen_port));
  CHECK(wait_until([&] { return pgmux.full_log().find("NOTIFY_SOCKET " + (dir.path / "nobody.sock").string()) !=
                                std::string::npos; }, 5));
}

// Log lines of one file, each parsed as JSON (a line that does not parse fails the test).
std::vector<json> json_lines(const std::filesystem::path& file) {
  std::vector<json> lines;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    INFO(file.string() << ": " << line);
    json parsed = json::parse(line, nullptr, false);
    CHECK_FALSE(parsed.is_discarded());
    if (!parsed.is_discarded()) lines.push_back(std::move(parsed));
  }
  return lines;
}

int count_containing(const std::vector<json>& lines, const std::string& text) {
  int n = 0;
  for (const json& line : lines) n += line["message"].get<std::string>().find(text) != std::string::npos ? 1 : 0;
  return n;
}

// Clients logging in, running one query and leaving, on four threads until finish() (or the test's end).
struct LoginLoad {
  std::atomic<bool> stop{false};
  std::atomic<int> logins{0}, failures{0};
  std::vector<std::thread> threads;
  explicit LoginLoad(const std::string& conninfo) {
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([this, conninfo] {
        for (int i = 0; i < 2000 && !stop.load(); ++i) {
          PgConn conn = try_connect(conninfo);
          if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
            ++failures;
            continue;
          }
          ++logins;
          PgResult res(PQexec(conn.get(), "SELECT 1"));
        }
      });
    }
  }
  void finish() {
    stop = true;
    for (std::thread& t : threads) {
      if (t.joinable()) t.join();
    }
  }
  ~LoginLoad() { finish(); }
};

TEST_CASE("logrotate: the file renamed and reopened on SIGUSR1 and SIGHUP under load, no line lost or cut") {
  TempDir dir;
  const std::filesystem::path log = dir.path / "pgmux.log";
  const int listen_port = pick_listen_port();
  json config = default_config(listen_port);
  config["logging"] = {{"level", "info"}, {"file", log.string()}, {"format", "json"}};
  PgmuxProcess pgmux(config.dump(), listen_port);

  // Four clients log in, query and leave, over and over, until the rotations are done.
  LoginLoad load(conninfo(listen_port, "app", "app", "app"));
  auto rotate = [&](const char* suffix, int signal) {
    const int before = load.logins.load();
    CHECK(wait_until([&] { return load.logins.load() >= before + 20; }, 20));
    std::error_code error;
    std::filesystem::rename(log, dir.path / (std::string("pgmux.log") + suffix), error);
    CHECK_MESSAGE(!error, "rename: " << error.message());
    pgmux.send_signal(signal);
  };
  rotate(".1", SIGUSR1);
  rotate(".2", SIGHUP);
  const int before = load.logins.load();
  CHECK(wait_until([&] { return load.logins.load() >= before + 20; }, 20));
  load.finish();
  const int logins = load.logins.load();
  INFO("pgmux log (stderr):\n" << pgmux.log());
  CHECK(load.failures.load() == 0);

  // Every login wrote its "login ok" line (and its disconnect) to exactly one of the files.
  const auto first = json_lines(dir.path / "pgmux.log.1");
  const auto second = json_lines(dir.path / "pgmux.log.2");
  std::vector<json> third;
  CHECK(wait_until(
      [&] {
        third = json_lines(log);
        return count_containing(first, ": disconnect (") + count_containing(second, ": disconnect (") +
                   count_containing(third, ": disconnect (") >= logins;
      },
      10));
  CHECK(count_containing(first, ": login ok") > 0);
  CHECK(count_containing(second, ": login ok") > 0);
  CHECK(count_containing(third, ": login ok") > 0);
  CHECK(count_containing(first, ": login ok") + count_containing(second, ": login ok") +
            count_containing(third, ": login ok") == logins);
  CHECK(count_containing(second, "SIGUSR1: log file reopened") == 1);
  CHECK(count_containing(third, "SIGHUP: log file reopened") == 1);
  for (const json& line : third) CHECK(line["pid"] == pgmux.pid());
}

}  // namespace
}  // namespace pgmux::test
