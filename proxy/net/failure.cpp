#include "proxy/net/failure.hpp"

#include <algorithm>
#include <array>
#include <iterator>

#include "protocol/byte_writer.hpp"
#include "protocol/error_response.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/net/log.hpp"
#include "proxy/ops/metrics.hpp"

namespace pgmux::proxy {

namespace {

namespace code = protocol::sqlstate;
using F = Failure;
constexpr Severity Fatal = Severity::Fatal;
constexpr Severity Error = Severity::Error;
constexpr Severity Silent = Severity::Silent;
constexpr Severity FatalUnsent = Severity::FatalUnsent;
constexpr ServerFate Reuse = ServerFate::Reuse;
constexpr ServerFate Close = ServerFate::Close;
constexpr conf::LogLevel Info = conf::LogLevel::Info;
constexpr conf::LogLevel Warn = conf::LogLevel::Warn;

// A server connection that failed to open names its pool and backend; the pool adds those words.
constexpr const char* kPoolDetail = "pgmux pool \"{}\", backend \"{}\" at {}";

// Wording: PostgreSQL's own where PostgreSQL has the same failure (clients and tests compare with it), else
// "pgmux: ..." naming the setting, pool or backend involved.
// failure, severity, SQLSTATE, message, detail, hint, server fate, metric label, log wording, log level
// The rows in four groups, each in enum order; kRows joins them (indexed by Failure).
// A client connection: closing, the startup packet and TLS.
constexpr FailureRow kClientRows[] = {
    {F::ClientClosed, Silent, code::kConnectionFailure, "client closed the connection", "", "", Reuse,
     "client_closed", "client closed the connection", Info},
    {F::ClientTerminated, Silent, code::kConnectionFailure, "client terminated", "", "", Reuse, "client_terminated",
     "client terminated", Info},
    {F::ClientSocketError, Silent, code::kConnectionFailure, "client socket error", "", "", Reuse,
     "client_socket_error", "socket error", Info},
    {F::CancelRequestDone, Silent, code::kConnectionFailure, "cancel request", "", "", Reuse, "cancel_request",
     "cancel request", Info},

    // PostgreSQL only logs an invalid startup-packet length and closes: a client reads nothing.
    {F::StartupFraming, Silent, code::kProtocolViolation, "invalid length of startup packet", "", "", Reuse,
     "startup_packet_framing", "invalid length of startup packet", Info},
    {F::StartupPacketInvalid, Fatal, code::kProtocolViolation, "{}", "", "", Reuse, "startup_packet_invalid",
     "bad startup packet", Info},
    {F::ProtocolUnsupported, Fatal, code::kFeatureNotSupported, "{}", "", "", Reuse, "protocol_unsupported",
     "unsupported frontend protocol", Info},
    {F::DataAfterEncryptionRequest, Fatal, code::kProtocolViolation, "received unencrypted data after {}",
     "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.", "", Reuse,
     "data_after_encryption_request", "unencrypted data sent with an encryption request", Info},
    // TLS towards clients (tls.client): PostgreSQL's words. A failed handshake is only logged (the client got
    // OpenSSL's alert); a plain-text login where TLS is required reads like PostgreSQL's pg_hba refusal.
    {F::TlsHandshakeFailed, Silent, code::kProtocolViolation, "could not accept SSL connection", "", "", Reuse,
     "tls_handshake_failed", "TLS handshake failed", Info},
    {F::TlsDirectWithoutAlpn, Silent, code::kProtocolViolation,
     "received direct SSL connection request without ALPN protocol negotiation extension", "", "", Reuse,
     "tls_direct_without_alpn", "direct TLS without ALPN \"postgresql\"", Info},
    {F::TlsRequired, Fatal, code::kInvalidAuthorization,
     "no pg_hba.conf entry for host \"{}\", user \"{}\", database \"{}\", no encryption", "",
     "pgmux's tls.client.mode requires TLS: connect with sslmode=require or stronger.", Reuse, "tls_required",
     "plain-text login refused (TLS required)", Warn},
    {F::TlsClientCertRequired, Fatal, code::kInvalidAuthorization, "connection requires a valid client certificate",
     "", "", Reuse, "tls_client_cert_required", "no valid client certificate", Warn},
    {F::TlsClientCertMismatch, Fatal, code::kInvalidAuthorization, "certificate authentication failed for user \"{}\"",
     "", "", Reuse, "tls_client_cert_mismatch", "client certificate CN is not the user name", Warn},
    {F::NoUserName, Fatal, code::kInvalidAuthorization, "no PostgreSQL user name specified in startup packet", "",
     "", Reuse, "no_user_name", "no user name", Info},
    {F::ReplicationRefused, Fatal, code::kFeatureNotSupported, "pgmux does not support replication connections", "",
     "", Reuse, "replication_refused", "replication connection refused", Info},
    {F::ReplicationValueInvalid, Fatal, code::kInvalidParameterValue,
     "invalid value for parameter \"replication\": \"{}\"", "",
     "Valid values are: \"false\", 0, \"true\", 1, \"database\".", Reuse, "replication_value_invalid",
     "unreadable replication startup parameter", Info},
    {F::OptionsUnsupported, Fatal, code::kFeatureNotSupported,
     "pgmux supports only \"-c name=value\" settings in the options startup parameter", "", "", Reuse,
     "options_unsupported", "unsupported options parameter", Info},
};

// A logged-in-to-be client: hba rules and authentication.
constexpr FailureRow kClientLoginRows[] = {
    // The hba rules, in PostgreSQL's words: host is the client's address, the last word its encryption.
    {F::NoHbaEntry, Fatal, code::kInvalidAuthorization,
     "no pg_hba.conf entry for host \"{}\", user \"{}\", database \"{}\", {}", "", "", Reuse, "no_hba_entry",
     "no hba rule matches", Warn},
    {F::HbaRejected, Fatal, code::kInvalidAuthorization,
     "pg_hba.conf rejects connection for host \"{}\", user \"{}\", database \"{}\", {}", "", "", Reuse,
     "hba_rejected", "an hba reject rule matches", Warn},
    {F::CertAuthFailed, Fatal, code::kInvalidAuthorization, "certificate authentication failed for user \"{}\"", "",
     "", Reuse, "cert_auth_failed", "certificate authentication failed", Warn},
    // Only where PostgreSQL says it too: after a trust login (no password exchange to hide it in).
    {F::UnknownRole, Fatal, code::kInvalidAuthorization, "role \"{}\" does not exist", "", "", Reuse,
     "unknown_role", "unknown user", Warn},
    {F::AuthFailed, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "", "", Reuse,
     "auth_failed", "authentication failed", Warn},
    // PostgreSQL's mock authentication: what the client reads is AuthFailed's, word for word; only the log and the
    // metric say that the role does not exist, or has no secret SCRAM can use.
    {F::UnknownRolePassword, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "", "",
     Reuse, "unknown_role_password", "authentication failed: no such user in the pgmux config (mock password exchange)",
     Warn},
    {F::NoUsableScramSecret, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "",
     "", Reuse, "no_usable_scram_secret",
     "authentication failed: the user's configured password cannot be used for SCRAM (mock password exchange)",
     Warn},
    // auth_query: the database's own record of a role the config does not list (proxy/control/auth_lookup.hpp).
    {F::AuthQueryNoRole, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "", "",
     Reuse, "auth_query_no_role", "authentication failed: auth_query found no such role (mock password exchange)",
     Warn},
    {F::PasswordExpired, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "", "",
     Reuse, "password_expired", "authentication failed: the role's password has expired (VALID UNTIL)", Warn},
    {F::NoPasswordAssigned, Fatal, code::kInvalidPassword, "password authentication failed for user \"{}\"", "",
     "", Reuse, "no_password_assigned", "authentication failed: the role has no password assigned", Warn},
    {F::RoleCannotLogin, Fatal, code::kInvalidAuthorization, "role \"{}\" is not permitted to log in", "", "",
     Reuse, "role_cannot_login", "the role has no LOGIN attribute", Warn},
    {F::AuthQueryFailed, Fatal, code::kConnectionFailure,
     "pgmux could not look up user \"{}\" (auth_query)", "", "The pgmux log says why.", Reuse,
     "auth_query_failed", "auth_query lookup failed", conf::LogLevel::Error},
    {F::AuthProtocolViolation, Fatal, code::kProtocolViolation, "{}", "", "", Reuse, "auth_protocol_violation",
     "protocol violation during authentication", Warn},
    // A password or SCRAM message PostgreSQL refuses, with its SQLSTATE (08P01, 28000 for channel binding,
    // 0A000, 28P01 for an empty password), message and detail (protocol::ScramFault).
    {F::AuthMessageRefused, Fatal, code::kProtocolViolation, "{}", "{}", "", Reuse, "auth_message_refused",
     "authentication message refused", Warn},
    // A length PostgreSQL does not read (over 65,535 bytes, under 4): it closes without a word (COMMERROR).
    {F::AuthMessageInvalid, FatalUnsent, code::kProtocolViolation, "invalid authentication message: {}", "", "",
     Reuse, "auth_message_invalid", "protocol violation during authentication", Warn},
    {F::AuthUnexpectedMessage, Fatal, code::kProtocolViolation, "expected {} response, got message type {}", "", "",
     Reuse, "auth_unexpected_message", "protocol violation during authentication", Warn},
};

// After authentication: the database and limits, then requests' framing, timeouts, the admin console and
// shutdown.
constexpr FailureRow kClientSessionRows[] = {
    {F::UnknownDatabase, Fatal, code::kInvalidCatalogName, "database \"{}\" does not exist", "", "", Reuse,
     "unknown_database", "unknown database", Info},
    {F::NotAdminUser, Fatal, code::kInvalidAuthorization,
     "pgmux: user \"{}\" may not use the admin console (database \"pgmux\")", "",
     "Add the user to admin_users (every command) or stats_users (SHOW only) in the pgmux config.", Reuse,
     "not_admin_user", "not an admin user", Warn},
    {F::TooManyClients, Fatal, code::kTooManyConnections,
     "sorry, too many clients already (pgmux max_client_conn is {})", "", "", Reuse, "too_many_clients",
     "max_client_conn reached", Warn},

    {F::MalformedRequest, Fatal, code::kProtocolViolation, "{}", "", "", Reuse, "malformed_request", "invalid message",
     Info},
    // A length below 4, or negative as PostgreSQL reads it (int32): it logs "invalid message length" and closes.
    {F::InvalidMessageLength, FatalUnsent, code::kProtocolViolation, "invalid message length", "", "", Reuse,
     "invalid_message_length", "invalid message", Info},
    {F::InvalidCopyMessage, Fatal, code::kProtocolViolation, "invalid frontend message: {}", "", "", Reuse,
     "invalid_copy_message", "invalid message", Info},
    {F::MalformedExtendedMessage, Fatal, code::kProtocolViolation, "malformed extended-protocol message", "", "",
     Reuse, "malformed_extended_message", "invalid message", Info},
    {F::AdminExtendedProtocol, Error, code::kFeatureNotSupported,
     "pgmux admin console: only simple queries are supported", "",
     "Use psql, or PQexec without parameters; prepared statements do not work here.", Reuse,
     "admin_extended_protocol", "extended protocol on the admin console", Info},
    // PostgreSQL's words for a Query it cannot read (elsewhere the server answers it: request_scanner.cpp).
    {F::UnreadableAdminQuery, Error, code::kProtocolViolation, "{}", "", "", Reuse, "unreadable_admin_query",
     "unreadable Query on the admin console", Info},

    // PostgreSQL says this in its log only: at authentication_timeout the client sees the connection close.
    {F::LoginTimeout, FatalUnsent, code::kQueryCanceled, "canceling authentication due to timeout", "", "", Reuse,
     "login_timeout", "client_login_timeout", Info},
    {F::IdleTransactionTimeout, Fatal, code::kIdleInTransactionSessionTimeout,
     "terminating connection due to idle-in-transaction timeout (pgmux idle_transaction_timeout is {} s)", "", "",
     Reuse, "idle_transaction_timeout", "idle_transaction_timeout", Info},
    {F::ClientIdleTimeout, Fatal, code::kIdleSessionTimeout,
     "terminating connection due to idle-session timeout (pgmux client_idle_timeout is {} s)", "", "", Reuse,
     "client_idle_timeout", "client_idle_timeout", Info},
    {F::QueryWaitTimeout, Error, code::kTooManyConnections,
     "pgmux: query_wait_timeout: no server connection became free in pool \"{}\" within {}", "", "", Reuse,
     "query_wait_timeout", "query_wait_timeout", Info},
    {F::PausedWaitTimeout, Error, code::kTooManyConnections,
     "pgmux: query_wait_timeout: database \"{}\" stayed paused (PAUSE) for {}", "",
     "RESUME on pgmux's admin console releases the requests PAUSE holds.", Reuse, "paused_wait_timeout",
     "query_wait_timeout while paused", Info},
    {F::WaitingRequestCanceled, Error, code::kQueryCanceled, "canceling statement due to user request", "", "",
     Reuse, "waiting_request_canceled", "cancel request for a request that was waiting", Info},

    {F::KilledByAdmin, Fatal, code::kAdminShutdown,
     "terminating connection due to administrator command (pgmux KILL_CLIENT)", "", "", Reuse, "killed_by_admin",
     "KILL_CLIENT", Info},
    {F::AdminShutdown, Fatal, code::kAdminShutdown, "terminating connection due to administrator command", "", "",
     Reuse, "admin_shutdown", "shutdown", Info},
    {F::ShuttingDown, Error, code::kAdminShutdown, "pgmux is shutting down", "", "", Reuse, "shutting_down",
     "pgmux is shutting down", Info},
    {F::BackendFenced, Error, code::kAdminShutdown, "pgmux: backend is fenced (an old primary or a different cluster)",
     "", "", Reuse, "backend_fenced", "backend fenced", Info},
};

// Opening a server connection and logging in to it.
constexpr FailureRow kServerLoginRows[] = {
    {F::NoUsableBackend, Error, code::kConnectionFailure, "pgmux: database \"{}\" has no usable backend", "", "",
     Reuse, "no_usable_backend", "no usable backend", Info},
    {F::TooManyAutoDatabases, Error, code::kConfigurationLimitExceeded,
     "pgmux: max_auto_databases ({}) reached: database \"{}\" cannot be opened through the \"*\" entry", "",
     "Raise max_auto_databases, or list the database in the pgmux config.", Reuse, "too_many_auto_databases",
     "max_auto_databases reached", Warn},
    {F::BackendUnresolvable, Error, code::kConnectionFailure, "pgmux: backend \"{}\": {}", "", "", Reuse,
     "backend_unresolvable", "backend address unresolvable", Info},
    {F::ServerConnectFailed, Error, code::kConnectionFailure, "could not connect to server: {}", kPoolDetail, "",
     Reuse, "server_connect_failed", "no server available: connect failed", Info},
    {F::ServerConnectRefused, Error, code::kConnectionFailure, "could not connect to server: {}", kPoolDetail, "",
     Reuse, "server_connect_refused", "no server available: connection refused", Info},
    {F::ServerConnectTimeout, Error, code::kConnectionFailure, "timeout connecting to server (server_connect_timeout)",
     kPoolDetail, "", Reuse, "server_connect_timeout", "no server available: server_connect_timeout", Info},
    {F::ServerClosedDuringLogin, Error, code::kConnectionFailure, "server closed the connection during login",
     kPoolDetail, "", Reuse, "server_closed_during_login", "no server available: closed during login", Info},
    {F::ServerLoginRefused, Error, code::kConnectionFailure, "{}", kPoolDetail, "", Reuse, "server_login_refused",
     "no server available: login refused", Info},
    // TLS towards a backend (its sslmode): libpq's words, so a client reads what libpq would have said.
    {F::ServerTlsRefused, Error, code::kConnectionFailure,
     "could not connect to server: server does not support SSL, but SSL was required (backend sslmode {})",
     kPoolDetail, "", Reuse, "server_tls_refused", "no server available: server refused TLS", Warn},
    {F::ServerTlsFailed, Error, code::kConnectionFailure, "could not connect to server: {}", kPoolDetail,
     "", Reuse, "server_tls_failed", "no server available: TLS handshake with the server failed", Warn},
    {F::ServerInvalidMessage, Error, code::kProtocolViolation, "invalid message from server: {}", kPoolDetail, "",
     Close, "server_invalid_message", "invalid message from server", Info},
    {F::ServerAuthMalformed, Error, code::kProtocolViolation, "malformed authentication request from server",
     kPoolDetail, "", Reuse, "server_auth_malformed", "no server available: server authentication", Info},
    {F::ServerWantsCleartext, Error, code::kInvalidPassword,
     "server asks for a cleartext password but user \"{}\" has only a hashed password in the pgmux config",
     kPoolDetail, "", Reuse, "server_wants_cleartext", "no server available: server authentication", Info},
    {F::ServerWantsMd5, Error, code::kInvalidPassword,
     "server asks for md5 but user \"{}\" has only a SCRAM secret in the pgmux config", kPoolDetail, "", Reuse,
     "server_wants_md5", "no server available: server authentication", Info},
    {F::ServerMd5SaltMalformed, Error, code::kInvalidPassword, "malformed md5 salt from server", kPoolDetail, "",
     Reuse, "server_md5_salt_malformed", "no server available: server authentication", Info},
    {F::ServerNoSaslMechanism, Error, code::kFeatureNotSupported, "server offers no SASL mechanism pgmux supports",
     kPoolDetail, "", Reuse, "server_no_sasl_mechanism", "no server available: server authentication", Info},
    {F::ServerScramNoSecret, Error, code::kInvalidPassword,
     "cannot log in to the server with SCRAM as user \"{}\": the pgmux config has no plaintext password and no "
     "client has logged in with SCRAM yet",
     kPoolDetail, "", Reuse, "server_scram_no_secret", "no server available: server authentication", Info},
    {F::ServerUnexpectedSasl, Error, code::kProtocolViolation, "unexpected SASL continue from server", kPoolDetail, "",
     Reuse, "server_unexpected_sasl", "no server available: server authentication", Info},
    {F::ServerScramFailed, Error, code::kInvalidPassword, "SCRAM exchange with server failed: {}", kPoolDetail, "",
     Reuse, "server_scram_failed", "no server available: server authentication", Info},
    {F::ServerScramSignature, Error, code::kInvalidPassword, "server's SCRAM signature did not verify", kPoolDetail,
     "", Reuse, "server_scram_signature", "no server available: server authentication", Info},
    {F::ServerAuthUnsupported, Error, code::kFeatureNotSupported,
     "server asks for an authentication method pgmux does not support (code {})", kPoolDetail, "", Reuse,
     "server_auth_unsupported", "no server available: server authentication", Info},
    // The failed batch rolled back part of what pgmux believes it applied: the server's state is unknown.
    {F::ParameterRejected, Fatal, code::kConnectionFailure, "{}", "", "", Close, "parameter_rejected",
     "startup parameter rejected by the server", Info},
};

// A linked server that went away, routing, and the limits of transaction and statement pooling.
constexpr FailureRow kSessionRows[] = {
    {F::ServerLost, Silent, code::kConnectionFailure, "server connection lost", "", "", Reuse, "server_lost",
     "server connection lost", Info},
    {F::ServerLostSessionGone, Fatal, code::kConnectionFailure,
     "server connection lost (backend \"{}\"); session state is gone", "", "", Reuse, "server_lost_session_gone",
     "server connection lost", Info},
    {F::ServerLostInFlight, Error, code::kConnectionFailure,
     "server connection lost (backend \"{}\"); the statement may or may not have been executed", "", "", Reuse,
     "server_lost_in_flight", "server connection lost", Info},
    {F::ServerLostInTransaction, Fatal, code::kConnectionFailure,
     "server connection lost (backend \"{}\") inside a transaction: the transaction did not commit", "", "", Reuse,
     "server_lost_in_transaction", "server connection lost inside a transaction", Info},
    {F::ServerLostDuringCommit, Fatal, code::kTransactionResolutionUnknown,
     "server connection lost (backend \"{}\") while COMMIT was running: the transaction may or may not have "
     "committed", "", "Check whether its changes are there before running it again.", Reuse,
     "server_lost_during_commit", "server connection lost during COMMIT", Warn},
    // The request must not run outside the transaction the client asked for.
    {F::DeferredBeginFailed, Silent, code::kConnectionFailure, "pgmux could not start the transaction on the server",
     "", "", Close, "deferred_begin_failed", "BEGIN ahead of a request failed", Info},
    // The same BEGIN failed in the prepare step ahead of the request (ClientConn::build_prepare_step), which has
    // not run. The client was told the block began: an ERROR would leave it in a block that exists nowhere, its
    // next statements each committing on its own. FATAL: nothing it sent after the BEGIN runs. PostgreSQL's
    // SQLSTATE (a direct connection would have had it for the BEGIN itself).
    {F::DeferredBeginRefused, Fatal, code::kConnectionFailure,
     "could not start the transaction \"{}\" on server S-{} (backend \"{}\"): {}",
     "pgmux had answered that statement itself (a BEGIN, or a SET TRANSACTION behind it); nothing sent after it ran.",
     "", Close, "deferred_begin_refused",
     "the BEGIN pgmux answered failed on the server", Warn},
    // Fail closed: the session's settings (its role among them) may differ between its servers.
    {F::SessionStateLost, Fatal, code::kConnectionFailure,
     "pgmux cannot tell which session settings a transaction on standby \"{}\" left in place",
     "The session's settings would differ between its server connections.", "", Close, "session_state_lost",
     "session state lost on a standby", Info},
    // A command of the session log (SET ROLE, SET, set_config) failed when replayed on the server a request was
    // about to run on (the role revoked since, the object a setting names dropped). PostgreSQL would have gone on
    // with it in effect; pgmux cannot, and running the request with the server's own value instead would run it
    // with other privileges or settings than the client set. FATAL, not ERROR: the command stays in the log, so
    // every later request on another server, RESET and DISCARD ALL included (the replay runs first), would fail
    // the same way, a session that can run nothing; dropping the command from the log would quietly run the
    // session without it. A closed connection is what a client's pool replaces, and the new session's own SET
    // then gets PostgreSQL's error. The server closes: it ran part of the log. SQLSTATE: PostgreSQL's.
    {F::SessionReplayFailed, Fatal, code::kConnectionFailure,
     "could not restore session setting \"{}\" on server S-{} (backend \"{}\"): {}",
     "pgmux replays the session's settings on each server connection before a request runs there; this request "
     "did not run.",
     "", Close, "session_replay_failed", "session command replay failed", Warn},

    {F::NoPrimaryInTime, Error, code::kCannotConnectNow,
     "pgmux: no primary became available within failover_timeout ({})", "{}", "", Reuse, "no_primary_in_time",
     "no primary within failover_timeout", Info},
    {F::NoBackendReachable, Error, code::kCannotConnectNow, "pgmux: no backend of database \"{}\" is reachable", "{}",
     "", Reuse, "no_backend_reachable", "no backend reachable", Info},
    {F::NoStandbyNoFallback, Error, code::kCannotConnectNow,
     "pgmux: no standby can serve this read ({}) and fallback_to_primary is off", "", "", Reuse,
     "no_standby_no_fallback", "no standby for a read", Info},
    // A former primary's session must not carry on.
    {F::PrimaryMoved, Silent, code::kConnectionFailure, "the backend is no longer the primary", "", "", Close,
     "primary_moved", "the backend is no longer the primary", Info},

    {F::StatementPoolingTransaction, Error, code::kFeatureNotSupported,
     "pgmux: transactions spanning several statements are not allowed in statement pooling mode (pool_mode "
     "\"statement\")",
     "", "Send the whole transaction in one query string, or use transaction pooling.", Reuse,
     "statement_pooling_transaction", "transaction refused in statement pooling", Info},
    {F::PrepareFailed, Error, code::kConnectionFailure, "{}", "", "", Reuse, "prepare_failed",
     "a statement could not be prepared on the server", Info},
    // PostgreSQL's own error, answered by pgmux for a statement prepared before DDL changed its result columns,
    // about to run on a shared copy prepared after it (transaction pooling).
    {F::PlanChanged, Error, code::kFeatureNotSupported, "cached plan must not change result type", "", "", Reuse,
     "plan_changed", "plan changed since prepared", Info, "RevalidateCachedQuery"},
    // PostgreSQL's own error, answered by pgmux where the statement lives under a shared name (transaction pooling).
    {F::DuplicatePreparedStatement, Error, code::kDuplicatePreparedStatement,
     "prepared statement \"{}\" already exists", "", "", Reuse, "duplicate_prepared_statement",
     "duplicate prepared statement", Info},
};

template <size_t... N>
constexpr std::array<FailureRow, (N + ...)> join_rows(const FailureRow (&... groups)[N]) {
  std::array<FailureRow, (N + ...)> all{};
  size_t next = 0;
  ((std::copy(std::begin(groups), std::end(groups), all.begin() + next), next += N), ...);
  return all;
}
constexpr auto kRows = join_rows(kClientRows, kClientLoginRows, kClientSessionRows, kServerLoginRows, kSessionRows);

constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < std::size(kRows); ++i) {
    if (static_cast<size_t>(kRows[i].failure) != i) return false;
  }
  return true;
}
static_assert(std::size(kRows) == kFailureCount, "every Failure has exactly one row");
static_assert(rows_in_enum_order(), "kRows is indexed by Failure: keep the rows in enum order");

size_t count_placeholders(std::string_view pattern) {
  size_t n = 0;
  for (size_t at = pattern.find("{}"); at != std::string_view::npos; at = pattern.find("{}", at + 2)) ++n;
  return n;
}

}  // namespace

const FailureRow& failure_row(Failure failure) { return kRows[static_cast<size_t>(failure)]; }

FailureReport FailureReport::relayed(Failure failure, std::string sqlstate, std::string message) {
  return relayed_words(failure, std::move(sqlstate), {std::move(message)});
}

FailureReport FailureReport::relayed_words(Failure failure, std::string sqlstate, std::vector<std::string> words) {
  FailureReport report(failure, std::move(words));
  report.sqlstate_ = std::move(sqlstate);
  return report;
}

FailureReport FailureReport::relayed_whole(Failure failure, protocol::ByteView error_body) {
  const auto fields = protocol::parse_error_fields(error_body);
  FailureReport report = relayed(failure, fields ? fields->sqlstate : "", fields ? fields->message : "");
  report.server_error_.assign(error_body.begin(), error_body.end());
  return report;
}

std::string_view FailureReport::sqlstate() const {
  return sqlstate_.empty() ? std::string_view(row().sqlstate) : std::string_view(sqlstate_);
}

std::string FailureReport::message() const {
  size_t next = 0;
  return fill_placeholders(row().message, words_, &next);
}

std::string FailureReport::detail() const {
  size_t next = count_placeholders(row().message);
  return fill_placeholders(row().detail, words_, &next);
}

std::string format_seconds(double seconds) {
  char text[32];
  snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

std::string fill_placeholders(std::string_view pattern, const std::vector<std::string>& words, size_t* next) {
  std::string out;
  size_t from = 0;
  for (size_t at = pattern.find("{}"); at != std::string_view::npos; at = pattern.find("{}", from)) {
    out.append(pattern.substr(from, at - from));
    out.append(*next < words.size() ? std::string_view(words[*next]) : std::string_view("?"));
    ++*next;
    from = at + 2;
  }
  out.append(pattern.substr(from));
  return out;
}

Severity effective_severity(Failure failure, bool logged_in) {
  const Severity severity = failure_row(failure).severity;
  return severity == Severity::Error && !logged_in ? Severity::Fatal : severity;
}

void report_failure(const FailureReport& report, Severity severity, WorkerMetrics& metrics, std::string_view who,
                    protocol::ByteVector& out) {
  if (severity == Severity::Silent) return;
  const FailureRow& row = report.row();
  const char* word = severity == Severity::Error ? "ERROR" : "FATAL";
  const std::string message = report.message();
  const std::string_view sqlstate = report.sqlstate();
  if (severity == Severity::FatalUnsent) {
    // Nothing for the client to read.
  } else if (report.protocol2()) {
    protocol::build_protocol2_fatal(out, message);  // a client of protocol 1.x or 2.x reads only this
  } else if (!report.server_error().empty()) {
    protocol::ByteWriter w(out);
    w.begin_message('E');
    w.bytes(report.server_error());
    w.end_message();
  } else {
    protocol::build_error_response(out, word, sqlstate, message, report.detail(), report.hint(), row.routine);
  }
  metrics.count_error(sqlstate);
  // The message may carry the client's words (a role or database name): escaped, they stay on this line.
  PGMUX_LOG(row.level, "%.*s: %s: %s %.*s %s", static_cast<int>(who.size()), who.data(), row.log, word,
            static_cast<int>(sqlstate.size()), sqlstate.data(), escape_for_log(message, 1000).c_str());
}

ServerVerdict server_fate(const ServerFacts& facts, std::optional<Failure> why) {
  if (why && failure_row(*why).server == ServerFate::Close) return {ServerFate::Close, failure_row(*why).log};
  if (!facts.clean) return {ServerFate::Close, "mid-request: replies owed, a transaction open or a message half sent"};
  if (facts.copy_in) return {ServerFate::Close, "mid-request: COPY FROM STDIN in progress"};
  // It would cancel the next client's query; PostgreSQL cannot tell whose query a cancel was meant for.
  if (facts.cancel_on_its_way) return {ServerFate::Close, "a cancel request its last client sent may still reach it"};
  if (facts.retiring) return {ServerFate::Close, facts.retiring};
  if (facts.session_pooling) return {ServerFate::Reset, "session pooling: DISCARD ALL for the next client"};
  if (facts.session_state) return {ServerFate::Reset, "the client left session state: DISCARD ALL"};
  return {ServerFate::Reuse, nullptr};
}

}  // namespace pgmux::proxy
