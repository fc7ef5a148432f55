#include "proxy/net/log.hpp"

#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <ctime>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace pgmux::proxy {
namespace {

std::atomic<int> g_level{static_cast<int>(conf::LogLevel::Info)};
std::atomic<int> g_format{static_cast<int>(conf::LogFormat::Text)};
std::mutex g_mutex;  // one line at a time; reopen() swaps the file under it
FILE* g_sink = stderr;
std::string g_path;  // the log file, "" for stderr

const char* level_name(conf::LogLevel level) {
  switch (level) {
    case conf::LogLevel::Debug: return "DEBUG";
    case conf::LogLevel::Info: return "INFO ";
    case conf::LogLevel::Warn: return "WARN ";
    case conf::LogLevel::Error: return "ERROR";
  }
  return "?";
}

// The length of the valid UTF-8 sequence starting text[i] (PostgreSQL's and RFC 3629's rules: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0.
size_t utf8_sequence(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (i + length > text.size() || byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return length;
}

FILE* open_log_file(const std::string& path) { return fopen(path.c_str(), "a"); }

// The length of the valid UTF-8 character at text[i] (one byte for ASCII), or 0.
size_t utf8_character(std::string_view text, size_t i) {
  return static_cast<unsigned char>(text[i]) < 0x80 ? 1 : utf8_sequence(text, i);
}

}  // namespace

void Log::set_level(conf::LogLevel level) { g_level.store(static_cast<int>(level)); }
void Log::set_format(conf::LogFormat format) { g_format.store(static_cast<int>(format)); }

void Log::configure(conf::LogLevel level, const std::string& file, conf::LogFormat format) {
  g_level.store(static_cast<int>(level));
  g_format.store(static_cast<int>(format));
  std::lock_guard lock(g_mutex);
  if (g_sink != stderr) fclose(g_sink);
  g_sink = stderr;
  g_path.clear();
  if (!file.empty()) {
    if (FILE* f = open_log_file(file)) {
      g_sink = f;
      g_path = file;
    } else {
      fprintf(stderr, "pgmux: cannot open log file %s, logging to stderr\n", file.c_str());
    }
  }
}

bool Log::reopen() {
  std::string failure;
  {
    std::lock_guard lock(g_mutex);
    if (g_path.empty()) return false;
    FILE* fresh = open_log_file(g_path);
    if (fresh) {
      fclose(g_sink);
      g_sink = fresh;
      return true;
    }
    failure = std::string("cannot reopen log file ") + g_path + ": " + strerror(errno) +
              "; still writing to the old one";
  }
  write(conf::LogLevel::Error, failure);
  return false;
}

bool Log::enabled(conf::LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void Log::write(conf::LogLevel level, std::string_view line) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  const std::string text =
      format_log_line(static_cast<conf::LogFormat>(g_format.load(std::memory_order_relaxed)), level, tv, line);
  std::lock_guard lock(g_mutex);
  fprintf(g_sink, "%s\n", text.c_str());
  fflush(g_sink);
}

std::string format_log_line(conf::LogFormat format, conf::LogLevel level, const timeval& when, std::string_view line) {
  tm parts;
  char stamp[48];
  if (format == conf::LogFormat::Json) {
    gmtime_r(&when.tv_sec, &parts);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &parts);
    return format_log("{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"pid\":%d,\"message\":\"", stamp,
                      static_cast<int>(when.tv_usec / 1000), conf::to_string(level), static_cast<int>(getpid())) +
           json_escape(line) + "\"}";
  }
  localtime_r(&when.tv_sec, &parts);
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &parts);
  return format_log("%s.%03d %s ", stamp, static_cast<int>(when.tv_usec / 1000), level_name(level)) +
         std::string(line);
}

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_character(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

std::string with_valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_character(text, i);
    out += length ? text.substr(i, length) : std::string_view("?");
    i += length ? length : 1;
  }
  return out;
}

std::string json_escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const size_t length = utf8_sequence(text, i);
      out += length ? std::string(text.substr(i, length)) : std::string("\\ufffd");
      i += length ? length : 1;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  return out;
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
