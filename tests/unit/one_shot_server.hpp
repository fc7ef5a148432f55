// A one-shot HTTP peer for the unit tests of pgmux's HTTP clients, on 127.0.0.1 in a thread of its own.
#pragma once
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace pgmux::test {

// Accepts one connection, reads the request (head and body), writes `reply` and closes (unless `hang`: then it
// waits 0.6 s and closes without a word). With several replies: one connection for each, in turn.
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply, bool hang = false) : OneShotServer(std::vector{std::move(reply)}, hang) {}
  explicit OneShotServer(std::vector<std::string> replies, bool hang = false)
      : replies_(std::move(replies)), hang_(hang), requests_(replies_.size()) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    REQUIRE(::listen(fd_, 1) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotServer() {
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  // What the i-th connection sent (complete once its reply went out).
  const std::string& request(size_t i = 0) const { return requests_[i]; }

 private:
  void serve() {
    for (size_t i = 0; i < replies_.size(); ++i) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string& request = requests_[i];
      char buffer[4096];
      while (!complete(request)) {
        const ssize_t n = ::recv(c, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      if (!hang_) {
        (void)!::send(c, replies_[i].data(), replies_[i].size(), MSG_NOSIGNAL);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
      }
      ::close(c);
    }
  }
  // The head, and the body its Content-Length announces.
  static bool complete(const std::string& request) {
    const size_t head_end = request.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    const size_t length_at = request.find("Content-Length: ");
    if (length_at == std::string::npos || length_at > head_end) return true;
    return request.size() >= head_end + 4 + std::stoul(request.substr(length_at + 16));
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::vector<std::string> replies_;
  bool hang_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

}  // namespace pgmux::test
