#include "proxy/control/server.hpp"

#include "proxy/control/control.hpp"

namespace pgmux::proxy {

int run_server(std::string config_path, std::shared_ptr<const conf::Config> config) {
  Control control(std::move(config_path), std::move(config));
  return control.run();
}

}  // namespace pgmux::proxy
