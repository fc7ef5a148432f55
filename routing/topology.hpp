// Backend roles, health and lag, decided from probe results. Pure state machine with an injected clock (the
// prober in proxy/ does the I/O and feeds it); each change publishes an immutable BackendsView snapshot.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::routing {

enum class Role : uint8_t { Unknown, Primary, Standby, Down, Fenced };
const char* to_string(Role r);  // "unknown", "primary", "standby", "down", "fenced"

struct BackendSpec {            // from config
  std::string name;
  std::string host;
  uint16_t port = 0;
  int weight = 1;
  bool standby_only = false;    // config role "standby": serve reads only even when not in recovery
  bool disabled = false;        // operator DISABLE BACKEND: no new reads (a primary keeps its role)
  std::string application_name;  // how the primary's pg_stat_replication names it (default: name)
  std::optional<int64_t> max_lag_bytes;      // per-backend override
  std::optional<double> max_lag_seconds;
};

// What a consensus-backed cluster manager (Patroni) says of the cluster, from its REST API's /cluster.
struct DcsMember {
  std::string name;
  std::string role;   // "leader", "standby_leader", "sync_standby", "replica"
  std::string state;  // "running", "streaming", "stopped", "starting", ...
  std::string host;
  uint16_t port = 0;
  uint32_t timeline = 0;
  bool noloadbalance = false;  // Patroni's tag: send it no reads
};

struct DcsCluster {
  std::vector<DcsMember> members;
  bool paused = false;  // maintenance mode: Patroni promotes nobody
};

// The topology source's side of a view (topology.source patroni).
struct DcsState {
  bool enabled = false;    // the DCS decides the primary
  bool answered = false;   // at least one /cluster was read
  bool reachable = false;  // the last request got an answer
  std::string leader;      // the leader member's name, "" when it names none
  int leader_index = -1;   // the backend that member is; -1 when none or not configured
  std::string error;       // why the last request failed
  std::string source;      // the URL of the last answer
  uint64_t answers = 0;    // /cluster answers read so far: tells a later answer from an earlier one
  DcsCluster cluster;      // the last answer
};

struct TopologySettings {
  int64_t max_lag_bytes = 16 * 1024 * 1024;
  double max_lag_seconds = 10;
  double lag_hysteresis = 5;      // seconds a standby must stay under the thresholds before it is back
  int health_check_max_retries = 2;  // consecutive failed probes tolerated before "down"
  // topology.source patroni: only the member the DCS names leader may be the primary (others are fenced).
  bool dcs_decides_primary = false;
};

// One probe round's answer from a backend (what the prober read with libpq).
struct ProbeResult {
  bool in_recovery = false;
  uint64_t current_lsn = 0;     // primary: pg_current_wal_lsn()
  // primary: pg_current_wal_insert_lsn(), past every commit that returned before the probe was sent even with
  // synchronous_commit off (pg_current_wal_lsn() may not be yet). Read-your-writes samples use it; 0 = unknown.
  uint64_t insert_lsn = 0;
  uint64_t receive_lsn = 0;     // standby: pg_last_wal_receive_lsn()
  uint64_t replay_lsn = 0;      // standby: pg_last_wal_replay_lsn()
  std::optional<double> replay_age_seconds;  // standby: now() - pg_last_xact_replay_timestamp(), server-side
  uint32_t timeline = 0;
  uint64_t system_identifier = 0;
  // primary: its WAL senders as "application_name:sync_state,..." (sync_state "?" where the prober's role may not
  // read it: superuser or pg_read_all_stats), and synchronous_standby_names.
  std::string replication;
  std::string synchronous_standby_names;
  // primary: synchronous_commit as every session starts with it; "" when a role or database sets its own, or
  // sessions would not hear that a commit's wait for a standby was cancelled (client_min_messages).
  std::string synchronous_commit;
  // When the probe query was sent (same clock as `now`); -1 = unknown, use the arrival time. The primary's LSN
  // history is stamped with it: the LSN was read after this instant, which read-your-writes relies on.
  double sent_at = -1;
  // The numeric address the probe connected to: a host name resolved by the control thread, off the workers'
  // loops (they connect to it; see Worker::backend_address). "" for a Unix socket.
  std::string address;
};

struct BackendStatus {
  BackendSpec spec;
  Role role = Role::Unknown;
  bool reachable = false;
  int failed_probes = 0;
  ProbeResult last;             // last successful probe
  int64_t lag_bytes = 0;        // standby: primary current_lsn - replay_lsn (>= 0)
  // standby: 0 when replay_lsn >= the primary's lsn, else the replay age, capped by how long ago the primary was
  // first sampled past replay_lsn (so a few bytes behind an idle primary do not read as an hour).
  double lag_seconds = 0;
  bool readable = false;        // in the read set right now
  std::string excluded_reason;  // why not readable ("lag 20 MB > max_lag_bytes 16 MB", "down", "hysteresis")
  double last_status_change = 0;
  double under_threshold_since = -1;  // for hysteresis
  std::string last_error;
  // standby: how the primary's WAL sender to it says it replicates ("sync", "quorum", "potential", "async"),
  // "?" when the prober may not read it, "" when the primary has no WAL sender by its application_name.
  std::string sync_state;
  // standby: every commit on the primary returns only after this standby applied it (commits_wait_for_apply), so
  // a read after a commit may go here at once, unless the session may have committed otherwise.
  bool applies_commits = false;
  // When it was first seen to (monotonic seconds): commits acknowledged before then may not have waited for it.
  double applies_since = 0;
  // topology.source patroni: its member's role ("" = no member at its name or address) and noloadbalance tag.
  std::string dcs_role;
  bool dcs_noloadbalance = false;
  // Added by the topology implementation (state the machine needs to carry between probes):
  bool ever_probed = false;     // at least one successful probe
  bool lag_excluded = false;    // left the read set for lag; back only after the hysteresis period
  bool fenced_timeline = false; // came back not in recovery on an older timeline; cleared when in recovery
  // Fenced by a switchover (Topology::fence): no reads, never the primary, until it reports in recovery on a
  // timeline newer than `timeline` (it rejoined the new primary's history).
  enum class FenceStage {
    Draining,  // nothing new starts there; transactions already running on it may finish (workers keep them)
    Closed,    // its server connections are closed as well: it is being demoted, or already was
  };
  struct SwitchoverFence {
    uint32_t timeline = 0;
    std::string reason;
    FenceStage stage = FenceStage::Closed;
  };
  std::optional<SwitchoverFence> fence;
};

struct LsnSample {
  double time = 0;              // when the probe was sent (ProbeResult::sent_at), same clock as `now`
  uint64_t lsn = 0;
};

struct BackendsView {
  std::vector<BackendStatus> backends;  // config order; index = backend id
  int primary = -1;                     // index of the one primary, -1 when none (down, failover, split brain)
  bool split_brain = false;
  std::string alarm;                    // human text when something is wrong ("two primaries: a, b")
  // Recent primary LSN samples (insert position), oldest first, the last 64.
  std::vector<LsnSample> primary_lsn_history;
  // The replay poller's primary samples between probe rounds (causal reads), oldest first, the last 32. Kept
  // apart from the rounds' history, which also dates lag: a burst of them would shorten its reach.
  std::vector<LsnSample> recent_primary_lsn;
  DcsState dcs;
  uint64_t generation = 0;
};

class Topology {
 public:
  Topology(std::vector<BackendSpec> backends, TopologySettings settings);

  void on_probe_ok(size_t index, const ProbeResult& result, double now);
  void on_probe_failed(size_t index, const std::string& error, double now);
  // Where a backend named by host name was found before any probe (at startup): workers connect there until a
  // probe says otherwise (ProbeResult::address).
  void note_address(size_t index, std::string address);
  // A pool's new connection to the backend was refused (nobody listens on its port, or it is shutting down):
  // counted as one failed probe when its last probe succeeded, so a standby promoted on a later timeline is the
  // primary at once (choose_primary) instead of after the probes of a dying server time out. A standby is down at
  // once (no reads until a probe answers again). More failures come from probes.
  void on_connection_refused(size_t index, const std::string& error, double now);
  // Between probe rounds, the replay poller's fresher positions (causal reads). A standby's replay LSN only
  // moves forward here; a primary's insert LSN is kept with when it was asked (sent_at). True when the view
  // changed (and was published).
  bool on_replay_position(size_t index, uint64_t replay_lsn);
  bool on_primary_position(size_t index, uint64_t insert_lsn, double sent_at);
  // A switchover's fence on a backend (the old primary): writes to it stop at once (no primary until the target
  // is promoted) and it stays fenced until it reports in recovery on a newer timeline than the one it is on now.
  // Fencing it again only changes the reason. unfence: a switchover that was canceled.
  // Until it reports in recovery on a timeline after `timeline` (where the switchover began).
  void fence(size_t index, uint32_t timeline, std::string reason, BackendStatus::FenceStage stage, double now);
  void unfence(size_t index, double now);
  // topology.source patroni: the cluster as the DCS sees it, or why it could not be read (the last answer stays
  // in force: its leader keeps the primary, if probes agree, until another answer names another one).
  void on_dcs_cluster(DcsCluster cluster, std::string source, double now);
  void on_dcs_failed(std::string error, double now);
  // A new config: backends matched by name (at the same host and port) keep their state.
  void reconfigure(std::vector<BackendSpec> backends, TopologySettings settings);

  std::shared_ptr<const BackendsView> view() const { return view_; }
  const TopologySettings& settings() const { return settings_; }

 private:
  void publish(double now);
  void recompute(double now);
  void assign_roles(std::vector<std::string>& role_reasons, std::vector<std::string>& alarms);
  void choose_primary(std::vector<std::string>& alarms);
  bool standby_readable(BackendStatus& b, double now, std::string& reason) const;
  void update_lag(BackendStatus& b, double now) const;
  uint64_t cluster_system_identifier() const;
  void match_dcs_members(std::vector<std::string>& alarms);
  std::string dcs_refusal(size_t index) const;  // why the DCS forbids backend `index` to be primary; "" = it does not
  int primary_ = -1;
  bool split_brain_ = false;
  std::string alarm_;
  uint64_t system_identifier_ = 0;  // the cluster's (majority, first seen on a tie)
  double last_now_ = 0;
  std::vector<BackendStatus> backends_;
  TopologySettings settings_;
  std::vector<LsnSample> history_;
  std::vector<LsnSample> recent_;  // the replay poller's primary samples
  DcsState dcs_;
  std::shared_ptr<const BackendsView> view_;
  uint64_t generation_ = 0;
};

// topology.source patroni: the Patroni member backend `index` is (its name, else its host and port); "" if none.
std::string dcs_member_of(const BackendsView& view, size_t index);

// Every commit on this primary returns only once the standby named application_name applied it: the server's
// synchronous_commit is remote_apply with no role or database setting its own, and synchronous_standby_names
// lists it among standbys that are all required. (A session may still commit otherwise: ClientConn tracks that.)
bool commits_wait_for_apply(const ProbeResult& primary, std::string_view application_name);

// The sync_state of `name` in a primary's ProbeResult::replication list; "" when it has no such WAL sender.
std::string sync_state_in(std::string_view replication, std::string_view name);

// "16/B374D848" -> 0x16B374D848; nullopt for anything else (PostgreSQL's pg_lsn text form).
std::optional<uint64_t> parse_lsn(std::string_view text);
// 0x16B374D848 -> "16/B374D848".
std::string format_lsn(uint64_t lsn);
// A primary's pg_current_wal_insert_lsn() as the end of the last record inserted, the position a standby reports
// once it replayed that record: right after a WAL page's header (24 bytes; 40 at a segment's start) the insert
// position says "next record here", while the record before ended at the page boundary, or inside the header's
// range, where no other record can end. Unchanged otherwise. (A standby would wait for the next record to be
// written, seconds on an idle primary, before it counted as caught up.)
uint64_t insert_position_as_record_end(uint64_t insert_lsn);

}  // namespace pgmux::routing
