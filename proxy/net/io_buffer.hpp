// A connection's receive buffer with cursors: [0, consumed) is done with, [consumed, parsed) has been looked at
// (forwarded or handled), [parsed, end) still has to be parsed. Storage is allocated lazily and grows only
// when one message that must be decoded whole is larger than the buffer.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace pgmux::proxy {

class IoBuffer {
 public:
  static constexpr size_t kDefaultCapacity = 32 * 1024;
  static constexpr size_t kMaxFreeBlocks = 1024;  // per thread: 32 MiB at most kept for reuse

  IoBuffer() = default;
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;
  ~IoBuffer() { release_storage(); }

  // Free space for the next read; takes a block from this thread's free list (or allocates) on first use.
  std::span<std::byte> writable() {
    if (!data_) {
      auto& blocks = free_blocks();
      if (!blocks.empty()) {
        data_ = std::move(blocks.back());
        blocks.pop_back();
      } else {
        data_ = std::make_unique_for_overwrite<std::byte[]>(kDefaultCapacity);
      }
      capacity_ = kDefaultCapacity;
    }
    return {data_.get() + end_, capacity_ - end_};
  }

  // An idle connection holds no buffer: when empty, a default-sized block goes back to this thread's free list
  // (each worker is one thread, and a connection never changes thread), a bigger one is freed.
  void release_storage() {
    if (!data_ || end_ != consumed_) return;
    consumed_ = parsed_ = end_ = 0;
    auto& blocks = free_blocks();
    if (capacity_ == kDefaultCapacity && blocks.size() < kMaxFreeBlocks) blocks.push_back(std::move(data_));
    data_.reset();
    capacity_ = 0;
  }
  void commit(size_t n) { end_ += n; }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
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

  // Makes room to read more of what starts at parsed() (a message or a request still arriving): compacts, then
  // grows so that `wanted` bytes from parsed() fit and at least one more byte can be read. Growth is by half
  // again at least, so a request of many messages arriving in small reads is copied O(size) times in total,
  // not once per read. Without free space after a message boundary the socket would stop being read: the
  // request would never complete and a vanished client never be noticed.
  void make_room(size_t wanted) {
    compact();
    const size_t needed = std::max(parsed_ + wanted, end_ + 1);
    if (needed <= capacity_) return;
    const size_t grown = std::max(needed, capacity_ + capacity_ / 2);
    auto bigger = std::make_unique_for_overwrite<std::byte[]>(grown);  // no zero-fill: pages commit as written
    if (end_) std::memcpy(bigger.get(), data_.get(), end_);
    data_ = std::move(bigger);
    capacity_ = grown;
  }

  // Puts bytes back in front of the unparsed ones, to be parsed again (a request pgmux runs a second time).
  // Only when nothing parsed is still unconsumed (no write from this buffer in flight): false otherwise.
  bool unread(std::span<const std::byte> bytes) {
    if (consumed_ != parsed_) return false;
    compact();  // parsed_ is 0 now
    make_room(end_ + bytes.size());
    if (end_) std::memmove(data_.get() + bytes.size(), data_.get(), end_);
    std::memcpy(data_.get(), bytes.data(), bytes.size());
    end_ += bytes.size();
    return true;
  }

  // Once empty, the storage goes back (see release_storage), so idle connections and one huge message do not
  // pin memory for the connection's life.
  void shrink_if_empty() { release_storage(); }

  void clear() { consumed_ = parsed_ = end_ = 0; }

 private:
  static std::vector<std::unique_ptr<std::byte[]>>& free_blocks() {
    thread_local std::vector<std::unique_ptr<std::byte[]>> blocks;
    return blocks;
  }

  std::unique_ptr<std::byte[]> data_;
  size_t capacity_ = 0;
  size_t consumed_ = 0;
  size_t parsed_ = 0;
  size_t end_ = 0;
};

}  // namespace pgmux::proxy
