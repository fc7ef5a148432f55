// Which databases the console paused (PAUSE [db]). Workers check any() on every new transaction (one relaxed
// load) and look a database up only while something is paused.
#pragma once
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace pgmux::proxy {

class PauseState {
 public:
  static constexpr const char* kAll = "*";

  // True when the database (or "*") was not paused before.
  bool pause(const std::string& database) {
    std::lock_guard lock(mutex_);
    const bool added = databases_.insert(database).second;
    any_.store(true, std::memory_order_release);
    return added;
  }
  bool has_entry(const std::string& database) const {
    std::lock_guard lock(mutex_);
    return databases_.count(database) > 0;
  }
  // Removes exactly this entry ("*" too, leaving databases paused by name): what one PAUSE added.
  void lift(const std::string& entry) {
    std::lock_guard lock(mutex_);
    databases_.erase(entry);
    any_.store(!databases_.empty(), std::memory_order_release);
  }
  // Removes the database ("*": everything). False when it was not paused.
  bool resume(const std::string& database) {
    std::lock_guard lock(mutex_);
    bool was = false;
    if (database == kAll) {
      was = !databases_.empty();
      databases_.clear();
    } else {
      was = databases_.erase(database) > 0;
    }
    any_.store(!databases_.empty(), std::memory_order_release);
    return was;
  }
  bool any() const { return any_.load(std::memory_order_acquire); }
  bool is_paused(const std::string& database) const {
    if (!any()) return false;
    std::lock_guard lock(mutex_);
    return databases_.count(kAll) || databases_.count(database);
  }
  std::vector<std::string> list() const {
    std::lock_guard lock(mutex_);
    return {databases_.begin(), databases_.end()};
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::string> databases_;
  std::atomic<bool> any_{false};
};

}  // namespace pgmux::proxy
