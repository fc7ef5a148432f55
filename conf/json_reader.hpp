// Internal to conf/: typed reads from a JSON document that record a Diagnostic (with the JSON pointer of
// the offending value) instead of throwing, so one pass reports every problem.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "conf/loader.hpp"

namespace pgmux::conf::detail {

// ordered_json keeps keys in document order, so "unknown key" diagnostics come out in the order written.
using Json = nlohmann::ordered_json;

class Diagnostics {
 public:
  void add(std::string pointer, std::string message);
  // Adds unless a diagnostic already sits at `pointer`, an ancestor or a descendant of it: a value that
  // failed to parse (and so holds a default) must not be reported again by a later cross-field check.
  void add_unless_covered(std::string pointer, std::string message);
  bool empty() const { return items_.empty(); }
  std::vector<Diagnostic> take() { return std::move(items_); }
  const std::vector<Diagnostic>& items() const { return items_; }

 private:
  std::vector<Diagnostic> items_;
};

// RFC 6901: "~" -> "~0", "/" -> "~1".
std::string child_pointer(const std::string& parent, std::string_view key);
std::string child_pointer(const std::string& parent, size_t index);

// "must be 1..65535"; when max is just the int32/int64 ceiling, "must be >= 1" or "must be <= 2147483647"
// depending on which side the value fell.
std::string range_message(int64_t min, int64_t max, bool below);

// Value-level reads: return nullopt (and record why) when the value has the wrong type or range.
std::optional<std::string> read_string(const Json& value, const std::string& pointer, Diagnostics& diags,
                                       bool non_empty = false);
std::optional<int64_t> read_integer(const Json& value, const std::string& pointer, Diagnostics& diags,
                                    int64_t min, int64_t max);
std::optional<double> read_number(const Json& value, const std::string& pointer, Diagnostics& diags);
bool check_object(const Json& value, const std::string& pointer, Diagnostics& diags);
bool check_array(const Json& value, const std::string& pointer, Diagnostics& diags);

// Reads members of one JSON object. Every key the caller asks for is marked as known; finish() reports the
// remaining keys as "unknown key". A reader over a non-object records "must be an object" and reads nothing.
class ObjectReader {
 public:
  ObjectReader(const Json& value, std::string pointer, Diagnostics& diags);

  bool valid() const { return object_ != nullptr; }
  const std::string& pointer() const { return pointer_; }
  std::string pointer_of(std::string_view key) const { return child_pointer(pointer_, key); }
  Diagnostics& diags() { return diags_; }

  // The member, or null when absent (or when the reader is invalid). Marks the key as known.
  const Json* get(std::string_view key);
  // Like get(), but a missing key is an error "is required".
  const Json* require(std::string_view key);

  std::optional<std::string> string(std::string_view key, bool non_empty = false);
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max);
  std::optional<double> number(std::string_view key);
  // Enum by name via `parse` (e.g. parse_pool_mode); otherwise "must be one of <choices>".
  template <typename Parse>
  auto enumeration(std::string_view key, Parse parse, std::string_view choices) -> decltype(parse("")) {
    std::optional<std::string> text = string(key);
    if (!text) return std::nullopt;
    auto parsed = parse(*text);
    if (!parsed) diags_.add(pointer_of(key), "must be one of " + std::string(choices));
    return parsed;
  }

  void finish();  // reports unknown keys; call once after all reads

 private:
  const Json* object_ = nullptr;
  std::string pointer_;
  Diagnostics& diags_;
  std::vector<std::string> known_;
};

}  // namespace pgmux::conf::detail
