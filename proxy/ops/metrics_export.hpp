// The Prometheus exporter: a pure function from what pgmux counts and knows (worker counters, the workers'
// snapshots, the backends view, the control loop's counters, pin counters) to metric families. Every family is
// declared once, in the table in metrics_export.cpp (DESIGN.md §3.11); the HTTP side only serializes.
#pragma once
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "proxy/ops/metrics.hpp"
#include "proxy/client/pin_counters.hpp"
#include "proxy/ops/snapshot.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// What /metrics and /status are made of. Pointers are borrowed for the call; none may be null except `pins`.
struct ExportSources {
  std::vector<const WorkerMetrics*> workers;
  const std::vector<WorkerSnapshot>* snapshots = nullptr;
  const routing::BackendsView* view = nullptr;
  const ControlMetrics* control = nullptr;
  const PinCounters* pins = nullptr;
  std::string version;
  double now = 0;              // unix seconds, for uptime
  int clients = 0;             // connected clients over all workers
  bool shutting_down = false;  // no new clients accepted
};

// One metric family as declared: for the docs test and anyone listing what pgmux exports.
struct MetricFamilyInfo {
  const char* name;
  prometheus::MetricType type;
  const char* labels;  // comma-separated label names, "" for none
  const char* help;
};
const std::vector<MetricFamilyInfo>& metric_families();

// Every declared family, in declaration order (families with labels may have no sample yet).
std::vector<prometheus::MetricFamily> export_metrics(const ExportSources& sources);

// The families in Prometheus text format 0.0.4.
std::string render_metrics(const ExportSources& sources);
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace pgmux::proxy
