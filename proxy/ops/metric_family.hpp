// The metric families pgmux exports, by index into metric_families() (proxy/ops/metric_families.cpp declares each
// one's name, type, labels and help; proxy/ops/metrics_export.cpp fills them).
#pragma once
#include <cstddef>

namespace pgmux::proxy {

// Every family pgmux exports, in output order: the index into metric_families().
enum class Family : size_t {
  Up,
  BuildInfo,
  StartTime,
  ClientConnections,
  ClientLogins,
  ClientLoginFailures,
  ClientDisconnects,
  PinnedClients,
  ClientBytesReceived,
  ClientBytesSent,
  ServerConnections,
  ServerConnects,
  ServerConnectFailures,
  ServerBytesReceived,
  ServerBytesSent,
  QueriesRouted,
  StandbyWriteRetries,
  LostRequestRetries,
  QueryDuration,
  TransactionDuration,
  PoolWait,
  Errors,
  BackendUp,
  BackendRole,
  BackendReadable,
  BackendWeight,
  BackendLagBytes,
  BackendLagSeconds,
  BackendTimeline,
  BackendSync,
  BackendAppliesCommits,
  BackendSyncStandbyNames,
  PatroniUp,
  PatroniRole,
  ProbeDuration,
  Failovers,
  Switchovers,
  SwitchoverWritePause,
  ConsistencyChecks,
  ConsistencyDifferences,
  ConsistencyLastRun,
  AutoFailovers,
  PatroniSwitchovers,
  EtcdWatchUp,
  SplitBrain,
  ConfigReloads,
  ConfigLastReloadSuccess,
  Count
};

}  // namespace pgmux::proxy
