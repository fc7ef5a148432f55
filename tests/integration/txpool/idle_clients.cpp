#include "tests/integration/txpool/idle_clients.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <unordered_map>

namespace pgmux::test::txpool {
namespace {

void put_u32(std::string& out, uint32_t v) {
  const uint32_t be = htonl(v);
  out.append(reinterpret_cast<const char*>(&be), 4);
}

uint32_t get_u32(const char* p) {
  uint32_t be;
  std::memcpy(&be, p, 4);
  return ntohl(be);
}

std::string startup_message(const std::string& user, const std::string& database) {
  std::string body;
  put_u32(body, 196608);  // protocol 3.0
  for (const std::string* kv : {&user, &database}) {
    body += kv == &user ? "user" : "database";
    body.push_back('\0');
    body += *kv;
    body.push_back('\0');
  }
  body.push_back('\0');
  std::string msg;
  put_u32(msg, static_cast<uint32_t>(body.size() + 4));
  return msg + body;
}

// The 'M' field of an ErrorResponse body, or the whole body when absent.
std::string error_message(const std::string& body) {
  std::string code, text;
  size_t i = 0;
  while (i < body.size() && body[i] != '\0') {
    const char type = body[i];
    const size_t end = body.find('\0', i + 1);
    if (end == std::string::npos) break;
    if (type == 'C') code = body.substr(i + 1, end - i - 1);
    if (type == 'M') text = body.substr(i + 1, end - i - 1);
    i = end + 1;
  }
  return code + " " + text;
}

struct Pending {
  bool sent = false;
  std::string in;
};

// Parses what arrived; returns 1 at ReadyForQuery, -1 on failure (*error set), 0 when more is needed.
int advance(Pending& p, std::string* error) {
  size_t pos = 0;
  int result = 0;
  while (result == 0 && p.in.size() - pos >= 5) {
    const char type = p.in[pos];
    const uint32_t len = get_u32(p.in.data() + pos + 1);
    if (len < 4 || len > (1u << 20)) {
      *error = "bad message length from proxy";
      return -1;
    }
    if (p.in.size() - pos < 1 + len) break;
    const std::string body = p.in.substr(pos + 5, len - 4);
    pos += 1 + len;
    if (type == 'R') {
      if (body.size() < 4 || get_u32(body.data()) != 0) {
        *error = "proxy asked for a password (IdleClients needs trust auth)";
        result = -1;
      }
    } else if (type == 'E') {
      *error = "login refused: " + error_message(body);
      result = -1;
    } else if (type == 'Z') {
      result = 1;
    }
  }
  p.in.erase(0, pos);
  return result;
}

}  // namespace

int IdleClients::open(int port, const std::string& user, const std::string& database, int n, double timeout_s,
                      std::string* error, int in_flight) {
  const std::string startup = startup_message(user, database);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    *error = "epoll_create1 failed";
    return 0;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  std::unordered_map<int, Pending> pending;
  int started = 0, done = 0, failed = 0;
  auto fail = [&](int fd, const std::string& why) {
    if (error->empty()) *error = why;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    pending.erase(fd);
    ++failed;
  };
  epoll_event events[256];
  while (done + failed < n) {
    if (std::chrono::steady_clock::now() > deadline) {
      if (error->empty()) *error = "timed out with " + std::to_string(pending.size()) + " logins pending";
      break;
    }
    while (started < n && static_cast<int>(pending.size()) < in_flight) {
      ++started;
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        if (error->empty()) *error = std::string("socket: ") + std::strerror(errno);
        ++failed;
        continue;
      }
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
        if (error->empty()) *error = std::string("connect: ") + std::strerror(errno);
        close(fd);
        ++failed;
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLOUT | EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      pending.emplace(fd, Pending{});
    }
    const int ready = epoll_wait(ep, events, 256, 100);
    for (int i = 0; i < ready; ++i) {
      const int fd = events[i].data.fd;
      auto it = pending.find(fd);
      if (it == pending.end()) continue;
      Pending& p = it->second;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        // Read what is there first: the proxy may have sent an ErrorResponse before closing.
        if (!(events[i].events & EPOLLIN)) {
          fail(fd, std::string("connection failed: ") + std::strerror(soerr ? soerr : ECONNRESET));
          continue;
        }
      }
      if (!p.sent && (events[i].events & EPOLLOUT)) {
        if (write(fd, startup.data(), startup.size()) != static_cast<ssize_t>(startup.size())) {
          fail(fd, std::string("write startup: ") + std::strerror(errno));
          continue;
        }
        p.sent = true;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
      }
      if (!(events[i].events & EPOLLIN)) continue;
      char buf[4096];
      const ssize_t got = read(fd, buf, sizeof buf);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        fail(fd, "proxy closed the connection during login");
        continue;
      }
      if (got < 0) continue;
      p.in.append(buf, static_cast<size_t>(got));
      std::string why;
      const int state = advance(p, &why);
      if (state < 0) {
        fail(fd, why);
      } else if (state > 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        pending.erase(fd);
        fds_.push_back(fd);
        ++done;
      }
    }
  }
  for (auto& [fd, p] : pending) close(fd);
  close(ep);
  return done;
}

int IdleClients::count_quiet() const {
  std::vector<pollfd> fds;
  fds.reserve(fds_.size());
  for (int fd : fds_) fds.push_back(pollfd{fd, POLLIN | POLLRDHUP, 0});
  if (poll(fds.data(), fds.size(), 0) < 0) return -1;
  int quiet = 0;
  for (const pollfd& p : fds) {
    if (p.revents == 0) ++quiet;
  }
  return quiet;
}

void IdleClients::close_all() {
  static const char terminate[5] = {'X', 0, 0, 0, 4};
  for (int fd : fds_) {
    (void)!write(fd, terminate, sizeof terminate);
    close(fd);
  }
  fds_.clear();
}

}  // namespace pgmux::test::txpool
