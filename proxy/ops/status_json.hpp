// The /status document: backends as the prober sees them and pools summed over workers, as JSON.
#pragma once
#include <nlohmann/json.hpp>

#include "proxy/ops/metrics_export.hpp"

namespace pgmux::proxy {

// {version, uptime_seconds, started_at, shutting_down, clients, primary, alarm, backends: [...], pools: [...]}.
// Pools are merged over workers by (database, user, backend); maxwait is the longest wait of any worker.
nlohmann::json status_json(const ExportSources& sources);

}  // namespace pgmux::proxy
