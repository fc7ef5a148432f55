#include "proxy/net/address.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <uv.h>

#include <cstring>

namespace pgmux::proxy {

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return std::memcmp(&a, &b, sizeof a) == 0;
}

std::string endpoint_text(const sockaddr& address) {
  char host[INET6_ADDRSTRLEN] = "";
  if (address.sa_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    uv_ip4_name(&v4, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  if (address.sa_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    uv_ip6_name(&v6, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port));
  }
  return "?";
}

bool numeric_address(const std::string& host, uint16_t port, sockaddr_storage* out) {
  std::memset(out, 0, sizeof *out);
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0) return true;
  return uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
}

bool resolve_address(const std::string& host, uint16_t port, sockaddr_storage* out, std::string* error) {
  if (numeric_address(host, port, out)) return true;
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

bool resolve_to_numeric(const std::string& host, std::string* numeric, std::string* error) {
  sockaddr_storage address{};
  if (!resolve_address(host, 0, &address, error)) return false;
  char text[INET6_ADDRSTRLEN] = {};
  const int rc = address.ss_family == AF_INET6
                     ? uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&address), text, sizeof text)
                     : uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&address), text, sizeof text);
  if (rc != 0) {
    *error = "could not resolve host \"" + host + "\": " + uv_strerror(rc);
    return false;
  }
  *numeric = text;
  return true;
}

}  // namespace pgmux::proxy
