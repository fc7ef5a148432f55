// The routing decision for one statement: primary, a standby (by weight), or wait for a primary. Pure: it
// reads the statement's class, the client's routing state and the current BackendsView.
#pragma once
#include <cstdint>
#include <optional>

#include "routing/balancer.hpp"
#include "routing/classifier.hpp"
#include "routing/read_your_writes.hpp"
#include "routing/topology.hpp"

namespace pgmux::routing {

struct RouteSettings {
  bool read_write_split = true;
  bool fallback_to_primary = true;
  Consistency consistency = Consistency::Causal;
  bool remote_apply_reads = false;  // standbys that apply every commit serve reads after a commit at once
};

// What the router needs to know about one client.
struct ClientRouteState {
  bool pinned_primary = false;              // temp table, session advisory lock, LISTEN ... seen
  bool session_read_only = false;           // default_transaction_read_only is on for this session
  // The session ran something whose effect on its settings pgmux cannot reproduce elsewhere (set_config with
  // computed arguments, a DO block): only the primary has the session as the client made it.
  bool session_unknown = false;
  // This client's last commit may not have waited for the standbys that apply every commit. (It commits in order:
  // an earlier commit is applied with a later one.)
  bool last_write_unapplied = false;
  // The session set synchronous_commit, or may have (set_config, a DO block, a startup option): its commits may not
  // have waited for those standbys.
  bool commits_may_skip_apply = false;
  // The session's default isolation level is SERIALIZABLE (a SET, a startup parameter, or a standby refused a read
  // for it): hot standbys cannot run such transactions, so its reads go to the primary.
  bool serializable_default : 1 = false;
  // A standby refused a read for it: the default the servers give this session (ALTER ROLE / DATABASE ... SET, their
  // configuration) is SERIALIZABLE, and RESET returns to it. (Bits: the bools and held_standby fill 8 bytes.)
  bool serializable_server_default : 1 = false;
  // The held standby connection keeps WITH HOLD cursors declared there: a read it cannot take goes to the primary
  // rather than to another standby (taking another gives that connection back, and its cursors go with it).
  bool held_standby_keeps_cursors : 1 = false;
  // The next read runs again after a standby canceled it for a recovery conflict (client_retry.cpp): the primary
  // runs it, where no replay can cancel it. Taken by the read's route (ClientConn::choose_server).
  bool rerun_after_recovery_conflict : 1 = false;
  // Backend index of the standby connection the client holds, -1 for none (16 bits, in the bools' padding:
  // indexes past 63 have no bit in backend_mask anyway).
  int16_t held_standby = -1;
  std::optional<double> last_write_commit;  // when this client's last write committed (monotonic seconds)
  // Causal reads: the latest write commit pgmux had acknowledged to any client when this request arrived.
  std::optional<double> cluster_commit;
  // The latest commit of any client not known to have waited for the standbys that apply every commit
  // (BackendStatus::applies_commits), 0 for none (a double, not an optional: every client carries this state).
  double cluster_unapplied_commit = 0;
  uint64_t backend_mask = ~uint64_t{0};     // bit i: backend i serves this client's database
};

enum class RouteTarget : uint8_t { Primary, Standby, WaitForPrimary, NoBackend };
const char* to_string(RouteTarget t);

// Why a statement went where it did: a metric label and EXPLAIN ROUTE's answer.
enum class RouteReason : uint8_t {
  Write,                 // a statement that changes data
  Read,                  // a read, on a standby
  SessionCommand,        // SET and friends: on the primary, replayed elsewhere
  ReadWriteTransaction,  // inside (or starting) a read-write transaction
  TransactionEnd,
  Pinned,                // the session holds state only the primary has (temp table, advisory lock, LISTEN...)
  PrimaryHint,           // /* pgmux:primary */
  Unlogged,              // a read of an unlogged relation: standbys have none of its rows
  SessionUnknown,        // the session's settings exist only on the primary (ClientRouteState::session_unknown)
  Serializable,          // a SERIALIZABLE transaction, or a session whose default is: standbys cannot run them
  SplitOff,              // routing.read_write_split is off
  ReadYourWrites,        // no standby has replayed this client's last write yet
  Causal,                // no standby has replayed a write another client was told had committed
  LagExcluded,           // fallback: every standby is excluded for replication lag
  NoEligibleStandby,     // fallback: no standby is up, enabled and weighted
  NoPrimary,             // no primary right now (failover)
  StandbyCursors,        // a read the held standby cannot take, kept off other standbys for its WITH HOLD cursors
  RecoveryConflict,      // a read a standby canceled for its replay (recovery conflict), run again on the primary
  OpenSequence,          // a read opening an extended sequence (Flush, no Sync), which may go on to write
  Count
};
const char* to_string(RouteReason r);  // "write", "read", ..., "lag-excluded", "fallback-to-primary", ...

struct Route {
  RouteTarget target = RouteTarget::Primary;
  int backend = -1;    // index into the view, for Primary and Standby
  RouteReason reason = RouteReason::Write;
};

// True when the statement may run on a standby at all (before health, lag and read-your-writes).
bool is_read_only_statement(const Classification& c, const ClientRouteState& state);

// A command PostgreSQL allows in a read-only transaction but refuses during recovery (they write WAL or signal
// other sessions): NOTIFY, LOCK TABLE, ANALYZE, CLUSTER, REINDEX, and VACUUM (whose refusal of a transaction
// block the primary reports). A read-only block that starts with one runs on the primary.
bool refused_during_recovery(const Classification& c);

// The commit a read must see under `consistency`, and whether it is the client's own. applying_since: on standbys
// that apply every commit, seen to since then (BackendStatus::applies_since), where only commits that may not have
// waited for them count: those marked so, and any acknowledged before that moment, which stands for all of them
// (a position sampled after it covers every earlier commit).
struct CommitToSee {
  double time = 0;
  bool own = false;
};
std::optional<CommitToSee> commit_to_see(const ClientRouteState& state, Consistency consistency,
                                         std::optional<double> applying_since = std::nullopt);

// The latest moment a standby that applies every commit was first seen to (BackendStatus::applies_since), over
// all such standbys; nullopt when there is none. It stands for all of them: commits before it bind them.
std::optional<double> applying_since(const BackendsView& view);

// The read went to the primary (or got no backend) only because no standby has replayed what it must see yet: a
// standby may serve it a little later (the bounded wait of routing.causal_wait).
inline bool held_for_replay(const Route& r) {
  return r.reason == RouteReason::ReadYourWrites || r.reason == RouteReason::Causal;
}

Route route_statement(const Classification& c, const ClientRouteState& state, const BackendsView& view,
                      const RouteSettings& settings, Balancer& balancer);

}  // namespace pgmux::routing
