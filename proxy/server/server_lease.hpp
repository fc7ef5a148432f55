// A server connection checked out by a client (DESIGN.md §3.7). Whoever holds the lease owns the checkout:
// dropping it (destructor or give_back()) hands the server to its pool, which reuses it when clean, resets it
// (DISCARD ALL) when the session left state on it, and closes it when it is mid-request or the failure that
// ended the checkout says so — Pool::release decides, through server_fate (proxy/net/failure.hpp). forget()
// lets go of a server that is already closing (its pool has taken it off its lists). A template over the
// server type only so that the unit tests (tests/unit/proxy_lease_test.cpp) lease fake servers of a real Pool.
#pragma once
#include <optional>
#include <utility>

#include "proxy/net/failure.hpp"

namespace pgmux::proxy {

class ServerConn;

// Server: has pool(), whose release(Server*, ServerFacts, optional<Failure>) takes the server back.
template <class Server>
class Lease {
 public:
  Lease() = default;
  explicit Lease(Server* server) : server_(server) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Lease(Lease&& other) noexcept : server_(std::exchange(other.server_, nullptr)) {}
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      give_back();
      server_ = std::exchange(other.server_, nullptr);
    }
    return *this;
  }
  ~Lease() { give_back(); }

  Server* get() const { return server_; }
  Server* operator->() const { return server_; }
  operator Server*() const { return server_; }  // NOLINT: compared with and passed as a plain server

  // Back to the pool, with what only the client knows and the failure that ends the checkout, if any.
  void give_back(ServerFacts facts = {}, std::optional<Failure> why = std::nullopt) {
    if (Server* server = std::exchange(server_, nullptr)) server->pool().release(server, facts, why);
  }
  void forget() { server_ = nullptr; }

 private:
  Server* server_ = nullptr;
};

using ServerLease = Lease<ServerConn>;

}  // namespace pgmux::proxy
