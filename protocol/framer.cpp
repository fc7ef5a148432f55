#include "protocol/framer.hpp"

namespace pgmux::protocol {

namespace {
Frame error_frame(FrameError e, bool tagged, char tag, uint32_t length) {
  Frame f;
  f.tagged = tagged;
  f.status = FrameStatus::Error;
  f.error = e;
  f.tag = tag;
  f.length = length;
  return f;
}
}  // namespace

Frame next_startup_frame(ByteView buf) {
  if (buf.size() < 4) return Frame{};
  const uint32_t length = load_be32(buf.data());
  // Startup packets carry at least the length and a 4-byte code.
  if (length < 8) return error_frame(FrameError::LengthTooSmall, false, 0, length);
  if (length > kMaxStartupPacket) return error_frame(FrameError::LengthTooLarge, false, 0, length);
  Frame f;
  f.length = length;
  if (buf.size() < length) return f;  // NeedMore, length already known
  f.status = FrameStatus::Frame;
  return f;
}

const char* to_string(FrameError e) {
  switch (e) {
    case FrameError::None: return "none";
    case FrameError::LengthTooSmall: return "message length too small";
    case FrameError::LengthTooLarge: return "message length too large";
  }
  return "unknown";
}

}  // namespace pgmux::protocol
