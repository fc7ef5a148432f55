// send_cancel_request on a real libuv loop against local listeners that behave like a hung host: one accepts the
// connection (its kernel does) and never closes it, one never accepts. The request's connection must end within
// its timeout either way, and the client's slot must hear whether the request may still reach the backend.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <vector>

#include "proxy/client/cancel.hpp"

using namespace pgmux::proxy;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kTimeout = 0.2;  // the cancel's timeout in these tests
constexpr uint64_t kServerId = 77;

// A listener on 127.0.0.1 that nobody accepts on: the kernel completes up to backlog + 1 handshakes by itself.
struct Listener {
  explicit Listener(int backlog) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &at.sin_addr);
    socklen_t length = sizeof at;
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&at), length) == 0);
    REQUIRE(listen(fd, backlog) == 0);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  }
  ~Listener() {
    for (int client : fillers) close(client);
    close(fd);
  }
  // Connects until a handshake no longer completes (the accept queue is full: new SYNs are dropped).
  bool fill_accept_queue() {
    for (int i = 0; i < 16; ++i) {
      const int client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      fillers.push_back(client);
      connect(client, reinterpret_cast<const sockaddr*>(&address), sizeof(sockaddr_in));
      pollfd done{client, POLLOUT, 0};
      if (poll(&done, 1, 200) == 0) return true;
    }
    return false;
  }

  int fd = -1;
  sockaddr_storage address{};
  std::vector<int> fillers;
};

std::shared_ptr<CancelSlot> slot_for(const Listener& listener) {
  auto slot = std::make_shared<CancelSlot>();
  CancelTarget target;
  target.set_address(listener.address);
  target.process_id = 4242;
  target.secret_key = 99;
  target.server_id = kServerId;
  slot->set(target);
  return slot;
}

// Runs the loop until the cancel's connection has ended, at most 3 s; the seconds it took.
double run_bounded(uv_loop_t* loop) {
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, [](uv_timer_t* timer) { uv_stop(timer->loop); }, 3000, 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&guard));  // the loop ends with the cancel's handles
  const auto start = Clock::now();
  uv_run(loop, UV_RUN_DEFAULT);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return seconds;
}

// Sends the slot's cancel to the listener and runs the loop until its connection has ended (at most 3 s): the
// seconds it took.
double send_cancel(uv_loop_t* loop, const std::shared_ptr<CancelSlot>& slot) {
  const std::optional<CancelTarget> target = slot->begin_cancel();
  REQUIRE(target);
  uv_update_time(loop);  // the loop's clock, from which the timeout counts, is stale after the set-up
  send_cancel_request(loop, *target, kTimeout, slot);
  return run_bounded(loop);
}

// What a server would read on the connection the kernel accepted for it: the bytes, and whether it was closed.
struct Received {
  ssize_t bytes = 0;
  bool closed = false;
};

Received accept_and_read(int listener) {
  Received received;
  pollfd ready{listener, POLLIN, 0};
  if (poll(&ready, 1, 1000) != 1) return received;
  const int server = accept(listener, nullptr, nullptr);
  char buffer[64];
  for (int i = 0; i < 4; ++i) {
    pollfd readable{server, POLLIN, 0};
    if (poll(&readable, 1, 100) != 1) break;
    const ssize_t n = read(server, buffer, sizeof buffer);
    if (n <= 0) {
      received.closed = true;
      break;
    }
    received.bytes += n;
  }
  close(server);  // a sender still open (no timeout) hears EOF and ends, so the loop can finish
  return received;
}

}  // namespace

TEST_CASE("a cancel request's connection its server never closes: closed at the timeout, still counted") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Listener listener(8);
  auto slot = slot_for(listener);
  const double seconds = send_cancel(&loop, slot);
  CHECK(seconds >= kTimeout * 0.9);
  CHECK(seconds < 2.0);
  const Received received = accept_and_read(listener.fd);
  CHECK(received.bytes == 16);  // the whole CancelRequest went out
  CHECK(received.closed);
  // The hung host may still read it and signal the backend: the server must not go to another client.
  CHECK(slot->release(kServerId));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("a cancel request's connection its server never accepts: given up at the timeout, nothing counted") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto listener = std::make_unique<Listener>(0);
  REQUIRE(listener->fill_accept_queue());
  auto slot = slot_for(*listener);
  const double seconds = send_cancel(&loop, slot);
  CHECK(seconds >= kTimeout * 0.9);
  CHECK(seconds < 2.0);
  CHECK_FALSE(slot->release(kServerId));  // nothing was sent: the server may serve its next client
  listener.reset();  // a sender still connecting (no timeout) is refused at its next SYN and ends
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
