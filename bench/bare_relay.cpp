// bare_relay: the floor for a proxy with pgmux's syscall pattern, as a row in bench/pgbench_compare.sh.
// One thread, level-triggered epoll; each accepted client gets its own connection to one backend, and bytes
// go across untouched: one read() of whatever has arrived, then one write() of it to the other side, per
// wakeup and direction. No parsing, no pooling, no authentication of its own (the backend authenticates the
// client through it). Whatever a proxy does beyond this (framing, routing, pooling, metrics) is its overhead
// above the floor. Only for benchmarks: no TLS, no timeouts, listens and connects on 127.0.0.1 only.
//
//   bare_relay LISTEN_PORT BACKEND_PORT
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace {

constexpr size_t kBufferSize = 64 * 1024;  // one batch; a pgbench request or reply fits many times over

struct Pair;

// One socket of a pair, and the bytes read from its peer that this socket has not yet taken.
struct Side {
  int fd = -1;
  Pair* pair = nullptr;
  Side* peer = nullptr;
  std::unique_ptr<char[]> buffer = std::make_unique<char[]>(kBufferSize);
  size_t begin = 0;  // unsent bytes are buffer[begin, end)
  size_t end = 0;
};

struct Pair {
  Side client;
  Side server;
};

int g_epoll = -1;
volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

sockaddr_in loopback(int port) {
  return sockaddr_in{.sin_family = AF_INET, .sin_port = htons(static_cast<uint16_t>(port)),
                     .sin_addr = {.s_addr = htonl(INADDR_LOOPBACK)}, .sin_zero = {}};
}

int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = loopback(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 1024) != 0) {
    std::perror("bare_relay: bind/listen");
    std::exit(1);
  }
  return fd;
}

void set_nodelay_nonblock(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// A blocking connect is immediate on loopback and keeps the relay free of connect states.
int connect_backend(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  set_nodelay_nonblock(fd);
  return fd;
}

// A side with bytes pending for it waits for EPOLLOUT, and its peer is not read until they are gone
// (backpressure: one buffer per direction).
void update_interest(Side& side) {
  epoll_event ev{};
  ev.data.ptr = &side;
  ev.events = 0;
  if (side.begin < side.end) ev.events |= EPOLLOUT;
  if (side.peer->begin == side.peer->end) ev.events |= EPOLLIN;
  epoll_ctl(g_epoll, EPOLL_CTL_MOD, side.fd, &ev);
}

void close_pair(Pair* pair) {
  close(pair->client.fd);  // closing drops the fds from the epoll set
  close(pair->server.fd);
  delete pair;
}

void accept_one(int listener, int backend_port) {
  int cfd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (cfd < 0) return;
  int sfd = connect_backend(backend_port);
  if (sfd < 0) {
    close(cfd);
    return;
  }
  int one = 1;
  setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* pair = new Pair;
  pair->client.fd = cfd;
  pair->server.fd = sfd;
  pair->client.pair = pair->server.pair = pair;
  pair->client.peer = &pair->server;
  pair->server.peer = &pair->client;
  for (Side* side : {&pair->client, &pair->server}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = side;
    epoll_ctl(g_epoll, EPOLL_CTL_ADD, side->fd, &ev);
  }
}

// Writes what `to` holds pending; false when the connection is gone.
bool flush(Side& to) {
  ssize_t n = write(to.fd, to.buffer.get() + to.begin, to.end - to.begin);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  to.begin += static_cast<size_t>(n);
  if (to.begin == to.end) to.begin = to.end = 0;
  return true;
}

// One read from `from`, one write of it to the peer; false when either end is gone.
bool relay(Side& from) {
  Side& to = *from.peer;
  ssize_t n = read(from.fd, to.buffer.get(), kBufferSize);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  to.begin = 0;
  to.end = static_cast<size_t>(n);
  if (!flush(to)) return false;
  if (to.begin < to.end) {  // rare: the peer's socket buffer is full
    update_interest(to);
    update_interest(from);
  }
  return true;
}

bool on_event(Side& side, uint32_t events) {
  if (events & EPOLLOUT) {
    if (!flush(side)) return false;
    if (side.begin == side.end) {
      update_interest(side);
      update_interest(*side.peer);
    }
  }
  if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) return false;
  // Read only when the peer has room: an EPOLLIN reported before this batch's flush may be stale.
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && side.peer->begin == side.peer->end) return relay(side);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bare_relay LISTEN_PORT BACKEND_PORT\n");
    return 2;
  }
  int listen_port = std::atoi(argv[1]);
  int backend_port = std::atoi(argv[2]);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  int listener = listen_on(listen_port);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;  // the listener is the one entry without a Side
  epoll_ctl(g_epoll, EPOLL_CTL_ADD, listener, &lev);
  epoll_event events[256];
  while (!g_stop) {
    int n = epoll_wait(g_epoll, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        accept_one(listener, backend_port);
        continue;
      }
      if (events[i].events == 0) continue;  // its pair was closed earlier in this batch
      auto* side = static_cast<Side*>(events[i].data.ptr);
      Pair* pair = side->pair;
      if (!on_event(*side, events[i].events)) {
        // Later events of this batch may name the closed pair: drop them before freeing it.
        for (int j = i + 1; j < n; ++j) {
          // An entry already dropped may name a pair freed earlier in this batch: not to be read.
          if (events[j].events == 0) continue;
          auto* other = static_cast<Side*>(events[j].data.ptr);
          if (other != nullptr && other->pair == pair) events[j].events = 0;
        }
        close_pair(pair);
      }
    }
  }
  return 0;
}
