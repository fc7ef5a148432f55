// The control loop (DESIGN.md §4): signals, the prober, config reloads, operator overrides (backend enable and
// weight), the metrics HTTP listener, and starting and stopping the workers. Runs on the main thread; workers
// and the admin console reach it only through post().
#pragma once
#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "proxy/ops/metrics.hpp"
#include "proxy/control/auth_lookup.hpp"
#include "proxy/control/catalog_loader.hpp"
#include "proxy/control/consistency_check.hpp"
#include "proxy/control/etcd_watch.hpp"
#include "proxy/control/prober.hpp"
#include "proxy/control/shared_state.hpp"
#include "proxy/control/switchover.hpp"
#include "proxy/net/listen_socket.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

class Worker;
class MetricsHttpServer;
struct WorkerSnapshot;

struct ReloadOutcome {
  bool ok = false;
  std::vector<std::string> errors;  // every problem of a rejected config
  std::string summary;              // what changed ("backends +b3 -b2; weights b1 1->3"), or why it failed
};

class Control {
 public:
  Control(std::string config_path, std::shared_ptr<const conf::Config> config);
  ~Control();
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  // Binds every listener, starts workers and the prober, runs until the workers are gone. Exit code.
  int run();

  // Thread-safe: runs fn on the control loop. False when the loop has ended (fn is dropped).
  bool post(std::function<void(Control&)> fn);

  // Loop-thread API.
  uv_loop_t* loop() { return loop_; }
  SharedState& shared() { return *shared_; }
  ControlMetrics& metrics() { return metrics_; }
  std::shared_ptr<const conf::Config> config() const { return shared_->config.load(); }
  const std::string& config_path() const { return config_path_; }
  // A shutdown has begun (SIGINT, SIGTERM, SHUTDOWN): /healthz answers 503 from then on.
  bool stopping() const { return stopping_; }
  // Re-reads the config file; on any error keeps the current config. `trigger` is for the log ("SIGHUP").
  ReloadOutcome reload(const std::string& trigger);
  // Installs a validated config (a reload, or the console's SET): every worker and the prober pick it up.
  ReloadOutcome apply_config(std::shared_ptr<const conf::Config> next, const std::string& trigger);
  // Operator overrides by backend index; they survive reloads (matched by name). Errors name the problem.
  bool set_backend_enabled(int index, bool enabled, std::string* error);
  // Whether a backend is disabled by the operator (by name).
  bool backend_disabled(const std::string& name) const { return disabled_backends_.count(name) != 0; }
  void stop(bool graceful, const std::string& why);
  // Thread-safe: a probe round as soon as possible (a worker could not connect to the primary).
  void request_probe_round();
  // Thread-safe: a worker's new connection to `backend` was refused (Prober::on_connection_refused).
  void report_refused_connection(std::string backend, std::string error);
  // Every worker's snapshot, delivered on the control loop (proxy/ops/snapshot.hpp): a worker takes its snapshot
  // after everything posted to it before, so after any view published before this call.
  void gather_worker_snapshots(std::function<void(std::vector<WorkerSnapshot>)> done);
  // auth_query lookups (a worker posts here for a user the config does not list).
  AuthLookup& auth_lookup() { return *auth_lookup_; }
  Prober& prober() { return *prober_; }
  Switchover& switchover() { return *switchover_; }
  ConsistencyCheck& consistency_check() { return *consistency_check_; }
  // Read by /readyz: a write held by a switchover is not an outage.
  // An admin SWITCHOVER is running (not a failover pgmux runs itself).
  bool switchover_running() const { return switchover_ && switchover_->planned(); }

 private:
  bool bind_listeners(const conf::Config& config, std::vector<std::vector<int>>* fds);
  SocketFiles socket_files_;  // the Unix-domain sockets bind_listeners created, removed as pgmux stops
  void on_view(Prober::View view);
  CatalogLoader::Source catalog_target(const std::string& database) const;
  static bool standbys_read(const routing::BackendsView& view);  // a backend is in the read set
  std::optional<ProbeTarget> auth_query_target() const;
  void reload_catalogs();
  // A new slot asks for its first load (FunctionCatalogs::slot_for); existing ones are left as they are.
  void open_configured_catalogs(const conf::Config& config);
  void publish_view(const Prober::View& view);
  void close_handles();
  // tls.client's context from the config's files; null when the mode is disable or (with *error) on failure.
  static std::shared_ptr<const TlsServerContext> load_client_tls(const conf::Config& config, std::string* error);
  static void on_signal(uv_signal_t* handle, int signum);
  static void on_async(uv_async_t* handle);

  std::string config_path_;
  uv_loop_t* loop_;
  std::unique_ptr<SharedState> shared_;
  std::unique_ptr<Prober> prober_;
  std::unique_ptr<CatalogLoader> catalog_loader_;
  std::unique_ptr<AuthLookup> auth_lookup_;
  std::unique_ptr<Switchover> switchover_;
  std::unique_ptr<EtcdWatch> etcd_watch_;  // topology.etcd_urls: Patroni's failover key, for follow_patroni
  std::unique_ptr<ConsistencyCheck> consistency_check_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<MetricsHttpServer> http_;
  ControlMetrics metrics_;
  std::map<std::string, bool> disabled_backends_;  // operator DISABLE BACKEND, by backend name
  std::string last_primary_name_;
  std::string catalogs_primary_;  // the primary the function catalogs were last all read from; "" when none
  bool catalogs_waived_ = false;  // no primary: the loads ran again once standbys served reads (on_view)
  // Closed by close_handles(); the loop's run ends after that, before this object goes.
  UvSignal<Control> sigint_{this}, sigterm_{this}, sighup_{this}, sigusr1_{this};
  UvAsync<Control> async_{this};
  std::mutex inbox_mutex_;
  std::vector<std::function<void(Control&)>> inbox_;
  bool inbox_closed_ = false;
  std::atomic<int> running_{0};
  bool stopping_ = false;
};

}  // namespace pgmux::proxy
