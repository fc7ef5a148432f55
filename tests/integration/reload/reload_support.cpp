#include "tests/integration/reload/reload_support.hpp"

#include <signal.h>

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pgmux::test::reload {

namespace {
constexpr const char* kApplied = "config reloaded from";
constexpr const char* kFailed = "config reload failed";
}  // namespace

int count_lines(const std::string& log, const std::string& text) {
  std::istringstream in(log);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(text) != std::string::npos ? 1 : 0;
  return n;
}

// The whole log: lines are counted and the new part cut off by size, which a capped log would get wrong.
std::string reload_config_text(PgmuxProcess& process, const std::string& config_text, Outcome expected) {
  const std::string before = process.full_log();
  const int applied = count_lines(before, kApplied);
  const int failed = count_lines(before, kFailed);
  process.write_config(config_text);
  process.send_signal(SIGHUP);
  std::string now;
  const bool seen = routing::wait_until(
      [&] {
        now = process.full_log();
        return count_lines(now, kApplied) > applied || count_lines(now, kFailed) > failed;
      },
      10);
  if (!seen) throw std::runtime_error("no reload outcome in pgmux's log within 10 s; log:\n" + process.log());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  now = process.full_log();
  const std::string added = now.size() > before.size() ? now.substr(before.size()) : std::string();
  const bool ok = count_lines(now, kApplied) > applied;
  if (ok != (expected == Outcome::Applied)) {
    throw std::runtime_error(std::string("reload ") + (ok ? "applied" : "failed") + ", expected the opposite; log:\n" +
                             added);
  }
  return added;
}

void fresh_database_with_table(const ClusterPorts& ports, const std::string& db) {
  routing::recreate_database(ports, db);
  {
    PgConn p = routing::admin(ports.primary, db);
    exec(p.get(), "CREATE TABLE t (id int); ALTER TABLE t OWNER TO app");
  }
  if (!routing::wait_replayed(ports, 20)) throw std::runtime_error("standbys did not replay the table of " + db);
}

std::map<int, int> read_split(const std::string& conninfo, int count) {
  std::map<int, int> counts;
  for (int i = 0; i < count; ++i) ++counts[routing::fresh_read_port(conninfo)];
  return counts;
}

}  // namespace pgmux::test::reload
