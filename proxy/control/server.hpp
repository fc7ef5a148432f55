// The composition root: builds the control loop, which starts the workers and runs until they stop.
#pragma once
#include <memory>
#include <string>

#include "conf/config.hpp"

namespace pgmux::proxy {

// Runs until SIGINT (close now), SIGTERM (graceful) or the console's SHUTDOWN. config_path is re-read on
// SIGHUP and RELOAD. Returns the process exit code.
int run_server(std::string config_path, std::shared_ptr<const conf::Config> config);

}  // namespace pgmux::proxy
