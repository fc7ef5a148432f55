// Everything pgmux decodes from a server: authentication requests, ParameterStatus, BackendKeyData,
// ReadyForQuery, CommandComplete and the fields of ErrorResponse/NoticeResponse, both as one body tagged by the
// first byte and as a framed stream.
#include "protocol/backend_messages.hpp"
#include "protocol/error_response.hpp"
#include "protocol/framer.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

namespace {

void decode_body(char tag, ByteView body) {
  switch (tag) {
    case 'R': (void)parse_authentication(body); break;
    case 'S': (void)parse_parameter_status(body); break;
    case 'K': (void)parse_backend_key_data(body); break;
    case 'Z': (void)parse_ready_for_query(body); break;
    case 'C': (void)parse_command_complete(body); break;
    case 'E':
    case 'N':
      if (auto fields = parse_error_fields(body)) (void)is_cached_plan_change(*fields);
      break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  decode_body(char(data[0]), pgmux::fuzz::as_bytes(data + 1, size - 1));
  ByteView stream = pgmux::fuzz::as_bytes(data, size);
  while (true) {
    const Frame frame = next_frame(stream, 1u << 20);
    if (frame.status != FrameStatus::Frame || frame.total() > stream.size()) break;
    decode_body(frame.tag, stream.subspan(kFrameHeaderSize, frame.length - 4));
    stream = stream.subspan(frame.total());
  }
  return 0;
}
