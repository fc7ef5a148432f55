// Every connected client carries one ClientConn, so its size is most of pgmux's memory per idle client (issue 13
// item 6: at most 2 KiB each, bench/idle_clients.sh). It grew by a quarter over a few sessions without anyone
// noticing: a member added to every client must now say here why it cannot live elsewhere (the worker's scratch,
// a pointer made on first use, a padding hole).
#include <doctest/doctest.h>

#include "proxy/client/client_conn.hpp"
#include "routing/classifier.hpp"

TEST_CASE("a client's footprint stays within its budget") {
  // 1,800 bytes in session 35 (2,002 bytes of RSS per idle client with 18,950 of them); a little room for growth.
  CHECK(sizeof(pgmux::proxy::ClientConn) <= 1856);
  // Copied with every request and held several times by each client.
  CHECK(sizeof(pgmux::routing::Classification) <= 40);
}
