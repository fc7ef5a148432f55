// What the soak test reads of pgmux from outside: /proc (open descriptors, resident memory) and its metrics
// listener (connection counts), and the wait for the quiet state in which a baseline is comparable: no client,
// no server connection, nothing in flight.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

namespace pgmux::soak {

// Entries of /proc/PID/fd, or -1 when unreadable.
long open_fds(pid_t pid);
// A "Vm...:" line of /proc/PID/status in kB (VmRSS, VmHWM), or -1.
long status_kb(pid_t pid, const char* field);

// True when the process's executable contains a sanitizer runtime (ASan, TSan): its allocator keeps freed memory in
// quarantine, so resident memory says nothing about leaks there.
bool sanitized_executable(pid_t pid);

// GET /metrics from 127.0.0.1:port (5 s bound); nullopt when it fails.
std::optional<std::string> scrape_metrics(int port);
// Sum of every sample of `name` (any labels) in a Prometheus text exposition; 0 when absent.
double metric_sum(const std::string& exposition, const std::string& name);

struct QuietState {
  bool reached = false;
  long fds = -1;        // the fewest open descriptors over the samples taken once quiet
  long rss_kb = -1;     // VmRSS then
  double waited_s = 0;
  std::string last_metrics_note;  // what was still open when the wait gave up
};
// Waits (up to timeout_s) until pgmux reports no client and no server connection, then samples /proc/PID/fd a
// few times 50 ms apart and keeps the fewest (a probe connection of pgmux's health checker may be open at one
// instant; a leak stays in every sample).
QuietState wait_quiet(pid_t pid, int metrics_port, double timeout_s);

}  // namespace pgmux::soak
