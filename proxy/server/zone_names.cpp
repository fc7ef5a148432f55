#include "proxy/server/zone_names.hpp"

#include <dirent.h>
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <unordered_map>

namespace pgmux::proxy {

namespace {

// Zone names are letters, digits and _-+ in up to four components separated by '/' (right/America/Argentina/
// Buenos_Aires); nothing else is looked up (a client writes this value: no "..", no hidden files, nothing outside
// the zone directory, and no long walk through a directory that links to itself, such as posix -> .).
bool plausible_zone_name(std::string_view value) {
  constexpr size_t kMaxComponents = 4;
  if (value.empty() || value.size() > 255 || value.front() == '/' || value.back() == '/') return false;
  if (static_cast<size_t>(std::count(value.begin(), value.end(), '/')) >= kMaxComponents) return false;
  char previous = '/';
  for (char c : value) {
    const bool word = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '+';
    if (!word && c != '/') return false;
    if (c == '/' && previous == '/') return false;
    if (previous == '/' && !std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;  // no "-x", "+x"
    previous = c;
  }
  return true;
}

// The entry of `dir` whose name equals `component` but for case; "" without one.
std::string entry_named(const std::string& dir, std::string_view component) {
  DIR* d = opendir(dir.c_str());
  if (!d) return "";
  std::string found;
  while (const dirent* entry = readdir(d)) {
    const std::string_view name(entry->d_name);
    if (name.size() == component.size() && strncasecmp(name.data(), component.data(), name.size()) == 0) {
      found = entry->d_name;
      if (name == component) break;  // an exact match wins over another case of it
    }
  }
  closedir(d);
  return found;
}

std::optional<std::string> look_up(std::string_view value, const std::string& zone_dir) {
  std::string path = zone_dir;
  std::string spelled;
  size_t start = 0;
  while (start <= value.size()) {
    const size_t end = std::min(value.find('/', start), value.size());
    const std::string name = entry_named(path, value.substr(start, end - start));
    if (name.empty()) return std::nullopt;
    path += "/" + name;
    spelled += (spelled.empty() ? "" : "/") + name;
    start = end + 1;
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;  // a directory is no zone
  return spelled;
}

}  // namespace

std::optional<std::string> zone_file_spelling(std::string_view value, const std::string& zone_dir) {
  if (!plausible_zone_name(value)) return std::nullopt;
  static std::mutex mutex;
  static std::unordered_map<std::string, std::optional<std::string>> known;  // by zone_dir and value as given
  constexpr size_t kMaxKnown = 4096;
  std::string key = zone_dir + '\0' + std::string(value);
  {
    std::lock_guard lock(mutex);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  std::optional<std::string> spelled = look_up(value, zone_dir);
  std::lock_guard lock(mutex);
  if (known.size() >= kMaxKnown) known.clear();  // many distinct names: a client trying names, not zones in use
  known.emplace(std::move(key), spelled);
  return spelled;
}

}  // namespace pgmux::proxy
