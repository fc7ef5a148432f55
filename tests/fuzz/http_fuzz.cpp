// The metrics listener's HTTP request-head parser, on the bytes a connection has received so far, with a
// head-size limit taken from the input; each prefix too, as the bytes arrive in pieces.
#include <cstdlib>

#include "proxy/ops/http_message.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using pgmux::proxy::HttpParse;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t limit = 16 + size_t(data[0]) * 16;
  const std::string_view text = pgmux::fuzz::as_text(data + 1, size - 1);
  pgmux::proxy::HttpRequestHead head;
  const HttpParse whole = pgmux::proxy::parse_http_request_head(text, limit, &head);
  if (whole == HttpParse::Ok && (head.path.empty() || head.path[0] != '/')) std::abort();  // origin form always
  for (size_t cut = 0; cut < text.size(); cut += 7) {
    pgmux::proxy::HttpRequestHead partial;
    (void)pgmux::proxy::parse_http_request_head(text.substr(0, cut), limit, &partial);
  }
  return 0;
}
