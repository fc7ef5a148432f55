#include "protocol/byte_reader.hpp"

namespace pgmux::protocol {

// Marks the reader failed (sticky) when fewer than n bytes remain.
bool ByteReader::need(size_t n) {
  if (!ok_ || remaining() < n) {
    ok_ = false;
    return false;
  }
  return true;
}

uint8_t ByteReader::u8() {
  if (!need(1)) return 0;
  return uint8_t(data_[pos_++]);
}

int16_t ByteReader::i16() {
  if (!need(2)) return 0;
  uint16_t v = load_be16(data_.data() + pos_);
  pos_ += 2;
  return int16_t(v);
}

int32_t ByteReader::i32() { return int32_t(u32()); }

uint32_t ByteReader::u32() {
  if (!need(4)) return 0;
  uint32_t v = load_be32(data_.data() + pos_);
  pos_ += 4;
  return v;
}

std::string_view ByteReader::cstring() {
  if (!ok_) return {};
  for (size_t i = pos_; i < data_.size(); ++i) {
    if (data_[i] == std::byte{0}) {
      std::string_view s(reinterpret_cast<const char*>(data_.data() + pos_), i - pos_);
      pos_ = i + 1;
      return s;
    }
  }
  ok_ = false;  // no terminator before the end of the body
  return {};
}

ByteView ByteReader::bytes(int64_t n) {
  if (n < 0) {
    ok_ = false;
    return {};
  }
  if (!need(size_t(n))) return {};
  ByteView v = data_.subspan(pos_, size_t(n));
  pos_ += size_t(n);
  return v;
}

ByteView ByteReader::rest() {
  if (!ok_) return {};
  ByteView v = data_.subspan(pos_);
  pos_ = data_.size();
  return v;
}

}  // namespace pgmux::protocol
