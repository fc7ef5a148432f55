// One-line-per-event logging with levels. Thread-safe: workers and the control loop share one sink.
#pragma once
#include <cstdio>
#include <string>
#include <string_view>
#include "conf/config.hpp"

namespace pgmux::proxy {

class Log {
 public:
  static void configure(conf::LogLevel level, const std::string& file);
  static void set_level(conf::LogLevel level);  // a reload: the level changes live, the file does not
  static bool enabled(conf::LogLevel level);
  static void write(conf::LogLevel level, std::string_view line);
};

std::string format_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Text a client chose (startup parameters, role and database names), fit for one log line: printable ASCII as
// it is, a backslash doubled, every other byte as \xNN, cut after `max` bytes with "...". A client cannot start
// a line of its own or hide what it sent.
std::string escape_for_log(std::string_view text, size_t max = 200);

}  // namespace pgmux::proxy

#define PGMUX_LOG(level, ...)                                                              \
  do {                                                                                     \
    if (::pgmux::proxy::Log::enabled(level))                                               \
      ::pgmux::proxy::Log::write(level, ::pgmux::proxy::format_log(__VA_ARGS__));          \
  } while (0)
#define LOG_DEBUG(...) PGMUX_LOG(::pgmux::conf::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) PGMUX_LOG(::pgmux::conf::LogLevel::Info, __VA_ARGS__)
#define LOG_WARN(...) PGMUX_LOG(::pgmux::conf::LogLevel::Warn, __VA_ARGS__)
#define LOG_ERROR(...) PGMUX_LOG(::pgmux::conf::LogLevel::Error, __VA_ARGS__)
