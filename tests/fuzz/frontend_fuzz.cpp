// Everything pgmux decodes from a client after login: the request scanner that cuts the stream into requests,
// each frontend message decoder on the bodies it finds, and the statement renamer of transaction pooling.
#include <cstdlib>
#include <string>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/statement_rewrite.hpp"
#include "proxy/client/request_scanner.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

namespace {

void decode_body(char tag, ByteView body) {
  switch (tag) {
    case 'Q': (void)parse_query(body); break;
    case 'P': (void)parse_parse(body); break;
    case 'B': (void)parse_bind(body); break;
    case 'D': (void)parse_describe(body); break;
    case 'C': (void)parse_close(body); break;
    case 'E': (void)parse_execute(body); break;
    case 'p':
      (void)parse_password_message(body);
      (void)parse_sasl_initial_response(body);
      break;
    default: break;
  }
}

// Each whole frame's body through its decoder.
void decode_frames(ByteView stream) {
  while (true) {
    const Frame frame = next_frame(stream, 1u << 20);
    if (frame.status != FrameStatus::Frame || frame.total() > stream.size()) return;
    decode_body(frame.tag, stream.subspan(kFrameHeaderSize, frame.length - 4));
    stream = stream.subspan(frame.total());
  }
}

// Transaction pooling pairs the names the renamer asks for with the scanner's named statement steps, in order
// (ClientConn::forward_renamed): both must take the same messages for readable, whatever the bytes.
void check_names_asked_match_steps(ByteView request, const pgmux::proxy::RequestInfo& info) {
  size_t named_steps = 0;
  for (const auto& step : info.steps) named_steps += step.name.empty() ? 0 : 1;
  size_t asked = 0;
  const StatementRenamer count = [&](std::string_view) -> std::optional<std::string_view> {
    ++asked;
    return std::nullopt;
  };
  ByteVector out;
  // (A zero type byte, which only comes in a request behind replies still owed, fails the rewrite whole.)
  if (rewrite_statement_names(request, count, out) && asked != named_steps) std::abort();
}

// Requests one after the other, as the client's read loop takes them.
void scan_requests(ByteView stream) {
  pgmux::proxy::RequestInfo info;
  while (!stream.empty()) {
    info.clear();
    const auto result = pgmux::proxy::scan_request(stream, 1u << 20, 1u << 22, info);
    if (result.status != pgmux::proxy::ScanStatus::Complete) return;
    if (info.size == 0 || info.size > stream.size()) std::abort();  // the walk must advance inside the buffer
    if (info.kind == pgmux::proxy::RequestKind::Extended) check_names_asked_match_steps(stream.first(info.size), info);
    stream = stream.subspan(info.size);
  }
}

void rename_statements(ByteView stream) {
  ByteVector out;
  const StatementRenamer rename = [](std::string_view name) -> std::optional<std::string_view> {
    if (name.empty() || name.size() % 2) return std::nullopt;  // some renamed, some left alone
    return std::string_view("pgmux_s1");
  };
  (void)rewrite_statement_names(stream, rename, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ByteView rest = pgmux::fuzz::as_bytes(data + 1, size - 1);
  decode_body(char(data[0]), rest);  // a lone body, tagged by the first byte
  const ByteView stream = pgmux::fuzz::as_bytes(data, size);
  decode_frames(stream);
  scan_requests(stream);
  rename_statements(stream);
  return 0;
}
