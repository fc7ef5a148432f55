#include "protocol/byte_reader.hpp"

#include <cstring>

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
  if (!ok_ || pos_ >= data_.size()) {  // (memchr must not see an empty span's null pointer)
    ok_ = false;
    return {};
  }
  // memchr: a query text is most of a message, and libc scans it a word at a time.
  const char* start = reinterpret_cast<const char*>(data_.data() + pos_);
  const void* nul = std::memchr(start, 0, data_.size() - pos_);
  if (nul == nullptr) {
    ok_ = false;  // no terminator before the end of the body
    return {};
  }
  const size_t length = static_cast<size_t>(static_cast<const char*>(nul) - start);
  pos_ += length + 1;
  return std::string_view(start, length);
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
