// The health checker: on the control loop, probes every configured backend each health_check.period with one
// libpq connection per backend, feeds routing::Topology, logs what changed and hands each new BackendsView to
// `on_change` (the workers read it through an atomic shared_ptr). Never blocks the loop.
#pragma once
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <uv.h>

#include "conf/config.hpp"
#include "proxy/control/patroni_source.hpp"
#include "proxy/control/probe_connection.hpp"
#include "proxy/control/replay_poller.hpp"
#include "proxy/net/uv_handle.hpp"
#include "routing/router.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// Config -> the routing layer's types (routing does not depend on conf).
// disabled: names of backends the operator disabled.
std::vector<routing::BackendSpec> backend_specs(const conf::Config& config, const std::set<std::string>& disabled = {});
routing::TopologySettings topology_settings(const conf::Config& config);
routing::RouteSettings route_settings_of(const conf::Routing& routing);
// A connection to `database` on host:port as the config's health-check user.
ProbeTarget probe_target(const conf::Config& config, const std::string& host, uint16_t port,
                         const std::string& database);

class Prober {
 public:
  using View = std::shared_ptr<const routing::BackendsView>;
  using OnChange = std::function<void(View)>;

  // Nothing runs until start(). on_change is called on the loop thread after a probe round changed the view
  // (every round does: each one adds an LSN sample) and after each position from the replay poller that moved
  // one, and may call reconfigure() or stop().
  Prober(uv_loop_t* loop, const conf::Config& config, OnChange on_change);
  ~Prober();  // stop()s; handles free themselves in their close callbacks (the loop must run on to close them)
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  void start();  // first round at once, then every period
  void stop();   // no more rounds; in-flight probes are abandoned without callbacks
  // A new config (reload): backends matched by name keep their state; probe connections are reopened.
  void reconfigure(const conf::Config& config, const std::set<std::string>& disabled = {});
  // Called by every finished probe with how long it took (seconds); for the probe-duration metric.
  void set_probe_observer(std::function<void(const std::string& backend, double seconds)> observer) {
    probe_observer_ = std::move(observer);
  }

  // A round now rather than at the next period (a client could not connect to the primary: it may be gone).
  // Requests closer together than kMinForcedInterval share a round.
  void probe_now();
  // A worker's new connection to this backend was refused: Topology::on_connection_refused, then a round now.
  void on_connection_refused(const std::string& backend, const std::string& error);
  static constexpr double kMinForcedInterval = 0.05;
  // Without a primary (failover), rounds come at least this often, so a promotion is seen within it.
  static constexpr double kFailoverPeriod = 0.1;

  // A switchover's fence on backend `index` (routing::Topology::fence), published at once; unfence undoes it.
  void fence(size_t index, uint32_t timeline, std::string reason, routing::BackendStatus::FenceStage stage);
  void unfence(size_t index);

  View view() const { return topology_.view(); }
  // Causal reads: the replay poller asks for fresh WAL positions between rounds while `commits` (acknowledged to
  // clients) or the standbys are ahead of what the view knows.
  void watch_commits(const CommitClock* commits) { poller_.watch_commits(commits); }

 private:
  static void on_tick(uv_timer_t* timer);
  void run_round();
  void on_probe_done(size_t index, bool ok, const routing::ProbeResult& result, const std::string& error);
  void notify_if_changed();
  void on_position(const WalPosition& position);
  void on_dcs_cluster(routing::DcsCluster cluster, const std::string& url);
  void on_dcs_failed(const std::string& error);
  void build_connections(const conf::Config& config);
  void resolve_new_names(const conf::Config& config);
  void reopen_connections();

  uv_loop_t* loop_;
  routing::Topology topology_;
  ReplayPoller poller_;
  PatroniSource patroni_;  // topology.source patroni; idle otherwise
  std::vector<ProbeTarget> targets_;                           // index = backend id
  std::vector<std::unique_ptr<ProbeConnection>> connections_;  // index = backend id
  UvHandlePtr<uv_timer_t, Prober> timer_;  // may outlive this object while it closes
  conf::TopologySource topology_source_;
  double period_ = 1;
  double timeout_ = 2;
  bool running_ = false;
  bool in_round_ = false;        // starting probes; completions wait for the end of run_round to notify
  OnChange on_change_;
  std::function<void(const std::string&, double)> probe_observer_;
  std::vector<double> probe_started_;  // monotonic seconds, index = backend id
  double round_started_ = -1;          // monotonic seconds, of the last round
  View logged_;                  // the view the logs last described
  uint64_t notified_generation_ = 0;
};

// One line per change between two views (role, down/up, read set, alarm), through proxy/log.hpp.
void log_topology_changes(const routing::BackendsView* before, const routing::BackendsView& after);

}  // namespace pgmux::proxy
