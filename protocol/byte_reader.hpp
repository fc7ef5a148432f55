// Bounds-checked big-endian reader over one message body. Never reads past the span; after the first
// failed read ok() is false and every later read returns a zero value.
#pragma once
#include "protocol/bytes.hpp"

namespace pgmux::protocol {

class ByteReader {
 public:
  explicit ByteReader(ByteView data) : data_(data) {}

  uint8_t u8();
  int16_t i16();
  int32_t i32();
  uint32_t u32();
  // A NUL-terminated string; the view points into the input and excludes the NUL.
  std::string_view cstring();
  // Exactly n bytes; fails when fewer remain or n < 0.
  ByteView bytes(int64_t n);
  ByteView rest();

  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  bool need(size_t n);
  ByteView data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace pgmux::protocol
