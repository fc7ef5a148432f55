// Internal to conf/: cross-field rules over a parsed Config (unique names, references between sections,
// password formats vs auth methods). Runs after config_from_json on the same Diagnostics; it stays silent
// about values that already failed to parse.
#pragma once
#include "conf/config.hpp"
#include "conf/json_reader.hpp"

namespace pgmux::conf::detail {

void validate(const Config& config, Diagnostics& diags);

}  // namespace pgmux::conf::detail
