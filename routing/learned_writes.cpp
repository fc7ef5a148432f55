#include "routing/learned_writes.hpp"

#include <mutex>

namespace pgmux::routing {

void LearnedWrites::add(std::string_view sql, Lesson lesson) {
  std::unique_lock lock(mutex_);
  if (auto it = texts_.find(sql); it != texts_.end()) {
    if (lesson > it->second) it->second = lesson;
    return;
  }
  if (texts_.size() >= capacity_) return;
  texts_.emplace(sql, lesson);
  size_.store(texts_.size(), std::memory_order_relaxed);
}

LearnedWrites::Lesson LearnedWrites::lesson_for(std::string_view sql) const {
  if (size() == 0) return Lesson::Nothing;
  std::shared_lock lock(mutex_);
  const auto it = texts_.find(sql);
  return it == texts_.end() ? Lesson::Nothing : it->second;
}

}  // namespace pgmux::routing
