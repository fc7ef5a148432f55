// A TCP relay inside a test: every connection to listen_ip:listen_port is forwarded to 127.0.0.1:target_port, on
// one thread. cut() closes every connection it carries at once (a network cut: no FATAL, just closed sockets);
// freeze() stops relaying on the connections it carries (bytes sent either way stay in flight; with
// replies_only, only the server's bytes) until cut(), while new connections are relayed as usual;
// cut_carrying() cuts only those of them with bytes in flight (release_replies_of_carrying() lets their servers'
// last words through instead); relayed_from_port() says whether a server-side
// connection came through it (the local port PostgreSQL shows as pg_stat_activity.client_port);
// hold_cancel_requests(true) keeps the CancelRequest of every new connection that starts with one in flight
// until hold_cancel_requests(false) (a cancel slow to reach its server); refuse_logins_of(user, n) shuts down
// unrelayed the next n connections whose startup packet names that user ("*": any) (a server gone during login).
#pragma once
#include <atomic>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace pgmux::test {

class TcpRelay {
 public:
  // Throws when it cannot listen. listen_port 0: a free port from pick_listen_port().
  TcpRelay(const std::string& listen_ip, int listen_port, int target_port);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  int port() const { return port_; }
  void cut();
  void freeze(bool replies_only = false);
  // Cuts only the frozen connections with bytes in flight; the other frozen ones stay open and silent (a host
  // that died: the peer of each connection learns of it only when it next sends something, or never).
  void cut_carrying();
  // The frozen connections with requests in flight relay their replies again (the requests stay in flight): what
  // their server said before it went, and its close, reach the proxy; the other frozen connections stay silent.
  void release_replies_of_carrying();
  // Bytes waiting in the frozen connections' sockets (FIONREAD), either way: what was sent and not relayed.
  size_t frozen_bytes();
  bool relayed_from_port(int client_port);
  void hold_cancel_requests(bool hold);
  void refuse_logins_of(const std::string& user, int count);
  int refused_logins();  // how many it refused so far

 private:
  void run();
  void accept_one();

  int target_;
  int port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  struct Pair {
    int client_side;
    int server_side;
    bool frozen_requests = false;  // the client side is not read: its bytes stay in flight
    bool frozen_replies = false;   // the server side is not read
    bool client_ended = false;     // the client side reached EOF (or failed): no longer polled
    bool server_ended = false;     // the same for the server side
    bool first_read = true;        // nothing read from the client side yet
    bool held_cancel = false;      // frozen by hold_cancel_requests
  };
  bool hold_cancels_ = false;
  bool holds_cancel(Pair& pair);
  bool refuses_login(Pair& pair);
  std::string refused_user_;
  int refusals_left_ = 0;
  int refused_ = 0;
  std::vector<Pair> pairs_;
  std::set<int> server_side_ports_;
  std::thread thread_;
};

}  // namespace pgmux::test
