// The HTTP listener on metrics_listen, on the control loop: GET /metrics (Prometheus text format), /healthz
// (200 while pgmux accepts clients), /readyz (200 when a primary is known) and /status (JSON of backends and
// pools). One short request per connection; anything else gets 404 or 405.
#pragma once
#include <cstdint>
#include <string>

namespace pgmux::proxy {

class Control;

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(Control& control);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds and listens on the control loop. False with a message when the address is unusable.
  bool listen(const std::string& host, uint16_t port, std::string* error);
  // Stops listening and closes open connections; handles free themselves in their close callbacks.
  void close();

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace pgmux::proxy
