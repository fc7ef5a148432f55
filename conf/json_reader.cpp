#include "conf/json_reader.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pgmux::conf::detail {

void Diagnostics::add(std::string pointer, std::string message) {
  items_.push_back(Diagnostic{std::move(pointer), std::move(message)});
}

namespace {
// True when `outer` is `inner` or one of its ancestors in the JSON pointer tree.
bool contains(const std::string& outer, const std::string& inner) {
  return inner.starts_with(outer) && (inner.size() == outer.size() || inner[outer.size()] == '/');
}
}  // namespace

void Diagnostics::add_unless_covered(std::string pointer, std::string message) {
  for (const Diagnostic& d : items_) {
    if (contains(d.pointer, pointer) || contains(pointer, d.pointer)) return;
  }
  add(std::move(pointer), std::move(message));
}

std::string child_pointer(const std::string& parent, std::string_view key) {
  std::string out = parent;
  out += '/';
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string child_pointer(const std::string& parent, size_t index) {
  return parent + '/' + std::to_string(index);
}

std::string range_message(int64_t min, int64_t max, bool below) {
  // An int32/int64 ceiling is an implementation limit, not a documented bound: name only the side violated.
  if (max == std::numeric_limits<int64_t>::max() || max == std::numeric_limits<int32_t>::max()) {
    return below ? "must be >= " + std::to_string(min) : "must be <= " + std::to_string(max);
  }
  return "must be " + std::to_string(min) + ".." + std::to_string(max);
}

std::optional<std::string> read_string(const Json& value, const std::string& pointer, Diagnostics& diags,
                                       bool non_empty) {
  if (!value.is_string()) {
    diags.add(pointer, "must be a string");
    return std::nullopt;
  }
  std::string text = value.get<std::string>();
  if (non_empty && text.empty()) {
    diags.add(pointer, "must not be empty");
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> read_integer(const Json& value, const std::string& pointer, Diagnostics& diags,
                                    int64_t min, int64_t max) {
  if (!value.is_number()) {
    diags.add(pointer, "must be an integer");
    return std::nullopt;
  }
  bool in_range = false;
  bool below = false;
  int64_t result = 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(max) && static_cast<int64_t>(u) >= min;
    below = u <= static_cast<uint64_t>(max);  // out of range while under max means under min
    result = static_cast<int64_t>(u);
  } else if (value.is_number_integer()) {
    result = value.get<int64_t>();
    in_range = result >= min && result <= max;
    below = result < min;
  } else {
    // 1e6 is a fine way to write a million; 2.5 is not an integer.
    const double d = value.get<double>();
    if (std::floor(d) != d) {
      diags.add(pointer, "must be an integer");
      return std::nullopt;
    }
    // The magnitude cap keeps the cast below defined even when max is INT64_MAX (not exact as a double).
    in_range = d >= static_cast<double>(min) && d <= static_cast<double>(max) && std::fabs(d) < 9.0e18;
    below = d < static_cast<double>(min);
    if (in_range) result = static_cast<int64_t>(d);
  }
  if (!in_range) {
    diags.add(pointer, range_message(min, max, below));
    return std::nullopt;
  }
  return result;
}

std::optional<double> read_number(const Json& value, const std::string& pointer, Diagnostics& diags) {
  if (!value.is_number()) {
    diags.add(pointer, "must be a number");
    return std::nullopt;
  }
  return value.get<double>();
}

bool check_object(const Json& value, const std::string& pointer, Diagnostics& diags) {
  if (value.is_object()) return true;
  diags.add(pointer, "must be an object");
  return false;
}

bool check_array(const Json& value, const std::string& pointer, Diagnostics& diags) {
  if (value.is_array()) return true;
  diags.add(pointer, "must be an array");
  return false;
}

ObjectReader::ObjectReader(const Json& value, std::string pointer, Diagnostics& diags)
    : pointer_(std::move(pointer)), diags_(diags) {
  if (check_object(value, pointer_, diags_)) object_ = &value;
}

const Json* ObjectReader::get(std::string_view key) {
  known_.emplace_back(key);
  if (object_ == nullptr) return nullptr;
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

const Json* ObjectReader::require(std::string_view key) {
  const Json* value = get(key);
  if (value == nullptr && object_ != nullptr) diags_.add(pointer_of(key), "is required");
  return value;
}

std::optional<std::string> ObjectReader::string(std::string_view key, bool non_empty) {
  const Json* value = get(key);
  if (value == nullptr) return std::nullopt;
  return read_string(*value, pointer_of(key), diags_, non_empty);
}

std::optional<int64_t> ObjectReader::integer(std::string_view key, int64_t min, int64_t max) {
  const Json* value = get(key);
  if (value == nullptr) return std::nullopt;
  return read_integer(*value, pointer_of(key), diags_, min, max);
}

std::optional<double> ObjectReader::number(std::string_view key) {
  const Json* value = get(key);
  if (value == nullptr) return std::nullopt;
  return read_number(*value, pointer_of(key), diags_);
}

void ObjectReader::finish() {
  if (object_ == nullptr) return;
  for (auto it = object_->begin(); it != object_->end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) == known_.end()) {
      diags_.add(pointer_of(it.key()), "unknown key");
    }
  }
}

}  // namespace pgmux::conf::detail
