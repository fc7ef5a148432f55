#include "protocol/byte_writer.hpp"

namespace pgmux::protocol {

void ByteWriter::u8(uint8_t v) { out_.push_back(std::byte{v}); }

void ByteWriter::i16(int16_t v) {
  auto u = uint16_t(v);
  out_.push_back(std::byte(u >> 8));
  out_.push_back(std::byte(u & 0xff));
}

void ByteWriter::i32(int32_t v) {
  auto u = uint32_t(v);
  out_.push_back(std::byte(u >> 24));
  out_.push_back(std::byte((u >> 16) & 0xff));
  out_.push_back(std::byte((u >> 8) & 0xff));
  out_.push_back(std::byte(u & 0xff));
}

void ByteWriter::cstring(std::string_view s) {
  bytes(s);
  out_.push_back(std::byte{0});
}

void ByteWriter::bytes(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }

void ByteWriter::bytes(std::string_view s) { bytes(as_bytes(s)); }

void ByteWriter::begin_message(char tag) {
  out_.push_back(std::byte(uint8_t(tag)));
  begin_untagged();
}

void ByteWriter::begin_untagged() {
  length_at_ = out_.size();
  i32(0);  // patched by end_message()
}

void ByteWriter::end_message() {
  // The length counts itself and the body, never the tag.
  auto len = uint32_t(out_.size() - length_at_);
  out_[length_at_] = std::byte(len >> 24);
  out_[length_at_ + 1] = std::byte((len >> 16) & 0xff);
  out_[length_at_ + 2] = std::byte((len >> 8) & 0xff);
  out_[length_at_ + 3] = std::byte(len & 0xff);
}

}  // namespace pgmux::protocol
