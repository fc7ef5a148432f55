// One-line-per-event logging with levels. Thread-safe: workers and the control loop share one sink.
#pragma once
#include <sys/time.h>

#include <cstdio>
#include <string>
#include <string_view>
#include "conf/config.hpp"

namespace pgmux::proxy {

class Log {
 public:
  static void configure(conf::LogLevel level, const std::string& file,
                        conf::LogFormat format = conf::LogFormat::Text);
  static void set_level(conf::LogLevel level);  // a reload: the level changes live, the file does not
  static void set_format(conf::LogFormat format);
  // Opens the file configure() named again (SIGHUP, SIGUSR1): after logrotate renamed it, lines go to a new file
  // of the old name. No line is lost or split: writers hold the same lock. Without a file, does nothing; if the
  // file cannot be opened, logging stays on the old one and says so. Returns whether a new file is in use.
  static bool reopen();
  static bool enabled(conf::LogLevel level);
  static void write(conf::LogLevel level, std::string_view line);
};

std::string format_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Text a client chose (startup parameters, role and database names), fit for one log line: printable ASCII as
// it is, a backslash doubled, every other byte as \xNN, cut after `max` bytes with "...". A client cannot start
// a line of its own or hide what it sent.
std::string escape_for_log(std::string_view text, size_t max = 200);

// `text` with each byte that is not part of valid UTF-8 replaced by '?' (the admin console answers in UTF8, and a
// client's bytes must not make its rows undecodable: a user name given at a login that never completed).
std::string with_valid_utf8(std::string_view text);
bool is_valid_utf8(std::string_view text);

// `text` as the contents of a JSON string (no quotes around): ", \ and control characters escaped, valid UTF-8
// kept, each byte of invalid UTF-8 replaced by U+FFFD, so a line always parses.
std::string json_escape(std::string_view text);

// One log line, without the newline: "2026-11-22 16:02:23.123 INFO  message", or the JSON object
// {"time":"2026-11-22T16:02:23.123Z","level":"info","pid":42,"message":"..."} (time in UTC).
std::string format_log_line(conf::LogFormat format, conf::LogLevel level, const timeval& when, std::string_view line);

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
