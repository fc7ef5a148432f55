// Incremental framer: looks at the front of a buffer and says whether a whole message header is there.
// Pure and restartable: it never consumes input; the caller advances by frame.total() itself.
#pragma once
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

// PostgreSQL's MAX_STARTUP_PACKET_LENGTH (10000) counts the bytes after the length word: a length field of up
// to 10004 is valid.
inline constexpr uint32_t kMaxStartupPacket = 10004;
inline constexpr uint32_t kDefaultMaxMessageSize = 64u * 1024 * 1024;

enum class FrameStatus : uint8_t { NeedMore, Frame, Error };
enum class FrameError : uint8_t { None, LengthTooSmall, LengthTooLarge };

inline constexpr size_t kFrameHeaderSize = 5;  // type byte + length of a tagged message

struct Frame {
  FrameStatus status = FrameStatus::NeedMore;
  FrameError error = FrameError::None;
  bool tagged = false;   // false for startup-phase packets; a tagged message's type byte may be any value, 0 too
  char tag = 0;
  uint32_t length = 0;   // the length field: includes itself, excludes the tag
  // Bytes of the whole message in the stream: type byte (if any) + length.
  size_t total() const { return (tagged ? 1u : 0u) + length; }
  size_t header_size() const { return tagged ? kFrameHeaderSize : 4u; }
};

// Tagged message (everything after startup). Frame as soon as the 5-byte header is present and the length
// is valid (4 <= length <= max_message_size): the body may still be arriving, callers that need the body
// check that buf.size() >= frame.total(). NeedMore when fewer than 5 bytes. Error on a bad length. Inline: the
// relay frames every server message with it, and a look-ahead walks a reply twice (a call cost about 20
// instructions a message).
inline Frame next_frame(ByteView buf, uint32_t max_message_size = kDefaultMaxMessageSize) {
  Frame f;
  if (buf.size() < kFrameHeaderSize) return f;
  f.tagged = true;
  f.tag = char(buf[0]);
  f.length = load_be32(buf.data() + 1);
  // Validated before the caller waits for (or allocates) the body.
  f.error = f.length < 4 ? FrameError::LengthTooSmall
                         : f.length > max_message_size ? FrameError::LengthTooLarge : FrameError::None;
  f.status = f.error == FrameError::None ? FrameStatus::Frame : FrameStatus::Error;
  return f;
}

// Untagged startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest):
// 8 <= length <= kMaxStartupPacket; Frame only once the whole packet is in buf.
Frame next_startup_frame(ByteView buf);

const char* to_string(FrameError e);

}  // namespace pgmux::protocol
