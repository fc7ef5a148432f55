#include "proxy/server/server_lease.hpp"

#include "proxy/server/pool.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

void ServerLease::give_back(ServerFacts facts, std::optional<Failure> why) {
  if (ServerConn* server = std::exchange(server_, nullptr)) server->pool().release(server, facts, why);
}

}  // namespace pgmux::proxy
