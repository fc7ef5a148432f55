// Thousands of logged-in, idle client connections without libpq or threads: raw protocol-v3 startups driven by
// one epoll loop (trust auth only), kept open until close_all(). Used by it_txpool_idle and the idle-client
// memory benchmark (bench/idle_clients.sh).
#pragma once
#include <string>
#include <vector>

namespace pgmux::test::txpool {

class IdleClients {
 public:
  IdleClients() = default;
  ~IdleClients() { close_all(); }
  IdleClients(const IdleClients&) = delete;
  IdleClients& operator=(const IdleClients&) = delete;

  // Opens `n` more connections to 127.0.0.1:port, each logged in as user/database up to ReadyForQuery, with at
  // most `in_flight` logins pending at once, all within `timeout_s`. Returns how many succeeded; the first
  // failure's description goes to *error. Successful connections stay open (and idle) in this object.
  int open(int port, const std::string& user, const std::string& database, int n, double timeout_s,
           std::string* error, int in_flight = 200);

  // How many held connections are still open and quiet: a readable socket means the proxy sent something (an
  // error, or EOF) to a client that sent nothing.
  int count_quiet() const;

  // Sends Terminate on each and closes it.
  void close_all();

  int size() const { return static_cast<int>(fds_.size()); }

 private:
  std::vector<int> fds_;
};

}  // namespace pgmux::test::txpool
