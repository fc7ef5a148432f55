// The families proxy/ops/metrics_export.cpp fills, one table per part of pgmux, in the order of Family. Help texts
// stay on one line without backslashes (prometheus-cpp writes them as they are).
#include <iterator>
#include <cstddef>
#include <vector>

#include "proxy/ops/metric_family.hpp"
#include "proxy/ops/metrics_export.hpp"

namespace pgmux::proxy {

namespace {

using prometheus::MetricType;

constexpr MetricType kGauge = MetricType::Gauge;
constexpr MetricType kCounter = MetricType::Counter;
constexpr MetricType kHistogram = MetricType::Histogram;

// The process, and the clients it serves.
constexpr MetricFamilyInfo kProcessAndClients[] = {
    {"pgmux_up", kGauge, "", "1 while pgmux is running."},
    {"pgmux_build_info", kGauge, "version", "Always 1; the version label says which pgmux this is."},
    {"pgmux_start_time_seconds", kGauge, "", "When pgmux started, in unix seconds."},
    {"pgmux_client_connections", kGauge, "state",
     "Client connections by state: login (startup and authentication), active (a request in flight or a "
     "transaction open), idle (between transactions), waiting (for a server connection or a primary)."},
    {"pgmux_client_logins_total", kCounter, "", "Clients that completed login."},
    {"pgmux_client_login_failures_total", kCounter, "",
     "Clients refused before their login completed (bad password, unknown user or database, no server, "
     "max_client_conn, login timeout)."},
    {"pgmux_client_disconnects_total", kCounter, "reason",
     "Client connections ended, by reason (the failure table in docs/ARCHITECTURE.md: client_closed, "
     "auth_failed, idle_transaction_timeout, ...)."},
    {"pgmux_pinned_clients_total", kCounter, "reason",
     "Clients pinned to their server in transaction pooling, by reason."},
    {"pgmux_client_bytes_received_total", kCounter, "", "Bytes received from clients."},
    {"pgmux_client_bytes_sent_total", kCounter, "", "Bytes sent to clients."},
};

// Server connections, and the requests routed to them.
constexpr MetricFamilyInfo kServersAndRequests[] = {
    {"pgmux_server_connections", kGauge, "backend,state",
     "Server connections by backend and state: login (connecting or authenticating), idle (in the pool), active "
     "(linked to a client), used (running pgmux's own reset or parameter sync)."},
    {"pgmux_server_connects_total", kCounter, "", "Server connections opened and logged in."},
    {"pgmux_server_connect_failures_total", kCounter, "",
     "Server connections that failed to connect or log in."},
    {"pgmux_server_bytes_received_total", kCounter, "", "Bytes received from PostgreSQL servers."},
    {"pgmux_server_bytes_sent_total", kCounter, "", "Bytes sent to PostgreSQL servers."},
    {"pgmux_queries_routed_total", kCounter, "target,reason",
     "Routing decisions by target (primary, standby, wait-for-primary, no-backend) and reason; statements that "
     "follow an open transaction or pipeline to its server are not routed again."},
    {"pgmux_standby_write_retries_total", kCounter, "",
     "Reads a standby rejected that pgmux ran again on the primary before any row reached the client: 25006 (the "
     "statement writes after all; its text counts as a write from then on) or 0A000 (it reads an unlogged table, "
     "likewise; or the session's default isolation level is SERIALIZABLE: its reads go to the primary from then on)."},
    {"pgmux_lost_request_retries_total", kCounter, "",
     "Requests whose server was lost before any of their reply reached the client, when running them changed "
     "nothing (a read on a standby, a lone BEGIN): sent again to the next server instead of failing with 08006."},
    {"pgmux_query_duration_seconds", kHistogram, "role",
     "Time from forwarding a request to its ReadyForQuery, by the role of the server that answered."},
    {"pgmux_transaction_duration_seconds", kHistogram, "role",
     "Time from the first request of a transaction to ReadyForQuery idle, by the role of the server that "
     "answered (an autocommit statement is a transaction)."},
    {"pgmux_pool_wait_seconds", kHistogram, "", "Time clients waited for a server connection from a pool."},
    {"pgmux_errors_total", kCounter, "class",
     "ErrorResponses sent to clients (relayed from PostgreSQL or pgmux's own), by SQLSTATE class."},
};

// The backends, as the health probes and Patroni see them.
constexpr MetricFamilyInfo kBackends[] = {
    {"pgmux_backend_up", kGauge, "backend", "1 when the backend answered its last health probe."},
    {"pgmux_backend_role", kGauge, "backend,role",
     "1 for the backend's current role (unknown, primary, standby, down, fenced), 0 for the others."},
    {"pgmux_backend_readable", kGauge, "backend", "1 when the backend is in the read set (serves reads)."},
    {"pgmux_backend_weight", kGauge, "backend", "The backend's load-balancing weight."},
    {"pgmux_backend_lag_bytes", kGauge, "backend",
     "Replication lag of a standby in bytes (primary WAL position minus replay position); 0 for the primary."},
    {"pgmux_backend_lag_seconds", kGauge, "backend", "Replication lag of a standby in seconds; 0 for the primary."},
    {"pgmux_backend_timeline", kGauge, "backend", "Timeline the backend reported in its last successful probe."},
    {"pgmux_backend_sync_state", kGauge, "backend,state",
     "1 for how the primary replicates to this standby (sync, quorum, potential, async; unknown: not readable by the "
     "prober's role; none: no WAL sender to it); absent for the primary."},
    {"pgmux_backend_applies_commits", kGauge, "backend",
     "1 when every commit on the primary returns only after this standby applied it (remote_apply, listed in a "
     "synchronous_standby_names that requires every standby it lists): reads after a commit go there at once."},
    {"pgmux_backend_synchronous_standby_names", kGauge, "backend,value",
     "1 with the primary's synchronous_standby_names as the value label (empty: asynchronous replication)."},
    {"pgmux_patroni_up", kGauge, "",
     "topology.source patroni only: 1 when the last GET /cluster got an answer from one of topology.patroni_urls."},
    {"pgmux_backend_patroni_role", kGauge, "backend,role",
     "topology.source patroni only: 1 for the role Patroni gives the backend's member (leader, replica, "
     "sync_standby, standby_leader; none: no member at its name or address)."},
    {"pgmux_probe_duration_seconds", kHistogram, "backend", "Duration of health probes, by backend."},
};

// Failovers, switchovers, consistency checks, split brain, reloads.
constexpr MetricFamilyInfo kOperations[] = {
    {"pgmux_failovers_total", kCounter, "", "Times the primary moved to another backend."},
    {"pgmux_switchovers_total", kCounter, "result",
     "Admin SWITCHOVERs by result: done, canceled (nothing changed: writes resumed on the old primary), failed "
     "(stopped part way: see the log)."},
    {"pgmux_switchover_write_pause_seconds", kGauge, "",
     "How long the last completed switchover (SWITCHOVER, or Patroni's drained for) held writes (from the hold to "
     "the new primary); 0 before any."},
    {"pgmux_consistency_checks_total", kCounter, "result",
     "CHECK CONSISTENCY runs by result: consistent, differences, failed (no comparison: see the log)."},
    {"pgmux_consistency_differences", kGauge, "",
     "Standby rows of the last CHECK CONSISTENCY that ran whose count or checksum differs from the primary's (or "
     "could not be read)."},
    {"pgmux_consistency_last_run_timestamp_seconds", kGauge, "",
     "Unix time of the last CHECK CONSISTENCY that ran; 0 before any."},
    {"pgmux_auto_failovers_total", kCounter, "result",
     "Failovers pgmux ran itself (failover.mode pgmux) by result: done, canceled (the primary answered again), "
     "failed (see the log)."},
    {"pgmux_patroni_switchovers_total", kCounter, "result",
     "Switchovers asked of Patroni directly (patronictl switchover), seen in etcd (topology.etcd_urls), that pgmux "
     "drained for, by result: done, canceled (Patroni cleared its request: writes resumed on the old primary), "
     "failed (no new primary within routing.failover_timeout)."},
    {"pgmux_etcd_watch_up", kGauge, "",
     "topology.etcd_urls only: 1 while pgmux watches Patroni's failover key in etcd; while 0, a switchover asked of "
     "Patroni directly is followed but not drained for."},
    {"pgmux_split_brain", kGauge, "", "1 while more than one backend claims to be the primary (writes pause)."},
    {"pgmux_config_reloads_total", kCounter, "result", "Config reloads by result (ok, failed)."},
    {"pgmux_config_last_reload_success_timestamp_seconds", kGauge, "",
     "Unix seconds of the last successful config load (startup or reload)."},
};

constexpr size_t kDeclared = std::size(kProcessAndClients) + std::size(kServersAndRequests) + std::size(kBackends) +
                             std::size(kOperations);
static_assert(kDeclared == static_cast<size_t>(Family::Count), "one table row per Family, in its order");

}  // namespace

const std::vector<MetricFamilyInfo>& metric_families() {
  static const std::vector<MetricFamilyInfo> families = [] {
    std::vector<MetricFamilyInfo> all;
    all.reserve(kDeclared);
    auto append = [&all](const auto& part) { all.insert(all.end(), std::begin(part), std::end(part)); };
    append(kProcessAndClients);
    append(kServersAndRequests);
    append(kBackends);
    append(kOperations);
    return all;
  }();
  return families;
}

}  // namespace pgmux::proxy
