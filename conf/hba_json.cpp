// The "hba" and "groups" sections: JSON -> HbaRule / Group, with a JSON pointer on every problem.
#include "conf/config_json.hpp"

namespace pgmux::conf::detail {
namespace {

constexpr std::string_view kConnections = "\"host\", \"hostssl\", \"hostnossl\", \"local\"";
constexpr std::string_view kMethods = "\"scram-sha-256\", \"md5\", \"cert\", \"trust\", \"reject\"";

// A name or a non-empty list of names, as a rule's "database" and "user" take them.
std::vector<std::string> read_names(ObjectReader& r, std::string_view key) {
  const Json* value = r.require(key);
  if (value == nullptr) return {};
  const std::string pointer = r.pointer_of(key);
  if (value->is_string()) return {read_string(*value, pointer, r.diags(), true).value_or("")};
  if (!value->is_array() || value->empty()) {
    r.diags().add(pointer, "must be a name or a non-empty list of names");
    return {};
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < value->size(); ++i) {
    names.push_back(read_string((*value)[i], child_pointer(pointer, i), r.diags(), true).value_or(""));
  }
  return names;
}

HbaRule parse_rule(ObjectReader& r) {
  HbaRule rule;
  if (r.require("type") != nullptr) {
    if (auto c = r.enumeration("type", parse_hba_connection, kConnections)) rule.connection = *c;
  }
  rule.databases = read_names(r, "database");
  rule.users = read_names(r, "user");
  if (rule.connection == HbaConnection::Local) {
    // As in pg_hba.conf, a local line has no address field.
    if (r.get("address") != nullptr) r.diags().add(r.pointer_of("address"), "a local rule takes no address");
    rule.address = *parse_cidr("all");
  } else if (r.require("address") != nullptr) {
    if (auto text = r.string("address", true)) {
      if (auto cidr = parse_cidr(*text)) {
        rule.address = *cidr;
      } else {
        r.diags().add(r.pointer_of("address"), "must be \"all\", an address or a network such as \"10.0.0.0/8\" "
                                               "or \"::1/128\" (no bits set past the prefix), got \"" + *text + "\"");
      }
    }
  }
  if (r.require("method") != nullptr) {
    if (auto m = r.enumeration("method", parse_hba_method, kMethods)) rule.method = *m;
  }
  // As PostgreSQL: a client certificate exists only on a TLS connection.
  if (rule.method == HbaMethod::Cert && rule.connection != HbaConnection::HostSsl) {
    r.diags().add(r.pointer_of("method"), "cert is only supported on hostssl rules");
  }
  return rule;
}

// Calls read(reader) for each object of the array at `key`; reports unknown keys of each after it.
template <typename Read>
void for_each_object(ObjectReader& root, std::string_view key, Read read) {
  const Json* value = root.get(key);
  if (value == nullptr) return;
  const std::string pointer = root.pointer_of(key);
  if (!check_array(*value, pointer, root.diags())) return;
  for (size_t i = 0; i < value->size(); ++i) {
    ObjectReader r((*value)[i], child_pointer(pointer, i), root.diags());
    read(r);
    r.finish();
  }
}

}  // namespace

std::vector<HbaRule> parse_hba(ObjectReader& root) {
  std::vector<HbaRule> rules;
  for_each_object(root, "hba", [&](ObjectReader& r) { rules.push_back(r.valid() ? parse_rule(r) : HbaRule{}); });
  return rules;
}

std::vector<Group> parse_groups(ObjectReader& root) {
  std::vector<Group> groups;
  for_each_object(root, "groups", [&](ObjectReader& r) {
    Group g;
    if (r.require("name") != nullptr) g.name = r.string("name", true).value_or("");
    if (const Json* members = r.require("members")) {
      const std::string members_pointer = r.pointer_of("members");
      if (check_array(*members, members_pointer, root.diags())) {
        for (size_t m = 0; m < members->size(); ++m) {
          g.members.push_back(
              read_string((*members)[m], child_pointer(members_pointer, m), root.diags(), true).value_or(""));
        }
      }
    }
    groups.push_back(std::move(g));
  });
  return groups;
}

}  // namespace pgmux::conf::detail
