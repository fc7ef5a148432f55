#include "protocol/statement_naming.hpp"

#include <array>
#include <cstdint>
#include <cstdio>

namespace pgmux::protocol {

uint64_t fnv1a(uint64_t hash, ByteView bytes) {
  for (std::byte b : bytes) {
    hash ^= static_cast<uint8_t>(b);
    hash *= 1099511628211ull;
  }
  return hash;
}

uint64_t result_shape(ByteView body) {
  // Int16 count, then per field: name\0, Int32 table, Int16 column, Int32 type, Int16 size, Int32 modifier,
  // Int16 format. The name, type, size and modifier are hashed: what PostgreSQL compares (equalTupleDescs) before
  // answering 0A000. Not the source table and column: the same text under another search_path, or over a table
  // dropped and made again alike, runs on PostgreSQL. A malformed body hashes as it is.
  constexpr size_t kFixed = 18;   // the fixed-size part after the name
  constexpr size_t kSource = 6;   // table and column, first in it
  constexpr size_t kFormat = 2;   // last in it
  uint64_t hash = kFnvOffset;
  size_t pos = 2;
  if (body.size() < pos) return fnv1a(hash, body) | 1;
  hash = fnv1a(hash, body.subspan(0, 2));
  while (pos < body.size()) {
    size_t name_end = pos;
    while (name_end < body.size() && body[name_end] != std::byte{0}) ++name_end;
    if (name_end + 1 + kFixed > body.size()) return fnv1a(hash, body.subspan(pos)) | 1;
    hash = fnv1a(hash, body.subspan(pos, name_end + 1 - pos));  // the name and its terminator
    hash = fnv1a(hash, body.subspan(name_end + 1 + kSource, kFixed - kSource - kFormat));
    pos = name_end + 1 + kFixed;
  }
  return hash | 1;  // never 0
}

std::string server_statement_name(ByteView parse_message, uint64_t settings_key) {
  size_t name_end = 5;  // after the tag and the length
  while (name_end < parse_message.size() && parse_message[name_end] != std::byte{0}) ++name_end;
  uint64_t hash = kFnvOffset;
  if (settings_key != 0) {
    std::array<std::byte, 8> key{};
    for (size_t i = 0; i < key.size(); ++i) key[i] = std::byte(settings_key >> (8 * i));
    hash = fnv1a(hash, ByteView(key));
  }
  if (name_end + 1 < parse_message.size()) hash = fnv1a(hash, parse_message.subspan(name_end + 1));
  char name[32];
  snprintf(name, sizeof name, "pgmux_%016llx", static_cast<unsigned long long>(hash));
  return name;
}

}  // namespace pgmux::protocol
