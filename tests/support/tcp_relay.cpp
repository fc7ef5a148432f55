#include "tests/support/tcp_relay.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "tests/support/pgmux_process.hpp"

namespace pgmux::test {

namespace {
sockaddr_in ipv4(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}
}  // namespace

TcpRelay::TcpRelay(const std::string& listen_ip, int listen_port, int target_port)
    : target_(target_port), port_(listen_port != 0 ? listen_port : pick_listen_port()) {
  listener_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in at = ipv4(listen_ip, port_);
  if (bind(listener_, reinterpret_cast<const sockaddr*>(&at), sizeof at) != 0 || listen(listener_, 64) != 0) {
    close(listener_);
    throw std::runtime_error("relay: cannot listen on " + listen_ip + ":" + std::to_string(port_));
  }
  thread_ = std::thread([this] { run(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  thread_.join();
  close(listener_);
  cut();
}

void TcpRelay::cut() {
  std::lock_guard lock(mutex_);
  for (const Pair& pair : pairs_) {
    for (const int fd : {pair.client_side, pair.server_side}) {
      shutdown(fd, SHUT_RDWR);
      close(fd);
    }
  }
  pairs_.clear();
}

void TcpRelay::cut_carrying() {
  std::lock_guard lock(mutex_);
  std::vector<Pair> kept;
  for (const Pair& pair : pairs_) {
    int requests = 0, replies = 0;
    if (pair.frozen_requests) ioctl(pair.client_side, FIONREAD, &requests);
    if (pair.frozen_replies) ioctl(pair.server_side, FIONREAD, &replies);
    if (requests == 0 && replies == 0) {
      kept.push_back(pair);
      continue;
    }
    for (const int fd : {pair.client_side, pair.server_side}) {
      shutdown(fd, SHUT_RDWR);
      close(fd);
    }
  }
  pairs_ = std::move(kept);
}

void TcpRelay::release_replies_of_carrying() {
  std::lock_guard lock(mutex_);
  for (Pair& pair : pairs_) {
    int requests = 0;
    if (pair.frozen_requests && ioctl(pair.client_side, FIONREAD, &requests) == 0 && requests > 0) {
      pair.frozen_replies = false;
    }
  }
}

void TcpRelay::freeze(bool replies_only) {
  std::lock_guard lock(mutex_);
  for (Pair& pair : pairs_) {
    pair.frozen_requests = !replies_only;
    pair.frozen_replies = true;
  }
}

size_t TcpRelay::frozen_bytes() {
  std::lock_guard lock(mutex_);
  size_t total = 0;
  for (const Pair& pair : pairs_) {
    for (const int fd : {pair.frozen_requests ? pair.client_side : -1, pair.frozen_replies ? pair.server_side : -1}) {
      int pending = 0;
      if (fd >= 0 && ioctl(fd, FIONREAD, &pending) == 0 && pending > 0) total += static_cast<size_t>(pending);
    }
  }
  return total;
}

bool TcpRelay::relayed_from_port(int client_port) {
  std::lock_guard lock(mutex_);
  return server_side_ports_.count(client_port) > 0;
}

void TcpRelay::hold_cancel_requests(bool hold) {
  std::lock_guard lock(mutex_);
  hold_cancels_ = hold;
  if (hold) return;
  for (Pair& pair : pairs_) {
    if (pair.held_cancel) pair.frozen_requests = pair.held_cancel = false;
  }
}

void TcpRelay::refuse_logins_of(const std::string& user, int count) {
  std::lock_guard lock(mutex_);
  refused_user_ = user;
  refusals_left_ = count;
}

int TcpRelay::refused_logins() {
  std::lock_guard lock(mutex_);
  return refused_;
}

// A new connection whose startup packet names the user whose logins are refused: both sides are shut down
// unrelayed (the client side reads EOF, as from a server that went away during login).
bool TcpRelay::refuses_login(Pair& pair) {
  if (refusals_left_ <= 0) return false;
  char head[512];
  const ssize_t n = recv(pair.client_side, head, sizeof head, MSG_PEEK);
  const std::string wanted = std::string("user") + '\0' + (refused_user_ == "*" ? "" : refused_user_ + '\0');
  if (n <= 8 || std::string(head + 8, static_cast<size_t>(n) - 8).find(wanted) == std::string::npos) return false;
  --refusals_left_;
  ++refused_;
  shutdown(pair.client_side, SHUT_RDWR);
  shutdown(pair.server_side, SHUT_RDWR);
  pair.client_ended = pair.server_ended = true;
  return true;
}

// A new connection whose first bytes are a CancelRequest (length 16, code 80877102), while cancels are held:
// frozen before anything of it is relayed.
bool TcpRelay::holds_cancel(Pair& pair) {
  if (!pair.first_read) return false;
  unsigned char head[8];
  if (!hold_cancels_ || recv(pair.client_side, head, sizeof head, MSG_PEEK) != sizeof head) {
    pair.first_read = false;
    return false;
  }
  pair.first_read = false;
  const unsigned char cancel[8] = {0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e};
  if (std::memcmp(head, cancel, sizeof head) != 0) return false;
  pair.frozen_requests = pair.held_cancel = true;
  return true;
}

void TcpRelay::run() {
  while (!stop_) {
    std::vector<pollfd> fds{{listener_, POLLIN, 0}};
    {
      std::lock_guard lock(mutex_);
      for (const Pair& pair : pairs_) {
        // A side that ended stays readable (EOF) for ever: polling it again would spin.
        if (!pair.frozen_requests && !pair.client_ended) fds.push_back({pair.client_side, POLLIN, 0});
        if (!pair.frozen_replies && !pair.server_ended) fds.push_back({pair.server_side, POLLIN, 0});
      }
    }
    if (poll(fds.data(), fds.size(), 50) <= 0) continue;
    if (fds[0].revents & POLLIN) accept_one();
    std::lock_guard lock(mutex_);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
      for (Pair& pair : pairs_) {
        const int a = pair.client_side, b = pair.server_side;
        if (fds[i].fd != a && fds[i].fd != b) continue;
        // Frozen since the poll began: what arrived stays in flight.
        if (fds[i].fd == a ? pair.frozen_requests : pair.frozen_replies) break;
        if (fds[i].fd == a && pair.first_read && refuses_login(pair)) break;
        if (fds[i].fd == a && holds_cancel(pair)) break;
        char buf[65536];
        const ssize_t n = read(fds[i].fd, buf, sizeof buf);
        const int to = fds[i].fd == a ? b : a;
        if (n > 0 && write(to, buf, static_cast<size_t>(n)) == n) break;
        shutdown(to, SHUT_RDWR);  // one side closed: the other hears EOF
        (fds[i].fd == a ? pair.client_ended : pair.server_ended) = true;
        break;
      }
    }
  }
}

void TcpRelay::accept_one() {
  const int client = accept(listener_, nullptr, nullptr);
  if (client < 0) return;
  const int server = socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in to = ipv4("127.0.0.1", target_);
  if (connect(server, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    close(client);
    close(server);
    return;
  }
  sockaddr_in local{};
  socklen_t length = sizeof local;
  getsockname(server, reinterpret_cast<sockaddr*>(&local), &length);
  std::lock_guard lock(mutex_);
  pairs_.push_back(Pair{client, server});
  server_side_ports_.insert(ntohs(local.sin_port));
}

}  // namespace pgmux::test
