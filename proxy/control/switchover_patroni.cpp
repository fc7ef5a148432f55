// SWITCHOVER with topology.source patroni: pgmux holds and drains as usual, then Patroni does the demotion and
// promotion (POST /switchover on the REST API that answered last), so its DCS, and every other pgmux that follows
// it, agree on the new leader. What Patroni answers decides the outcome:
//   200        switched over: await the target as the primary (the DCS names it and it left recovery)
//   4xx        refused (wrong leader, no such candidate, not healthy enough): nothing was done, cancel
//   5xx, none  unknown: fail, and let Patroni's next /cluster and the probes decide what pgmux does
// And a switchover asked of Patroni directly, seen in its failover key (follow_patroni): drained for, then followed.
#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "proxy/control/control.hpp"
#include "proxy/control/switchover.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/wall_clock.hpp"

namespace pgmux::proxy {

void Switchover::patroni_switchover() {
  set_step(Step::Demoting);
  const auto view = control_.shared().view.load();
  const std::string leader = routing::dcs_member_of(*view, static_cast<size_t>(old_primary_));
  const std::string candidate = routing::dcs_member_of(*view, static_cast<size_t>(target_));
  const std::optional<conf::HttpUrl> url = conf::parse_http_url(view->dcs.source);
  if (leader.empty() || candidate.empty() || !url) {
    cancel("Patroni has no member for " + (leader.empty() ? name_of(old_primary_) : name_of(target_)) +
               (url ? "" : " (no REST API has answered)"),
           "pgmux matches members by name, then by host and port; SHOW BACKENDS shows each backend's Patroni role");
    return;
  }
  HttpRequestSpec spec;
  spec.url = *url;
  spec.method = "POST";
  spec.path = "/switchover";
  spec.body = nlohmann::json{{"leader", leader}, {"candidate", candidate}}.dump();
  // Patroni answers once the new leader holds the key: up to about 2 * its loop_wait (10 s at least).
  const auto config = control_.config();
  spec.timeout = config->switchover.command_timeout;
  if (!config->topology.patroni_username.empty()) {
    spec.basic_auth = config->topology.patroni_username + ":" + config->topology.patroni_password;
  }
  LOG_INFO("switchover: asking Patroni at %s to switch over from %s to %s", view->dcs.source.c_str(), leader.c_str(),
           candidate.c_str());
  const uint64_t run = run_;
  const std::string source = view->dcs.source;
  patroni_call_ = HttpCall::start(control_.loop(), std::move(spec), [this, run, source](HttpResult result) {
    if (run != run_ || step_ != Step::Demoting) return;
    on_patroni_reply(source, result);
  });
}

void Switchover::on_patroni_reply(const std::string& url, const HttpResult& result) {
  patroni_call_.reset();
  const std::string said = escape_for_log(result.body, 300);
  if (!result.ok) {
    fail("Patroni at " + url + " did not answer POST /switchover: " + result.error,
         "patronictl list shows whether it switched over; pgmux follows whatever leader Patroni names");
    return;
  }
  if (result.status >= 400 && result.status < 500) {
    cancel("Patroni refused it (HTTP " + std::to_string(result.status) + "): " + said,
           "patronictl list shows the members' state and lag");
    return;
  }
  if (result.status != 200) {
    fail("Patroni answered HTTP " + std::to_string(result.status) + ": " + said,
         "patronictl list shows whether it switched over; pgmux follows whatever leader Patroni names");
    return;
  }
  notices_.push_back("Patroni: " + said);
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "switched over to " + name_of(target_) +
                              " by Patroni: fenced until it reports as a standby on a timeline after " +
                              std::to_string(old_timeline_),
                          routing::BackendStatus::FenceStage::Closed);
  await_primary();
}

namespace {
int backend_of_member(const routing::BackendsView& view, const std::string& member) {
  for (size_t i = 0; i < view.backends.size(); ++i) {
    if (routing::dcs_member_of(view, i) == member) return static_cast<int>(i);
  }
  return -1;
}
}  // namespace

void Switchover::follow_patroni(const PatroniFailoverKey& key) {
  const bool following = kind_ == Kind::PatroniFollow && running();
  if (!key.requested) {
    unschedule_patroni_follow("Patroni's failover key was cleared");
    if (following && !withdrawn_at_answer_) {
      withdrawn_at_answer_ = control_.shared().view.load()->dcs.answers;
      control_.prober().probe_now();  // and the next /cluster answer tells whether Patroni kept its leader
    }
    return;
  }
  if (key.scheduled) {
    schedule_patroni_follow(key);
    return;
  }
  if (following) withdrawn_at_answer_.reset();  // asked again: Patroni goes on after all
  unschedule_patroni_follow("Patroni was asked for a switchover now");
  begin_patroni_follow(key);
}

int Switchover::patroni_key_primary(const PatroniFailoverKey& key, const routing::BackendsView& view) const {
  const int old = view.primary;
  if (old < 0) return -1;  // no primary to drain: writes already wait for one
  const std::string leader = routing::dcs_member_of(view, static_cast<size_t>(old));
  // Not about this primary, or to the leader itself: Patroni refuses it.
  if ((!key.leader.empty() && key.leader != leader) || key.candidate == leader) return -1;
  return old;
}

void Switchover::begin_patroni_follow(const PatroniFailoverKey& key) {
  const std::string when = key.scheduled ? ", scheduled at " + escape_for_log(key.scheduled_text, 64) : "";
  // pgmux's own SWITCHOVER wrote this key (POST /switchover), or something else already runs.
  if (running()) {
    if (key.scheduled) LOG_WARN("Patroni switchover%s: not drained for, a %s runs", when.c_str(), what());
    return;
  }
  const auto view = control_.shared().view.load();
  const int old = patroni_key_primary(key, *view);
  const char* not_drained = old < 0 ? "it is not about the current primary, or there is none"
                            : control_.config()->routing.failover_timeout <= 0 ? "routing.failover_timeout is 0"
                            : control_.consistency_check().blocks_changes()    ? "a CHECK CONSISTENCY holds writes"
                            : key.scheduled && view->dcs.cluster.paused ? "Patroni is paused, and acts on nothing"
                                                                        : nullptr;
  if (not_drained != nullptr) {
    // An immediate request about another primary is Patroni's to refuse: nothing to say about it.
    if (old >= 0 || key.scheduled) LOG_WARN("Patroni switchover%s: not drained for (%s)", when.c_str(), not_drained);
    return;
  }
  ++run_;
  kind_ = Kind::PatroniFollow;
  reply_ = nullptr;
  notices_.clear();
  withdrawn_at_answer_.reset();
  old_primary_ = old;
  target_ = key.candidate.empty() ? -1 : backend_of_member(*view, key.candidate);
  old_timeline_ = view->backends[static_cast<size_t>(old)].last.timeline;
  LOG_INFO("Patroni was asked to switch over from %s to %s (its failover key%s): holding writes while the "
           "transactions running on %s finish, before Patroni stops it",
           name_of(old).c_str(), key.candidate.empty() ? name_of(target_).c_str() : key.candidate.c_str(),
           when.c_str(), name_of(old).c_str());
  hold();
}

namespace {
// Patroni drops a scheduled switchover found more than 1.5 loop_wait late (loop_wait is 10 s by default) and clears
// its key: one further in the past is not acted on.
constexpr double kStaleAfter = 15;
}  // namespace

// Patroni acts at scheduled_at (its HA loop sleeps until then), with the same fast shutdown: the run starts
// kScheduledLead before it, by the wall clock (as Patroni's). A replaced key moves the time; a cleared one drops it.
void Switchover::schedule_patroni_follow(const PatroniFailoverKey& key) {
  const bool same = scheduled_key_ && scheduled_key_->scheduled_text == key.scheduled_text &&
                    scheduled_key_->leader == key.leader && scheduled_key_->candidate == key.candidate;
  if (!same) unschedule_patroni_follow("Patroni's failover key was replaced");
  const std::string when = escape_for_log(key.scheduled_text, 64);
  if (!key.scheduled_at) {
    LOG_WARN("Patroni has a switchover scheduled at '%s', a time pgmux cannot read: not drained for (its running "
             "transactions end at the old primary's shutdown); SWITCHOVER through pgmux at that time drains them",
             when.c_str());
    return;
  }
  const double now = wall_clock_seconds();
  if (*key.scheduled_at < now - kStaleAfter) {
    LOG_WARN("Patroni has a switchover scheduled at %s, %.0f s ago: not drained for (Patroni drops one that late)",
             when.c_str(), now - *key.scheduled_at);
    return;
  }
  scheduled_key_ = key;
  scheduled_start_ = *key.scheduled_at - kScheduledLead;
  arm_scheduled_timer();
  if (same) return;  // read again (a new watch): already said
  // Whether it is about the current primary is decided at that time (begin_patroni_follow): the primary may change.
  LOG_INFO("Patroni has a switchover from %s to %s scheduled at %s (in %.1f s): pgmux holds writes from %.0f s "
           "before it",
           key.leader.empty() ? "its leader" : escape_for_log(key.leader, 64).c_str(),
           key.candidate.empty() ? "the member it chooses" : escape_for_log(key.candidate, 64).c_str(), when.c_str(),
           std::max(0.0, *key.scheduled_at - now), kScheduledLead);
}

void Switchover::arm_scheduled_timer() {
  const double start_in = std::max(0.0, scheduled_start_ - wall_clock_seconds());
  uv_timer_start(scheduled_timer_->get(), on_scheduled_time, static_cast<uint64_t>(std::llround(start_in * 1000)),
                 0);
}

void Switchover::unschedule_patroni_follow(const char* why) {
  if (!scheduled_key_) return;
  LOG_INFO("Patroni's switchover scheduled at %s is not drained for: %s",
           escape_for_log(scheduled_key_->scheduled_text, 64).c_str(), why);
  scheduled_key_.reset();
  uv_timer_stop(scheduled_timer_->get());
}

void Switchover::on_scheduled_time(uv_timer_t* timer) {
  Switchover* self = UvTimer<Switchover>::owner_of(timer);
  if (self == nullptr || !self->scheduled_key_) return;
  // libuv's timers run on the monotonic clock: a wall clock stepped meanwhile (NTP) moves the time to start at.
  if (self->scheduled_start_ - wall_clock_seconds() > 0.05) {
    self->arm_scheduled_timer();
    return;
  }
  const PatroniFailoverKey key = std::move(*self->scheduled_key_);
  self->scheduled_key_.reset();
  self->begin_patroni_follow(key);
}

// Drained, or still running at drain_timeout: Patroni stops the old primary either way. Its idle server
// connections close now, so none is handed a transaction that the shutdown would end.
void Switchover::on_patroni_drained(size_t still_running) {
  if (still_running > 0) {
    LOG_WARN("Patroni switchover: %zu transaction(s) on %s still running after switchover.drain_timeout; Patroni's "
             "shutdown will end them",
             still_running, name_of(old_primary_).c_str());
  } else {
    LOG_INFO("Patroni switchover: the transactions on %s finished in %.3f s; waiting for Patroni's new leader",
             name_of(old_primary_).c_str(), since_hold());
  }
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "Patroni is switching over to " + name_of(target_) + ": writes held",
                          routing::BackendStatus::FenceStage::Closed);
  await_primary();
}

bool Switchover::patroni_withdrew(const routing::BackendsView& view) const {
  // Two answers later: the first may have been asked before the key was cleared.
  return kind_ == Kind::PatroniFollow && withdrawn_at_answer_ && view.dcs.answers >= *withdrawn_at_answer_ + 2 &&
         view.dcs.leader_index == old_primary_;
}

bool Switchover::awaited_primary(const routing::BackendsView& view) const {
  if (target_ >= 0) return view.primary == target_;
  return view.primary >= 0 && view.primary != old_primary_;
}

}  // namespace pgmux::proxy
