#include "proxy/ops/metrics_http.hpp"

#include <uv.h>

#include <functional>
#include <map>
#include <memory>

#include "proxy/net/address.hpp"
#include "proxy/control/control.hpp"
#include "proxy/ops/http_message.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/uv_handle.hpp"
#include "proxy/net/wall_clock.hpp"
#include "proxy/ops/metrics_export.hpp"
#include "proxy/ops/status_json.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

namespace {

constexpr size_t kMaxRequestHead = 8192;    // bytes of request line and headers
constexpr uint64_t kRequestTimeoutMs = 5000;  // to send the request, and for pgmux to answer it
constexpr uint64_t kLingerMs = 1000;          // after the answer, for the client to close its side
constexpr size_t kMaxConnections = 64;
constexpr const char* kTextType = "text/plain; charset=utf-8";

struct Response {
  int status = 200;
  std::string content_type = kTextType;
  std::string body;
  std::string extra_headers;
};

Response text(int status, std::string body) { return Response{status, kTextType, std::move(body) + "\n", {}}; }

}  // namespace

struct MetricsHttpServer::Impl {
  struct HttpConn;
  explicit Impl(Control& c) : control(c) {}

  Control& control;
  UvHandlePtr<uv_tcp_t, Impl> listener;  // may outlive Impl while it closes (a failed listen)
  std::map<uint64_t, HttpConn*> conns;
  uint64_t next_id = 0;
  bool closed = false;

  static void on_connection(uv_stream_t* stream, int status);
  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*);
  static void on_timeout(uv_timer_t* timer);
  static void on_written(uv_write_t* req, int status);
  static void on_shut_down(uv_shutdown_t* req, int status);

  void on_request(HttpConn* c, const HttpRequestHead& head);
  void respond(HttpConn* c, const Response& response);
  void close_conn(HttpConn* c);
  bool drop_oldest_idle(const HttpConn* newcomer);
  // Collects every worker's snapshot, then answers with build(sources) if the connection is still there.
  void answer_with_snapshots(HttpConn* c, std::function<Response(const ExportSources&)> build);
  Response healthz() const;
  Response readyz() const;
};

// One HTTP connection. Its two handles close together; the object frees itself when both have closed. Close
// callbacks never touch the server (it may be gone by then): the connection leaves the server's map when its
// close starts.
struct MetricsHttpServer::Impl::HttpConn {
  enum class Phase { Reading, Working, Writing, Lingering, Closing };

  void on_handle_closed() {
    if (tcp.closed() && timer.closed()) delete this;
  }

  UvTcp<HttpConn> tcp{this, &HttpConn::on_handle_closed};
  UvTimer<HttpConn> timer{this, &HttpConn::on_handle_closed};
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  Impl* server = nullptr;  // null once closing
  uint64_t id = 0;
  Phase phase = Phase::Reading;
  bool peer_closed = false;  // the client sent FIN: nothing to linger for
  bool head_only = false;    // a HEAD request: the GET's status and headers, no body
  std::string in;
  std::string out;
  char read_buffer[2048];
};

void MetricsHttpServer::Impl::on_connection(uv_stream_t* stream, int status) {
  auto* self = UvTcp<Impl>::owner_of(stream);
  if (status < 0) {
    LOG_WARN("metrics_listen: accept failed: %s", uv_strerror(status));
    return;
  }
  auto* c = new HttpConn;
  c->tcp.init(self->control.loop());
  c->timer.init(self->control.loop());
  c->server = self;
  c->id = ++self->next_id;
  self->conns[c->id] = c;
  if (uv_accept(stream, c->tcp.stream()) != 0) {
    self->close_conn(c);
    return;
  }
  // At the limit an idle connection makes room, so a liveness probe is answered however many idle connections
  // someone holds open. Only when every other connection is being answered is the new one cut off.
  if (self->conns.size() > kMaxConnections && !self->drop_oldest_idle(c)) {
    self->close_conn(c);
    return;
  }
  uv_timer_start(c->timer.get(), on_timeout, kRequestTimeoutMs, 0);
  uv_read_start(c->tcp.stream(), on_alloc, on_read);
}

void MetricsHttpServer::Impl::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* c = UvTcp<HttpConn>::owner_of(handle);
  *buf = uv_buf_init(c->read_buffer, sizeof c->read_buffer);
}

void MetricsHttpServer::Impl::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  auto* c = UvTcp<HttpConn>::owner_of(stream);
  if (c->phase == HttpConn::Phase::Closing || nread == 0) return;
  Impl* self = c->server;
  if (nread < 0) {
    // The client is done sending. While pgmux still owes the answer, the client may be waiting for it (a half
    // close after the request); otherwise the connection is over.
    uv_read_stop(stream);
    c->peer_closed = true;
    if (c->phase == HttpConn::Phase::Reading || c->phase == HttpConn::Phase::Lingering) self->close_conn(c);
    return;
  }
  if (c->phase != HttpConn::Phase::Reading) return;  // anything after the request head is ignored
  c->in.append(c->read_buffer, static_cast<size_t>(nread));
  if (c->in.size() > kMaxRequestHead) {  // the buffer never grows past the limit, whatever the bytes are
    self->respond(c, text(431, "request header fields too large (limit " + std::to_string(kMaxRequestHead) +
                               " bytes)"));
    return;
  }
  HttpRequestHead head;
  switch (parse_http_request_head(c->in, kMaxRequestHead, &head)) {
    case HttpParse::NeedMore:
      return;
    case HttpParse::Malformed:
      self->respond(c, text(400, "bad request"));
      return;
    case HttpParse::TooLarge:
      self->respond(c, text(431, "request header fields too large (limit " + std::to_string(kMaxRequestHead) +
                                 " bytes)"));
      return;
    case HttpParse::Ok:
      break;
  }
  self->on_request(c, head);
}

void MetricsHttpServer::Impl::on_request(HttpConn* c, const HttpRequestHead& head) {
  const std::string& path = head.path;
  c->in.clear();
  c->phase = HttpConn::Phase::Working;
  c->head_only = head.method == "HEAD";  // whatever the answer: a reply to HEAD has no body
  static const char* const kPaths[] = {"/metrics", "/healthz", "/readyz", "/status"};
  bool known = false;
  for (const char* p : kPaths) known |= path == p;
  if (!known) {
    respond(c, text(404, "not found; try /metrics, /healthz, /readyz or /status"));
    return;
  }
  // HEAD too: load balancers' health checks use it (HAProxy's `option httpchk HEAD /healthz`).
  if (head.method != "GET" && head.method != "HEAD") {
    Response r = text(405, "method not allowed; only GET and HEAD");
    r.extra_headers = "Allow: GET, HEAD\r\n";
    respond(c, r);
    return;
  }
  if (path == "/healthz") {
    respond(c, healthz());
  } else if (path == "/readyz") {
    respond(c, readyz());
  } else if (path == "/metrics") {
    answer_with_snapshots(c, [](const ExportSources& sources) {
      return Response{200, kMetricsContentType, render_metrics(sources), {}};
    });
  } else {
    answer_with_snapshots(c, [](const ExportSources& sources) {
      // Backend errors are server text in any encoding: invalid UTF-8 is replaced, never thrown.
      return Response{200, "application/json",
                      status_json(sources).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", {}};
    });
  }
}

Response MetricsHttpServer::Impl::healthz() const {
  if (control.stopping()) return text(503, "shutting down");
  return text(200, "ok");
}

Response MetricsHttpServer::Impl::readyz() const {
  if (control.stopping()) return text(503, "not ready: shutting down");
  std::shared_ptr<const routing::BackendsView> view = control.shared().view.load();
  if (view->primary >= 0 && static_cast<size_t>(view->primary) < view->backends.size()) {
    return text(200, "ready: primary " + view->backends[static_cast<size_t>(view->primary)].spec.name);
  }
  // A planned switchover holds writes for a moment: taking pgmux out of a load balancer then would fail the very
  // connections the hold is there to keep.
  if (control.switchover_running()) return text(200, "ready: switchover in progress, writes held");
  return text(503, "not ready: " + (view->alarm.empty() ? std::string("no primary") : view->alarm));
}

void MetricsHttpServer::Impl::answer_with_snapshots(HttpConn* c, std::function<Response(const ExportSources&)> build) {
  const uint64_t id = c->id;
  Control& ctl = control;
  auto post_back = [&ctl](std::function<void()> fn) { ctl.post([fn = std::move(fn)](Control&) { fn(); }); };
  gather_snapshots(
      control.shared(), post_back, [this, id, build = std::move(build)](std::vector<WorkerSnapshot> snapshots) {
        auto it = conns.find(id);
        if (it == conns.end() || it->second->phase != HttpConn::Phase::Working) return;  // gone, or timed out
        SharedState& shared = control.shared();
        std::shared_ptr<const routing::BackendsView> view = shared.view.load();
        ExportSources sources;
        for (const Worker* worker : shared.workers) sources.workers.push_back(&worker->metrics());
        sources.snapshots = &snapshots;
        sources.view = view.get();
        sources.control = &control.metrics();
        sources.pins = &shared.pins;
        sources.version = PGMUX_VERSION;
        sources.now = wall_clock_seconds();
        sources.clients = shared.clients.load();
        sources.shutting_down = control.stopping();
        respond(it->second, build(sources));
      });
}

void MetricsHttpServer::Impl::respond(HttpConn* c, const Response& response) {
  c->phase = HttpConn::Phase::Writing;
  c->in.clear();
  c->out = http_response(response.status, response.content_type, response.body, response.extra_headers);
  if (c->head_only) {  // the same Content-Length, without the body it counts
    const size_t head_end = c->out.find("\r\n\r\n");
    if (head_end != std::string::npos) c->out.resize(head_end + 4);
  }
  uv_buf_t buf = uv_buf_init(c->out.data(), static_cast<unsigned>(c->out.size()));
  uv_timer_start(c->timer.get(), on_timeout, kRequestTimeoutMs, 0);
  if (uv_write(&c->write_req, c->tcp.stream(), &buf, 1, on_written) != 0) close_conn(c);
}

void MetricsHttpServer::Impl::on_written(uv_write_t* req, int status) {
  auto* c = UvTcp<HttpConn>::owner_of(req->handle);
  if (c->phase == HttpConn::Phase::Closing) return;
  // Half close and wait for the client's FIN: closing with unread request bytes would reset the connection
  // and could destroy the answer in flight.
  if (status < 0 || uv_shutdown(&c->shutdown_req, c->tcp.stream(), on_shut_down) != 0) {
    c->server->close_conn(c);
  }
}

void MetricsHttpServer::Impl::on_shut_down(uv_shutdown_t* req, int status) {
  auto* c = UvTcp<HttpConn>::owner_of(req->handle);
  if (c->phase == HttpConn::Phase::Closing) return;
  if (status < 0 || c->peer_closed) {
    c->server->close_conn(c);
    return;
  }
  c->phase = HttpConn::Phase::Lingering;
  uv_timer_start(c->timer.get(), on_timeout, kLingerMs, 0);
}

void MetricsHttpServer::Impl::on_timeout(uv_timer_t* timer) {
  auto* c = UvTimer<HttpConn>::owner_of(timer);
  Impl* self = c->server;
  if (c->phase == HttpConn::Phase::Reading) {
    self->respond(c, text(408, "request timeout"));
  } else if (c->phase == HttpConn::Phase::Working) {
    self->respond(c, text(503, "timed out collecting the workers' state"));
  } else if (c->phase != HttpConn::Phase::Closing) {
    self->close_conn(c);
  }
}

// Idle: answered and waiting for the client's FIN, or still waiting for a request. The map is in accept order,
// so the first such connection is the oldest. False when there is none but the newcomer.
bool MetricsHttpServer::Impl::drop_oldest_idle(const HttpConn* newcomer) {
  HttpConn* oldest_reading = nullptr;
  for (const auto& [id, conn] : conns) {
    if (conn->phase == HttpConn::Phase::Lingering) {
      close_conn(conn);
      return true;
    }
    if (!oldest_reading && conn != newcomer && conn->phase == HttpConn::Phase::Reading) oldest_reading = conn;
  }
  if (!oldest_reading) return false;
  close_conn(oldest_reading);
  return true;
}

void MetricsHttpServer::Impl::close_conn(HttpConn* c) {
  if (c->phase == HttpConn::Phase::Closing) return;
  c->phase = HttpConn::Phase::Closing;
  conns.erase(c->id);
  c->server = nullptr;
  c->tcp.close();
  c->timer.close();
}

MetricsHttpServer::MetricsHttpServer(Control& control) : impl_(new Impl(control)) {}

// Runs after the loop is closed: every handle was closed by close() and freed in its own callback.
MetricsHttpServer::~MetricsHttpServer() { delete impl_; }

bool MetricsHttpServer::listen(const std::string& host, uint16_t port, std::string* error) {
  sockaddr_storage address{};
  if (!resolve_address(host, port, &address, error)) return false;
  auto tcp = make_uv_handle<uv_tcp_t>(impl_);
  tcp->init(impl_->control.loop());
  int rc = uv_tcp_bind(tcp->get(), reinterpret_cast<const sockaddr*>(&address), 0);
  if (rc == 0) rc = uv_listen(tcp->stream(), 128, Impl::on_connection);
  if (rc != 0) {
    *error = std::string("cannot listen: ") + uv_strerror(rc);
    return false;  // tcp closes as it goes
  }
  impl_->listener = std::move(tcp);
  return true;
}

void MetricsHttpServer::close() {
  if (impl_->closed) return;
  impl_->closed = true;
  impl_->listener.reset();
  while (!impl_->conns.empty()) impl_->close_conn(impl_->conns.begin()->second);
}

}  // namespace pgmux::proxy
