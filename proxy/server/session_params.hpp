// Run-time parameters of a session: what a client asked for at startup and what a server reports through
// ParameterStatus, in the order they were first seen (so replays match PostgreSQL's own order).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::proxy {

// Each change gives the set a new stamp, unique across the process: two sets with one stamp hold the same entries
// (a copy keeps its original's stamp), so a comparison done once can be remembered by the stamps it compared.
class SessionParams {
 public:
  using Entry = std::pair<std::string, std::string>;

  void set(std::string_view name, std::string_view value);
  const std::string* find(std::string_view name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  void clear() {
    entries_.clear();
    changed();
  }
  void erase(std::string_view name);
  uint64_t stamp() const { return stamp_; }

 private:
  friend std::string build_sync_sql(const SessionParams&, const SessionParams&, SessionParams&);
  void changed();

  std::vector<Entry> entries_;
  uint64_t stamp_ = 0;  // 0: never changed, so empty
  // build_sync_sql found nothing to send for these stamps of (wanted, reported): set only on `applied` (whose own
  // change forgets it), so the next check-out for the same client and server settings skips the comparison.
  static constexpr std::pair<uint64_t, uint64_t> kNotSynced{UINT64_MAX, UINT64_MAX};  // no stamp gets that far
  std::pair<uint64_t, uint64_t> synced_for_ = kNotSynced;
};

// How PostgreSQL reports a startup value it accepts, for the parameters whose spelling it changes: application_name
// ('?' for each byte outside printable ASCII, cut to 63 bytes), client_encoding (UTF8 for its aliases, other names
// in capitals), standard_conforming_strings and default_transaction_read_only ("on" / "off"), DateStyle
// (style and order words in its case, a half not given taken from `current`, the servers' value), TimeZone (a zone
// file's own name: zone_file_spelling). Any other value,
// or one PostgreSQL would refuse (its server says so), as given.
std::string postgres_spelling(std::string_view name, std::string_view value, const std::string* current);

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
