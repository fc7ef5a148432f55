#include "proxy/server/server_lease.hpp"

#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

void ServerLease::give_back() {
  if (ServerConn* server = std::exchange(server_, nullptr)) server->pool().release(server, server->reusable());
}

void ServerLease::close() {
  if (ServerConn* server = std::exchange(server_, nullptr)) server->pool().release(server, false);
}

}  // namespace pgmux::proxy
