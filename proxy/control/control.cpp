#include "proxy/control/control.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "conf/loader.hpp"
#include "proxy/control/config_diff.hpp"
#include "proxy/net/listen_socket.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/wall_clock.hpp"
#include "proxy/ops/metrics_http.hpp"
#include "proxy/ops/snapshot.hpp"
#include "proxy/ops/sd_notify.hpp"
#include "proxy/control/worker.hpp"

namespace pgmux::proxy {

namespace {

// Outside systemd there is no $NOTIFY_SOCKET and this does nothing; a socket that refuses is worth one warning.
void notify_systemd(const std::string& state) {
  std::string error;
  if (!sd_notify_state(state, &error)) LOG_WARN("%s", error.c_str());
}
}  // namespace

Control::Control(std::string config_path, std::shared_ptr<const conf::Config> config)
    : config_path_(std::move(config_path)), loop_(uv_default_loop()) {
  metrics_.started_at = wall_clock_seconds();
  // Roles are discovered, not configured: the prober's views reach every worker (DESIGN.md §5).
  prober_ = std::make_unique<Prober>(loop_, *config, [this](Prober::View view) { on_view(std::move(view)); });
  prober_->set_probe_observer([this](const std::string& backend, double seconds) {
    metrics_.probe_duration[backend].observe_ns(static_cast<uint64_t>(seconds * 1e9));
  });
  shared_ = std::make_unique<SharedState>(config, prober_->view());
  shared_->control = this;
  std::string tls_error;  // main() loaded the same files a moment ago: a failure now is a race, logged
  shared_->client_tls.store(load_client_tls(*config, &tls_error));
  if (auto backends = make_backend_tls_contexts(*config, &tls_error)) shared_->backend_tls.store(backends);
  if (!tls_error.empty()) LOG_ERROR("%s: %s", config_path_.c_str(), tls_error.c_str());
  prober_->watch_commits(&shared_->commits);
  catalog_loader_ = std::make_unique<CatalogLoader>(loop_, shared_->catalogs, [this](const std::string& database) {
    return catalog_target(database);
  });
  auth_lookup_ = std::make_unique<AuthLookup>(
      loop_, shared_->auth_cache, [this] { return auth_query_target(); }, config->auth_query);
  switchover_ = std::make_unique<Switchover>(*this);
  etcd_watch_ = std::make_unique<EtcdWatch>(
      loop_, [this](const PatroniFailoverKey& key) { if (switchover_) switchover_->follow_patroni(key); },
      [this](int up) { metrics_.etcd_watch_up = up; });
  consistency_check_ = std::make_unique<ConsistencyCheck>(*this);
  // From any worker: the load runs on this loop.
  shared_->catalogs.set_load_request([this](std::shared_ptr<CatalogSlot> slot) {
    post([slot = std::move(slot)](Control& control) { control.catalog_loader_->load(slot); });
  });
}

// The primary as the prober sees it, logged in to as the health-check user.
CatalogLoader::Source Control::catalog_target(const std::string& database) const {
  const Prober::View view = prober_->view();
  if (view->primary < 0) return {std::nullopt, standbys_read(*view)};
  const routing::BackendSpec& primary = view->backends[static_cast<size_t>(view->primary)].spec;
  return {probe_target(*shared_->config.load(), primary.host, primary.port, database), false};
}

bool Control::standbys_read(const routing::BackendsView& view) {
  return std::any_of(view.backends.begin(), view.backends.end(), [](const auto& b) { return b.readable; });
}

// auth_query runs on the primary, else on a standby that is up (pg_authid is the same on every server), else
// (before the first probe round, or with everything down) on the first backend: its connection error beats
// waiting. As auth_query.user in auth_query.database.
std::optional<ProbeTarget> Control::auth_query_target() const {
  const Prober::View view = prober_->view();
  int index = view->primary;
  for (size_t i = 0; index < 0 && i < view->backends.size(); ++i) {
    if (view->backends[i].readable) index = static_cast<int>(i);
  }
  if (index < 0 && !view->backends.empty()) index = 0;
  if (index < 0) return std::nullopt;
  const std::shared_ptr<const conf::Config> config = shared_->config.load();
  const routing::BackendSpec& spec = view->backends[static_cast<size_t>(index)].spec;
  ProbeTarget target = probe_target(*config, spec.host, spec.port, config->auth_query.database);
  target.user = config->auth_query.user;
  target.password = config->auth_query.password;
  return target;
}

void Control::request_probe_round() {
  post([](Control& control) {
    if (control.prober_) control.prober_->probe_now();
  });
}

void Control::report_refused_connection(std::string backend, std::string error) {
  post([backend = std::move(backend), error = std::move(error)](Control& control) {
    if (control.prober_) control.prober_->on_connection_refused(backend, error);
  });
}

Control::~Control() = default;

bool Control::post(std::function<void(Control&)> fn) {
  std::lock_guard lock(inbox_mutex_);
  if (inbox_closed_) return false;
  inbox_.push_back(std::move(fn));
  uv_async_send(async_.get());
  return true;
}

void Control::on_async(uv_async_t* handle) {
  auto* self = UvAsync<Control>::owner_of(handle);
  std::vector<std::function<void(Control&)>> work;
  {
    std::lock_guard lock(self->inbox_mutex_);
    work.swap(self->inbox_);
  }
  for (auto& fn : work) fn(*self);
  if (self->running_.load() == 0 && self->stopping_) self->close_handles();
}

void Control::on_signal(uv_signal_t* handle, int signum) {
  auto* self = UvSignal<Control>::owner_of(handle);
  if (signum == SIGUSR1) {  // logrotate's postrotate: lines go to a new file of the configured name
    if (Log::reopen()) LOG_INFO("SIGUSR1: log file reopened");
    return;
  }
  if (signum == SIGHUP) {
    notify_systemd(sd_reloading_state());
    if (Log::reopen()) LOG_INFO("SIGHUP: log file reopened");
    self->reload("SIGHUP");
    notify_systemd("READY=1\nSTATUS=config reloaded by SIGHUP");
    return;
  }
  self->stop(signum == SIGTERM, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

void Control::stop(bool graceful, const std::string& why) {
  LOG_INFO("%s: %s", why.c_str(),
           graceful ? "graceful shutdown, waiting for sessions to finish" : "closing all connections now");
  stopping_ = true;
  notify_systemd("STOPPING=1");
  for (auto& worker : workers_) worker->shutdown(graceful);
}

void Control::on_view(Prober::View view) {
  // A failover: the primary moved from one backend to another (not a primary merely going down).
  if (view->primary >= 0) {
    const std::string& name = view->backends[static_cast<size_t>(view->primary)].spec.name;
    const bool switched = switchover_ && switchover_->moving_primary();
    if (!last_primary_name_.empty() && name != last_primary_name_ && !switched) ++metrics_.failovers;
    last_primary_name_ = name;
    catalogs_waived_ = false;
    if (name != catalogs_primary_) {
      catalogs_primary_ = name;
      reload_catalogs();
    }
  } else if (!catalogs_primary_.empty() || (!catalogs_waived_ && standbys_read(*view))) {
    // Loads fail meanwhile; all are redone when a primary is back. Once standbys serve reads, a database whose
    // catalog never loaded stops waiting for it (CatalogLoader::finish): its reads go there, judged without it.
    catalogs_primary_.clear();
    catalogs_waived_ = standbys_read(*view);
    if (catalogs_waived_) reload_catalogs();
  }
  publish_view(view);
  if (switchover_) switchover_->on_view(*view, last_primary_name_);
}

// A primary appeared (at startup, or after a failover): the function catalogs are read again from it, and the
// configured databases' are read now rather than when their first client comes.
void Control::reload_catalogs() {
  for (const std::shared_ptr<CatalogSlot>& slot : shared_->catalogs.slots()) catalog_loader_->load(slot);
  open_configured_catalogs(*shared_->config.load());
}

void Control::open_configured_catalogs(const conf::Config& config) {
  for (const conf::Database& d : config.databases) {
    if (d.name != "*") shared_->catalogs.slot_for(d.server_database_for(d.name));
  }
}

void Control::gather_worker_snapshots(std::function<void(std::vector<WorkerSnapshot>)> done) {
  gather_snapshots(
      *shared_, [this](std::function<void()> fn) { post([fn = std::move(fn)](Control&) { fn(); }); },
      std::move(done));
}

void Control::publish_view(const Prober::View& view) {
  shared_->view.store(view);
  for (auto& worker : workers_) worker->publish_view(view);
}

ReloadOutcome Control::reload(const std::string& trigger) {
  conf::LoadResult loaded = conf::load_config_file(config_path_);
  if (!loaded.ok()) {
    ReloadOutcome outcome;
    for (const auto& error : loaded.errors) {
      outcome.errors.push_back(error.to_string());
      LOG_ERROR("%s: reload of %s: %s", trigger.c_str(), config_path_.c_str(), error.to_string().c_str());
    }
    outcome.summary = std::to_string(loaded.errors.size()) + " error(s) in " + config_path_ + "; the old config stays";
    ++metrics_.reloads_failed;
    LOG_ERROR("%s: config reload failed: %s", trigger.c_str(), outcome.summary.c_str());
    return outcome;
  }
  return apply_config(loaded.config, trigger);
}

std::shared_ptr<const TlsServerContext> Control::load_client_tls(const conf::Config& config, std::string* error) {
  if (!config.tls.client.enabled()) return nullptr;
  return TlsServerContext::create(config.tls.client, error);
}

ReloadOutcome Control::apply_config(std::shared_ptr<const conf::Config> next, const std::string& trigger) {
  ReloadOutcome outcome;
  std::shared_ptr<const conf::Config> current = shared_->config.load();
  std::vector<std::string> refused = settings_needing_restart(*current, *next);
  // The switchover names its backends by position in the current list, and its settings must not move under it
  // (a failover still confirming is abandoned instead, below).
  const bool held = switchover_ && switchover_->holds_reload();
  const std::string running = switchover_running() ? "a SWITCHOVER" : "a failover";
  if (held) refused.push_back(running + " is running: reload once it has answered");
  if (consistency_check_ && consistency_check_->blocks_changes()) {
    refused.push_back("a CHECK CONSISTENCY is running: reload once it has answered");
  }
  // The certificate files are read again at every reload (a renewed certificate is picked up); files that do
  // not load leave the running config and context in place, and connected clients are not touched either way.
  std::string tls_error;
  std::shared_ptr<const TlsServerContext> client_tls = load_client_tls(*next, &tls_error);
  std::shared_ptr<const BackendTlsContexts> backend_tls;
  if (tls_error.empty()) backend_tls = make_backend_tls_contexts(*next, &tls_error);
  if (!tls_error.empty()) refused.push_back(tls_error + "; the TLS context in use stays");
  if (!refused.empty()) {
    for (const std::string& r : refused) {
      outcome.errors.push_back(r);
      LOG_ERROR("%s: config reload refused: %s", trigger.c_str(), r.c_str());
    }
    outcome.summary = !tls_error.empty()    ? "a TLS file could not be loaded; the old config stays"
                      : held                 ? running + " is running; the old config stays"
                                             : "settings that need a restart changed; the old config stays";
    ++metrics_.reloads_failed;
    LOG_ERROR("%s: config reload failed: %s", trigger.c_str(), outcome.summary.c_str());
    return outcome;
  }
  outcome.ok = true;
  outcome.summary = describe_changes(*current, *next);
  shared_->config.store(next);
  shared_->client_tls.store(std::move(client_tls));
  shared_->backend_tls.store(std::move(backend_tls));
  Log::set_level(next->logging.level);
  Log::set_format(next->logging.format);
  auth_lookup_->set_settings(next->auth_query);
  // A backend the new config drops forgets its DISABLE: re-added later, it starts enabled.
  std::set<std::string> disabled;
  for (auto it = disabled_backends_.begin(); it != disabled_backends_.end();) {
    if (next->find_backend(it->first)) {
      disabled.insert(it->first);
      ++it;
    } else {
      it = disabled_backends_.erase(it);
    }
  }
  if (switchover_) switchover_->abandon_confirming();  // its standbys' positions may change meanwhile
  prober_->reconfigure(*next, disabled);
  if (etcd_watch_) etcd_watch_->configure(next->topology);
  if (next->topology.kind != conf::TopologySourceKind::Patroni || next->topology.etcd_urls.empty()) {
    switchover_->unschedule_patroni_follow("topology.etcd_urls is no longer set");  // nothing tells of changes now
  }
  consistency_check_->schedule(next->consistency_check);
  catalog_loader_->start(next->routing.function_catalog_refresh);
  open_configured_catalogs(*next);
  // Workers take the config and the view matching its backend list in one step.
  Prober::View view = prober_->view();
  shared_->view.store(view);
  for (auto& worker : workers_) worker->apply_config(next, view);
  ++metrics_.reloads_ok;
  metrics_.last_reload_time = wall_clock_seconds();
  LOG_INFO("%s: config reloaded from %s: %s", trigger.c_str(), config_path_.c_str(), outcome.summary.c_str());
  return outcome;
}

bool Control::set_backend_enabled(int index, bool enabled, std::string* error) {
  std::shared_ptr<const conf::Config> config = shared_->config.load();
  Prober::View view = prober_->view();
  if (index < 0 || static_cast<size_t>(index) >= config->backends.size()) {
    *error = "there is no backend " + std::to_string(index) + " (SHOW BACKENDS lists node_id 0.." +
             std::to_string(config->backends.size() - 1) + ")";
    return false;
  }
  const std::string& name = config->backends[static_cast<size_t>(index)].name;
  if (!enabled && view->primary == index) {
    *error = "backend " + std::to_string(index) + " (" + name +
             ") is the primary: writes have nowhere else to go; promote a standby first";
    return false;
  }
  if (enabled) {
    disabled_backends_.erase(name);
  } else {
    disabled_backends_[name] = true;
  }
  std::set<std::string> disabled;
  for (const auto& [n, off] : disabled_backends_) disabled.insert(n);
  prober_->reconfigure(*config, disabled);
  publish_view(prober_->view());
  LOG_INFO("backend %s (%d) %s by the operator", name.c_str(), index,
           enabled ? "enabled" : "disabled: no new reads, running transactions finish");
  return true;
}

bool Control::bind_listeners(const conf::Config& config, std::vector<std::vector<int>>* fds) {
  const size_t worker_count = static_cast<size_t>(config.effective_workers());
  fds->assign(worker_count, {});
  for (const auto& listener : config.listeners) {
    std::string busy;
    if (!port_is_free(listener, &busy)) {
      LOG_ERROR("%s", busy.c_str());
      return false;
    }
  }
  for (const auto& listener : config.listeners) {
    int unix_fd = -1;  // a Unix-domain socket is bound once; each worker watches a dup of it
    for (size_t w = 0; w < worker_count; ++w) {
      std::string error = "listen failed";
      int fd = unix_fd >= 0 ? fcntl(unix_fd, F_DUPFD_CLOEXEC, 0) : open_listen_socket(listener, &error);
      if (fd >= 0 && unix_fd < 0 && listen(fd, 511) != 0) {
        error = "cannot listen on " + (listener.unix_socket() ? listener.socket_path() : listener.host) + ": " +
                strerror(errno);
        if (listener.unix_socket()) unlink(listener.socket_path().c_str());
        close(fd);
        fd = -1;
      }
      if (fd < 0) {
        LOG_ERROR("%s", error.c_str());
        for (auto& list : *fds)
          for (int open_fd : list) close(open_fd);
        return false;
      }
      if (listener.unix_socket() && unix_fd < 0) {
        unix_fd = fd;
        socket_files_.add(listener.socket_path());
      }
      (*fds)[w].push_back(fd);
    }
  }
  return true;
}

int Control::run() {
  signal(SIGPIPE, SIG_IGN);
  std::shared_ptr<const conf::Config> config = shared_->config.load();
  // Bind everything before starting anything, so a port in use is one clear error at startup.
  std::vector<std::vector<int>> fds;
  if (!bind_listeners(*config, &fds)) return 1;
  if (config->metrics_listen.enabled) {
    http_ = std::make_unique<MetricsHttpServer>(*this);
    std::string error;
    if (!http_->listen(config->metrics_listen.host, config->metrics_listen.port, &error)) {
      LOG_ERROR("metrics_listen %s:%u: %s", config->metrics_listen.host.c_str(),
                static_cast<unsigned>(config->metrics_listen.port), error.c_str());
      for (auto& list : fds)
        for (int fd : list) close(fd);
      http_.reset();
      uv_run(loop_, UV_RUN_NOWAIT);
      return 1;
    }
  }

  async_.init(loop_, on_async);
  int signums[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
  UvSignal<Control>* handles[] = {&sigint_, &sigterm_, &sighup_, &sigusr1_};
  for (int i = 0; i < 4; ++i) {
    handles[i]->init(loop_);
    uv_signal_start(handles[i]->get(), on_signal, signums[i]);
  }

  const int worker_count = config->effective_workers();
  running_ = worker_count;
  for (int w = 0; w < worker_count; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, *shared_, std::move(fds[static_cast<size_t>(w)]), [this] {
      running_.fetch_sub(1);
      post([](Control&) {});  // wakes the loop to notice
    }));
  }
  for (auto& worker : workers_) shared_->workers.push_back(worker.get());
  for (auto& worker : workers_) worker->start();
  prober_->start();
  etcd_watch_->configure(config->topology);
  consistency_check_->schedule(config->consistency_check);
  catalog_loader_->start(config->routing.function_catalog_refresh);
  for (const auto& listener : config->listeners) {
    const std::string where =
        listener.unix_socket() ? listener.socket_path() : listener.host + ":" + std::to_string(listener.port);
    LOG_INFO("pgmux %s listening on %s with %d workers", PGMUX_VERSION, where.c_str(), worker_count);
  }
  if (http_) {
    LOG_INFO("metrics, health and status on http://%s:%u/ (/metrics /healthz /readyz /status)",
             config->metrics_listen.host.c_str(), static_cast<unsigned>(config->metrics_listen.port));
  }
  // Every port is bound and the workers accept: systemd may start what is ordered after pgmux.
  notify_systemd("READY=1\nSTATUS=accepting connections");

  uv_run(loop_, UV_RUN_DEFAULT);
  for (auto& worker : workers_) worker->join();
  workers_.clear();
  prober_.reset();
  catalog_loader_.reset();
  auth_lookup_.reset();
  uv_run(loop_, UV_RUN_DEFAULT);  // let the prober's, the loader's and the lookup's handles finish closing
  uv_loop_close(loop_);
  LOG_INFO("pgmux stopped; clients pinned to a server (transaction pooling), by reason: %s",
           shared_->pins.summary().c_str());
  return 0;
}

void Control::close_handles() {
  {
    std::lock_guard lock(inbox_mutex_);
    if (inbox_closed_) return;
    inbox_closed_ = true;
  }
  if (prober_) prober_->stop();
  etcd_watch_.reset();  // its connection closes on its own
  consistency_check_.reset();  // releases its hold, if any
  switchover_.reset();  // a switchover still running stops where it is (its command killed); nobody is left to answer
  if (catalog_loader_) catalog_loader_->stop();
  if (http_) http_->close();
  for (UvSignal<Control>* s : {&sigint_, &sigterm_, &sighup_, &sigusr1_}) s->close();
  async_.close();
}

}  // namespace pgmux::proxy
