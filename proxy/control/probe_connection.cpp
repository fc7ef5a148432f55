#include "proxy/control/probe_connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace pgmux::proxy {

// pg_current_wal_lsn() raises an error during recovery, hence the CASE. Timeline: on a primary, the timeline
// WAL is being written on, from the current WAL file name (right after a promotion; pg_control_checkpoint()
// keeps the old timeline until the first checkpoint on the new one). On a standby, the timeline it is
// receiving (pg_stat_wal_receiver.received_tli, visible to superusers and pg_read_all_stats), else its last
// restartpoint's. All of these work on PostgreSQL 15 for any user.
const char* const kProbeQuery =
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,"
    " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"
    " CASE WHEN pg_is_in_recovery()"
    "  THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),"
    "                (SELECT timeline_id FROM pg_control_checkpoint()))"
    "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
    " (SELECT system_identifier FROM pg_control_system()),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END,"
    " (SELECT string_agg(application_name || ':' || coalesce(sync_state, '?'), ',') FROM pg_stat_replication),"
    " current_setting('synchronous_standby_names'),"
    // The server's synchronous_commit, as every session starts with it: none when a role or database sets its own,
    // or when sessions would not hear PostgreSQL's warning that a commit's wait for a standby was cancelled
    // (client_min_messages error, set anywhere).
    " CASE WHEN EXISTS (SELECT FROM pg_db_role_setting, unnest(setconfig) AS c"
    "                   WHERE c ILIKE 'synchronous\\_commit=%' OR c ILIKE 'client\\_min\\_messages=%')"
    "       OR current_setting('client_min_messages') = 'error' THEN NULL"
    "  ELSE current_setting('synchronous_commit') END";

namespace {

std::optional<uint64_t> lsn_or_zero(const char* text) {
  if (text == nullptr) return 0;
  return routing::parse_lsn(text);
}

bool parse_uint(const char* text, uint64_t& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  if (*text == '-') {
    // system_identifier is an unsigned 64-bit value shown as bigint: it may print negative.
    const long long v = std::strtoll(text, &end, 10);
    out = static_cast<uint64_t>(v);
  } else {
    out = std::strtoull(text, &end, 10);
  }
  return errno == 0 && end != nullptr && *end == '\0';
}

}  // namespace

double monotonic_seconds() { return static_cast<double>(uv_hrtime()) / 1e9; }

bool parse_probe_row(const char* const values[kProbeColumns], routing::ProbeResult& out) {
  if (values[0] == nullptr) return false;
  const std::string in_recovery = values[0];
  if (in_recovery != "t" && in_recovery != "f") return false;
  out.in_recovery = in_recovery == "t";
  const auto current = lsn_or_zero(values[1]);
  const auto receive = lsn_or_zero(values[2]);
  const auto replay = lsn_or_zero(values[3]);
  if (!current || !receive || !replay) return false;
  out.current_lsn = *current;
  out.receive_lsn = *receive;
  out.replay_lsn = *replay;
  out.replay_age_seconds.reset();
  if (values[4] != nullptr) {
    char* end = nullptr;
    const double age = std::strtod(values[4], &end);
    if (end == values[4] || *end != '\0' || !std::isfinite(age)) return false;
    out.replay_age_seconds = std::max(0.0, age);  // clocks of primary and standby may differ a little
  }
  uint64_t timeline = 0;
  if (values[5] != nullptr && (!parse_uint(values[5], timeline) || timeline > UINT32_MAX)) return false;
  out.timeline = static_cast<uint32_t>(timeline);
  uint64_t sysid = 0;
  if (values[6] != nullptr && !parse_uint(values[6], sysid)) return false;
  out.system_identifier = sysid;
  const auto insert = lsn_or_zero(values[7]);
  if (!insert) return false;
  out.insert_lsn = routing::insert_position_as_record_end(*insert);
  out.replication = values[8] != nullptr ? values[8] : "";
  out.synchronous_standby_names = values[9] != nullptr ? values[9] : "";
  out.synchronous_commit = values[10] != nullptr ? values[10] : "";
  return true;
}

ProbeConnection::ProbeConnection(uv_loop_t* loop, ProbeTarget target)
    : connection_(loop, std::move(target), "pgmux-prober") {}

bool ProbeConnection::start(double timeout_seconds, Done done) {
  if (busy()) return false;
  result_ = routing::ProbeResult{};
  result_.sent_at = monotonic_seconds();  // the LSN is read after this, even when a connect comes first
  have_row_ = false;
  return connection_.start(
      kProbeQuery, timeout_seconds, [this](const PGresult* result) { return take_row(result); },
      [this, done = std::move(done)](bool ok, const std::string& error) {
        routing::ProbeResult result = result_;
        result.address = connection_.hostaddr();
        if (ok && !have_row_) {
          done(false, result, "probe returned no row");
        } else {
          done(ok, result, error);  // last: may destroy this
        }
      });
}

std::string ProbeConnection::take_row(const PGresult* res) {
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != kProbeColumns) {
    return std::string("unexpected probe result ") + PQresStatus(PQresultStatus(res));
  }
  const char* values[kProbeColumns];
  for (int c = 0; c < kProbeColumns; ++c) values[c] = PQgetisnull(res, 0, c) ? nullptr : PQgetvalue(res, 0, c);
  if (!parse_probe_row(values, result_)) return "unexpected probe answer";
  have_row_ = true;
  return "";
}

}  // namespace pgmux::proxy
