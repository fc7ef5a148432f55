#include "proxy/net/log.hpp"

#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <ctime>
#include <mutex>

namespace pgmux::proxy {
namespace {

std::atomic<int> g_level{static_cast<int>(conf::LogLevel::Info)};
std::mutex g_mutex;
FILE* g_sink = stderr;

const char* level_name(conf::LogLevel level) {
  switch (level) {
    case conf::LogLevel::Debug: return "DEBUG";
    case conf::LogLevel::Info: return "INFO ";
    case conf::LogLevel::Warn: return "WARN ";
    case conf::LogLevel::Error: return "ERROR";
  }
  return "?";
}

}  // namespace

void Log::set_level(conf::LogLevel level) { g_level.store(static_cast<int>(level)); }

void Log::configure(conf::LogLevel level, const std::string& file) {
  g_level.store(static_cast<int>(level));
  std::lock_guard lock(g_mutex);
  if (g_sink != stderr) fclose(g_sink);
  g_sink = stderr;
  if (!file.empty()) {
    if (FILE* f = fopen(file.c_str(), "a")) {
      g_sink = f;
    } else {
      fprintf(stderr, "pgmux: cannot open log file %s, logging to stderr\n", file.c_str());
    }
  }
}

bool Log::enabled(conf::LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void Log::write(conf::LogLevel level, std::string_view line) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm parts;
  localtime_r(&tv.tv_sec, &parts);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &parts);
  std::lock_guard lock(g_mutex);
  fprintf(g_sink, "%s.%03d %s %.*s\n", stamp, static_cast<int>(tv.tv_usec / 1000), level_name(level),
          static_cast<int>(line.size()), line.data());
  fflush(g_sink);
}

std::string format_log(const char* fmt, ...) {
  char small[512];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(small, sizeof small, fmt, args);
  va_end(args);
  if (n < 0) return {};
  if (static_cast<size_t>(n) < sizeof small) return std::string(small, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(n) + 1, '\0');
  va_start(args, fmt);
  vsnprintf(big.data(), big.size(), fmt, args);
  va_end(args);
  big.resize(static_cast<size_t>(n));
  return big;
}

std::string escape_for_log(std::string_view text, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(text.size(), max) + 8);
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace pgmux::proxy
