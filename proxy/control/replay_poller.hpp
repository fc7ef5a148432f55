// Causal reads between probe rounds (routing.consistency causal or session). The probe rounds sample WAL positions
// once per health_check.period, far too rarely for a read that arrives a moment after another client's commit:
// until a primary sample taken after that commit exists, and a standby is known to have replayed past it, the read
// cannot go to a standby. The poller fills that gap on the control loop:
//  - while a commit acknowledged to a client is newer than the primary's newest LSN sample, it asks the primary
//    for its insert LSN;
//  - while a standby's replay LSN is behind the newest primary sample, it asks that standby for its replay LSN.
// One small query per backend at a time, at most one per routing.causal_poll_interval, each over its own libpq
// connection as the health-check user. An idle cluster gets no query at all.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <uv.h>

#include "conf/config.hpp"
#include "proxy/control/commit_clock.hpp"
#include "proxy/control/pg_query_connection.hpp"
#include "proxy/net/uv_handle.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// One answer: backend `index` is in recovery and replayed up to `lsn`, or is not and inserts at `lsn`; the query
// was sent at sent_at (monotonic seconds).
struct WalPosition {
  size_t index = 0;
  bool in_recovery = false;
  uint64_t lsn = 0;
  double sent_at = 0;
};

// Parses the poller's row (text values; nullptr = SQL NULL). False on anything unexpected.
bool parse_wal_position(const char* in_recovery, const char* lsn, WalPosition& out);

class ReplayPoller {
 public:
  using OnPosition = std::function<void(const WalPosition& position)>;

  // topology: whose current view says what to ask; on_position: each answer, on the loop thread.
  ReplayPoller(uv_loop_t* loop, const routing::Topology& topology, OnPosition on_position);
  ~ReplayPoller();  // in-flight queries are dropped without callbacks
  ReplayPoller(const ReplayPoller&) = delete;
  ReplayPoller& operator=(const ReplayPoller&) = delete;

  // Targets (connections reopened; indices as in the config), the interval, and whether it runs at all.
  void configure(const conf::Config& config);
  void watch_commits(const CommitClock* commits) { commits_ = commits; }
  void start();
  void stop();
  // Sends whatever the current view and the last acknowledged commit call for (also after each answer).
  void poll();

 private:
  struct Backend {
    std::unique_ptr<PgQueryConnection> connection;
    double next_at = 0;  // monotonic seconds: not asked again before
    WalPosition answer;
    bool have_row = false;
  };
  static void on_tick(uv_timer_t* timer);
  void ask(size_t index, double now);

  uv_loop_t* loop_;
  const routing::Topology& topology_;
  OnPosition on_position_;
  const CommitClock* commits_ = nullptr;
  std::vector<Backend> backends_;  // index = backend id
  UvHandlePtr<uv_timer_t, ReplayPoller> timer_;
  double interval_ = 0.002;
  double timeout_ = 2;
  bool enabled_ = false;
  bool running_ = false;
};

}  // namespace pgmux::proxy
