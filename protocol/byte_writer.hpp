// Appends big-endian values and whole protocol messages to a ByteVector.
#pragma once
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

class ByteWriter {
 public:
  explicit ByteWriter(ByteVector& out) : out_(out) {}

  void u8(uint8_t v);
  void i16(int16_t v);
  void i32(int32_t v);
  void cstring(std::string_view s);  // bytes then NUL
  void bytes(ByteView b);
  void bytes(std::string_view s);

  // begin_message('Q') writes the tag and a length placeholder; end_message() patches the length.
  // begin_untagged() is for startup-phase packets (length first, no tag). Messages do not nest.
  void begin_message(char tag);
  void begin_untagged();
  void end_message();

 private:
  ByteVector& out_;
  size_t length_at_ = 0;
};

}  // namespace pgmux::protocol
