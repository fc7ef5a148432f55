// One non-blocking libpq connection from the prober to one backend, driven by a libuv loop (the control
// loop). Each probe connects when needed, sends one query that works on a primary and on a standby, and
// reports the parsed answer or an error exactly once. The connection stays open between probes; any failure
// (including the deadline) closes it so the next probe reconnects.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <libpq-fe.h>
#include <uv.h>

#include "proxy/net/uv_handle.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// Seconds on the monotonic clock (uv_hrtime). The prober stamps LSN samples with it; whoever compares a commit
// time against them (read-your-writes) must read the same clock, fresh (uv_hrtime, not the loop's cached uv_now).
double monotonic_seconds();

struct ProbeTarget {
  std::string host;  // IP address, host name (resolved with uv_getaddrinfo) or a unix socket directory
  uint16_t port = 5432;
  std::string user;
  std::string password;  // never logged
  std::string database;
  bool operator==(const ProbeTarget&) const = default;
};

// The one statement of a probe round. Parsed by parse_probe_row.
extern const char* const kProbeQuery;
constexpr int kProbeColumns = 8;

// Parses the row kProbeQuery returns, given as text values (nullptr = SQL NULL). False on malformed input.
// Columns: in_recovery, current_lsn, receive_lsn, replay_lsn, replay_age, timeline, system_identifier, insert_lsn.
bool parse_probe_row(const char* const values[kProbeColumns], routing::ProbeResult& out);

class ProbeConnection {
 public:
  // ok: `result` is filled (with sent_at); otherwise `error` says why (no trailing newline).
  using Done = std::function<void(bool ok, const routing::ProbeResult& result, const std::string& error)>;

  ProbeConnection(uv_loop_t* loop, ProbeTarget target);
  ~ProbeConnection();  // closes the libpq connection; the libuv handles free themselves once closed
  ProbeConnection(const ProbeConnection&) = delete;
  ProbeConnection& operator=(const ProbeConnection&) = delete;

  // Starts a probe that must finish within timeout_seconds. False (and no callback) if one is in flight.
  // `done` runs last: it may destroy this object.
  bool start(double timeout_seconds, Done done);
  bool busy() const { return state_ != State::Idle && state_ != State::Ready; }
  bool connected() const { return conn_ != nullptr && state_ != State::Connecting; }
  const ProbeTarget& target() const { return target_; }

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

  uv_loop_t* loop_;
  ProbeTarget target_;
  State state_ = State::Idle;
  PGconn* conn_ = nullptr;
  UvHandlePtr<uv_poll_t, ProbeConnection> poll_;  // on PQsocket; may outlive this object while it closes
  int poll_fd_ = -1;
  UvHandlePtr<uv_timer_t, ProbeConnection> deadline_;
  Resolve* resolve_ = nullptr;
  double timeout_ = 0;
  Done done_;
  routing::ProbeResult result_;
  bool have_row_ = false;
  bool reused_ = false;  // this probe runs on a connection kept open from an earlier one
  std::string error_;
};

}  // namespace pgmux::proxy
