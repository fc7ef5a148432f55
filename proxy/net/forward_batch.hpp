// Byte ranges of a receive buffer that go out in one write; adjacent ranges merge.
#pragma once
#include <uv.h>

#include <cstddef>

namespace pgmux::proxy {

class ForwardBatch {
 public:
  static constexpr unsigned kMax = 16;

  void add(std::byte* data, size_t size) {
    char* p = reinterpret_cast<char*>(data);
    if (count_ > 0 && bufs_[count_ - 1].base + bufs_[count_ - 1].len == p) {
      bufs_[count_ - 1].len += size;
      return;
    }
    bufs_[count_++] = uv_buf_init(p, static_cast<unsigned>(size));
  }
  bool full() const { return count_ == kMax; }
  bool empty() const { return count_ == 0; }
  const uv_buf_t* bufs() const { return bufs_; }
  unsigned count() const { return count_; }

 private:
  uv_buf_t bufs_[kMax];
  unsigned count_ = 0;
};

}  // namespace pgmux::proxy
