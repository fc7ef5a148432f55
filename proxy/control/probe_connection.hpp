// The prober's connection to one backend (a PgQueryConnection on the control loop): each probe sends one query
// that works on a primary and on a standby, and reports the parsed answer or an error exactly once.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <libpq-fe.h>
#include <uv.h>

#include "proxy/control/pg_query_connection.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy {

// Seconds on the monotonic clock (uv_hrtime). The prober stamps LSN samples with it; whoever compares a commit
// time against them (read-your-writes) must read the same clock, fresh (uv_hrtime, not the loop's cached uv_now).
double monotonic_seconds();

// The one statement of a probe round. Parsed by parse_probe_row.
extern const char* const kProbeQuery;
constexpr int kProbeColumns = 11;

// Parses the row kProbeQuery returns, given as text values (nullptr = SQL NULL). False on malformed input.
// Columns: in_recovery, current_lsn, receive_lsn, replay_lsn, replay_age, timeline, system_identifier, insert_lsn.
bool parse_probe_row(const char* const values[kProbeColumns], routing::ProbeResult& out);

class ProbeConnection {
 public:
  // ok: `result` is filled (with sent_at); otherwise `error` says why (no trailing newline).
  using Done = std::function<void(bool ok, const routing::ProbeResult& result, const std::string& error)>;

  ProbeConnection(uv_loop_t* loop, ProbeTarget target);

  // Starts a probe that must finish within timeout_seconds. False (and no callback) if one is in flight.
  // `done` runs last: it may destroy this object.
  bool start(double timeout_seconds, Done done);
  bool busy() const { return connection_.busy(); }
  bool connected() const { return connection_.connected(); }
  const ProbeTarget& target() const { return connection_.target(); }

 private:
  std::string take_row(const PGresult* result);

  PgQueryConnection connection_;
  routing::ProbeResult result_;
  bool have_row_ = false;
};

}  // namespace pgmux::proxy
