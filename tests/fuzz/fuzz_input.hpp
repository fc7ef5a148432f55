// Helpers shared by the libFuzzer targets: the raw input as a byte view, and the input cut into parts at a
// separator line, so one input can carry several messages of an exchange (SCRAM's two client messages).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/bytes.hpp"

namespace pgmux::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline protocol::ByteView as_bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// "a\n--\nb" -> {"a", "b"}: the corpus files stay readable text, and the fuzzer can still move the cut.
inline std::vector<std::string_view> split_parts(std::string_view text, std::string_view separator = "\n--\n") {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + separator.size());
  }
}

}  // namespace pgmux::fuzz
