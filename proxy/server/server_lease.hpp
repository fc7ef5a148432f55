// A server connection checked out by a client (DESIGN.md §3.7). Whoever holds the lease owns the checkout:
// dropping it (destructor or give_back()) hands the server to its pool, which reuses it when clean, resets it
// (DISCARD ALL) when the session left state on it, and closes it when it is mid-request or the failure that
// ended the checkout says so — Pool::release decides, through server_fate (proxy/net/failure.hpp). forget()
// lets go of a server that is already closing (its pool has taken it off its lists).
#pragma once
#include <optional>
#include <utility>

#include "proxy/net/failure.hpp"

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

  // Back to the pool, with what only the client knows and the failure that ends the checkout, if any.
  void give_back(ServerFacts facts = {}, std::optional<Failure> why = std::nullopt);
  void forget() { server_ = nullptr; }

 private:
  ServerConn* server_ = nullptr;
};

}  // namespace pgmux::proxy
