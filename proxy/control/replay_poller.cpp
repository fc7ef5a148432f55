#include "proxy/control/replay_poller.hpp"

#include <cmath>
#include <string>

#include "proxy/control/probe_connection.hpp"
#include "proxy/control/prober.hpp"
#include "routing/read_your_writes.hpp"

namespace pgmux::proxy {
namespace {

// One query for either role: a standby's replay position, or the primary's insert position (past every commit
// that returned before the query was sent, even with synchronous_commit off).
const char* const kPositionQuery =
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END";

// A backend that failed to answer is left alone this long: the probe rounds judge its health, not the poller.
constexpr double kBackoffSeconds = 1;

uint64_t to_ms(double seconds) { return static_cast<uint64_t>(std::max<long long>(1, std::llround(seconds * 1000))); }

}  // namespace

bool parse_wal_position(const char* in_recovery, const char* lsn, WalPosition& out) {
  if (in_recovery == nullptr || lsn == nullptr) return false;
  const std::string recovery = in_recovery;
  if (recovery != "t" && recovery != "f") return false;
  const std::optional<uint64_t> position = routing::parse_lsn(lsn);
  if (!position) return false;
  out.in_recovery = recovery == "t";
  out.lsn = out.in_recovery ? *position : routing::insert_position_as_record_end(*position);
  return true;
}

ReplayPoller::ReplayPoller(uv_loop_t* loop, const routing::Topology& topology, OnPosition on_position)
    : loop_(loop), topology_(topology), on_position_(std::move(on_position)) {
  timer_ = make_uv_handle<uv_timer_t>(this);
  timer_->init(loop_);
}

ReplayPoller::~ReplayPoller() { stop(); }

void ReplayPoller::configure(const conf::Config& config) {
  const conf::Routing& routing = config.routing;
  // With one backend there is no standby whose replay a read could wait for: no timer, no wakeups.
  enabled_ = routing.read_write_split && routing.consistency != conf::Consistency::Eventual &&
             routing.causal_poll_interval > 0 && config.backends.size() > 1;
  interval_ = routing.causal_poll_interval;
  timeout_ = config.health_check.timeout;
  backends_.clear();  // in-flight queries are dropped with their connections
  backends_.resize(config.backends.size());
  for (size_t i = 0; i < config.backends.size(); ++i) {
    const conf::Backend& b = config.backends[i];
    backends_[i].connection = std::make_unique<PgQueryConnection>(
        loop_, probe_target(config, b.host, b.port, config.health_check.database), "pgmux-replay-poller");
  }
  if (running_) start();
}

void ReplayPoller::start() {
  running_ = true;
  uv_timer_stop(timer_->get());
  if (enabled_) uv_timer_start(timer_->get(), on_tick, to_ms(interval_), to_ms(interval_));
}

void ReplayPoller::stop() {
  running_ = false;
  uv_timer_stop(timer_->get());
}

void ReplayPoller::on_tick(uv_timer_t* timer) {
  if (auto* self = UvTimer<ReplayPoller>::owner_of(timer)) self->poll();
}

void ReplayPoller::poll() {
  if (!running_ || !enabled_ || commits_ == nullptr) return;
  const std::shared_ptr<const routing::BackendsView> view = topology_.view();
  if (view->backends.size() != backends_.size()) return;  // a reload in between: the next view matches
  const double now = monotonic_seconds();
  const std::optional<routing::LsnSample> newest = routing::latest_primary_sample(*view);
  if (view->primary >= 0) {
    // A sample sent at the commit instant may predate it (required_lsn wants one sent after).
    const std::optional<double> commit = commits_->latest();
    if (commit && (!newest || *commit >= newest->time)) ask(static_cast<size_t>(view->primary), now);
  }
  if (!newest) return;
  for (size_t i = 0; i < view->backends.size(); ++i) {
    const routing::BackendStatus& b = view->backends[i];
    const bool serves_reads = b.role == routing::Role::Standby && b.reachable && !b.spec.disabled;
    if (serves_reads && b.last.replay_lsn < newest->lsn) ask(i, now);
  }
}

void ReplayPoller::ask(size_t index, double now) {
  Backend& backend = backends_[index];
  if (backend.connection->busy() || now < backend.next_at) return;
  backend.next_at = now + interval_;
  backend.answer = WalPosition{index, false, 0, monotonic_seconds()};
  backend.have_row = false;
  backend.connection->start(
      kPositionQuery, timeout_,
      [&backend](const PGresult* result) -> std::string {
        if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) != 1 || PQnfields(result) != 2) {
          return "unexpected answer";
        }
        auto value = [&](int column) {
          return PQgetisnull(result, 0, column) ? nullptr : PQgetvalue(result, 0, column);
        };
        if (!parse_wal_position(value(0), value(1), backend.answer)) return "unexpected answer";
        backend.have_row = true;
        return "";
      },
      [this, index](bool ok, const std::string&) {
        if (!running_) return;  // stopped meanwhile: nobody wants the answer
        Backend& done = backends_[index];
        if (!ok || !done.have_row) {
          done.next_at = monotonic_seconds() + kBackoffSeconds;
          return;
        }
        const WalPosition position = done.answer;
        on_position_(position);  // last: it may reconfigure this poller
      });
}

}  // namespace pgmux::proxy
