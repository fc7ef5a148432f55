// The framer walks a byte stream message by message, as a connection's read loop does: tagged frames with a
// size limit taken from the input, and untagged startup packets. Every frame it accepts must lie inside what
// it was given once the body is there, and the walk must always advance.
#include <cstdlib>

#include "protocol/framer.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

namespace {

void walk(ByteView stream, uint32_t max_message_size, bool startup) {
  while (!stream.empty()) {
    const Frame frame = startup ? next_startup_frame(stream) : next_frame(stream, max_message_size);
    if (frame.status != FrameStatus::Frame) return;
    if (frame.total() < frame.header_size()) std::abort();  // a frame shorter than its own header
    if (startup && frame.total() > stream.size()) std::abort();  // startup frames come whole
    if (frame.total() > stream.size()) return;  // the body is still arriving
    stream = stream.subspan(frame.total());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // First byte: which framer; second: the limit, from the smallest legal one (a bare header) up.
  const bool startup = data[0] & 1;
  const uint32_t max_message_size = 4u + uint32_t(data[1]) * 97u;
  walk(pgmux::fuzz::as_bytes(data + 2, size - 2), max_message_size, startup);
  return 0;
}
