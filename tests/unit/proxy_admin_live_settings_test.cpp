// The console's SET takes what the config file takes: for every timeout, 0 is accepted by SET exactly when a
// config file with that timeout 0 loads (the hunt found SET refusing server_idle_timeout = 0, "never close", which
// the file allows).
#include <doctest/doctest.h>

#include <string>

#include "conf/loader.hpp"
#include "proxy/ops/admin/live_settings.hpp"

using pgmux::proxy::admin::live_settings;

TEST_CASE("admin console: SET of a timeout to 0 agrees with the config file") {
  int checked = 0;
  for (const auto& setting : live_settings()) {
    if (setting.key.rfind("timeouts.", 0) != 0) continue;
    CAPTURE(setting.key);
    const std::string name = setting.key.substr(sizeof("timeouts.") - 1);
    const pgmux::conf::LoadResult file = pgmux::conf::parse_config(
        R"({"backends": [{"host": "h"}], "databases": [{"name": "app"}], "timeouts": {")" + name + R"(": 0}})");
    pgmux::conf::Config config;
    const std::string problem = setting.set(config, "0");
    CHECK(problem.empty() == file.ok());
    ++checked;
  }
  CHECK(checked >= 10);
}
