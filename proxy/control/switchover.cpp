#include "proxy/control/switchover.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/net/log.hpp"
#include "proxy/ops/snapshot.hpp"
#include "routing/switchover_plan.hpp"

namespace pgmux::proxy {

namespace {
using FenceStage = routing::BackendStatus::FenceStage;
constexpr double kDrainCheckInterval = 0.05;  // seconds between looks at the old primary's running transactions
constexpr double kCatchUpInterval = 0.02;     // seconds between the target's replay positions
constexpr double kAwaitInterval = 0.1;        // seconds between forced probe rounds while awaiting the promotion
constexpr double kFailoverRetryDelay = 5;     // seconds after a failed failover before another starts
constexpr const char* kPrivilegeHint =
    "the health-check user runs CHECKPOINT and pg_promote(): it needs the pg_checkpoint role and EXECUTE on "
    "pg_promote (or superuser), or set switchover.promote_command";

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f s", seconds);
  return text;
}

std::string lsn_text(uint64_t lsn) { return routing::format_lsn(lsn); }
}  // namespace

const char* to_string(Switchover::Step step) {
  switch (step) {
    case Switchover::Step::Idle: return "idle";
    case Switchover::Step::Confirming: return "confirming";
    case Switchover::Step::Checkpoint: return "checkpoint";
    case Switchover::Step::Draining: return "draining";
    case Switchover::Step::FinalLsn: return "final_lsn";
    case Switchover::Step::Demoting: return "demoting";
    case Switchover::Step::CatchingUp: return "catching_up";
    case Switchover::Step::Promoting: return "promoting";
    case Switchover::Step::AwaitingPrimary: return "awaiting_primary";
    case Switchover::Step::Following: return "following";
  }
  return "?";
}

Switchover::Switchover(Control& control)
    : control_(control),
      scheduled_timer_(make_uv_handle<uv_timer_t>(this)),
      timer_(make_uv_handle<uv_timer_t>(this)) {
  scheduled_timer_->init(control_.loop());
  timer_->init(control_.loop());
}

Switchover::~Switchover() = default;

std::string Switchover::name_of(int index) const {
  const auto view = control_.shared().view.load();
  if (index < 0 && kind_ == Kind::PatroniFollow) return "the member Patroni chooses";
  return index >= 0 && static_cast<size_t>(index) < view->backends.size()
             ? view->backends[static_cast<size_t>(index)].spec.name
             : "?";
}

const char* Switchover::what() const {
  switch (kind_) {
    case Kind::Planned: return "switchover";
    case Kind::Failover: return "failover";
    case Kind::PatroniFollow: return "Patroni switchover";
  }
  return "?";
}

double Switchover::since_hold() const { return hold_started_ > 0 ? monotonic_seconds() - hold_started_ : 0; }

// The one place the step changes.
void Switchover::set_step(Step next) {
  LOG_DEBUG("%s %s -> %s: %s -> %s", what(), name_of(old_primary_).c_str(), name_of(target_).c_str(),
            to_string(step_), to_string(next));
  step_ = next;
}

void Switchover::start(const std::string& target_name, Reply reply) {
  if (running()) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState,
           "a switchover from " + name_of(old_primary_) + " to " + name_of(target_) + " is already running (step " +
               to_string(step_) + ")",
           "wait for its answer; SHOW BACKENDS shows the roles meanwhile",
           {}});
    return;
  }
  if (control_.consistency_check().blocks_changes()) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState, "a CHECK CONSISTENCY is running",
           "wait for its answer (writes are held only while it takes its snapshots)", {}});
    return;
  }
  const auto config = control_.config();
  const auto view = control_.shared().view.load();
  const routing::SwitchoverPlan plan = routing::plan_switchover(*view, target_name);
  if (!plan.ok()) {
    ++control_.metrics().switchovers["canceled"];
    reply({plan.sqlstate, "switchover refused: " + plan.error, plan.hint, {}});
    return;
  }
  if (config->routing.failover_timeout <= 0) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState,
           "switchover refused: routing.failover_timeout is 0, so writes held during it would fail at once",
           "set routing.failover_timeout above switchover.drain_timeout + catchup_timeout", {}});
    return;
  }
  ++run_;
  reply_ = std::move(reply);
  notices_.clear();
  old_primary_ = plan.old_primary;
  target_ = plan.target;
  const routing::BackendStatus& old = view->backends[static_cast<size_t>(old_primary_)];
  const routing::BackendStatus& target = view->backends[static_cast<size_t>(target_)];
  old_timeline_ = old.last.timeline;
  hold_started_ = 0;
  final_lsn_ = 0;
  const std::string& database = config->health_check.database;
  old_conn_ = std::make_unique<PgQueryConnection>(
      control_.loop(), probe_target(*config, old.spec.host, old.spec.port, database), "pgmux switchover");
  target_conn_ = std::make_unique<PgQueryConnection>(
      control_.loop(), probe_target(*config, target.spec.host, target.spec.port, database), "pgmux switchover");
  command_ = std::make_unique<ShellCommand>(control_.loop());
  LOG_INFO("switchover from %s to %s started (timeline %u)", old.spec.name.c_str(), target.spec.name.c_str(),
           old_timeline_);
  checkpoint();
}

void Switchover::checkpoint() {
  set_step(Step::Checkpoint);
  run_sql(*old_conn_, "CHECKPOINT", control_.config()->switchover.command_timeout,
          [this](const std::string&) { hold(); },
          [this](const std::string& error) {
            cancel("CHECKPOINT on " + name_of(old_primary_) + " failed: " + error, kPrivilegeHint);
          });
}

void Switchover::hold() {
  set_step(Step::Draining);
  hold_started_ = monotonic_seconds();
  step_deadline_ = hold_started_ + control_.config()->switchover.drain_timeout;
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "switchover to " + name_of(target_) + " in progress: writes held", FenceStage::Draining);
  LOG_INFO("%s: writes held; waiting for the transactions running on %s to finish (up to %g s)", what(),
           name_of(old_primary_).c_str(), control_.config()->switchover.drain_timeout);
  check_drained();
}

// Every worker's snapshot, taken after the fenced view reached it (posts run in order): a transaction that started
// before the fence shows there until it ends, and none starts after it.
void Switchover::check_drained() {
  if (drain_check_running_) return;
  drain_check_running_ = true;
  const uint64_t run = run_;
  control_.gather_worker_snapshots([this, run](std::vector<WorkerSnapshot> snapshots) {
    drain_check_running_ = false;
    if (run == run_ && step_ == Step::Draining) on_drain_check(snapshots);
  });
}

void Switchover::on_drain_check(const std::vector<WorkerSnapshot>& snapshots) {
  const std::string old_name = name_of(old_primary_);
  // What must finish is what runs on the old primary: its servers inside a transaction or owing replies. A client
  // that began a transaction and waits for a primary holds nothing there; it gets the new one.
  const size_t busy = busy_servers_on(snapshots, old_name);
  if (kind_ == Kind::PatroniFollow && (busy == 0 || monotonic_seconds() >= step_deadline_)) {
    on_patroni_drained(busy);
    return;
  }
  if (busy == 0) {
    notices_.push_back("running transactions on " + old_name + " finished in " + seconds_text(since_hold()));
    read_final_lsn();
    return;
  }
  if (monotonic_seconds() >= step_deadline_) {
    cancel(std::to_string(busy) + " transaction(s) on " + old_name +
               " were still running after switchover.drain_timeout (" +
               seconds_text(control_.config()->switchover.drain_timeout) + ")",
           "SHOW SERVERS shows them; retry when they are done, or raise switchover.drain_timeout");
    return;
  }
  after(kDrainCheckInterval, &Switchover::check_drained);
}

void Switchover::read_final_lsn() {
  set_step(Step::FinalLsn);
  // Drained: the idle server connections to the old primary go now, before it is demoted under them.
  control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                          "switchover to " + name_of(target_) + " in progress: writes held", FenceStage::Closed);
  run_sql(*old_conn_, "CHECKPOINT; SELECT pg_current_wal_flush_lsn()::text",
          control_.config()->switchover.command_timeout,
          [this](const std::string& value) {
            const auto lsn = routing::parse_lsn(value);
            if (!lsn) {
              cancel("could not read " + name_of(old_primary_) + "'s WAL position (got \"" + value + "\")", "");
              return;
            }
            final_lsn_ = *lsn;
            demote();
          },
          [this](const std::string& error) {
            cancel("reading the final WAL position of " + name_of(old_primary_) + " failed: " + error, kPrivilegeHint);
          });
}

void Switchover::demote() {
  if (control_.config()->topology.kind == conf::TopologySourceKind::Patroni) {
    patroni_switchover();
    return;
  }
  set_step(Step::Demoting);
  const std::string& command = control_.config()->switchover.demote_command;
  if (command.empty()) {
    notices_.push_back(name_of(old_primary_) +
                       " keeps running (no switchover.demote_command): pgmux fences it until it reports as a standby");
    poll_catch_up();
    return;
  }
  const auto view = control_.shared().view.load();
  run_command(command, view->backends[static_cast<size_t>(old_primary_)], [this](const CommandOutcome& outcome) {
    if (!outcome.ok) {
      fail("switchover.demote_command failed (" + outcome.failure + ")" +
               (outcome.output.empty() ? "" : ": " + outcome.output),
           "the old primary may be stopped: check it; SHOW BACKENDS shows what the prober sees");
      return;
    }
    poll_catch_up();
  });
}

void Switchover::poll_catch_up() {
  if (step_ != Step::CatchingUp) {
    set_step(Step::CatchingUp);
    step_deadline_ = monotonic_seconds() + control_.config()->switchover.catchup_timeout;
  }
  const auto lagging = [this](const std::string& why) {
    if (monotonic_seconds() < step_deadline_) {
      after(kCatchUpInterval, &Switchover::poll_catch_up);
      return;
    }
    fail(name_of(target_) + " did not replay " + name_of(old_primary_) + "'s last WAL (" + lsn_text(final_lsn_) +
             ") within switchover.catchup_timeout: " + why,
         "nothing was promoted; if the old primary was stopped, start it again (it is unfenced)");
  };
  run_sql(*target_conn_, "SELECT pg_last_wal_replay_lsn()::text", 2,
          [this, lagging](const std::string& value) {
            const auto lsn = routing::parse_lsn(value);
            if (lsn && *lsn >= final_lsn_) {
              promote();
              return;
            }
            lagging("it is at " + value);
          },
          lagging);
}

void Switchover::promote() {
  set_step(Step::Promoting);
  if (kind_ != Kind::Failover) {
    notices_.push_back(name_of(target_) + " replayed " + lsn_text(final_lsn_) + " " + seconds_text(since_hold()) +
                       " after the hold");
  }
  const auto config = control_.config();
  const auto promoted = [this] {
    control_.prober().fence(static_cast<size_t>(old_primary_), old_timeline_,
                            std::string(kind_ == Kind::Failover ? "failed" : "switched") + " over to " +
                                name_of(target_) + ": fenced until it reports as a standby on a timeline after " +
                                std::to_string(old_timeline_),
                            FenceStage::Closed);
    await_primary();
  };
  if (!config->switchover.promote_command.empty()) {
    const auto view = control_.shared().view.load();
    run_command(config->switchover.promote_command, view->backends[static_cast<size_t>(target_)],
                [this, promoted](const CommandOutcome& outcome) {
                  if (!outcome.ok) {
                    fail("switchover.promote_command failed (" + outcome.failure + ")" +
                             (outcome.output.empty() ? "" : ": " + outcome.output),
                         "check whether " + name_of(target_) + " was promoted; SHOW BACKENDS shows the roles");
                    return;
                  }
                  promoted();
                });
    return;
  }
  const int wait = std::max(1, static_cast<int>(std::lround(config->switchover.command_timeout)));
  sql_ = "SELECT pg_promote(true, " + std::to_string(wait) + ")::text";
  run_sql(*target_conn_, sql_.c_str(), wait + 5,
          [this, promoted](const std::string& value) {
            if (value != "true") {
              fail("pg_promote() on " + name_of(target_) + " did not finish in switchover.command_timeout",
                   "check whether it was promoted; SHOW BACKENDS shows the roles");
              return;
            }
            promoted();
          },
          [this](const std::string& error) {
            fail("pg_promote() on " + name_of(target_) + " failed: " + error, kPrivilegeHint);
          });
}

void Switchover::await_primary() {
  const auto config = control_.config();
  if (step_ != Step::AwaitingPrimary) {
    set_step(Step::AwaitingPrimary);
    // Patroni's own switchover takes a few of its loops; the writes it holds wait up to failover_timeout anyway.
    step_deadline_ = monotonic_seconds() + (kind_ == Kind::PatroniFollow ? config->routing.failover_timeout
                                                                         : config->switchover.command_timeout);
  }
  const auto view = control_.shared().view.load();
  if (awaited_primary(*view)) {
    on_primary_seen(*view);
    return;
  }
  if (monotonic_seconds() >= step_deadline_) {
    fail((kind_ == Kind::PatroniFollow ? "Patroni named no new primary within routing.failover_timeout"
                                       : name_of(target_) + " was promoted but the prober did not see it as the "
                                                            "primary in time") +
             (view->alarm.empty() ? "" : ": " + view->alarm),
         "SHOW BACKENDS shows what the prober sees");
    return;
  }
  control_.prober().probe_now();
  after(kAwaitInterval, &Switchover::await_primary);
}

void Switchover::on_view(const routing::BackendsView& view, const std::string& last_primary) {
  if (step_ == Step::Idle) {
    consider_failover(view, last_primary);
  } else if (step_ == Step::Confirming && view.primary >= 0) {
    cancel(name_of(view.primary) + " answers as the primary again", "");
  } else if (patroni_withdrew(view)) {
    cancel("Patroni cleared its failover key and still names " + name_of(old_primary_) + " its leader",
           "Patroni's log says why it did not switch over");
  } else {
    on_primary_seen(view);
  }
}

void Switchover::on_primary_seen(const routing::BackendsView& view) {
  if (step_ != Step::AwaitingPrimary || !awaited_primary(view)) return;
  target_ = view.primary;  // PatroniFollow without a candidate: the one Patroni chose
  uv_timer_stop(timer_->get());
  const double pause = since_hold();
  control_.metrics().last_switchover_write_pause = pause;
  notices_.push_back("writes were held for " + seconds_text(pause) + "; " + name_of(target_) +
                     " is the primary on timeline " +
                     std::to_string(view.backends[static_cast<size_t>(target_)].last.timeline));
  LOG_INFO("%s: %s is the primary; writes were held for %.3f s", what(), name_of(target_).c_str(), pause);
  set_step(Step::Following);
  next_follower_ = 0;
  follow_next();
}

// The other standbys, one at a time, when a follow_primary_command is set; a failure is reported, not fatal.
void Switchover::follow_next() {
  const auto config = control_.config();
  // Patroni repoints its members itself.
  const std::string command = config->topology.kind == conf::TopologySourceKind::Patroni
                                   ? std::string()
                                   : config->switchover.follow_primary_command;
  const auto view = control_.shared().view.load();
  while (!command.empty() && next_follower_ < view->backends.size()) {
    const size_t i = next_follower_++;
    const routing::BackendStatus& b = view->backends[i];
    if (static_cast<int>(i) == old_primary_ || static_cast<int>(i) == target_ || b.spec.standby_only) continue;
    const std::string name = b.spec.name;
    run_command(command, b, [this, name](const CommandOutcome& outcome) {
      if (!outcome.ok) {
        notices_.push_back("switchover.follow_primary_command for " + name + " failed (" + outcome.failure + ")" +
                           (outcome.output.empty() ? "" : ": " + outcome.output));
        LOG_WARN("%s: follow_primary_command for %s failed (%s): %s", what(), name.c_str(), outcome.failure.c_str(),
                 escape_for_log(outcome.output, 500).c_str());
      }
      follow_next();
    });
    return;
  }
  succeed();
}

void Switchover::succeed() {
  const auto view = control_.shared().view.load();
  const routing::BackendStatus& old = view->backends[static_cast<size_t>(old_primary_)];
  if (old.fence) notices_.push_back(name_of(old_primary_) + " is fenced: " + old.fence->reason);
  SwitchoverResult result;
  result.message = std::string(what()) + " from " + name_of(old_primary_) + " to " + name_of(target_) + " done";
  result.notices = std::move(notices_);
  finish(std::move(result), "done");
}

void Switchover::cancel(std::string message, std::string hint) {
  notices_.clear();
  finish({protocol::sqlstate::kObjectNotInPrerequisiteState,
          std::string(what()) + " canceled: " + message +
              (kind_ == Kind::Failover ? std::string() : "; writes resume on " + name_of(old_primary_)),
          std::move(hint), {}},
         "canceled", old_primary_);
}

void Switchover::fail(std::string message, std::string hint) {
  // Promoted (or maybe promoted): the old primary keeps its fence. Otherwise the prober decides from here.
  // Drained for Patroni: its leader key, not this run, decides from here.
  const bool unfence = step_ < Step::AwaitingPrimary || kind_ == Kind::PatroniFollow;
  finish({protocol::sqlstate::kObjectNotInPrerequisiteState,
          std::string(what()) + " failed at step " + to_string(step_) + ": " + message,
          std::move(hint), std::move(notices_)},
         "failed", unfence ? old_primary_ : -1);
}

void Switchover::finish(SwitchoverResult result, const char* outcome, int unfence) {
  ControlMetrics& metrics = control_.metrics();
  ++(kind_ == Kind::Failover        ? metrics.auto_failovers
     : kind_ == Kind::PatroniFollow ? metrics.patroni_switchovers
                                    : metrics.switchovers)[outcome];
  // A failed promotion is not retried at once (every view would start another); a cancel means the primary
  // answered again, and losing it later is a new event.
  if (kind_ == Kind::Failover && std::string_view(outcome) == "failed") {
    retry_after_ = monotonic_seconds() + kFailoverRetryDelay;
  }
  if (result.sqlstate.empty()) {
    LOG_INFO("%s", result.message.c_str());
  } else {
    LOG_ERROR("%s", result.message.c_str());
  }
  // A failover has no console to answer: what it would have said goes to the log.
  if (!reply_) {
    for (const std::string& notice : result.notices) LOG_INFO("%s: %s", what(), notice.c_str());
  }
  kind_ = Kind::Planned;
  withdrawn_at_answer_.reset();
  uv_timer_stop(timer_->get());
  ++run_;
  set_step(Step::Idle);
  old_conn_.reset();
  target_conn_.reset();
  report_conns_.clear();
  command_.reset();
  patroni_call_.reset();
  // Taken first: the unfence below may start a failover run (failover.mode pgmux), which sets reply_ anew.
  Reply reply = std::move(reply_);
  reply_ = nullptr;
  // Once idle: the new view this publishes reaches on_view, which must not find the run still going.
  if (unfence >= 0) control_.prober().unfence(static_cast<size_t>(unfence));
  if (reply) reply(result);
}

void Switchover::run_sql(PgQueryConnection& connection, const char* sql, double timeout,
                         std::function<void(const std::string&)> on_ok,
                         std::function<void(const std::string&)> on_error) {
  const uint64_t run = run_;
  start_for_value(connection, sql, timeout,
                  [this, run, on_ok = std::move(on_ok), on_error = std::move(on_error)](
                      bool ok, const std::string& value, const std::string& error) {
                    if (run != run_) return;
                    if (ok) {
                      on_ok(value);
                    } else {
                      on_error(error);
                    }
                  });
}

void Switchover::run_command(const std::string& command_template, const routing::BackendStatus& on,
                             std::function<void(const CommandOutcome&)> done) {
  const auto view = control_.shared().view.load();
  const routing::BackendSpec& target = view->backends[static_cast<size_t>(target_)].spec;
  const std::string command = expand_placeholders(
      command_template, {{'n', on.spec.name}, {'h', on.spec.host}, {'p', std::to_string(on.spec.port)},
                         {'N', target.name}, {'H', target.host}, {'P', std::to_string(target.port)},
                         {'o', name_of(old_primary_)}});
  LOG_INFO("%s: running for %s: %s", what(), on.spec.name.c_str(), escape_for_log(command, 500).c_str());
  const uint64_t run = run_;
  command_->start(command, control_.config()->switchover.command_timeout,
                  [this, run, done = std::move(done)](const CommandOutcome& outcome) {
                    if (run != run_) return;
                    if (!outcome.output.empty()) {
                      LOG_INFO("%s: command output: %s", what(), escape_for_log(outcome.output, 2000).c_str());
                    }
                    done(outcome);
                  });
}

void Switchover::after(double seconds, void (Switchover::*next)()) {
  timer_next_ = next;
  uv_timer_start(timer_->get(), on_timer, static_cast<uint64_t>(std::llround(seconds * 1000)), 0);
}

void Switchover::on_timer(uv_timer_t* timer) {
  Switchover* self = UvTimer<Switchover>::owner_of(timer);
  if (self == nullptr || !self->running() || self->timer_next_ == nullptr) return;
  (self->*self->timer_next_)();
}

}  // namespace pgmux::proxy
