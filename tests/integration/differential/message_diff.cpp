#include "tests/integration/differential/message_diff.hpp"

#include <algorithm>
#include <cstdio>

#include "protocol/backend_messages.hpp"

namespace pgmux::difftest {

namespace {
// Drops the F (source file), L (line) and R (routine) fields of an ErrorResponse or NoticeResponse: they name
// PostgreSQL's C source, and an error pgmux answers in PostgreSQL's place has the same severity, SQLSTATE and
// text but not these (README, "What differs from a direct connection").
void drop_source_location(ByteVector& body) {
  ByteVector kept;
  size_t pos = 0;
  while (pos < body.size() && body[pos] != std::byte{0}) {
    size_t end = pos + 1;
    while (end < body.size() && body[end] != std::byte{0}) ++end;
    const char code = static_cast<char>(body[pos]);
    if (code != 'F' && code != 'L' && code != 'R') kept.insert(kept.end(), body.begin() + pos, body.begin() + end + 1);
    pos = end + 1;
  }
  kept.push_back(std::byte{0});
  body = std::move(kept);
}
}  // namespace

void normalize(Capture& capture, const NormalizeOptions& options) {
  auto& msgs = capture.messages;
  for (auto& m : msgs) {
    if (m.tag == protocol::backend::kErrorResponse || m.tag == protocol::backend::kNoticeResponse) {
      drop_source_location(m.body);
    } else if (m.tag == protocol::backend::kBackendKeyData) {
      std::fill(m.body.begin(), m.body.end(), std::byte{0});
    } else if (m.tag == protocol::backend::kNotificationResponse && m.body.size() >= 4) {
      std::fill(m.body.begin(), m.body.begin() + 4, std::byte{0});
    }
  }
  if (options.strict_startup_order) return;
  // The first run of ParameterStatus messages in the login reply.
  size_t begin = 0;
  while (begin < msgs.size() && capture.step_of[begin] == "login" &&
         msgs[begin].tag != protocol::backend::kParameterStatus)
    ++begin;
  size_t end = begin;
  while (end < msgs.size() && capture.step_of[end] == "login" && msgs[end].tag == protocol::backend::kParameterStatus)
    ++end;
  std::stable_sort(msgs.begin() + static_cast<std::ptrdiff_t>(begin), msgs.begin() + static_cast<std::ptrdiff_t>(end),
                   [](const BackendMessage& a, const BackendMessage& b) {
                     return std::lexicographical_compare(a.body.begin(), a.body.end(), b.body.begin(), b.body.end());
                   });
}

std::string hex_dump(protocol::ByteView bytes, size_t limit) {
  std::string out;
  size_t n = std::min(bytes.size(), limit);
  char buf[24];
  for (size_t row = 0; row < n; row += 16) {
    std::snprintf(buf, sizeof buf, "%04zx ", row);
    out += "    ";
    out += buf;
    std::string text;
    for (size_t i = row; i < row + 16; ++i) {
      if (i < n) {
        auto b = static_cast<unsigned>(bytes[i]);
        std::snprintf(buf, sizeof buf, " %02x", b);
        out += buf;
        text += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
      } else {
        out += "   ";
      }
    }
    out += "  " + text + "\n";
  }
  if (bytes.size() > limit) out += "    ... (" + std::to_string(bytes.size() - limit) + " more bytes)\n";
  return out;
}

std::string printable(protocol::ByteView bytes, size_t limit) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < limit; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    out += c == 0 ? '|' : (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  if (bytes.size() > limit) out += "...";
  return out;
}

std::string tag_summary(const Capture& capture) {
  std::string out;
  const auto& msgs = capture.messages;
  for (size_t i = 0; i < msgs.size();) {
    size_t run = 1;
    while (i + run < msgs.size() && msgs[i + run].tag == msgs[i].tag) ++run;
    if (!out.empty()) out += ' ';
    out += msgs[i].tag;
    if (run > 1) out += "x" + std::to_string(run);
    i += run;
  }
  return out;
}

namespace {

std::string describe(const Capture& c, size_t i, const std::string& name) {
  if (i >= c.messages.size()) {
    return name + ": <no message #" + std::to_string(i) + ">" +
           (c.error.empty() ? std::string() : " (run error: " + c.error + ")") + "\n";
  }
  const auto& m = c.messages[i];
  return name + ": tag '" + std::string(1, m.tag) + "' length " + std::to_string(m.body.size() + 4) + " in step " +
         c.step_of[i] + "\n    text: " + printable(m.body) + "\n" + hex_dump(m.body);
}

}  // namespace

std::optional<std::string> first_difference(const Capture& expected, const Capture& actual,
                                            const std::string& expected_name, const std::string& actual_name) {
  size_t n = std::max(expected.messages.size(), actual.messages.size());
  for (size_t i = 0; i < n; ++i) {
    bool same = i < expected.messages.size() && i < actual.messages.size() &&
                expected.messages[i].tag == actual.messages[i].tag &&
                expected.messages[i].body == actual.messages[i].body;
    if (same) continue;
    std::string context;
    for (size_t k = i >= 4 ? i - 4 : 0; k < i; ++k) context += std::string(1, expected.messages[k].tag) + " ";
    return "first difference at message #" + std::to_string(i) + " (preceded by: " + context + ")\n" +
           describe(expected, i, expected_name) + describe(actual, i, actual_name);
  }
  if (expected.error != actual.error) {
    return "streams match but run errors differ: " + expected_name + "=\"" + expected.error + "\" " + actual_name +
           "=\"" + actual.error + "\"";
  }
  return std::nullopt;
}

}  // namespace pgmux::difftest
