// Byte views shared by the codec: input is always a read-only span, output a growable vector.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::protocol {

using ByteView = std::span<const std::byte>;
using ByteVector = std::vector<std::byte>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline uint32_t load_be32(const std::byte* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline uint16_t load_be16(const std::byte* p) { return uint16_t((uint32_t(p[0]) << 8) | uint32_t(p[1])); }

}  // namespace pgmux::protocol
