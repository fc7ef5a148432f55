#include "proxy/control/prober.hpp"

#include <cmath>

#include "proxy/net/address.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy {
namespace {

uint64_t to_ms(double seconds) { return static_cast<uint64_t>(std::llround(seconds * 1000)); }

const routing::BackendStatus* find_by_name(const routing::BackendsView* view, const std::string& name) {
  if (view == nullptr) return nullptr;
  for (const routing::BackendStatus& b : view->backends) {
    if (b.spec.name == name) return &b;
  }
  return nullptr;
}

std::string primary_name(const routing::BackendsView* view) {
  if (view == nullptr || view->primary < 0) return "";
  return view->backends[static_cast<size_t>(view->primary)].spec.name;
}

}  // namespace

std::vector<routing::BackendSpec> backend_specs(const conf::Config& config, const std::set<std::string>& disabled) {
  std::vector<routing::BackendSpec> out;
  for (const conf::Backend& b : config.backends) {
    routing::BackendSpec s;
    s.name = b.name;
    s.host = b.host;
    s.port = b.port;
    s.weight = b.weight;
    s.standby_only = b.standby_only;
    s.application_name = b.application_name.empty() ? b.name : b.application_name;
    s.max_lag_bytes = b.max_lag_bytes;
    s.max_lag_seconds = b.max_lag_seconds;
    s.disabled = disabled.count(b.name) != 0;
    out.push_back(std::move(s));
  }
  return out;
}

routing::TopologySettings topology_settings(const conf::Config& config) {
  routing::TopologySettings s;
  s.max_lag_bytes = config.routing.max_lag_bytes;
  s.max_lag_seconds = config.routing.max_lag_seconds;
  s.lag_hysteresis = config.routing.lag_hysteresis;
  s.health_check_max_retries = config.health_check.max_retries;
  s.dcs_decides_primary = config.topology.kind == conf::TopologySourceKind::Patroni;
  return s;
}

routing::RouteSettings route_settings_of(const conf::Routing& routing) {
  routing::RouteSettings settings;
  settings.read_write_split = routing.read_write_split;
  settings.fallback_to_primary = routing.fallback_to_primary;
  settings.remote_apply_reads = routing.remote_apply_reads;
  switch (routing.consistency) {
    case conf::Consistency::Causal: settings.consistency = routing::Consistency::Causal; break;
    case conf::Consistency::Session: settings.consistency = routing::Consistency::Session; break;
    case conf::Consistency::Eventual: settings.consistency = routing::Consistency::Eventual; break;
  }
  return settings;
}

ProbeTarget probe_target(const conf::Config& config, const std::string& host, uint16_t port,
                         const std::string& database) {
  ProbeTarget t;
  t.host = host;
  t.port = port;
  t.user = config.health_check_user();
  t.password = config.health_check_password();
  t.database = database;
  // The backend at this address brings its TLS settings (the catalog loader asks by address too).
  for (const conf::Backend& b : config.backends) {
    if (b.host != host || b.port != port) continue;
    t.sslmode = conf::to_string(b.sslmode);
    t.sslrootcert = b.sslrootcert;
    t.sslcert = b.sslcert;
    t.sslkey = b.sslkey;
    break;
  }
  return t;
}

Prober::Prober(uv_loop_t* loop, const conf::Config& config, OnChange on_change)
    : loop_(loop),
      topology_(backend_specs(config), topology_settings(config)),
      poller_(loop, topology_, [this](const WalPosition& position) { on_position(position); }),
      patroni_(
          loop,
          [this](routing::DcsCluster cluster, const std::string& url) { on_dcs_cluster(std::move(cluster), url); },
          [this](const std::string& error) { on_dcs_failed(error); }),
      on_change_(std::move(on_change)) {
  timer_ = make_uv_handle<uv_timer_t>(this);
  timer_->init(loop_);
  build_connections(config);
  resolve_new_names(config);
}

// At startup and at a reload, for the backends named by a host name that have no address yet: looked up here, so
// the first clients find it in the view instead of failing until the first probe. This blocks the control loop
// (at startup nothing runs yet; at a reload probing waits, the workers go on); from then on the probes resolve
// the names off every loop (PgQueryConnection).
void Prober::resolve_new_names(const conf::Config& config) {
  const View view = topology_.view();
  for (size_t i = 0; i < config.backends.size() && i < view->backends.size(); ++i) {
    const std::string& host = config.backends[i].host;
    sockaddr_storage ignored{};
    if (host.empty() || host[0] == '/' || numeric_address(host, 0, &ignored)) continue;
    if (!view->backends[i].last.address.empty()) continue;
    std::string address;
    std::string error;
    if (resolve_to_numeric(host, &address, &error)) {
      topology_.note_address(i, std::move(address));
    } else {
      LOG_WARN("backend %s: %s (the probes will try again)", config.backends[i].name.c_str(), error.c_str());
    }
  }
}

Prober::~Prober() {
  stop();
  connections_.clear();
}

void Prober::build_connections(const conf::Config& config) {
  period_ = config.health_check.period;
  timeout_ = config.health_check.timeout;
  targets_.clear();
  for (const conf::Backend& b : config.backends) {
    targets_.push_back(probe_target(config, b.host, b.port, config.health_check.database));
  }
  reopen_connections();
  poller_.configure(config);
  topology_source_ = config.topology;
  if (running_) patroni_.configure(topology_source_);
}

// Fresh, idle connection objects (in-flight probes on the old ones are dropped without callbacks).
void Prober::reopen_connections() {
  connections_.clear();
  for (const ProbeTarget& t : targets_) connections_.push_back(std::make_unique<ProbeConnection>(loop_, t));
}

void Prober::start() {
  running_ = true;
  uv_timer_start(timer_->get(), on_tick, 0, to_ms(period_));
  poller_.start();
  patroni_.configure(topology_source_);
}

void Prober::stop() {
  if (!running_) return;
  running_ = false;
  uv_timer_stop(timer_->get());
  poller_.stop();
  patroni_.stop();
  reopen_connections();
}

void Prober::reconfigure(const conf::Config& config, const std::set<std::string>& disabled) {
  topology_.reconfigure(backend_specs(config, disabled), topology_settings(config));
  build_connections(config);
  resolve_new_names(config);
  // The next round (at once) publishes the new backend list.
  if (running_) uv_timer_start(timer_->get(), on_tick, 0, to_ms(period_));
}

void Prober::on_tick(uv_timer_t* timer) {
  auto* self = UvTimer<Prober>::owner_of(timer);
  if (self != nullptr && self->running_) self->run_round();
}

void Prober::probe_now() {
  if (!running_) return;
  // Right after a round: the next one a little later (a round already in flight may have been sent before what
  // prompted this request, which must see a round sent after it).
  const double since = monotonic_seconds() - round_started_;
  const double delay = since < kMinForcedInterval ? kMinForcedInterval - since : 0;
  const uint64_t due = uv_now(loop_) + to_ms(delay);
  const bool sooner = uv_is_active(reinterpret_cast<uv_handle_t*>(timer_->get())) &&
                      uv_now(loop_) + uv_timer_get_due_in(timer_->get()) <= due;
  patroni_.poll_now();  // the primary may be gone: has Patroni named another leader?
  if (sooner) return;  // the next round comes soon enough anyway
  uv_timer_start(timer_->get(), on_tick, to_ms(delay), to_ms(period_));
}

void Prober::on_connection_refused(const std::string& backend, const std::string& error) {
  // A copy of the pointer: on_connection_refused publishes a new view, which frees this one.
  const std::shared_ptr<const routing::BackendsView> view = topology_.view();
  for (size_t i = 0; i < view->backends.size(); ++i) {
    if (view->backends[i].spec.name != backend) continue;  // (a reload may have renamed or removed it)
    topology_.on_connection_refused(i, "a new connection was refused: " + error, monotonic_seconds());
    notify_if_changed();
    break;
  }
  probe_now();
}

void Prober::fence(size_t index, uint32_t timeline, std::string reason, routing::BackendStatus::FenceStage stage) {
  topology_.fence(index, timeline, std::move(reason), stage, monotonic_seconds());
  notify_if_changed();
  probe_now();  // without a primary, rounds come every kFailoverPeriod from the next one
}

void Prober::unfence(size_t index) {
  topology_.unfence(index, monotonic_seconds());
  notify_if_changed();
}

void Prober::run_round() {
  in_round_ = true;
  round_started_ = monotonic_seconds();
  probe_started_.resize(connections_.size(), 0);
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (!connections_[i]->busy()) probe_started_[i] = monotonic_seconds();
    // A probe still in flight from the last round (timeout > period) keeps its own deadline; skip it.
    connections_[i]->start(timeout_, [this, i](bool ok, const routing::ProbeResult& result, const std::string& error) {
      on_probe_done(i, ok, result, error);
    });
  }
  in_round_ = false;
  notify_if_changed();
}

void Prober::on_probe_done(size_t index, bool ok, const routing::ProbeResult& result, const std::string& error) {
  const double now = monotonic_seconds();
  if (probe_observer_ && index < probe_started_.size()) {
    probe_observer_(topology_.view()->backends[index].spec.name, now - probe_started_[index]);
  }
  if (ok) {
    // A standby out of recovery that Patroni does not name leader: a promotion Patroni may have made since its
    // last answer. Ask now rather than at the next poll, so writes leave the old primary sooner.
    const routing::BackendsView& before = *topology_.view();
    if (before.dcs.enabled && !result.in_recovery && before.backends[index].last.in_recovery &&
        before.dcs.leader_index != static_cast<int>(index)) {
      patroni_.poll_now();
    }
    topology_.on_probe_ok(index, result, now);
  } else {
    LOG_DEBUG("probe of backend %s failed: %s", topology_.view()->backends[index].spec.name.c_str(), error.c_str());
    topology_.on_probe_failed(index, error, now);
  }
  if (in_round_) return;
  for (const auto& c : connections_) {
    if (c->busy()) return;  // publish once the whole round is in
  }
  // No primary: the next round comes soon, so that a promotion is followed within kFailoverPeriod.
  if (running_ && topology_.view()->primary < 0) {
    if (period_ > kFailoverPeriod) uv_timer_start(timer_->get(), on_tick, to_ms(kFailoverPeriod), to_ms(period_));
    patroni_.poll_now();  // and the leader Patroni names, as often
  }
  notify_if_changed();
}

// A fresher WAL position than the last round's: published at once (reads may be waiting for it), then whatever
// it calls for is asked (a new primary sample makes the standbys behind it worth asking).
void Prober::on_position(const WalPosition& position) {
  const bool changed = position.in_recovery
                           ? topology_.on_replay_position(position.index, position.lsn)
                           : topology_.on_primary_position(position.index, position.lsn, position.sent_at);
  if (changed && !in_round_) notify_if_changed();
  poller_.poll();
}

void Prober::on_dcs_cluster(routing::DcsCluster cluster, const std::string& url) {
  const std::string leader_before = topology_.view()->dcs.leader;
  topology_.on_dcs_cluster(std::move(cluster), url, monotonic_seconds());
  // A new leader: its probe tells when it is out of recovery, so ask now rather than at the next period.
  if (topology_.view()->dcs.leader != leader_before) probe_now();
  if (!in_round_) notify_if_changed();
}

void Prober::on_dcs_failed(const std::string& error) {
  topology_.on_dcs_failed(error, monotonic_seconds());
  if (!in_round_) notify_if_changed();
}

void Prober::notify_if_changed() {
  View v = topology_.view();
  if (v->generation == notified_generation_) return;
  notified_generation_ = v->generation;
  log_topology_changes(logged_.get(), *v);
  logged_ = v;
  if (on_change_) on_change_(std::move(v));  // last: it may reconfigure or stop us
}

void log_topology_changes(const routing::BackendsView* before, const routing::BackendsView& after) {
  using routing::Role;
  for (const routing::BackendStatus& b : after.backends) {
    const routing::BackendStatus* old = find_by_name(before, b.spec.name);
    const Role old_role = old != nullptr ? old->role : Role::Unknown;
    const bool old_readable = old != nullptr && old->readable;
    const char* name = b.spec.name.c_str();
    if (b.role != old_role) {
      if (b.role == Role::Down) {
        LOG_WARN("backend %s is down: %s", name, b.last_error.c_str());
      } else if (b.role == Role::Fenced) {
        LOG_ERROR("backend %s gets no traffic, %s", name, b.excluded_reason.c_str());
      } else if (old_role == Role::Down) {
        LOG_INFO("backend %s is up again as %s (timeline %u)", name, routing::to_string(b.role), b.last.timeline);
      } else {
        LOG_INFO("backend %s: %s -> %s (timeline %u)", name, routing::to_string(old_role), routing::to_string(b.role),
                 b.last.timeline);
      }
    }
    if (b.readable && !old_readable) {
      LOG_INFO("backend %s is in the read set (lag %lld bytes, %.1f s)", name, static_cast<long long>(b.lag_bytes),
               b.lag_seconds);
    } else if (!b.readable && old_readable) {
      LOG_WARN("backend %s left the read set: %s", name, b.excluded_reason.c_str());
    }
  }
  const std::string old_primary = primary_name(before);
  const std::string new_primary = primary_name(&after);
  if (new_primary != old_primary) {
    if (!new_primary.empty()) {
      LOG_INFO("primary is now %s", new_primary.c_str());
    } else {
      LOG_WARN("no primary%s: writes wait for one", after.split_brain ? " (split brain)" : "");
    }
  }
  if (after.dcs.enabled && (before == nullptr || before->dcs.leader != after.dcs.leader) && after.dcs.answered) {
    if (after.dcs.leader.empty()) {
      LOG_WARN("Patroni names no leader (asked %s)", after.dcs.source.c_str());
    } else {
      LOG_INFO("Patroni's leader is now %s (asked %s)", after.dcs.leader.c_str(), after.dcs.source.c_str());
    }
  }
  const std::string old_alarm = before != nullptr ? before->alarm : std::string();
  if (after.alarm != old_alarm) {
    if (!after.alarm.empty()) {
      LOG_ERROR("topology alarm: %s", after.alarm.c_str());
    } else {
      LOG_INFO("topology alarm cleared");
    }
  }
}

}  // namespace pgmux::proxy
