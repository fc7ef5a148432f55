// Bounds-checked big-endian reader over one message body. Never reads past the span; after the first
// failed read ok() is false and every later read returns a zero value.
// Defined here, not in a .cpp: every message on the hot path is decoded with a few of these calls, and inlined
// they fold into the caller's checks (an extended batch's five messages cost about 300 instructions fewer).
#pragma once
#include <cstring>

#include "protocol/bytes.hpp"

namespace pgmux::protocol {

class ByteReader {
 public:
  explicit ByteReader(ByteView data) : data_(data) {}

  uint8_t u8() {
    if (!need(1)) return 0;
    return uint8_t(data_[pos_++]);
  }
  int16_t i16() {
    if (!need(2)) return 0;
    const uint16_t v = load_be16(data_.data() + pos_);
    pos_ += 2;
    return int16_t(v);
  }
  int32_t i32() { return int32_t(u32()); }
  uint32_t u32() {
    if (!need(4)) return 0;
    const uint32_t v = load_be32(data_.data() + pos_);
    pos_ += 4;
    return v;
  }
  // A NUL-terminated string; the view points into the input and excludes the NUL.
  std::string_view cstring() {
    if (!ok_ || pos_ >= data_.size()) return fail_string();  // (memchr must not see an empty span's null pointer)
    // memchr: a query text is most of a message, and libc scans it a word at a time.
    const char* start = reinterpret_cast<const char*>(data_.data() + pos_);
    const void* nul = std::memchr(start, 0, data_.size() - pos_);
    if (nul == nullptr) return fail_string();  // no terminator before the end of the body
    const size_t length = static_cast<size_t>(static_cast<const char*>(nul) - start);
    pos_ += length + 1;
    return std::string_view(start, length);
  }
  // Exactly n bytes; fails when fewer remain or n < 0.
  ByteView bytes(int64_t n) {
    if (n < 0) {
      ok_ = false;
      return {};
    }
    if (!need(size_t(n))) return {};
    const ByteView v = data_.subspan(pos_, size_t(n));
    pos_ += size_t(n);
    return v;
  }
  ByteView rest() {
    if (!ok_) return {};
    const ByteView v = data_.subspan(pos_);
    pos_ = data_.size();
    return v;
  }

  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  // Marks the reader failed (sticky) when fewer than n bytes remain.
  bool need(size_t n) {
    if (!ok_ || remaining() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view fail_string() {
    ok_ = false;
    return {};
  }

  ByteView data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace pgmux::protocol
