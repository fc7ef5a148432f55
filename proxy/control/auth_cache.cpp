#include "proxy/control/auth_cache.hpp"

#include <chrono>
#include <cstdlib>

namespace pgmux::proxy {

AuthRecord auth_record_from(int rows, std::optional<std::string_view> password,
                            std::optional<std::string_view> seconds_left, std::optional<std::string_view> can_login) {
  AuthRecord record;
  if (rows == 0) {
    record.kind = AuthRecord::Kind::NoRole;
    return record;
  }
  if (rows > 1) {
    record.error = "the lookup returned " + std::to_string(rows) + " rows, not one";
    return record;  // Failed: which secret is the role's cannot be told
  }
  record.kind = AuthRecord::Kind::Role;
  record.secret = password.value_or("");
  record.can_login = can_login == "t";
  if (seconds_left) {
    const std::string text(*seconds_left);
    const double left = std::strtod(text.c_str(), nullptr);  // "Infinity" and "-Infinity" included
    record.expired = left < 0;                                 // PostgreSQL: rolvaliduntil < now() fails
    record.valid_for = record.expired ? -1 : left;
  }
  return record;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::optional<AuthRecord> AuthCache::find(const std::string& user, double now) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(user);
  if (it == entries_.end() || it->second.expires_at <= now) return std::nullopt;
  return it->second.record;
}

void AuthCache::store(const std::string& user, AuthRecord record, double expires_at, double now) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kMaxEntries && entries_.find(user) == entries_.end()) {
    std::erase_if(entries_, [now](const auto& entry) { return entry.second.expires_at <= now; });
    // Still full of live entries (a flood of names): the oldest knowledge goes, the database answers again.
    if (entries_.size() >= kMaxEntries) entries_.clear();
  }
  entries_[user] = Entry{std::move(record), expires_at};
}

void AuthCache::forget(const std::string& user) {
  std::lock_guard lock(mutex_);
  entries_.erase(user);
}

void AuthCache::clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
}

size_t AuthCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pgmux::proxy
