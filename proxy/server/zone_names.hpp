// The spelling PostgreSQL reports for a time zone it found in its zone files. PostgreSQL looks a zone name up case
// by case-insensitive match, component by component, and reports the files' own names (europe/paris comes back as
// Europe/Paris, utc as UTC): a client reads the time zone it is in from that report (psycopg falls back to UTC for
// a name its zone database does not have). Transaction pooling reports a client's startup TimeZone without a
// server (proxy::postgres_spelling), so pgmux reads the names from the zone directory PostgreSQL uses on Debian.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace pgmux::proxy {

// The zone directory's spelling of `value`, or nullopt when it names no zone file there (an abbreviation, a POSIX
// rule, an offset such as +03: PostgreSQL spells those its own way; or no zone directory on this host). Thread-safe;
// answers are remembered (a bounded number of distinct names).
std::optional<std::string> zone_file_spelling(std::string_view value,
                                              const std::string& zone_dir = "/usr/share/zoneinfo");

}  // namespace pgmux::proxy
