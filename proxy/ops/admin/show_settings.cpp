// SHOW CONFIG, SHOW VERSION, SHOW HELP.
#include "proxy/ops/admin/commands.hpp"
#include "proxy/ops/admin/live_settings.hpp"

namespace pgmux::proxy::admin {

Answer show_config(const Input&, Context& context) {
  static const conf::Config defaults;
  ResultSet r;
  r.column("key").column("value").column("default").column("changeable");
  for (const LiveSetting& s : live_settings()) {
    r.row().cell(s.key).cell(s.get(*context.config)).cell(s.get(defaults)).cell(to_string(s.changeable));
  }
  return Answer::of(std::move(r));
}

Answer show_version(const Input&, Context&) {
  ResultSet r;
  r.column("version");
  r.row().cell("pgmux " PGMUX_VERSION);
  return Answer::of(std::move(r));
}

Answer show_help(const Input&, Context&) {
  ResultSet r;
  r.column("command").column("access").column("description");
  for (const Command& c : command_table()) {
    r.row().cell(c.syntax).cell(c.access == Access::Read ? "admin_users, stats_users" : "admin_users");
    r.cell(c.description);
  }
  return Answer::of(std::move(r));
}

}  // namespace pgmux::proxy::admin
