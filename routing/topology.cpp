#include "routing/topology.hpp"

#include <algorithm>
#include <cstdio>

#include "routing/sync_standby_names.hpp"

namespace pgmux::routing {
namespace {

constexpr size_t kHistoryMax = 64;  // ~1 minute at the default 1 s period
constexpr size_t kRecentMax = 32;   // the replay poller's samples: only the newest few are ever needed

// Inserts in time order (a failover may interleave samples of two servers), dropping the oldest past `max`.
void add_sample(std::vector<LsnSample>& samples, const LsnSample& sample, size_t max) {
  auto at = std::upper_bound(samples.begin(), samples.end(), sample.time,
                             [](double t, const LsnSample& s) { return t < s.time; });
  samples.insert(at, sample);
  if (samples.size() > max) samples.erase(samples.begin());
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1 << 30));
  } else if (bytes >= (int64_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1 << 20));
  } else if (bytes >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  }
  return buf;
}

std::string format_seconds(double s) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::optional<uint32_t> parse_hex32(std::string_view text) {
  if (text.empty() || text.size() > 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : text) {
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<uint32_t>(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

}  // namespace

const char* to_string(Role r) {
  switch (r) {
    case Role::Unknown: return "unknown";
    case Role::Primary: return "primary";
    case Role::Standby: return "standby";
    case Role::Down: return "down";
    case Role::Fenced: return "fenced";
  }
  return "unknown";
}

std::optional<uint64_t> parse_lsn(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto hi = parse_hex32(text.substr(0, slash));
  const auto lo = parse_hex32(text.substr(slash + 1));
  if (!hi || !lo) return std::nullopt;
  return (uint64_t{*hi} << 32) | *lo;
}

uint64_t insert_position_as_record_end(uint64_t insert_lsn) {
  constexpr uint64_t kWalPageSize = 8192;  // XLOG_BLCKSZ
  constexpr uint64_t kShortHeader = 24;    // SizeOfXLogShortPHD
  constexpr uint64_t kLongHeader = 40;     // SizeOfXLogLongPHD, the first page of a segment
  const uint64_t offset = insert_lsn % kWalPageSize;
  return offset == kShortHeader || offset == kLongHeader ? insert_lsn - offset : insert_lsn;
}

std::string format_lsn(uint64_t lsn) {
  char text[32];
  std::snprintf(text, sizeof text, "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn));
  return text;
}

Topology::Topology(std::vector<BackendSpec> backends, TopologySettings settings) : settings_(settings) {
  dcs_.enabled = settings.dcs_decides_primary;
  for (BackendSpec& spec : backends) {
    BackendStatus b;
    b.spec = std::move(spec);
    backends_.push_back(std::move(b));
  }
  recompute(0);
  publish(0);
}

void Topology::on_probe_ok(size_t index, const ProbeResult& result, double now) {
  if (index >= backends_.size()) return;
  last_now_ = now;
  BackendStatus& b = backends_[index];
  if (result.in_recovery) {
    b.fenced_timeline = false;  // it rejoined as a standby
    if (b.fence && result.timeline > b.fence->timeline) b.fence.reset();  // of the new primary
  } else if (!b.spec.standby_only && !b.fenced_timeline && b.role != Role::Primary) {
    // A backend that (re)appears as primary on an older timeline than a live primary is a former primary that
    // missed a failover: writes there would be lost, so it gets no traffic until it is rebuilt as a standby.
    for (size_t j = 0; j < backends_.size(); ++j) {
      const BackendStatus& other = backends_[j];
      if (j != index && other.role == Role::Primary && other.failed_probes == 0 &&
          other.last.timeline > result.timeline) {
        b.fenced_timeline = true;
      }
    }
  }
  b.last = result;
  b.ever_probed = true;
  b.failed_probes = 0;
  b.last_error.clear();
  if (result.in_recovery) {
    update_lag(b, now);
  } else {
    b.lag_bytes = 0;  // a primary, or a standby_only target whose lag WAL positions cannot measure
    b.lag_seconds = 0;
  }
  recompute(now);
  if (static_cast<int>(index) == primary_) {
    const uint64_t lsn = std::max(result.insert_lsn, result.current_lsn);
    add_sample(history_, LsnSample{result.sent_at >= 0 ? result.sent_at : now, lsn}, kHistoryMax);
  }
  publish(now);
}

bool Topology::on_replay_position(size_t index, uint64_t replay_lsn) {
  if (index >= backends_.size()) return false;
  BackendStatus& b = backends_[index];
  if (b.role != Role::Standby || replay_lsn <= b.last.replay_lsn) return false;
  b.last.replay_lsn = replay_lsn;
  publish(last_now_);
  return true;
}

bool Topology::on_primary_position(size_t index, uint64_t insert_lsn, double sent_at) {
  if (static_cast<int>(index) != primary_ || insert_lsn == 0) return false;
  add_sample(recent_, LsnSample{sent_at, insert_lsn}, kRecentMax);
  publish(last_now_);
  return true;
}

void Topology::fence(size_t index, uint32_t timeline, std::string reason, BackendStatus::FenceStage stage,
                     double now) {
  if (index >= backends_.size()) return;
  BackendStatus& b = backends_[index];
  // Already back as a standby of a later timeline (a quick demote command): nothing left to fence.
  if (b.ever_probed && b.last.in_recovery && b.last.timeline > timeline) return;
  b.fence = BackendStatus::SwitchoverFence{timeline, std::move(reason), stage};
  recompute(now);
  publish(now);
}

void Topology::unfence(size_t index, double now) {
  if (index >= backends_.size() || !backends_[index].fence) return;
  backends_[index].fence.reset();
  recompute(now);
  publish(now);
}

void Topology::note_address(size_t index, std::string address) {
  if (index >= backends_.size() || !backends_[index].last.address.empty()) return;
  backends_[index].last.address = std::move(address);
  publish(last_now_);
}

void Topology::on_probe_failed(size_t index, const std::string& error, double now) {
  if (index >= backends_.size()) return;
  last_now_ = now;
  BackendStatus& b = backends_[index];
  ++b.failed_probes;
  b.last_error = error;
  recompute(now);
  publish(now);
}

void Topology::on_connection_refused(size_t index, const std::string& error, double now) {
  if (index >= backends_.size() || !backends_[index].ever_probed) return;
  BackendStatus& b = backends_[index];
  // A standby that refuses new connections (stopping, restarting) serves no read until a probe answers again:
  // each read it would get fails before running, while the other standbys and the primary could take it. Down at
  // once (also after a failed probe); the round the prober starts now decides again. A primary's refusal counts as
  // one failed probe, the first since its last good one only.
  if (b.role == Role::Standby) {
    b.failed_probes = settings_.health_check_max_retries;
  } else if (b.failed_probes > 0) {
    return;
  }
  on_probe_failed(index, error, now);
}

void Topology::reconfigure(std::vector<BackendSpec> backends, TopologySettings settings) {
  std::vector<BackendStatus> next;
  next.reserve(backends.size());
  for (BackendSpec& spec : backends) {
    // Same name at another address: another server, whose role and lag are unknown until probed.
    auto old = std::find_if(backends_.begin(), backends_.end(), [&](const BackendStatus& s) {
      return s.spec.name == spec.name && s.spec.host == spec.host && s.spec.port == spec.port;
    });
    BackendStatus b;
    if (old != backends_.end()) b = *old;
    b.spec = std::move(spec);
    next.push_back(std::move(b));
  }
  backends_ = std::move(next);
  settings_ = settings;
  if (dcs_.enabled != settings.dcs_decides_primary) {
    dcs_ = DcsState();
    dcs_.enabled = settings.dcs_decides_primary;
  }
  primary_ = -1;  // indices may have moved; recompute finds it again
  recompute(last_now_);
  publish(last_now_);
}

// Lag against the current primary. Without one (failover, split brain) the last values are kept.
void Topology::update_lag(BackendStatus& b, double now) const {
  if (primary_ < 0) return;
  const uint64_t primary_lsn = backends_[static_cast<size_t>(primary_)].last.current_lsn;
  const uint64_t replay = b.last.replay_lsn;
  b.lag_bytes = primary_lsn > replay ? static_cast<int64_t>(primary_lsn - replay) : 0;
  if (replay >= primary_lsn) {
    b.lag_seconds = 0;  // fully replayed: an idle primary must not make its standbys look old
    return;
  }
  // replay_age is "time since the last replayed transaction", which on a mostly idle primary is large even
  // when the standby is only a few bytes behind. The history bounds it: the standby has been behind for at
  // most the time since the primary was first seen past `replay`, when a sample at or before `replay` exists.
  std::optional<double> behind;
  for (size_t k = 1; k < history_.size(); ++k) {
    if (history_[k - 1].lsn <= replay && history_[k].lsn > replay) {
      behind = now - history_[k].time;
      break;
    }
  }
  double seconds = b.last.replay_age_seconds.value_or(behind.value_or(0));
  if (behind) seconds = std::min(seconds, *behind);
  b.lag_seconds = std::max(0.0, seconds);
}

// The value most probed backends report; the current one (first seen) wins a tie.
uint64_t Topology::cluster_system_identifier() const {
  auto count = [&](uint64_t id) {
    return std::count_if(backends_.begin(), backends_.end(), [&](const BackendStatus& s) {
      return s.ever_probed && !s.spec.standby_only && s.last.system_identifier == id;
    });
  };
  uint64_t best = system_identifier_;
  auto best_count = best != 0 ? count(best) : 0;
  for (const BackendStatus& s : backends_) {
    if (!s.ever_probed || s.spec.standby_only || s.last.system_identifier == 0) continue;
    const auto n = count(s.last.system_identifier);
    if (n > best_count) {
      best = s.last.system_identifier;
      best_count = n;
    }
  }
  return best;
}

// Each backend's role from its last probe; why it is fenced, or why a reachable one's role is unknown, goes to
// role_reasons[i].
void Topology::assign_roles(std::vector<std::string>& role_reasons, std::vector<std::string>& alarms) {
  for (size_t i = 0; i < backends_.size(); ++i) {
    BackendStatus& b = backends_[i];
    const bool down = b.failed_probes > settings_.health_check_max_retries;
    b.reachable = b.ever_probed && !down;
    if (down) {
      b.role = Role::Down;
    } else if (!b.ever_probed) {
      b.role = Role::Unknown;
    } else if (b.fence) {
      b.role = Role::Fenced;
      role_reasons[i] = b.fence->reason;
    } else if (!b.spec.standby_only && system_identifier_ != 0 && b.last.system_identifier != 0 &&
               b.last.system_identifier != system_identifier_) {
      b.role = Role::Fenced;
      role_reasons[i] = "system identifier " + std::to_string(b.last.system_identifier) +
                        " differs from the cluster's " + std::to_string(system_identifier_);
      alarms.push_back("system identifier mismatch: " + b.spec.name + " reports " +
                       std::to_string(b.last.system_identifier) + ", the cluster is " +
                       std::to_string(system_identifier_) + " (refused)");
    } else if (b.last.in_recovery || b.spec.standby_only) {
      b.role = Role::Standby;
    } else if (b.fenced_timeline) {
      b.role = Role::Fenced;
      role_reasons[i] = "not in recovery on timeline " + std::to_string(b.last.timeline) +
                         ", older than the primary's; rejoin it as a standby";
      alarms.push_back(b.spec.name + " is not in recovery on an older timeline (" +
                       std::to_string(b.last.timeline) + "): fenced until it rejoins as a standby");
    } else if (std::string refusal = dcs_refusal(i); !refusal.empty()) {
      // Another member is the leader: an old primary, fenced (its servers close). No leader known yet: its role
      // is unknown, so writes wait, but its servers stay (Patroni is likely to name it again).
      b.role = dcs_.leader_index >= 0 ? Role::Fenced : Role::Unknown;
      role_reasons[i] = std::move(refusal);
      if (dcs_.leader_index >= 0) {
        alarms.push_back(b.spec.name + " is out of recovery but Patroni's leader is " + dcs_.leader + ": fenced");
      }
    } else {
      b.role = Role::Primary;
    }
  }
}

// The one primary. Several claimants: the higher timeline wins only when every other one is failing to answer;
// otherwise nobody gets writes until a human (or the HA tool) resolves it.
void Topology::choose_primary(std::vector<std::string>& alarms) {
  std::vector<size_t> claimants;
  for (size_t i = 0; i < backends_.size(); ++i) {
    if (backends_[i].role == Role::Primary) claimants.push_back(i);
  }
  primary_ = -1;
  split_brain_ = false;
  if (claimants.size() == 1) {
    primary_ = static_cast<int>(claimants[0]);
    return;
  }
  if (claimants.empty()) return;
  std::stable_sort(claimants.begin(), claimants.end(), [&](size_t a, size_t b) {
    return backends_[a].last.timeline > backends_[b].last.timeline;
  });
  const BackendStatus& top = backends_[claimants[0]];
  bool others_failing_and_older = top.failed_probes == 0;
  for (size_t k = 1; k < claimants.size(); ++k) {
    const BackendStatus& o = backends_[claimants[k]];
    if (o.failed_probes == 0 || o.last.timeline >= top.last.timeline) others_failing_and_older = false;
  }
  if (others_failing_and_older) {
    primary_ = static_cast<int>(claimants[0]);
    return;
  }
  split_brain_ = true;
  std::string text = claimants.size() == 2 ? "two primaries: " : std::to_string(claimants.size()) + " primaries: ";
  for (size_t k = 0; k < claimants.size(); ++k) {
    const BackendStatus& c = backends_[claimants[k]];
    if (k > 0) text += ", ";
    text += c.spec.name + " (timeline " + std::to_string(c.last.timeline) + ")";
  }
  alarms.insert(alarms.begin(), text + "; writes refused until one is demoted");
}

// Whether a standby may serve reads, with hysteresis on the way back in after lag; why not, in `reason`.
bool Topology::standby_readable(BackendStatus& b, double now, std::string& reason) const {
  // Left behind by a promotion: still on the old timeline (following the old primary, or nothing), it will
  // never see the new primary's commits. Back once it receives the new timeline.
  const uint32_t primary_timeline = primary_ >= 0 ? backends_[static_cast<size_t>(primary_)].last.timeline : 0;
  if (primary_timeline != 0 && b.last.timeline != 0 && b.last.timeline < primary_timeline) {
    reason = "on timeline " + std::to_string(b.last.timeline) + ", the primary is on " +
             std::to_string(primary_timeline) + ": not following the primary";
    return false;
  }
  const int64_t max_bytes = b.spec.max_lag_bytes.value_or(settings_.max_lag_bytes);
  const double max_seconds = b.spec.max_lag_seconds.value_or(settings_.max_lag_seconds);
  const bool over_bytes = b.lag_bytes > max_bytes;
  const bool over_seconds = b.lag_seconds > max_seconds;
  if (over_bytes || over_seconds) {
    b.lag_excluded = true;
    b.under_threshold_since = -1;
    if (over_bytes) reason = "lag " + format_bytes(b.lag_bytes) + " > max_lag_bytes " + format_bytes(max_bytes);
    if (over_seconds) {
      if (!reason.empty()) reason += ", ";
      reason += "lag " + format_seconds(b.lag_seconds) + " > max_lag_seconds " + format_seconds(max_seconds);
    }
    return false;
  }
  if (b.lag_excluded) {
    if (b.under_threshold_since < 0) b.under_threshold_since = now;
    const double under_for = now - b.under_threshold_since;
    if (under_for < settings_.lag_hysteresis) {
      reason = "hysteresis: lag under the limits for " + format_seconds(under_for) + " of " +
               format_seconds(settings_.lag_hysteresis);
      return false;
    }
    b.lag_excluded = false;
    b.under_threshold_since = -1;
  }
  if (b.spec.disabled) {
    reason = "disabled by the operator (ENABLE BACKEND to bring it back)";
  } else if (b.dcs_noloadbalance) {
    reason = "Patroni tag noloadbalance";
  } else if (b.spec.weight <= 0) {
    reason = "weight 0";
  } else {
    return true;
  }
  return false;
}

// The sync_state of `name` in a primary's "application_name:sync_state,..." list; "" when it is not there.
std::string sync_state_in(std::string_view replication, std::string_view name) {
  while (!replication.empty()) {
    const size_t comma = replication.find(',');
    const std::string_view entry = replication.substr(0, comma);
    const size_t colon = entry.rfind(':');
    if (colon != std::string_view::npos && entry.substr(0, colon) == name) {
      return std::string(entry.substr(colon + 1));
    }
    if (comma == std::string_view::npos) break;
    replication.remove_prefix(comma + 1);
  }
  return {};
}

bool commits_wait_for_apply(const ProbeResult& primary, std::string_view application_name) {
  if (primary.synchronous_commit != "remote_apply") return false;
  const auto names = parse_sync_standby_names(primary.synchronous_standby_names);
  if (!names || !names->all_required() || !names->lists(application_name)) return false;
  // Exactly one WAL sender answers to the name, as PostgreSQL matches it (ignoring case), and it is synchronous:
  // of two standbys sharing a name, only one would be.
  SyncStandbyNames one;
  one.names.emplace_back(application_name);
  int matches = 0;
  bool synchronous = false;
  for (std::string_view rest = primary.replication; !rest.empty();) {
    const size_t comma = rest.find(',');
    const std::string_view entry = rest.substr(0, comma);
    const size_t colon = entry.rfind(':');
    if (colon != std::string_view::npos && one.lists(entry.substr(0, colon))) {
      ++matches;
      const std::string_view state = entry.substr(colon + 1);
      synchronous = state == "sync" || state == "quorum";
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return matches == 1 && synchronous;
}

void Topology::recompute(double now) {
  system_identifier_ = cluster_system_identifier();
  std::vector<std::string> alarms;
  std::vector<Role> previous_roles;
  std::vector<bool> previous_readable;
  for (const BackendStatus& b : backends_) {
    previous_roles.push_back(b.role);
    previous_readable.push_back(b.readable);
  }
  std::vector<std::string> role_reasons(backends_.size());
  match_dcs_members(alarms);
  assign_roles(role_reasons, alarms);
  choose_primary(alarms);

  // The read set, and why each backend is not in it.
  for (size_t i = 0; i < backends_.size(); ++i) {
    BackendStatus& b = backends_[i];
    bool readable = false;
    std::string reason;
    switch (b.role) {
      case Role::Unknown:
        if (!role_reasons[i].empty()) {
          reason = "primary role not confirmed: " + role_reasons[i];
        } else {
          reason = b.failed_probes > 0 ? "not reachable yet: " + b.last_error : "not probed yet";
        }
        break;
      case Role::Down:
        reason = "down: " + (b.last_error.empty() ? std::string("no answer") : b.last_error);
        break;
      case Role::Fenced:
        reason = "fenced: " + role_reasons[i];
        break;
      case Role::Primary:
        reason = split_brain_ ? "primary (split brain)" : "primary";
        break;
      case Role::Standby:
        readable = standby_readable(b, now, reason);
        break;
    }
    const std::string_view application_name =
        b.spec.application_name.empty() ? b.spec.name : b.spec.application_name;
    const ProbeResult* primary = primary_ >= 0 ? &backends_[static_cast<size_t>(primary_)].last : nullptr;
    b.sync_state = primary && b.role == Role::Standby ? sync_state_in(primary->replication, application_name)
                                                      : std::string();
    const bool applies = readable && primary && commits_wait_for_apply(*primary, application_name);
    if (applies && !b.applies_commits) b.applies_since = now;
    b.applies_commits = applies;
    b.readable = readable;
    b.excluded_reason = std::move(reason);
    if (b.role != previous_roles[i] || b.readable != previous_readable[i]) b.last_status_change = now;
  }

  alarm_.clear();
  for (const std::string& a : alarms) {
    if (!alarm_.empty()) alarm_ += "; ";
    alarm_ += a;
  }
}

void Topology::publish(double /*now*/) {
  auto v = std::make_shared<BackendsView>();
  v->backends = backends_;
  v->primary = primary_;
  v->split_brain = split_brain_;
  v->alarm = alarm_;
  v->primary_lsn_history = history_;
  v->recent_primary_lsn = recent_;
  v->dcs = dcs_;
  v->generation = ++generation_;
  view_ = std::move(v);
}

}  // namespace pgmux::routing
