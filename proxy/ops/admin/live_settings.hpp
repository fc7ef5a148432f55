// The settings SHOW CONFIG lists and the console's SET may change, each with how to read and write it on a
// Config copy. SET builds a new snapshot and installs it like a reload (Control::apply_config).
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace pgmux::proxy::admin {

enum class Changeable : uint8_t { Set, Reload, Restart };  // SET, RELOAD of the file, or a restart only
const char* to_string(Changeable c);                       // "yes", "reload", "restart"

struct LiveSetting {
  std::string key;  // the JSON path with dots: "routing.max_lag_bytes"
  Changeable changeable = Changeable::Set;
  std::function<std::string(const conf::Config&)> get;
  // Sets the value from console text; returns the problem ("must be a number >= 0.1"), or "" when done.
  std::function<std::string(conf::Config&, std::string_view)> set;
};

const std::vector<LiveSetting>& live_settings();

// By full key, or by its last part when that is unique ("max_lag_bytes"). Null when unknown.
const LiveSetting* find_live_setting(std::string_view key);

}  // namespace pgmux::proxy::admin
