// logging.format = "json": every line is one JSON object a log shipper can parse, whatever the message holds
// (quotes, backslashes, newlines a client sent, invalid UTF-8); the text format stays as it was.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "proxy/net/log.hpp"

using pgmux::conf::LogFormat;
using pgmux::conf::LogLevel;
using pgmux::proxy::format_log_line;
using pgmux::proxy::json_escape;

TEST_CASE("json_escape: quotes, backslashes and control characters are escaped") {
  CHECK(json_escape("plain text") == "plain text");
  CHECK(json_escape("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(json_escape("C:\\path") == "C:\\\\path");
  CHECK(json_escape("two\nlines\r\tend") == "two\\nlines\\r\\tend");
  CHECK(json_escape(std::string("nul\0byte", 8)) == "nul\\u0000byte");
  CHECK(json_escape("\x1b[31m") == "\\u001b[31m");
  CHECK(json_escape("\x7f") == "\\u007f");
  CHECK(json_escape("").empty());
}

TEST_CASE("json_escape: valid UTF-8 is kept, each invalid byte becomes U+FFFD") {
  CHECK(json_escape("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98") ==
        "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98");
  CHECK(json_escape("\xff") == "\\ufffd");
  CHECK(json_escape("a\xc3") == "a\\ufffd");                 // cut short
  CHECK(json_escape("\xc0\xaf") == "\\ufffd\\ufffd");        // overlong '/'
  CHECK(json_escape("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");  // a UTF-16 surrogate
  CHECK(json_escape("\xf4\x90\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd");  // past U+10FFFF
}

TEST_CASE("a JSON log line parses back to the message, whatever it holds") {
  const timeval when{1764690000, 123456};  // 2025-12-02 15:40:00.123 UTC
  const std::string message = "client \"x\" sent \\ and\nINFO  a fake line \x01 \xc3\xa9 \xff";
  const std::string line = format_log_line(LogFormat::Json, LogLevel::Warn, when, message);
  CHECK(line.find('\n') == std::string::npos);
  const nlohmann::json parsed = nlohmann::json::parse(line);
  CHECK(parsed["time"] == "2025-12-02T15:40:00.123Z");
  CHECK(parsed["level"] == "warn");
  CHECK(parsed["pid"].is_number_integer());
  CHECK(parsed["message"] ==
        std::string("client \"x\" sent \\ and\nINFO  a fake line \x01 \xc3\xa9 ") + "\xef\xbf\xbd");
}

TEST_CASE("the text format is the timestamp, the padded level and the message") {
  const timeval when{1764690000, 5000};
  const std::string line = format_log_line(LogFormat::Text, LogLevel::Info, when, "hello");
  REQUIRE(line.size() > 24);
  CHECK(line.substr(19, 4) == ".005");
  CHECK(line.substr(23) == " INFO  hello");
}
