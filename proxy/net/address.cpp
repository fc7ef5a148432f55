#include "proxy/net/address.hpp"

#include <netdb.h>
#include <uv.h>

#include <cstring>

namespace pgmux::proxy {

bool resolve_address(const std::string& host, uint16_t port, sockaddr_storage* out, std::string* error) {
  std::memset(out, 0, sizeof *out);
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0) return true;
  if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result);
  if (rc != 0 || !result) {
    *error = "could not resolve host \"" + host + "\": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(out, result->ai_addr, result->ai_addrlen);
  freeaddrinfo(result);
  return true;
}

}  // namespace pgmux::proxy
