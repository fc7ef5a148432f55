// A server connection checked out by a client (DESIGN.md §3.7). Whoever holds the lease owns the checkout:
// dropping it (destructor or give_back()) hands the server to its pool, which reuses it when clean, resets it
// (DISCARD ALL) when the session left state on it, and closes it when it is mid-request — Pool::release
// decides, from the server's own state. close() ends the server instead; forget() lets go of one that is
// already closing (its pool has taken it off its lists).
#pragma once
#include <utility>

namespace pgmux::proxy {

class ServerConn;

class ServerLease {
 public:
  ServerLease() = default;
  explicit ServerLease(ServerConn* server) : server_(server) {}
  ServerLease(const ServerLease&) = delete;
  ServerLease& operator=(const ServerLease&) = delete;
  ServerLease(ServerLease&& other) noexcept : server_(std::exchange(other.server_, nullptr)) {}
  ServerLease& operator=(ServerLease&& other) noexcept {
    if (this != &other) {
      give_back();
      server_ = std::exchange(other.server_, nullptr);
    }
    return *this;
  }
  ~ServerLease() { give_back(); }

  ServerConn* get() const { return server_; }
  ServerConn* operator->() const { return server_; }
  operator ServerConn*() const { return server_; }  // NOLINT: compared with and passed as a plain server

  // Back to the pool: reused if reusable, else closed.
  void give_back();
  // Never reused (a former primary, a server left mid-COPY).
  void close();
  void forget() { server_ = nullptr; }

 private:
  ServerConn* server_ = nullptr;
};

}  // namespace pgmux::proxy
