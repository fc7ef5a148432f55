#include "tests/soak/soak_observe.hpp"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/pgmux_process.hpp"

namespace pgmux::soak {

long open_fds(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = opendir(path.c_str());
  if (!dir) return -1;
  long count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

long status_kb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const size_t len = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, len, field) == 0 && line.size() > len && line[len] == ':') {
      return std::atol(line.c_str() + len + 1);
    }
  }
  return -1;
}

bool sanitized_executable(pid_t pid) {
  // GCC links the runtime as a shared library (libasan.so, libtsan.so), Clang into the executable.
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/libasan.so") != std::string::npos || line.find("/libtsan.so") != std::string::npos) return true;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/exe", std::ios::binary);
  std::string chunk(1 << 20, '\0');
  std::string carry;
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
    std::string window = carry + chunk.substr(0, static_cast<size_t>(in.gcount()));
    for (const char* name : {"AddressSanitizer", "ThreadSanitizer"}) {
      if (window.find(name) != std::string::npos) return true;
    }
    carry = window.substr(window.size() > 32 ? window.size() - 32 : 0);
  }
  return false;
}

std::optional<std::string> scrape_metrics(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval bound{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
  sockaddr_in addr = test::loopback_address(port);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[16384];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  if (reply.rfind("HTTP/1.1 200", 0) != 0) return std::nullopt;
  return reply;
}

double metric_sum(const std::string& exposition, const std::string& name) {
  std::istringstream in(exposition);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    if (line.size() <= name.size() || (line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    const size_t space = line.rfind(' ');
    sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  return sum;
}

QuietState wait_quiet(pid_t pid, int metrics_port, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  QuietState state;
  const auto begin = Clock::now();
  const auto deadline = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  while (true) {
    auto metrics = scrape_metrics(metrics_port);
    if (metrics) {
      const double clients = metric_sum(*metrics, "pgmux_client_connections");
      const double servers = metric_sum(*metrics, "pgmux_server_connections");
      state.last_metrics_note = "clients " + std::to_string(static_cast<long>(clients)) + ", servers " +
                                std::to_string(static_cast<long>(servers));
      if (clients == 0 && servers == 0) break;
    } else {
      state.last_metrics_note = "metrics listener did not answer";
    }
    if (Clock::now() >= deadline) return state;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  state.reached = true;
  state.waited_s = std::chrono::duration<double>(Clock::now() - begin).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the scrape's own connection closes
  for (int i = 0; i < 10; ++i) {
    const long fds = open_fds(pid);
    if (fds >= 0) state.fds = state.fds < 0 ? fds : std::min(state.fds, fds);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  state.rss_kb = status_kb(pid, "VmRSS");
  return state;
}

}  // namespace pgmux::soak
