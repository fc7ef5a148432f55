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
