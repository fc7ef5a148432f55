#include "proxy/net/listen_socket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/net/address.hpp"

namespace pgmux::proxy {

namespace {

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);  // the config's check keeps it within
  return address;
}

bool socket_path_is_free(const std::string& path, std::string* error) {
  const sockaddr_un address = unix_address(path);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // the real bind will report it
  // Non-blocking: a listener whose backlog is full answers EAGAIN rather than holding the start up; it is there.
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const bool answered = rc == 0 || errno == EAGAIN;
  close(fd);
  if (answered) *error = "cannot listen on " + path + ": another process (maybe another pgmux) is listening there";
  return !answered;
}

int open_unix_listen_socket(const std::string& path, std::string* error) {
  struct stat existing {};
  if (lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      *error = "cannot listen on " + path + ": the file exists and is not a socket";
      return -1;
    }
    unlink(path.c_str());  // nobody listens there (port_is_free): a socket file a stopped process left
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const sockaddr_un address = unix_address(path);
  if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      chmod(path.c_str(), 0777) != 0) {
    *error = "cannot listen on " + path + ": " + strerror(errno);
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

void SocketFiles::add(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) files_.push_back(File{path, st.st_dev, st.st_ino});
}

SocketFiles::~SocketFiles() {
  for (const File& file : files_) {
    struct stat st {};
    if (stat(file.path.c_str(), &st) == 0 && st.st_dev == file.device && st.st_ino == file.inode) {
      unlink(file.path.c_str());
    }
  }
}

bool port_is_free(const conf::Listener& listener, std::string* error) {
  if (listener.unix_socket()) return socket_path_is_free(listener.socket_path(), error);
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
  if (listener.unix_socket()) return open_unix_listen_socket(listener.socket_path(), error);
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
