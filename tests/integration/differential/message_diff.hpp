// Normalizing and comparing two captured backend message streams.
#pragma once
#include <optional>
#include <string>
#include <vector>
#include "tests/integration/differential/script.hpp"

namespace pgmux::difftest {

struct NormalizeOptions {
  // The startup ParameterStatus run carries no meaning in its order; a pooler may replay it from a cache in
  // another order. Sorting it by name is the one liberty taken (off with strict_startup_order).
  bool strict_startup_order = false;
};

// Zeroes what is per-connection by nature: BackendKeyData pid and key, NotificationResponse pid.
void normalize(Capture& capture, const NormalizeOptions& options);

// nullopt when identical; otherwise a report of the first differing message: index, step, tags, lengths,
// hex dumps of both and the tags of the messages just before it.
std::optional<std::string> first_difference(const Capture& expected, const Capture& actual,
                                            const std::string& expected_name, const std::string& actual_name);

// Tag summary of a whole stream with runs collapsed, e.g. "Sx13 K Z T Dx5 C Z" (for logs).
std::string tag_summary(const Capture& capture);

std::string hex_dump(protocol::ByteView bytes, size_t limit = 512);
std::string printable(protocol::ByteView bytes, size_t limit = 400);  // NULs shown as '|'

}  // namespace pgmux::difftest
