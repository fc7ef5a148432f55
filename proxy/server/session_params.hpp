// Run-time parameters of a session: what a client asked for at startup and what a server reports through
// ParameterStatus, in the order they were first seen (so replays match PostgreSQL's own order).
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::proxy {

class SessionParams {
 public:
  using Entry = std::pair<std::string, std::string>;

  void set(std::string_view name, std::string_view value);
  const std::string* find(std::string_view name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  void clear() { entries_.clear(); }
  void erase(std::string_view name);

 private:
  std::vector<Entry> entries_;
};

// Startup keys that are not run-time parameters and never get replayed with SET.
bool is_connection_key(std::string_view name);

// Parses a libpq "options" value ("-c a=b --c=d") into parameters; false on anything else.
bool parse_options_parameter(std::string_view options, SessionParams& out);

// The SQL that gives a server the client's wanted parameters: "SET a = 'x';" for every wanted value the server
// reports differently (or, when it does not report them, differently from what pgmux applied earlier). Every
// parameter pgmux set for an earlier client is in `applied`; those this client does not want are RESET, so
// nothing one client set reaches the next. `applied` is updated to what the SQL leaves.
std::string build_sync_sql(const SessionParams& wanted, const SessionParams& reported, SessionParams& applied);

}  // namespace pgmux::proxy
