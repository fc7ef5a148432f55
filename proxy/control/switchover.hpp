// A planned change of primary (admin SWITCHOVER [TO backend]), run on the control loop as one state machine:
//
//   Checkpoint   CHECKPOINT on the old primary while writes still flow (the final one is then short)
//   Draining     the old primary is fenced: new write transactions wait (the failover hold), reads go on; the
//                transactions already running there finish, up to switchover.drain_timeout (else: canceled)
//   FinalLsn     CHECKPOINT again and read the old primary's WAL flush position: every commit pgmux relayed
//   Demoting     switchover.demote_command, when set (stop the old primary, restart it as a standby)
//   CatchingUp   until the target has replayed that position, up to switchover.catchup_timeout
//   Promoting    switchover.promote_command, or SELECT pg_promote() on the target
//   AwaitingPrimary  until the prober sees the target as the primary: held writes go there by themselves
//   Following    switchover.follow_primary_command for each other standby
//
// With topology.source patroni, Demoting asks Patroni to switch over (POST /switchover, leader and candidate) once
// the old primary is drained, and the run goes on at AwaitingPrimary: Patroni stops the old primary (its shutdown
// checkpoint reaches the target first), promotes the target and repoints the others.
//
// The old primary stays fenced (no reads, never the primary) until it reports as a standby on the new timeline.
// Anything that fails before Demoting cancels: the fence goes and writes resume on the old primary. Later, the
// switchover has failed part way; the answer and the log say what state the cluster was left in.
//
// The same machine runs a failover when failover.mode is pgmux (proxy/control/auto_failover.cpp): the primary is
// down, so it starts at
//   Confirming   every reachable standby is asked whether its WAL receiver still streams; promote only when none
//                does (routing::plan_failover), then fence the old primary and go on at Promoting
// with nobody to answer but the log and pgmux_auto_failovers_total.
//
// And it drains for a switchover asked of Patroni behind pgmux's back (topology.etcd_urls: proxy/control/
// etcd_watch.hpp), from the moment Patroni's failover key names the current primary: Draining as above (not
// canceled by drain_timeout: Patroni goes on regardless), then AwaitingPrimary for the member Patroni was asked to
// promote (any other primary when it chooses). Patroni clearing its key while it still names the old leader, two
// /cluster answers later, cancels: writes resume there. Nobody to answer but the log and
// pgmux_patroni_switchovers_total.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include "proxy/control/etcd_watch.hpp"
#include "proxy/control/http_client.hpp"
#include "proxy/control/pg_query_connection.hpp"
#include "proxy/control/shell_command.hpp"
#include "proxy/net/uv_handle.hpp"
#include "routing/switchover_plan.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

class Control;
struct WorkerSnapshot;

// What the console answers: success with notices, or an error (SQLSTATE, message, hint).
struct SwitchoverResult {
  std::string sqlstate;  // empty: done
  std::string message;
  std::string hint;
  std::vector<std::string> notices;
};

class Switchover {
 public:
  // Planned: an admin SWITCHOVER. Failover: failover.mode pgmux. PatroniFollow: drained for a switchover Patroni
  // was asked for directly.
  enum class Kind { Planned, Failover, PatroniFollow };
  enum class Step {
    Idle,
    Confirming,
    Checkpoint,
    Draining,
    FinalLsn,
    Demoting,
    CatchingUp,
    Promoting,
    AwaitingPrimary,
    Following
  };
  using Reply = std::function<void(const SwitchoverResult&)>;

  explicit Switchover(Control& control);
  ~Switchover();
  Switchover(const Switchover&) = delete;
  Switchover& operator=(const Switchover&) = delete;

  // Starts a switchover to `target_name` ("" = the best standby). `reply` runs once, on the control loop, when it
  // is done, canceled or failed (at once when it cannot start).
  void start(const std::string& target_name, Reply reply);
  // Patroni's failover key changed (EtcdWatch): a switchover away from the current primary asked of Patroni starts
  // a PatroniFollow run (a scheduled one kScheduledLead seconds before its time); the key cleared while one awaits
  // Patroni may cancel it (on_view decides), and drops a scheduled one not started yet.
  void follow_patroni(const PatroniFailoverKey& key);
  // How long before a scheduled Patroni switchover the run starts: running transactions get that long, plus
  // Patroni's checkpoint, to finish; it also covers clocks a little apart.
  static constexpr double kScheduledLead = 1;
  // A scheduled Patroni switchover is no longer watched for (the etcd watch stopped): not drained for.
  void unschedule_patroni_follow(const char* why);
  // Every new view (Control::on_view): AwaitingPrimary ends when the target is the primary; Confirming ends when a
  // primary answers again. With failover.mode pgmux, a view in which `last_primary` (the primary pgmux last knew)
  // is down and no other backend is the primary starts a failover.
  void on_view(const routing::BackendsView& view, const std::string& last_primary);
  bool running() const { return step_ != Step::Idle; }
  // A switchover (admin SWITCHOVER or drained for Patroni's), not a failover.
  bool planned() const { return running() && kind_ != Kind::Failover; }
  // A reload must wait: the run names backends by their position. A failover still confirming is abandoned
  // instead (abandon_confirming): it may wait for as long as a standby streams, and the next view starts it again.
  bool holds_reload() const { return running() && !(kind_ == Kind::Failover && step_ == Step::Confirming); }
  void abandon_confirming();
  // The primary moving now is a planned switchover's doing (not a failover to count).
  // Patroni may move it as soon as it is asked to, while pgmux still drains.
  bool moving_primary() const {
    return kind_ != Kind::Failover && step_ >= (kind_ == Kind::PatroniFollow ? Step::Draining : Step::Demoting);
  }

 private:
  void set_step(Step next);
  // auto_failover.cpp
  void consider_failover(const routing::BackendsView& view, const std::string& last_primary);
  void start_failover(int old_primary);
  void confirm_lost();
  void on_receivers_reported();
  const char* what() const;
  // switchover.cpp
  void checkpoint();
  void hold();
  void check_drained();
  void on_drain_check(const std::vector<WorkerSnapshot>& snapshots);
  void read_final_lsn();
  void demote();
  // switchover_patroni.cpp: topology.source patroni demotes and promotes through Patroni's REST API.
  void patroni_switchover();
  void on_patroni_reply(const std::string& url, const HttpResult& result);
  void on_patroni_drained(size_t still_running);
  // The current primary's index when Patroni would act on `key` now (it leads, and the key moves away from it).
  int patroni_key_primary(const PatroniFailoverKey& key, const routing::BackendsView& view) const;
  void begin_patroni_follow(const PatroniFailoverKey& key);
  void schedule_patroni_follow(const PatroniFailoverKey& key);
  void arm_scheduled_timer();
  static void on_scheduled_time(uv_timer_t* timer);
  bool patroni_withdrew(const routing::BackendsView& view) const;
  // The primary this run waits for: the target, or with none named (Patroni chooses) any other than the old one.
  bool awaited_primary(const routing::BackendsView& view) const;
  void poll_catch_up();
  void promote();
  void await_primary();
  void on_primary_seen(const routing::BackendsView& view);
  void follow_next();
  void succeed();
  // Before the old primary was touched: unfence it, writes resume there.
  void cancel(std::string message, std::string hint);
  // Part way: what was done stays done; the fence goes so the prober's view decides.
  void fail(std::string message, std::string hint);
  // Ends the run; `unfence` (a backend index, -1 = none) loses its fence once the run is idle.
  void finish(SwitchoverResult result, const char* outcome, int unfence = -1);
  // One SQL statement on `connection`; `on_row` gets the first row's first column (when there is one).
  void run_sql(PgQueryConnection& connection, const char* sql, double timeout,
               std::function<void(const std::string& value)> on_ok,
               std::function<void(const std::string& error)> on_error);
  void run_command(const std::string& command_template, const routing::BackendStatus& on,
                   std::function<void(const CommandOutcome&)> done);
  void after(double seconds, void (Switchover::*next)());
  static void on_timer(uv_timer_t* timer);
  std::string name_of(int index) const;
  double since_hold() const;

  Control& control_;
  Step step_ = Step::Idle;
  Reply reply_;
  int old_primary_ = -1;
  int target_ = -1;
  uint32_t old_timeline_ = 0;
  double hold_started_ = 0;
  double step_deadline_ = 0;
  uint64_t final_lsn_ = 0;
  size_t next_follower_ = 0;
  std::string sql_;  // the statement in flight (PgQueryConnection keeps a pointer to it)
  std::vector<std::string> notices_;
  std::unique_ptr<PgQueryConnection> old_conn_;
  std::unique_ptr<PgQueryConnection> target_conn_;
  std::unique_ptr<ShellCommand> command_;
  std::shared_ptr<HttpCall> patroni_call_;
  Kind kind_ = Kind::Planned;
  // PatroniFollow: the dcs.answers count when Patroni cleared its key (none: it has not); a later answer that still
  // names the old leader means Patroni dropped the switchover.
  std::optional<uint64_t> withdrawn_at_answer_;
  // A scheduled Patroni switchover: its key, until scheduled_timer_ starts the PatroniFollow run.
  std::optional<PatroniFailoverKey> scheduled_key_;
  double scheduled_start_ = 0;  // when the run starts: its scheduled_at less kScheduledLead (wall clock)
  UvHandlePtr<uv_timer_t, Switchover> scheduled_timer_;
  // failover.mode pgmux: the standbys' answers while Confirming; no new failover before
  // retry_after_ (monotonic seconds) once one failed; the last reason for not promoting (logged
  // when it changes).
  std::vector<routing::ReceiverReport> reports_;
  std::vector<std::unique_ptr<PgQueryConnection>> report_conns_;
  size_t reports_pending_ = 0;
  double retry_after_ = 0;
  std::string not_promoting_;
  UvHandlePtr<uv_timer_t, Switchover> timer_;
  void (Switchover::*timer_next_)() = nullptr;
  bool drain_check_running_ = false;
  // Bumped by each start and finish: a reply or snapshot from an earlier run finds a different number and is
  // dropped.
  uint64_t run_ = 0;
};

const char* to_string(Switchover::Step step);

}  // namespace pgmux::proxy
