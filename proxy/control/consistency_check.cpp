#include "proxy/control/consistency_check.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>

#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/net/log.hpp"
#include "proxy/net/wall_clock.hpp"
#include "proxy/ops/snapshot.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {
namespace {

using FenceStage = routing::BackendStatus::FenceStage;
constexpr double kDrainCheckInterval = 0.05;  // seconds between looks at the primary's running transactions
constexpr double kCatchUpPoll = 0.005;        // seconds between a standby's replay positions while writes wait

// Permanent user tables (unlogged and temporary ones are not replicated), with their size.
constexpr const char* kAllTablesSql =
    "SELECT c.oid::pg_catalog.regclass::text, pg_catalog.pg_relation_size(c.oid) FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND c.relpersistence = 'p' "
    "AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' ORDER BY 1";
// One name as the user wrote it: its regclass text and persistence, no row when it does not exist.
constexpr const char* kNamedTableSql =
    "SELECT c.oid::pg_catalog.regclass::text || ' ' || c.relpersistence::text || c.relkind::text "
    "FROM pg_catalog.pg_class c "
    "WHERE c.oid = pg_catalog.to_regclass($1)";

// row::text must read the same on every server whatever its own settings.
constexpr const char* kSessionSettings =
    "SET TimeZone TO 'UTC'; SET DateStyle TO ISO; SET IntervalStyle TO postgres; SET extra_float_digits TO 3; "
    "SET bytea_output TO hex";

std::string ms_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f ms", seconds * 1000);
  return text;
}

}  // namespace

std::optional<TableSum> parse_table_sum(const std::string& text) {
  char* end = nullptr;
  TableSum sum;
  sum.rows = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != ' ') return std::nullopt;
  const char* checksum = end + 1;
  sum.checksum = std::strtoll(checksum, &end, 10);
  if (end == checksum || *end != '\0') return std::nullopt;
  return sum;
}

size_t compare_table_sums(std::vector<ConsistencyRow>& rows) {
  size_t differences = 0;
  for (ConsistencyRow& row : rows) {
    if (row.role == "primary") {
      row.matches = row.sum.has_value();
      continue;
    }
    const ConsistencyRow* primary = nullptr;
    for (const ConsistencyRow& p : rows) {
      if (p.role == "primary" && p.table == row.table) primary = &p;
    }
    row.matches = primary != nullptr && primary->sum && row.sum && *primary->sum == *row.sum;
    differences += !row.matches;
  }
  return differences;
}

namespace {
// The database when none is named: the first configured database's server-side name.
std::string default_database(const conf::Config& config) {
  for (const conf::Database& d : config.databases) {
    if (d.name != "*") return d.server_database_for(d.name);
  }
  return config.health_check.database;
}
}  // namespace

ConsistencyCheck::ConsistencyCheck(Control& control)
    : control_(control),
      timer_(make_uv_handle<uv_timer_t>(this)),
      schedule_timer_(make_uv_handle<uv_timer_t>(this)) {
  timer_->init(control_.loop());
  schedule_timer_->init(control_.loop());
}

void ConsistencyCheck::schedule(const conf::ConsistencyCheckSchedule& schedule) {
  if (schedule == schedule_) return;
  schedule_ = schedule;
  uv_timer_stop(schedule_timer_->get());
  if (schedule_.interval <= 0) return;
  const auto ms = static_cast<uint64_t>(std::llround(schedule_.interval * 1000));
  uv_timer_start(schedule_timer_->get(), on_schedule, ms, ms);
}

void ConsistencyCheck::on_schedule(uv_timer_t* timer) {
  ConsistencyCheck* self = UvTimer<ConsistencyCheck>::owner_of(timer);
  // start() refuses what it cannot do now (one running, a switchover, no primary): the next tick tries again.
  if (self != nullptr && !self->running()) self->start(self->schedule_.database, self->schedule_.tables, nullptr);
}

ConsistencyCheck::~ConsistencyCheck() {
  if (holding_) control_.prober().unfence(static_cast<size_t>(members_[0].index));
}

void ConsistencyCheck::start(std::string database, std::vector<std::string> tables, Reply reply) {
  if (!reply) reply = [](const ConsistencyReport&) {};
  if (running() || control_.switchover().running()) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState,
           running() ? "a consistency check is already running" : "a switchover or failover is running",
           "", {}, {}, 0});
    return;
  }
  const auto view = control_.shared().view.load();
  if (view->primary < 0) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState, "there is no primary to compare with",
           "SHOW BACKENDS shows why", {}, {}, 0});
    return;
  }
  const auto config = control_.config();
  if (config->routing.failover_timeout <= kHoldCatchUpLimit) {
    reply({protocol::sqlstate::kObjectNotInPrerequisiteState,
           "routing.failover_timeout is " + std::to_string(config->routing.failover_timeout) +
               " s: writes held while the snapshots are taken would fail",
           "set routing.failover_timeout above " + std::to_string(kHoldCatchUpLimit) + " s", {}, {}, 0});
    return;
  }
  if (database.empty()) database = default_database(*config);
  ++run_;
  reply_ = std::move(reply);
  database_ = database;
  requested_ = std::move(tables);
  tables_.clear();
  notices_.clear();
  rows_.clear();
  members_.clear();
  sql_.clear();
  lsn_ = 0;
  add_members(*view, *config);
  sql_.resize(members_.size());
  if (members_.size() < 2) {
    fail(protocol::sqlstate::kObjectNotInPrerequisiteState, "no reachable standby to compare with the primary",
         "SHOW BACKENDS shows the standbys' state");
    return;
  }
  step_ = Step::Listing;
  open_standby_sessions();
  LOG_INFO("consistency check of database %s started (%zu standbys)", escape_for_log(database_).c_str(),
           members_.size() - 1);
  if (requested_.empty()) {
    list_all();
  } else {
    list_next_named(0);
  }
}

// The primary first, then every reachable standby in the read set (or disabled by the operator).
void ConsistencyCheck::add_members(const routing::BackendsView& view, const conf::Config& config) {
  for (size_t i = 0; i < view.backends.size(); ++i) {
    const routing::BackendStatus& b = view.backends[i];
    const bool primary = static_cast<int>(i) == view.primary;
    if (!primary && !(b.role == routing::Role::Standby && b.reachable)) continue;
    // A standby out of the read set for lag or timeline would hold writes while it catches up: reported, not
    // compared. One the operator disabled is compared (it may be caught up).
    if (!primary && !b.readable && !b.spec.disabled) {
      notices_.push_back("not compared: " + b.spec.name + " (" + b.excluded_reason + ")");
      continue;
    }
    Member m;
    m.index = static_cast<int>(i);
    m.name = b.spec.name;
    m.primary = primary;
    m.conn = std::make_unique<PgQueryConnection>(
        control_.loop(), probe_target(config, b.spec.host, b.spec.port, database_), "pgmux consistency check");
    m.conn->stay_in_session();  // a query after BEGIN must not run again outside the snapshot
    if (primary) {
      primary_timeline_ = b.last.timeline;
      members_.insert(members_.begin(), std::move(m));
    } else {
      members_.push_back(std::move(m));
    }
  }
}

// The standbys' connections open while the tables are listed, so the hold does not wait for their logins.
void ConsistencyCheck::open_standby_sessions() {
  waiting_to_hold_ = members_.size();  // the listing, and each standby
  for (size_t m = 1; m < members_.size(); ++m) {
    query(m, kSessionSettings, [this](const std::string&) { ready_to_hold(); },
          [this, m](const std::string& error) {
            members_[m].error = "cannot connect: " + error;
            members_[m].excluded = true;
            ready_to_hold();
          });
  }
}

double ConsistencyCheck::hold_catch_up_limit() const {
  return std::min(kHoldCatchUpLimit, control_.config()->switchover.catchup_timeout);
}

void ConsistencyCheck::ready_to_hold() {
  if (--waiting_to_hold_ == 0) hold();
}

void ConsistencyCheck::list_next_named(size_t i) {
  if (i == requested_.size()) {
    ready_to_hold();
    return;
  }
  query(0, kNamedTableSql,
        [this, i](const std::string& value) {
          const size_t space = value.rfind(' ');
          if (value.empty() || space == std::string::npos || value.size() != space + 3) {
            fail(protocol::sqlstate::kUndefinedTable,
                 "relation \"" + requested_[i] + "\" does not exist in database \"" + database_ + "\"");
            return;
          }
          const char persistence = value[space + 1];
          const char kind = value[space + 2];
          if (persistence != 'p' || (kind != 'r' && kind != 'm')) {
            fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
                 "\"" + requested_[i] + "\" is not a permanent table (unlogged and temporary tables, views and "
                 "partitioned parents are not compared; name the partitions)");
            return;
          }
          tables_.push_back(value.substr(0, space));
          list_next_named(i + 1);
        },
        [this](const std::string& error) {
          fail(protocol::sqlstate::kObjectNotInPrerequisiteState, "listing the tables on " + members_[0].name +
                                                                      " failed: " + error);
        },
        requested_[i]);
}

void ConsistencyCheck::list_all() {
  auto skipped = std::make_shared<std::vector<std::string>>();
  const uint64_t run = run_;
  members_[0].conn->start(
      kAllTablesSql, control_.config()->switchover.command_timeout,
      [this, skipped](const PGresult* result) {
        if (PQresultStatus(result) != PGRES_TUPLES_OK) return std::string();
        for (int r = 0; r < PQntuples(result); ++r) {
          const int64_t bytes = std::strtoll(PQgetvalue(result, r, 1), nullptr, 10);
          (bytes <= kMaxTableBytes ? tables_ : *skipped).push_back(PQgetvalue(result, r, 0));
        }
        return std::string();
      },
      [this, run, skipped](bool ok, const std::string& error) {
        if (run != run_) return;
        if (!ok) {
          fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
               "listing the tables on " + members_[0].name + " failed: " + error);
          return;
        }
        if (!skipped->empty()) {
          std::string names;
          for (const std::string& t : *skipped) names += (names.empty() ? "" : ", ") + t;
          notices_.push_back("not compared, over " + std::to_string(kMaxTableBytes >> 20) +
                             " MiB (name them to compare them): " + names);
        }
        if (tables_.empty()) {
          fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
               "database \"" + database_ + "\" has no permanent table to compare");
          return;
        }
        ready_to_hold();
      });
}

// Writes wait as in a switchover's drain: the primary is fenced (Draining), so the view has no primary and new
// write transactions wait for one, while those already running there finish.
void ConsistencyCheck::hold() {
  step_ = Step::Draining;
  holding_ = true;
  hold_started_ = monotonic_seconds();
  deadline_ = hold_started_ + control_.config()->switchover.drain_timeout;
  control_.prober().fence(static_cast<size_t>(members_[0].index), primary_timeline_,
                          "CHECK CONSISTENCY: writes held while snapshots are taken", FenceStage::Draining);
  check_drained();
}

void ConsistencyCheck::check_drained() {
  const uint64_t run = run_;
  control_.gather_worker_snapshots([this, run](std::vector<WorkerSnapshot> snapshots) {
    if (run == run_ && step_ == Step::Draining) on_drain_check(snapshots);
  });
}

void ConsistencyCheck::on_drain_check(const std::vector<WorkerSnapshot>& snapshots) {
  const size_t busy = busy_servers_on(snapshots, members_[0].name);
  if (busy == 0) {
    snapshot_primary();
    return;
  }
  if (monotonic_seconds() >= deadline_) {
    fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
         std::to_string(busy) + " transaction(s) on " + members_[0].name +
             " were still running after switchover.drain_timeout: no snapshot was taken, writes resumed",
         "retry when they are done; SHOW SERVERS shows them");
    return;
  }
  after(kDrainCheckInterval, [this] { check_drained(); });
}

// Standbys only receive flushed WAL, and a commit made with synchronous_commit off (or anything else written after
// the last commit) may sit unflushed for a while: a transaction of our own that writes WAL (a temporary table made
// and dropped; one that only takes an xid commits asynchronously whatever the setting), committed with a local
// flush, pushes the flush position past all of it first. L is then the flush position, which every standby reaches.
void ConsistencyCheck::snapshot_primary() {
  step_ = Step::Snapshots;
  const auto failed = [this](const std::string& error) {
    fail(protocol::sqlstate::kObjectNotInPrerequisiteState,
         "the snapshot on " + members_[0].name + " failed: " + error);
  };
  sql_[0] = std::string(kSessionSettings) +
            "; SET synchronous_commit TO local; CREATE TEMPORARY TABLE pgmux_consistency_flush (); "
            "DROP TABLE pgmux_consistency_flush";
  query(0, sql_[0].c_str(),
        [this, failed](const std::string&) {
          query(0,
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                "SELECT pg_catalog.pg_current_wal_flush_lsn()::text",
                [this](const std::string& value) { on_primary_snapshot(value); }, failed);
        },
        failed);
}

void ConsistencyCheck::on_primary_snapshot(const std::string& value) {
  const auto lsn = routing::parse_lsn(value);
  if (!lsn) {
    fail(protocol::sqlstate::kObjectNotInPrerequisiteState, "unexpected WAL position \"" + value + "\"");
    return;
  }
  lsn_ = *lsn;
  members_[0].lsn = lsn_;
  members_[0].snapshotted = true;
  pending_ = 0;
  for (size_t m = 1; m < members_.size(); ++m) pending_ += !members_[m].excluded;
  if (pending_ == 0) {
    release_hold();
    return;
  }
  for (size_t m = 1; m < members_.size(); ++m) {
    if (!members_[m].excluded) snapshot_standby(m);
  }
}

// Asks each standby for its replay position every kCatchUpPoll until it has replayed L (or the hold's bound
// passes), then takes its snapshot in a transaction of its own (the first statement after BEGIN takes it). The
// wait is short statements from here, not a loop on the server: a statement running there holds a snapshot, and
// replaying a cleanup record that conflicts with it would wait for it (max_standby_streaming_delay).
void ConsistencyCheck::snapshot_standby(size_t m) {
  members_[m].deadline = monotonic_seconds() + hold_catch_up_limit();
  check_replayed(m);
}

void ConsistencyCheck::check_replayed(size_t m) {
  const std::string lsn = routing::format_lsn(lsn_);
  sql_[m] = "SELECT pg_catalog.pg_last_wal_replay_lsn()::text";
  query(m, sql_[m].c_str(),
        [this, m, lsn](const std::string& value) {
          const auto replayed = routing::parse_lsn(value);
          if (replayed && *replayed >= lsn_) {
            take_standby_snapshot(m);
          } else if (monotonic_seconds() >= members_[m].deadline) {
            standby_done(m, "no snapshot at " + lsn + ": replayed only up to " + value + " after " +
                                ms_text(hold_catch_up_limit()));
          } else {
            members_[m].catching_up = true;
            after(kCatchUpPoll, [this] { recheck_catching_up(); });
          }
        },
        [this, m, lsn](const std::string& error) { standby_done(m, "no snapshot at " + lsn + ": " + error); });
}

void ConsistencyCheck::recheck_catching_up() {
  for (size_t m = 1; m < members_.size(); ++m) {
    if (!members_[m].catching_up) continue;
    members_[m].catching_up = false;
    check_replayed(m);
  }
}

void ConsistencyCheck::take_standby_snapshot(size_t m) {
  query(m,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_catalog.pg_last_wal_replay_lsn()::text",
        [this, m](const std::string& value) {
          members_[m].lsn = routing::parse_lsn(value).value_or(0);
          members_[m].snapshotted = true;
          standby_done(m, "");
        },
        [this, m](const std::string& error) {
          standby_done(m, "no snapshot at " + routing::format_lsn(lsn_) + ": " + error);
        });
}

void ConsistencyCheck::standby_done(size_t m, std::string error) {
  members_[m].error = std::move(error);
  if (--pending_ == 0) release_hold();
}

void ConsistencyCheck::release_hold() {
  control_.prober().unfence(static_cast<size_t>(members_[0].index));
  holding_ = false;
  const double held = monotonic_seconds() - hold_started_;
  notices_.push_back("snapshots taken at " + routing::format_lsn(lsn_) + "; writes were held for " + ms_text(held));
  step_ = Step::Summing;
  pending_ = 0;
  for (size_t m = 0; m < members_.size(); ++m) {
    if (!members_[m].snapshotted) continue;
    ++pending_;
    sum_next(m);
  }
}

// One table after the other on each member's snapshot; the members run in parallel.
void ConsistencyCheck::sum_next(size_t m) {
  Member& member = members_[m];
  if (member.next_table == tables_.size()) {
    member_summed();
    return;
  }
  const std::string& table = tables_[member.next_table++];
  sql_[m] = "SELECT pg_catalog.count(*)::text || ' ' || "
            "coalesce(pg_catalog.sum(pg_catalog.hashtext(t::text)::int8), 0)::text FROM " + table + " AS t";
  const auto record = [this, m, table](std::optional<TableSum> sum, std::string error) {
    ConsistencyRow row;
    row.table = table;
    row.backend = members_[m].name;
    row.role = members_[m].primary ? "primary" : "standby";
    row.lsn = members_[m].lsn;
    row.sum = sum;
    row.error = std::move(error);
    rows_.push_back(std::move(row));
    sum_next(m);
  };
  query(m, sql_[m].c_str(),
        [record](const std::string& value) {
          const auto sum = parse_table_sum(value);
          record(sum, sum ? "" : "unexpected answer \"" + value + "\"");
        },
        [this, m, record](const std::string& error) {
          // The snapshot is gone with the transaction: the tables left cannot be read in it either.
          for (size_t t = members_[m].next_table; t < tables_.size(); ++t) {
            ConsistencyRow lost;
            lost.table = tables_[t];
            lost.backend = members_[m].name;
            lost.role = members_[m].primary ? "primary" : "standby";
            lost.error = "not read: the snapshot ended with an earlier table's error";
            rows_.push_back(std::move(lost));
          }
          members_[m].next_table = tables_.size();
          record(std::nullopt, error);
        });
}

void ConsistencyCheck::member_summed() {
  if (--pending_ == 0) succeed();
}

void ConsistencyCheck::succeed() {
  ConsistencyReport report;
  for (size_t m = 1; m < members_.size(); ++m) {
    if (members_[m].snapshotted) continue;
    for (const std::string& table : tables_) {
      ConsistencyRow row;
      row.table = table;
      row.backend = members_[m].name;
      row.role = "standby";
      row.error = members_[m].error;
      rows_.push_back(std::move(row));
    }
  }
  std::stable_sort(rows_.begin(), rows_.end(), [](const ConsistencyRow& a, const ConsistencyRow& b) {
    return a.table != b.table ? a.table < b.table : (a.role == "primary") > (b.role == "primary");
  });
  report.differences = compare_table_sums(rows_);
  report.rows = std::move(rows_);
  report.message = std::to_string(tables_.size()) + " table(s) on " + std::to_string(members_.size() - 1) +
                   " standby(s): " + std::to_string(report.differences) + " difference(s)";
  report.notices = std::move(notices_);
  const char* outcome = report.differences == 0 ? "consistent" : "differences";
  finish(std::move(report), outcome);
}

void ConsistencyCheck::fail(std::string sqlstate, std::string message, std::string hint) {
  finish({std::move(sqlstate), "consistency check failed: " + message, std::move(hint), {}, std::move(notices_), 0},
         "failed");
}

void ConsistencyCheck::finish(ConsistencyReport report, const char* outcome) {
  if (holding_) {
    control_.prober().unfence(static_cast<size_t>(members_[0].index));
    holding_ = false;
  }
  ++control_.metrics().consistency_checks[outcome];
  if (report.sqlstate.empty()) {
    control_.metrics().consistency_differences = static_cast<double>(report.differences);
    control_.metrics().last_consistency_check = wall_clock_seconds();
    if (report.differences == 0) {
      LOG_INFO("consistency check of %s: %s", escape_for_log(database_).c_str(), report.message.c_str());
    } else {
      LOG_WARN("consistency check of %s: %s", escape_for_log(database_).c_str(), report.message.c_str());
    }
  } else {
    LOG_ERROR("%s", report.message.c_str());
  }
  uv_timer_stop(timer_->get());
  ++run_;
  step_ = Step::Idle;
  members_.clear();  // closes the connections: the snapshots' transactions end with them
  Reply reply = std::move(reply_);
  reply_ = nullptr;
  if (reply) reply(report);
}

void ConsistencyCheck::query(size_t m, const char* sql, std::function<void(const std::string&)> on_ok,
                             std::function<void(const std::string&)> on_error, std::optional<std::string> param) {
  const uint64_t run = run_;
  const auto config = control_.config();
  const double timeout = step_ == Step::Snapshots && m > 0 ? hold_catch_up_limit() + 1
                                                            : config->switchover.command_timeout;
  start_for_value(
      *members_[m].conn, sql, timeout,
      [this, run, on_ok = std::move(on_ok), on_error = std::move(on_error)](bool ok, const std::string& value,
                                                                           const std::string& error) {
        if (run != run_) return;
        if (ok) {
          on_ok(value);
        } else {
          on_error(error);
        }
      },
      std::move(param));
}

void ConsistencyCheck::after(double seconds, std::function<void()> next) {
  timer_next_ = std::move(next);
  uv_timer_start(timer_->get(), on_timer, static_cast<uint64_t>(std::llround(seconds * 1000)), 0);
}

void ConsistencyCheck::on_timer(uv_timer_t* timer) {
  ConsistencyCheck* self = UvTimer<ConsistencyCheck>::owner_of(timer);
  if (self == nullptr || !self->running() || !self->timer_next_) return;
  self->timer_next_();
}

}  // namespace pgmux::proxy
