// Helpers shared by the live-reload tests: rewrite pgmux's config file, send SIGHUP and wait for the outcome
// line; count which server answered fresh-connection reads.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/integration/routing/routing_support.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::test::reload {

enum class Outcome { Applied, Failed };

// Replaces pgmux's config file with `config_text`, sends SIGHUP and waits up to 10 s for the reload's outcome
// line ("config reloaded from ..." or "config reload failed: ..."), then 0.2 s more: workers apply a config on
// their own loops just after the control loop logs it. Returns what pgmux logged meanwhile. Throws when the
// outcome differs from `expected` or never shows.
std::string reload_config_text(PgmuxProcess& process, const std::string& config_text, Outcome expected);
inline std::string reload_config(PgmuxProcess& process, const nlohmann::json& config,
                                 Outcome expected = Outcome::Applied) {
  return reload_config_text(process, config.dump(2), expected);
}

// `count` reads, each on a new connection (session pooling keeps a client on the standby it got): how many each
// server port answered (-1: a failed connection or read).
std::map<int, int> read_split(const std::string& conninfo, int count);

// Number of lines of `log` that contain `text`.
int count_lines(const std::string& log, const std::string& text);
inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A `backends` entry on 127.0.0.1.
inline nlohmann::json backend(const std::string& name, int port, int weight) {
  return {{"name", name}, {"host", "127.0.0.1"}, {"port", port}, {"weight", weight}};
}

// (Re)creates database `db` owned by app with an empty table `t (id int)`, and waits until both standbys have it.
void fresh_database_with_table(const ClusterPorts& ports, const std::string& db);

}  // namespace pgmux::test::reload
