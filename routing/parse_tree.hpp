// Reading libpg_query's JSON parse tree: a member of a node, and a string field, each absent-safe. Shared by the
// classifier's parser path and the session facts (internal to routing/).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace pgmux::routing::parse_tree {

// The member `key` of an object node, or null (not an object, or no such member).
inline const nlohmann::json* member(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// The node as a string, or "" when it is absent or no string.
inline std::string_view string_of(const nlohmann::json* j) {
  if (j == nullptr || !j->is_string()) return {};
  return j->get_ref<const std::string&>();
}

}  // namespace pgmux::routing::parse_tree
