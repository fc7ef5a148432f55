// The little HTTP/1.1 pgmux speaks on metrics_listen: one GET per connection. Pure text in, text out.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace pgmux::proxy {

struct HttpRequestHead {
  std::string method;
  std::string path;  // origin form, without the query string ("/metrics")
};

enum class HttpParse { NeedMore, Ok, Malformed, TooLarge };

// Looks for a complete request head (request line and headers up to the empty line) within the first `limit`
// bytes of `data`. Accepts HTTP/1.0 and 1.1, origin-form or absolute-form targets; bodies are not read.
HttpParse parse_http_request_head(std::string_view data, size_t limit, HttpRequestHead* out);

// A whole response with Content-Length and "Connection: close". extra_headers: complete lines ("Allow: GET\r\n").
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers = {});

}  // namespace pgmux::proxy
