// One HTTP/1.1 request to a plain-HTTP API (Patroni's REST API), run in libuv's thread pool with blocking sockets
// bounded by a deadline, its result delivered on the loop thread. The control loop never blocks on it, and the
// code stays a straight line: connect, send, read until the body is complete or the peer closes.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "conf/config.hpp"

namespace pgmux::proxy {

struct HttpResult {
  bool ok = false;     // a complete response arrived (any status)
  int status = 0;
  std::string body;
  std::string error;   // why not ok: "connection refused", "timed out after 2.0 s", "malformed status line"
};

struct HttpRequestSpec {
  conf::HttpUrl url;
  std::string method = "GET";
  std::string path = "/";
  std::string body;       // sent as application/json when not empty
  std::string basic_auth;  // "user:password" for an Authorization: Basic header; empty = none
  double timeout = 2;     // the whole exchange, from connect to the last byte
  size_t max_body = 1 << 20;
};

// A request in flight. Dropping the last reference, or cancel(), means `done` is never called; the thread-pool
// job still finishes within the timeout (and keeps the loop alive until then).
class HttpCall {
 public:
  using Done = std::function<void(HttpResult)>;
  static std::shared_ptr<HttpCall> start(uv_loop_t* loop, HttpRequestSpec spec, Done done);
  void cancel();
  ~HttpCall();

 private:
  struct Job;
  explicit HttpCall(std::shared_ptr<Job> job) : job_(std::move(job)) {}
  std::shared_ptr<Job> job_;
};

// The blocking exchange itself (what the thread-pool job runs); for tests.
HttpResult http_exchange(const HttpRequestSpec& spec);

}  // namespace pgmux::proxy
