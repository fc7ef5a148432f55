// What a new config changes compared with the running one: the settings a live reload cannot apply, and a short
// human summary of the rest for the reload log line and the console's RELOAD answer.
#pragma once
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace pgmux::proxy {

// One message per setting that only a restart can change (listeners, workers, metrics_listen, logging.file);
// empty when none.
std::vector<std::string> settings_needing_restart(const conf::Config& current, const conf::Config& next);

// "backends +b3 -b2, weight b1 1->3; databases ~app; routing; timeouts" or "no changes".
std::string describe_changes(const conf::Config& current, const conf::Config& next);

}  // namespace pgmux::proxy
