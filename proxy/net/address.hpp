// Host name + port -> socket address. Numeric addresses need no lookup; names go through getaddrinfo once,
// when a pool is created.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace pgmux::proxy {

bool resolve_address(const std::string& host, uint16_t port, sockaddr_storage* out, std::string* error);

}  // namespace pgmux::proxy
