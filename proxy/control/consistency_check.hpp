// Admin CHECK CONSISTENCY [ON <database>] [table ...]: do the standbys hold the primary's data? Row counts and a
// cheap checksum (sum of hashtext(row::text)) of each table, on the primary and on every reachable standby, read
// in snapshots taken at one WAL position, run on the control loop as one state machine:
//
//   Listing    the tables on the primary: the named ones (regclass), or every permanent user table up to
//              kMaxTableBytes (the bigger ones are named in a notice)
//   Draining   writes held as in a switchover (the primary fenced, Draining): transactions running there finish
//   Snapshots  a REPEATABLE READ snapshot on the primary and its WAL flush position L; each standby, once it has
//              replayed L, a snapshot of its own. Then writes resume: the hold lasts milliseconds
//   Summing    every table in every snapshot, backends in parallel
//
// Standbys at a later position than L saw only WAL written outside pgmux meanwhile (autovacuum, direct clients):
// their position is reported with each row. Unlogged and temporary tables are not replicated and are skipped.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "proxy/control/pg_query_connection.hpp"
#include "proxy/net/uv_handle.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

class Control;
struct WorkerSnapshot;

struct TableSum {
  int64_t rows = 0;
  int64_t checksum = 0;
  bool operator==(const TableSum&) const = default;
};

struct ConsistencyRow {
  std::string table;
  std::string backend;
  std::string role;      // "primary" or "standby"
  uint64_t lsn = 0;      // where its snapshot was taken
  std::optional<TableSum> sum;
  std::string error;     // why there is no sum
  bool matches = false;  // standby: the same sum as the primary's; primary: true
};

struct ConsistencyReport {
  std::string sqlstate;  // empty: the check ran (rows may still differ)
  std::string message;
  std::string hint;
  std::vector<ConsistencyRow> rows;
  std::vector<std::string> notices;
  size_t differences = 0;  // standby rows that do not match (or could not be summed)
};

// "12 -34" (count, checksum as the summing query returns them) -> a sum.
std::optional<TableSum> parse_table_sum(const std::string& text);
// Fills `matches` and counts the differences: each standby's row against the primary's for the same table.
size_t compare_table_sums(std::vector<ConsistencyRow>& rows);

class ConsistencyCheck {
 public:
  using Reply = std::function<void(const ConsistencyReport&)>;
  static constexpr int64_t kMaxTableBytes = 64ll << 20;
  // While writes are held, a standby gets at most this long (or switchover.catchup_timeout, if shorter) to replay
  // the snapshot's position; then it is reported as not matching and writes resume.
  static constexpr double kHoldCatchUpLimit = 2;

  explicit ConsistencyCheck(Control& control);
  ~ConsistencyCheck();
  ConsistencyCheck(const ConsistencyCheck&) = delete;
  ConsistencyCheck& operator=(const ConsistencyCheck&) = delete;

  // `database` on the servers ("": the first configured database's); `tables` as the user wrote them (empty:
  // every table up to kMaxTableBytes). `reply` may be empty (a scheduled run: the log and metrics report it).
  void start(std::string database, std::vector<std::string> tables, Reply reply);
  bool running() const { return step_ != Step::Idle; }
  // A reload or a switchover must wait while it holds writes or is about to (backends named by position);
  // summing in the snapshots needs neither.
  bool blocks_changes() const { return step_ != Step::Idle && step_ < Step::Summing; }
  // consistency_check.interval: a run every interval, skipped while one or a switchover runs; 0 stops them.
  void schedule(const conf::ConsistencyCheckSchedule& schedule);

 private:
  enum class Step { Idle, Listing, Draining, Snapshots, Summing };
  struct Member {  // one backend's side of the check
    int index = -1;
    std::string name;
    bool primary = false;
    std::unique_ptr<PgQueryConnection> conn;
    uint64_t lsn = 0;
    bool snapshotted = false;
    bool excluded = false;     // could not connect: no snapshot will be taken there
    bool catching_up = false;  // behind L: asked again at the next catch-up poll
    std::string error;
    double deadline = 0;
    size_t next_table = 0;
  };

  void add_members(const routing::BackendsView& view, const conf::Config& config);
  void open_standby_sessions();
  double hold_catch_up_limit() const;
  void ready_to_hold();  // the listing or a standby's connection is done; the last one starts the hold
  void list_next_named(size_t i);
  void list_all();
  void hold();
  void check_drained();
  void on_drain_check(const std::vector<WorkerSnapshot>& snapshots);
  void snapshot_primary();
  void on_primary_snapshot(const std::string& value);
  void snapshot_standby(size_t m);
  void check_replayed(size_t m);
  void recheck_catching_up();
  void take_standby_snapshot(size_t m);
  void standby_done(size_t m, std::string error);
  void release_hold();
  void sum_next(size_t m);
  void member_summed();
  void succeed();
  void finish(ConsistencyReport report, const char* outcome);
  void fail(std::string sqlstate, std::string message, std::string hint = {});
  // One statement returning one row's first column (or nothing) on m's connection.
  void query(size_t m, const char* sql, std::function<void(const std::string&)> on_ok,
             std::function<void(const std::string&)> on_error, std::optional<std::string> param = std::nullopt);
  void after(double seconds, std::function<void()> next);
  static void on_timer(uv_timer_t* timer);
  static void on_schedule(uv_timer_t* timer);

  Control& control_;
  Step step_ = Step::Idle;
  Reply reply_;
  std::string database_;
  std::vector<std::string> requested_;
  std::vector<std::string> tables_;  // regclass text (quoted where needed), safe to put in SQL
  std::vector<Member> members_;      // [0] is the primary
  std::vector<std::string> notices_;
  std::vector<ConsistencyRow> rows_;
  uint32_t primary_timeline_ = 0;
  bool holding_ = false;
  double hold_started_ = 0;
  double deadline_ = 0;
  uint64_t lsn_ = 0;
  size_t pending_ = 0;
  size_t waiting_to_hold_ = 0;
  uint64_t run_ = 0;
  UvHandlePtr<uv_timer_t, ConsistencyCheck> timer_;
  std::function<void()> timer_next_;
  UvHandlePtr<uv_timer_t, ConsistencyCheck> schedule_timer_;
  conf::ConsistencyCheckSchedule schedule_;
  std::vector<std::string> sql_;     // statements in flight, per member (PgQueryConnection keeps a pointer)
};

}  // namespace pgmux::proxy
