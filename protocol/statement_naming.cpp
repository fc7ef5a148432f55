#include "protocol/statement_naming.hpp"

#include <cstdint>
#include <cstdio>

namespace pgmux::protocol {

std::string server_statement_name(ByteView parse_message) {
  size_t name_end = 5;  // after the tag and the length
  while (name_end < parse_message.size() && parse_message[name_end] != std::byte{0}) ++name_end;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (size_t i = name_end + 1; i < parse_message.size(); ++i) {
    hash ^= static_cast<uint8_t>(parse_message[i]);
    hash *= 1099511628211ull;
  }
  char name[32];
  snprintf(name, sizeof name, "pgmux_%016llx", static_cast<unsigned long long>(hash));
  return name;
}

}  // namespace pgmux::protocol
