// The composition root: starts the workers, owns the control loop (signals), and stops everything.
#pragma once
#include <memory>

#include "conf/config.hpp"

namespace pgmux::proxy {

// Runs until SIGINT (close now) or SIGTERM (graceful). Returns the process exit code.
int run_server(std::shared_ptr<const conf::Config> config);

}  // namespace pgmux::proxy
