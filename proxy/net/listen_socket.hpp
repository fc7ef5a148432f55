// Bound listening sockets. TCP: SO_REUSEPORT, one per worker and listener, so the kernel spreads accepts. A
// Unix-domain socket (a listener whose host is a directory) is bound once: every worker watches a dup of its fd.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace pgmux::proxy {

// True when nobody listens on the address yet. The workers' sockets use SO_REUSEPORT, which would let a second
// pgmux silently share the port with the first; this check, without SO_REUSEPORT, refuses that. For a Unix-domain
// socket: nobody answers a connect to its path (a file nobody listens on is a crashed process's, and replaced).
bool port_is_free(const conf::Listener& listener, std::string* error);

// Returns the fd, or -1 with *error set (e.g. the port is in use). A Unix-domain socket's file is created with
// mode 0777, as PostgreSQL's and PgBouncer's default: hba rules of type local decide who may log in.
int open_listen_socket(const conf::Listener& listener, std::string* error);

// The socket files pgmux created, removed when it stops (as PostgreSQL removes its own), each only if it is still
// the file this process bound: a pgmux started after this one stopped listening may have replaced it.
class SocketFiles {
 public:
  SocketFiles() = default;
  SocketFiles(const SocketFiles&) = delete;
  SocketFiles& operator=(const SocketFiles&) = delete;
  ~SocketFiles();
  void add(const std::string& path);

 private:
  struct File {
    std::string path;
    uint64_t device = 0, inode = 0;
  };
  std::vector<File> files_;
};

}  // namespace pgmux::proxy
