// Internal to conf/: text -> JSON document. Comments are allowed. A syntax error becomes one diagnostic at
// pointer "" carrying the parser's line/column; a key repeated within one object is a "duplicate key" error
// (plain JSON parsers silently keep the last one, which hides typos in long configs).
#pragma once
#include <optional>
#include <string_view>

#include "conf/json_reader.hpp"

namespace pgmux::conf::detail {

std::optional<Json> parse_json_document(std::string_view text, Diagnostics& diags);

}  // namespace pgmux::conf::detail
