// Least-recently-used cache keyed by exact statement text. A template so classifier.hpp can hold one
// by value without a circular include; lookups take a string_view and allocate nothing.
#pragma once
#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pgmux::routing {

template <class Value>
class StatementCache {
 public:
  explicit StatementCache(size_t capacity) : capacity_(capacity) {
    if (capacity_ > 0) index_.reserve(capacity_ + 1);
  }
  // Keys in index_ point into the list nodes, so copying would leave them dangling.
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // Returns the cached value and marks it most recently used, or nullptr.
  const Value* find(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, it->second);  // move to front; iterators stay valid
    return &it->second->second;
  }

  // Stores value under key and returns the stored value, valid until the next insert. With capacity 0 nothing
  // is kept: the value is held only until the next insert.
  const Value& insert(std::string_view key, Value value) {
    if (capacity_ == 0) {
      uncached_ = std::move(value);
      return uncached_;
    }
    auto it = index_.find(key);
    if (it != index_.end()) {
      it->second->second = std::move(value);
      entries_.splice(entries_.begin(), entries_, it->second);
      return entries_.front().second;
    }
    entries_.emplace_front(std::string(key), std::move(value));
    index_.emplace(std::string_view(entries_.front().first), entries_.begin());
    if (entries_.size() > capacity_) {
      index_.erase(std::string_view(entries_.back().first));
      entries_.pop_back();
    }
    return entries_.front().second;
  }

  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  using Entry = std::pair<std::string, Value>;
  size_t capacity_;
  Value uncached_{};
  std::list<Entry> entries_;  // front = most recently used
  std::unordered_map<std::string_view, typename std::list<Entry>::iterator> index_;
};

}  // namespace pgmux::routing
