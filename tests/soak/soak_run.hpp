// The soak run: a pgmux under test, a warm-up round, the baseline, the main run with server churn, the quiet state
// after it, and the checks. Prints the figures; returns the process exit code (0 passed, 1 a check failed).
#pragma once
#include <cstddef>
#include <string>

namespace pgmux::soak {

struct SoakOptions {
  size_t clients = 5000;
  size_t servers = 500;       // server connections pgmux must have opened during the main run
  size_t warmup = 0;          // clients of the warm-up round; 0: a tenth of the clients, at least 200
  size_t concurrency = 64;    // clients at once
  std::string mode = "both";  // both | session | transaction: the pool modes clients use
  double time_limit_s = 900;  // no client starts after this (the run then fails)
  // RSS after the run may exceed the baseline by max(rss_slack_mib, rss_slack_ratio * baseline).
  double rss_slack_mib = 10;
  double rss_slack_ratio = 0.25;
  long fd_tolerance = 0;  // open descriptors after the run may exceed the baseline by this many
};

int run_soak(const SoakOptions& options);

}  // namespace pgmux::soak
