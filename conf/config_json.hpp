// Internal to conf/: JSON document -> Config structs. Checks types, ranges and unknown keys per value;
// cross-field rules live in validate.hpp. Array elements that fail to parse keep their slot (with
// defaults) so later checks still point at the right index.
#pragma once
#include "conf/config.hpp"
#include "conf/json_reader.hpp"

namespace pgmux::conf::detail {

Config config_from_json(const Json& root, Diagnostics& diags);
// The "tls" section (config_tls.cpp).
Tls parse_tls(ObjectReader& root);
// A backend's "sslmode", "sslrootcert", "sslcert", "sslkey" (config_tls.cpp).
void parse_backend_tls(ObjectReader& r, Backend& b);

// hba_json.cpp: the "hba" rules and the "groups" they refer to with "+group".
std::vector<HbaRule> parse_hba(ObjectReader& root);
std::vector<Group> parse_groups(ObjectReader& root);

}  // namespace pgmux::conf::detail
