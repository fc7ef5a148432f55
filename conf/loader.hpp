// JSON (comments allowed) -> validated Config. Every problem is reported with the JSON pointer of the
// offending value, e.g. {"/backends/2/port", "must be 1..65535"}; unknown keys are errors.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include "conf/config.hpp"

namespace pgmux::conf {

struct Diagnostic {
  std::string pointer;  // "" for the document itself
  std::string message;
  std::string to_string() const;  // "<pointer>: <message>"
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<Diagnostic> errors;
  bool ok() const { return config != nullptr; }
};

LoadResult parse_config(std::string_view json_text);
LoadResult load_config_file(const std::string& path);  // unreadable file -> one diagnostic with pointer ""

}  // namespace pgmux::conf
