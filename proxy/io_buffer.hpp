// A connection's receive buffer with cursors: [0, consumed) is done with, [consumed, parsed) has been looked at
// (forwarded or handled), [parsed, end) still has to be parsed. Storage is allocated lazily and grows only
// when one message that must be decoded whole is larger than the buffer.
#pragma once
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>

namespace pgmux::proxy {

class IoBuffer {
 public:
  static constexpr size_t kDefaultCapacity = 32 * 1024;

  // Free space for the next read; allocates on first use.
  std::span<std::byte> writable() {
    if (!data_) {
      data_ = std::make_unique<std::byte[]>(kDefaultCapacity);
      capacity_ = kDefaultCapacity;
    }
    return {data_.get() + end_, capacity_ - end_};
  }
  void commit(size_t n) { end_ += n; }

  std::byte* data() { return data_.get(); }
  size_t end() const { return end_; }
  size_t parsed() const { return parsed_; }
  size_t consumed() const { return consumed_; }
  size_t unparsed() const { return end_ - parsed_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return end_ == consumed_; }
  std::span<const std::byte> unparsed_bytes() const { return {data_.get() + parsed_, end_ - parsed_}; }

  void advance_parsed(size_t n) { parsed_ += n; }
  void consume_to(size_t pos) { consumed_ = pos; }

  // Moves the live region to the front so the next read has room; cheap when little is left over.
  void compact() {
    if (consumed_ == 0) return;
    size_t live = end_ - consumed_;
    if (live) std::memmove(data_.get(), data_.get() + consumed_, live);
    parsed_ -= consumed_;
    end_ = live;
    consumed_ = 0;
  }

  // Makes sure a message of `size` bytes starting at parsed() can fit; returns false past max.
  bool reserve_message(size_t size) {
    compact();
    if (parsed_ + size <= capacity_) return true;
    size_t wanted = parsed_ + size;
    auto bigger = std::make_unique<std::byte[]>(wanted);
    if (end_) std::memcpy(bigger.get(), data_.get(), end_);
    data_ = std::move(bigger);
    capacity_ = wanted;
    return true;
  }

  // Drops oversized storage once empty, so one huge message does not pin memory for the connection's life.
  void shrink_if_empty() {
    if (end_ == consumed_) {
      consumed_ = parsed_ = end_ = 0;
      if (capacity_ > kDefaultCapacity) data_.reset(), capacity_ = 0;
    }
  }

  void clear() { consumed_ = parsed_ = end_ = 0; }

 private:
  std::unique_ptr<std::byte[]> data_;
  size_t capacity_ = 0;
  size_t consumed_ = 0;
  size_t parsed_ = 0;
  size_t end_ = 0;
};

}  // namespace pgmux::proxy
