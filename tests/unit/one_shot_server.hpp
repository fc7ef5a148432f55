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

namespace pgmux::test {

// Accepts one connection, reads the request head, writes `reply` (then closes unless `hang`).
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply, bool hang = false) : reply_(std::move(reply)), hang_(hang) {
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
  const std::string& request() const { return request_; }

 private:
  void serve() {
    const int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buffer[4096];
    while (!complete()) {
      const ssize_t n = ::recv(c, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      request_.append(buffer, static_cast<size_t>(n));
    }
    if (!hang_) {
      (void)!::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(600));
    }
    ::close(c);
  }
  // The head, and the body its Content-Length announces.
  bool complete() const {
    const size_t head_end = request_.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    const size_t length_at = request_.find("Content-Length: ");
    if (length_at == std::string::npos || length_at > head_end) return true;
    return request_.size() >= head_end + 4 + std::stoul(request_.substr(length_at + 16));
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string reply_;
  bool hang_;
  std::string request_;
  std::thread thread_;
};

}  // namespace pgmux::test
