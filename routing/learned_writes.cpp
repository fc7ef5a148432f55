#include "routing/learned_writes.hpp"

#include <mutex>

namespace pgmux::routing {

void LearnedWrites::add(std::string_view sql) {
  std::unique_lock lock(mutex_);
  if (texts_.size() >= capacity_) return;
  texts_.emplace(sql);
  size_.store(texts_.size(), std::memory_order_relaxed);
}

bool LearnedWrites::contains(std::string_view sql) const {
  if (size() == 0) return false;
  std::shared_lock lock(mutex_);
  return texts_.find(sql) != texts_.end();
}

}  // namespace pgmux::routing
