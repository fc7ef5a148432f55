// Bound listening sockets with SO_REUSEPORT, one per worker and listener, so the kernel spreads accepts.
#pragma once
#include <string>

#include "conf/config.hpp"

namespace pgmux::proxy {

// Returns the fd, or -1 with *error set (e.g. the port is in use).
int open_listen_socket(const conf::Listener& listener, std::string* error);

}  // namespace pgmux::proxy
