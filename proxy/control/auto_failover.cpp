// failover.mode pgmux: the Switchover machine's unplanned entry (see switchover.hpp). The prober has found the
// primary down (health_check.max_retries failed probes); before promoting anything, every reachable standby is
// asked whether it still receives WAL, because a primary that only pgmux cannot reach is still taking writes from
// others, and promoting a standby then makes two primaries.
#include <algorithm>

#include "proxy/control/control.hpp"
#include "proxy/net/log.hpp"
#include "proxy/control/switchover.hpp"

namespace pgmux::proxy {

namespace {
constexpr double kConfirmInterval = 0.25;  // seconds between rounds of questions while a standby still streams
constexpr double kConfirmTimeout = 2;      // seconds for one standby's answer (connect included)

// One text: the WAL receiver's status ("none" without one, "hidden" when the role may not see it) and the most
// WAL the standby has, received or replayed (restored from an archive, replay can pass receive).
const char* const kReceiverQuery =
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'not in recovery'"
    " ELSE coalesce((SELECT coalesce(status, 'hidden') FROM pg_stat_wal_receiver), 'none') END"
    " || '|' || greatest(coalesce(pg_last_wal_receive_lsn(), '0/0'), coalesce(pg_last_wal_replay_lsn(), '0/0'))";

void read_report(const std::string& value, routing::ReceiverReport& report) {
  const size_t bar = value.rfind('|');
  report.answered = bar != std::string::npos;
  if (!report.answered) {
    report.error = "unexpected answer \"" + value + "\"";
    return;
  }
  report.status = value.substr(0, bar);
  report.received_lsn = routing::parse_lsn(value.substr(bar + 1)).value_or(0);
}
}  // namespace

void Switchover::consider_failover(const routing::BackendsView& view, const std::string& last_primary) {
  if (control_.config()->failover.mode != conf::FailoverMode::Pgmux || view.primary >= 0 || view.split_brain) return;
  if (monotonic_seconds() < retry_after_) return;
  const auto old = std::find_if(view.backends.begin(), view.backends.end(),
                                [&](const routing::BackendStatus& b) { return b.spec.name == last_primary; });
  if (old == view.backends.end() || old->role != routing::Role::Down || old->fence) return;
  start_failover(static_cast<int>(old - view.backends.begin()));
}

void Switchover::abandon_confirming() {
  if (kind_ == Kind::Failover && step_ == Step::Confirming) cancel("the config was reloaded", "");
}

void Switchover::start_failover(int old_primary) {
  ++run_;
  kind_ = Kind::Failover;
  reply_ = nullptr;
  notices_.clear();
  not_promoting_.clear();
  old_primary_ = old_primary;
  target_ = -1;
  const auto view = control_.shared().view.load();
  const routing::BackendStatus& old = view->backends[static_cast<size_t>(old_primary_)];
  old_timeline_ = old.last.timeline;
  hold_started_ = monotonic_seconds();
  final_lsn_ = 0;
  command_ = std::make_unique<ShellCommand>(control_.loop());
  LOG_WARN("failover: primary %s is down (%s); asking the standbys whether they lost it too", old.spec.name.c_str(),
           escape_for_log(old.last_error, 300).c_str());
  confirm_lost();
}

// One round: every reachable standby is asked at once; on_receivers_reported decides when all have answered.
void Switchover::confirm_lost() {
  set_step(Step::Confirming);
  const auto view = control_.shared().view.load();
  const auto config = control_.config();
  reports_.clear();
  report_conns_.clear();
  for (size_t i = 0; i < view->backends.size(); ++i) {
    const routing::BackendStatus& b = view->backends[i];
    if (static_cast<int>(i) == old_primary_ || !b.reachable) continue;
    routing::ReceiverReport report;
    report.backend = i;
    reports_.push_back(report);
    report_conns_.push_back(std::make_unique<PgQueryConnection>(
        control_.loop(), probe_target(*config, b.spec.host, b.spec.port, config->health_check.database),
        "pgmux failover"));
  }
  reports_pending_ = reports_.size();
  if (reports_.empty()) {
    on_receivers_reported();
    return;
  }
  for (size_t k = 0; k < reports_.size(); ++k) {
    const auto answered = [this, k](bool ok, const std::string& text) {
      if (ok) {
        read_report(text, reports_[k]);
      } else {
        reports_[k].error = text;
      }
      if (--reports_pending_ == 0) on_receivers_reported();
    };
    run_sql(*report_conns_[k], kReceiverQuery, kConfirmTimeout,
            [answered](const std::string& value) { answered(true, value); },
            [answered](const std::string& error) { answered(false, error); });
  }
}

void Switchover::on_receivers_reported() {
  if (step_ != Step::Confirming) return;
  const auto view = control_.shared().view.load();
  const routing::FailoverPlan plan = routing::plan_failover(*view, old_primary_, reports_);
  if (!plan.ok()) {
    const std::string why = reports_.empty() ? "no standby is reachable" : plan.waiting;
    if (why != not_promoting_) LOG_WARN("failover: not promoting: %s", escape_for_log(why, 1000).c_str());
    not_promoting_ = why;
    after(kConfirmInterval, &Switchover::confirm_lost);
    return;
  }
  target_ = plan.target;
  const routing::BackendStatus& target = view->backends[static_cast<size_t>(target_)];
  // Fenced before the promotion: should the old primary come back meanwhile, it gets no write.
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "failing over to " + target.spec.name + ": fenced until it reports as a standby on a "
                          "timeline after " + std::to_string(old_timeline_),
                          routing::BackendStatus::FenceStage::Closed);
  const auto config = control_.config();
  target_conn_ = std::make_unique<PgQueryConnection>(
      control_.loop(), probe_target(*config, target.spec.host, target.spec.port, config->health_check.database),
      "pgmux failover");
  LOG_WARN("failover: no standby receives WAL from %s any more; promoting %s", name_of(old_primary_).c_str(),
           target.spec.name.c_str());
  promote();
}

}  // namespace pgmux::proxy
