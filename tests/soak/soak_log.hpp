// pgmux's log after a soak run, summarised: lines per level, and the most frequent line shapes of each level
// (digits folded), so a run's report shows which lines the faults caused and a new kind of line stands out.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace pgmux::soak {

struct LogSummary {
  std::map<std::string, size_t> lines_per_level;  // "INFO", "WARN", "ERROR", ...
  // Per level, the most frequent shapes with their counts, most frequent first.
  std::map<std::string, std::vector<std::pair<std::string, size_t>>> top_shapes;
  std::vector<std::string> crash_lines;  // sanitizer reports, "terminate called", assertion failures
  // ERROR lines other than the one a killed backend causes: a server terminated while the BEGIN pgmux sent ahead
  // of a request was in flight is logged at ERROR with PostgreSQL's "terminating connection due to administrator
  // command" (the client gets 08006, as the failure table says).
  size_t unexpected_errors = 0;
  std::vector<std::string> unexpected_error_lines;  // the first few of them, whole
};

LogSummary summarize_log(const std::string& log, size_t shapes_per_level = 8);
std::string format_log_summary(const LogSummary& summary);

}  // namespace pgmux::soak
