// The failure policy (DESIGN.md §3.10): every reason a request fails or a connection ends is one Failure, and
// one table (failure.cpp) says for each what the client is told (severity, SQLSTATE, message, detail, hint),
// what becomes of the server connections involved, its metric label and how the log words it. Client and
// server code name a Failure and its variable words; the wording, codes and reuse rules live only here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "protocol/bytes.hpp"

namespace pgmux::proxy {

struct WorkerMetrics;

enum class Failure : uint8_t {
  // The client went away or was done: nobody to tell.
  ClientClosed,
  ClientTerminated,
  ClientSocketError,
  CancelRequestDone,
  // Startup and login.
  StartupFraming,
  StartupPacketInvalid,
  ProtocolUnsupported,
  DataAfterEncryptionRequest,
  TlsHandshakeFailed,
  TlsDirectWithoutAlpn,
  TlsRequired,
  TlsClientCertRequired,
  TlsClientCertMismatch,
  NoUserName,
  ReplicationRefused,
  ReplicationValueInvalid,
  OptionsUnsupported,
  NoHbaEntry,
  HbaRejected,
  CertAuthFailed,
  UnknownRole,
  AuthFailed,
  UnknownRolePassword,
  NoUsableScramSecret,
  AuthQueryNoRole,
  PasswordExpired,
  NoPasswordAssigned,
  RoleCannotLogin,
  AuthQueryFailed,
  AuthProtocolViolation,
  AuthMessageRefused,
  AuthMessageInvalid,
  AuthUnexpectedMessage,
  UnknownDatabase,
  NotAdminUser,
  TooManyClients,
  // The client broke the protocol after login.
  MalformedRequest,
  InvalidMessageLength,
  InvalidCopyMessage,
  MalformedExtendedMessage,
  AdminExtendedProtocol,
  UnreadableAdminQuery,
  // Timeouts.
  LoginTimeout,
  IdleTransactionTimeout,
  ClientIdleTimeout,
  QueryWaitTimeout,
  PausedWaitTimeout,
  // The client's own cancel request, for a request still waiting (for a server, a primary, a replay, PAUSE).
  WaitingRequestCanceled,
  // The operator.
  KilledByAdmin,
  AdminShutdown,
  ShuttingDown,
  BackendFenced,
  // No pool, or no server could be opened for the request.
  NoUsableBackend,
  TooManyAutoDatabases,
  BackendUnresolvable,
  ServerConnectFailed,
  ServerConnectRefused,  // ECONNREFUSED: nothing listens (a stopped or crashed server); counts as a failed probe
  ServerConnectTimeout,
  ServerClosedDuringLogin,
  ServerLoginRefused,
  ServerTlsRefused,
  ServerTlsFailed,
  ServerInvalidMessage,
  ServerAuthMalformed,
  ServerWantsCleartext,
  ServerWantsMd5,
  ServerMd5SaltMalformed,
  ServerNoSaslMechanism,
  ServerScramNoSecret,
  ServerUnexpectedSasl,
  ServerScramFailed,
  ServerScramSignature,
  ServerAuthUnsupported,
  ParameterRejected,
  // A linked server went away or could not go on.
  ServerLost,
  ServerLostSessionGone,
  ServerLostInFlight,
  ServerLostInTransaction,
  ServerLostDuringCommit,
  DeferredBeginFailed,
  DeferredBeginRefused,
  SessionStateLost,
  SessionReplayFailed,
  // Routing.
  NoPrimaryInTime,
  NoBackendReachable,
  NoStandbyNoFallback,
  PrimaryMoved,
  // Limits of transaction and statement pooling.
  StatementPoolingTransaction,
  PrepareFailed,
  PlanChanged,
  DuplicatePreparedStatement,
  Count
};

// What the client gets.
enum class Severity : uint8_t {
  Fatal,   // a FATAL ErrorResponse, then the connection closes
  Error,   // an ERROR for the request in hand; the session goes on (before login there is none: FATAL)
  Silent,  // the connection closes (or the event is only logged): nobody is there to read a message
  // A FATAL PostgreSQL writes to its log only (authentication_timeout): logged and counted as a FATAL, and the
  // connection closes without a message.
  FatalUnsent,
};

// What becomes of a server connection when its client gives it back.
enum class ServerFate : uint8_t {
  Reuse,  // back to the pool as it is (a Failure row: as the server's own state allows)
  Reset,  // DISCARD ALL first: the client left session state there
  Close,  // never serves again
};

struct FailureRow {
  Failure failure;       // its own index: the table is checked complete and in order
  Severity severity;
  const char* sqlstate;  // protocol/sqlstate.hpp; for a relayed failure, used when PostgreSQL sent none
  const char* message;   // "{}" placeholders take the report's words in order, then detail's
  const char* detail;    // "" = none
  const char* hint;      // "" = none
  ServerFate server;     // Close: the client's servers close whatever their state; Reuse: their state decides
  const char* label;     // metric label (pgmux_client_disconnects_total{reason}), snake_case
  const char* log;       // how the log names it ("disconnect (...)" and the failure's own line)
  conf::LogLevel level;  // how loud the client's log line is
  const char* routine = "";  // PostgreSQL's R field where pgmux answers in its place and a driver reads it
};

const FailureRow& failure_row(Failure failure);
inline const char* to_string(Failure failure) { return failure_row(failure).label; }
inline constexpr size_t kFailureCount = static_cast<size_t>(Failure::Count);

// One failure with its variable words (pool, backend, setting, value, PostgreSQL's own message).
class FailureReport {
 public:
  FailureReport(Failure failure, std::vector<std::string> words = {})
      : failure_(failure), words_(std::move(words)) {}
  // A failure PostgreSQL reported: its SQLSTATE (empty: the table's) and message fill the row.
  static FailureReport relayed(Failure failure, std::string sqlstate, std::string message);
  // The same with pgmux's words around PostgreSQL's message (the row says where each goes).
  static FailureReport relayed_words(Failure failure, std::string sqlstate, std::vector<std::string> words);
  // A failure PostgreSQL reported to pgmux's own query: the client gets that ErrorResponse whole (position, detail
  // and every other field as the server wrote them). error_body: the message body after tag and length.
  static FailureReport relayed_whole(Failure failure, protocol::ByteView error_body);
  protocol::ByteView server_error() const { return server_error_; }

  Failure failure() const { return failure_; }
  const FailureRow& row() const { return failure_row(failure_); }
  std::string_view sqlstate() const;
  std::string message() const;
  std::string detail() const;
  std::string_view hint() const { return row().hint; }
  // More words for the placeholders still open (the pool adds its name and backend to a server's failure).
  void add_words(std::initializer_list<std::string> words) { words_.insert(words_.end(), words); }
  // A FATAL before login to a client that asked for protocol 1.x or 2.x: written in protocol 2's format.
  void answer_in_protocol2() { protocol2_ = true; }
  bool protocol2() const { return protocol2_; }

 private:
  Failure failure_;
  std::string sqlstate_;  // PostgreSQL's, for a relayed failure
  protocol::ByteVector server_error_;  // relayed_whole: the server's ErrorResponse body
  std::vector<std::string> words_;
  bool protocol2_ = false;
};

// A duration as failure messages word it: "1.5 s".
std::string format_seconds(double seconds);

// "{}" in `pattern` replaced by words[*next], words[*next + 1], ...; a missing word leaves "?".
std::string fill_placeholders(std::string_view pattern, const std::vector<std::string>& words, size_t* next);

// What the client is told: the row's severity, except that a request error before login ends the login.
Severity effective_severity(Failure failure, bool logged_in);

// The one place a failure becomes what the client reads, a metric and a log line: appends the ErrorResponse
// (FATAL or ERROR as `severity` says; nothing for Silent, which on_closing logs), counts it by SQLSTATE class and
// logs it after `who` (the connection's log prefix).
void report_failure(const FailureReport& report, Severity severity, WorkerMetrics& metrics, std::string_view who,
                    protocol::ByteVector& out);

// What decides whether a server connection its client gives back serves again. The client, the server and
// the pool each know part of it; server_fate is the only place that weighs it.
struct ServerFacts {
  bool clean = false;             // ServerConn::reusable(): nothing owed or half sent, no transaction open
  bool copy_in = false;           // its client was streaming COPY data into it
  bool session_pooling = false;   // session pooling resets every server its client gives back
  bool session_state = false;     // the client was pinned to it or ran session commands there
  bool cancel_on_its_way = false; // a cancel request its client sent may still reach it (CancelSlot)
  const char* retiring = nullptr; // the pool retires it (shutdown, server_lifetime, reload): why
};
struct ServerVerdict {
  ServerFate fate;
  const char* why;  // for the log: why it closes or resets (null when reused as it is)
};
// `why`: the failure that ends the client's request or session, if any.
ServerVerdict server_fate(const ServerFacts& facts, std::optional<Failure> why = std::nullopt);

}  // namespace pgmux::proxy
