// Statement texts the classifier took for reads a standby can run, and a standby rejected: with 25006 they write
// (a function declared STABLE that writes anyway, an operator or cast over a volatile function, a function created
// behind pgmux's back); with 0A000 from planning they read an unlogged relation the function catalog did not list
// yet, and stay reads that only the primary can run. Shared by every worker's classifier, so one rejection teaches
// them all. Thread-safe; a lookup costs one atomic load while nothing was learned, which is the usual case.
#pragma once
#include <atomic>
#include <cstddef>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <cstdint>
#include <unordered_map>

namespace pgmux::routing {

class LearnedWrites {
 public:
  enum class Lesson : uint8_t { Nothing, PrimaryRead, Write };  // ordered: a write outranks a read

  explicit LearnedWrites(size_t capacity = 10000) : capacity_(capacity) {}

  // Remembers what `sql` turned out to be. Beyond the capacity nothing more is kept (each such text is then
  // rejected by a standby, and run again on the primary, every time).
  void add(std::string_view sql, Lesson lesson = Lesson::Write);
  Lesson lesson_for(std::string_view sql) const;
  size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, Lesson, Hash, std::equal_to<>> texts_;
  std::atomic<size_t> size_{0};
  size_t capacity_;
};

}  // namespace pgmux::routing
