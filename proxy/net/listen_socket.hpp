// Bound listening sockets with SO_REUSEPORT, one per worker and listener, so the kernel spreads accepts.
#pragma once
#include <string>

#include "conf/config.hpp"

namespace pgmux::proxy {

// True when nobody listens on the address yet. The workers' sockets use SO_REUSEPORT, which would let a second
// pgmux silently share the port with the first; this check, without SO_REUSEPORT, refuses that.
bool port_is_free(const conf::Listener& listener, std::string* error);

// Returns the fd, or -1 with *error set (e.g. the port is in use).
int open_listen_socket(const conf::Listener& listener, std::string* error);

}  // namespace pgmux::proxy
