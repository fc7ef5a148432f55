// A vector most clients never fill, held by every client: one pointer until the first element, so that an idle
// client does not carry an empty std::vector (24 bytes) for it (tests/unit/proxy_footprint_test.cpp).
#pragma once
#include <memory>
#include <vector>

namespace pgmux::proxy {

template <typename T>
class LazyVector {
 public:
  LazyVector() = default;
  LazyVector(const LazyVector& other) : items_(other.items_ ? std::make_unique<std::vector<T>>(*other.items_) : nullptr) {}
  LazyVector& operator=(const LazyVector& other) {
    if (this != &other) items_ = other.items_ ? std::make_unique<std::vector<T>>(*other.items_) : nullptr;
    return *this;
  }
  LazyVector(LazyVector&&) noexcept = default;
  LazyVector& operator=(LazyVector&&) noexcept = default;

  bool empty() const { return !items_ || items_->empty(); }
  size_t size() const { return items_ ? items_->size() : 0; }
  // The elements (an empty vector when none were ever added).
  const std::vector<T>& view() const {
    static const std::vector<T> kNone;
    return items_ ? *items_ : kNone;
  }
  // The vector itself, made on first use.
  std::vector<T>& make() {
    if (!items_) items_ = std::make_unique<std::vector<T>>();
    return *items_;
  }
  void clear() { items_.reset(); }

 private:
  std::unique_ptr<std::vector<T>> items_;
};

}  // namespace pgmux::proxy
