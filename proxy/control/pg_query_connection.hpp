// One non-blocking libpq connection driven by a libuv loop (the control loop): it connects when needed, sends
// one query, hands each result to the caller and reports the outcome exactly once. The connection stays open
// between queries; any failure (including the deadline) closes it so the next query reconnects. The prober
// (probe_connection.hpp) and the function-catalog loader (catalog_loader.hpp) run their queries on it.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <libpq-fe.h>
#include <uv.h>

#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

struct ProbeTarget {
  std::string host;  // IP address, host name (resolved with uv_getaddrinfo) or a unix socket directory
  uint16_t port = 5432;
  std::string user;
  std::string password;  // never logged
  std::string database;
  // The backend's TLS settings, as libpq keywords ("" = libpq's default; sslmode "disable" when off).
  std::string sslmode = "disable";
  std::string sslrootcert;
  std::string sslcert;
  std::string sslkey;
  bool operator==(const ProbeTarget&) const = default;
};

// libpq messages end with a newline and may span lines; logs want one line.
std::string one_line(const char* text);

class PgQueryConnection {
 public:
  // Called for each result that is not an error, in order: "" to go on, or what is wrong with it (the query
  // then fails with that, once the rest of its results are read).
  using OnResult = std::function<std::string(const PGresult* result)>;
  // ok, or why not (no trailing newline).
  using Done = std::function<void(bool ok, const std::string& error)>;

  // application_name: how the server lists the connection (a literal: it is not copied).
  PgQueryConnection(uv_loop_t* loop, ProbeTarget target, const char* application_name);
  ~PgQueryConnection();  // closes the libpq connection; the libuv handles free themselves once closed
  PgQueryConnection(const PgQueryConnection&) = delete;
  PgQueryConnection& operator=(const PgQueryConnection&) = delete;

  // Starts `sql` (a literal or a string that outlives the query), to finish within timeout_seconds. False (and
  // no callback) if a query is in flight. `done` runs last: it may destroy this object. With `param`, sql is
  // one statement with $1, sent by the extended protocol with param as the text value of $1.
  bool start(const char* sql, double timeout_seconds, OnResult on_result, Done done,
             std::optional<std::string> param = std::nullopt);
  bool busy() const { return state_ != State::Idle && state_ != State::Ready; }
  // A query on a kept-open connection that died is normally tried once more on a fresh one. Callers whose
  // queries rely on the session (an open transaction's snapshot) turn that off: the query fails instead.
  void stay_in_session() { retry_on_fresh_connection_ = false; }
  bool connected() const { return conn_ != nullptr && state_ != State::Connecting; }
  const ProbeTarget& target() const { return target_; }
  // The numeric address of the last connection attempt (the host, or what it resolved to); "" for a Unix socket.
  const std::string& hostaddr() const { return hostaddr_; }

 private:
  enum class State { Idle, Resolving, Connecting, Sending, Waiting, Ready };
  struct Resolve;  // an in-flight uv_getaddrinfo; outlives us if needed

  void begin_connect();
  void connect_to(const std::string& hostaddr);
  void continue_connect();
  void send_query();
  void flush();
  void read_results();
  bool watch(int events);  // (re)arms the poll handle on PQsocket; false after fail()
  void stop_watching();
  void close_connection();
  void fail(std::string error);
  void succeed();
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_deadline(uv_timer_t* timer);
  static void on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
  int start_lookup(Resolve*& slot, uv_getaddrinfo_cb callback);
  static PgQueryConnection* finish_lookup(uv_getaddrinfo_t* req, int status, struct addrinfo* res,
                                          std::vector<std::string>* addresses);
  void refresh_name();
  static void on_refreshed(uv_getaddrinfo_t* req, int status, struct addrinfo* res);

  std::string hostaddr_;
  uv_loop_t* loop_;
  ProbeTarget target_;
  const char* application_name_;
  State state_ = State::Idle;
  PGconn* conn_ = nullptr;
  UvHandlePtr<uv_poll_t, PgQueryConnection> poll_;  // on PQsocket; may outlive this object while it closes
  int poll_fd_ = -1;
  UvHandlePtr<uv_timer_t, PgQueryConnection> deadline_;
  Resolve* resolve_ = nullptr;  // the lookup a new connection waits for
  Resolve* refresh_ = nullptr;  // a lookup of the name while the connection serves (refresh_name)
  uint64_t looked_up_at_ms_ = 0;  // loop time of the last lookup of target_.host, begun (refresh) or answered
  bool address_moved_ = false;    // a refresh no longer lists hostaddr_: the next query connects afresh
  double timeout_ = 0;
  const char* sql_ = nullptr;
  std::optional<std::string> param_;
  OnResult on_result_;
  Done done_;
  bool reused_ = false;  // this query runs on a connection kept open from an earlier one
  bool retry_on_fresh_connection_ = true;
  std::string error_;
};

// One statement (or a string of them) of which only the first row's first column matters: `done` gets the first
// row set's first value ("" when no row came) or the error. False (and no callback) if a query is in flight.
using ValueDone = std::function<void(bool ok, const std::string& value, const std::string& error)>;
bool start_for_value(PgQueryConnection& connection, const char* sql, double timeout_seconds, ValueDone done,
                     std::optional<std::string> param = std::nullopt);

}  // namespace pgmux::proxy
