// A blocking HTTP/1.x client for the metrics listener tests (127.0.0.1 only, bounded by a timeout), and a
// reader for the values of the Prometheus text format.
#pragma once
#include <string>

namespace pgmux::test::metrics {

struct HttpReply {
  int status = 0;    // 0: no parsable reply
  std::string head;  // status line and headers
  std::string body;
};

// Sends `request` as is to 127.0.0.1:port and reads until the server closes (or `seconds` pass).
HttpReply http_raw(int port, const std::string& request, double seconds = 10);
// GET path with Host and Connection: close.
HttpReply http_get(int port, const std::string& path);

// Value of one sample of the text format: `series` is the name with its labels exactly as pgmux writes them
// (`pgmux_backend_up{backend="primary"}`). Throws when the series is missing.
double sample(const std::string& text, const std::string& series);
// Sum of every sample of a family's series whose name and labels start with `prefix`
// (`pgmux_query_duration_seconds_count{`).
double sum_samples(const std::string& text, const std::string& prefix);

}  // namespace pgmux::test::metrics
