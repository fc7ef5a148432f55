#include "proxy/net/listen_socket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/net/address.hpp"

namespace pgmux::proxy {

bool port_is_free(const conf::Listener& listener, std::string* error) {
  sockaddr_storage address{};
  if (!resolve_address(listener.host, listener.port, &address, error)) return false;
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // the real bind will report it
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // not SO_REUSEPORT: that would share the port
  socklen_t length = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const bool free = bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0;
  const int bind_errno = errno;
  close(fd);
  if (!free) {
    *error = "cannot listen on " + listener.host + ":" + std::to_string(listener.port) + ": " + strerror(bind_errno) +
             (bind_errno == EADDRINUSE ? " (another process, maybe another pgmux, is listening there)" : "");
  }
  return free;
}

int open_listen_socket(const conf::Listener& listener, std::string* error) {
  sockaddr_storage address{};
  if (!resolve_address(listener.host, listener.port, &address, error)) return -1;
  const std::string where = listener.host + ":" + std::to_string(listener.port);
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "cannot create socket for " + where + ": " + strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  socklen_t length = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    *error = "cannot listen on " + where + ": " + strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace pgmux::proxy
