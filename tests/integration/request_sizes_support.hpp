// Helpers for it_request_sizes (issue 9): libpq calls that can never block (non-blocking connection, every wait
// bounded, a hang reported as an error), deterministic payloads with their md5, raw frontend messages, and a raw
// session that logs in with libpq and then writes and reads bytes on its socket itself.
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::test::sizes {

// ---- the proxy under test ----

struct Mode {
  std::string pool_mode;  // of the `app` database entry ("direct" when PGMUX_TEST_DIRECT=1)
  bool split;             // read/write split over primary + standbys, else the primary alone
};

// The modes every case runs in: session and transaction pooling (split as given); one "direct" in direct mode.
std::vector<Mode> modes(bool split);

// pgmux over the test cluster with `mode` on database app (pool_size), app logging in with trust, and an admin
// console user admin/admin. Waits until it serves.
struct Target {
  Target(const Mode& mode, int pool_size);
  // No destructor of its own: the harness stops pgmux with one SIGINT (everything closed at once), so a client a
  // broken pgmux left stuck cannot hold up the stop.
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;
  std::string app(const std::string& application_name = "") const;
  std::string console() const;  // admin/admin on database pgmux
  bool direct() const { return proxy.direct(); }
  void log_if(bool failed);  // pgmux's log, once, when a check failed

  Mode mode;
  int listen;
  ProxyUnderTest proxy;
  bool logged = false;
};

// ---- bounded libpq ----

// How long a request may take: `stall` seconds without any progress (socket writable or readable), and `total`
// seconds in all. A hang is reported as an error instead of blocking the test.
struct Limits {
  double stall = 5.0;
  double total = 60.0;
  static Limits for_bytes(size_t bytes);  // 3 s + 1 s per MiB of stall, 30 s + 2.5 s per MiB in all
};

// Connects (connect_timeout bounds it) and puts the connection in non-blocking mode; throws on failure.
PgConn connect_nonblocking(const std::string& conninfo);

// Sends what libpq has queued (PQflush until done); "" or why not ("no progress for 5 s ...").
std::string flush(PGconn* conn, const Limits& limits, double started);
// The next PQgetResult, bounded. On a stall or a broken connection: nullptr and `error` set; a genuine NULL
// from libpq leaves `error` empty.
PgResult next_result(PGconn* conn, const Limits& limits, double started, std::string& error);
// After one PQsend*: flushes and collects every result up to libpq's NULL. `error` set on a stall or failure.
std::vector<PgResult> finish(PGconn* conn, const Limits& limits, std::string& error);
// PQexec that cannot hang: PQsendQuery + finish; throws on a stall, a failure or an error result.
PgResult exec_bounded(PGconn* conn, const std::string& sql, double seconds = 5.0);

// "[SQLSTATE] message" of a failed result, or the status name.
std::string describe(PGconn* conn, const PGresult* res);

// ---- payloads ----

// `n` printable ASCII characters (no quote, dollar or backslash), the same for the same seed.
std::string payload(size_t n, unsigned seed);
std::string md5_hex(const std::string& data);
// SELECT length(t), md5(t) of `literal` as a $$-quoted literal, padded by nothing: its size is
// literal.size() + literal_query_overhead().
std::string literal_query(const std::string& literal);
size_t literal_query_overhead();
// "" when `res` is one row (length, md5) matching `sent`, else what differs.
std::string check_length_md5(PGconn* conn, const PGresult* res, const std::string& sent);

// ---- raw frontend messages (tag, int32 length, body) ----

std::string message(char tag, const std::string& body);
std::string query_message(const std::string& sql);
std::string parse_message(const std::string& name, const std::string& sql);
std::string bind_message(const std::string& statement, const std::vector<std::string>& text_params,
                         const std::string& portal = "");
std::string describe_portal_message();
std::string execute_message(const std::string& portal = "");
std::string sync_message();

// ---- raw session ----

struct BackendMessage {
  char tag = 0;
  std::string body;
};

// ErrorResponse fields by code ('S', 'V', 'C', 'M', ...).
std::map<char, std::string> error_fields(const std::string& body);
// DataRow columns as text (NULL as "<null>").
std::vector<std::string> data_row(const std::string& body);

// Logs in with libpq (any authentication), then owns the socket: raw writes and reads with deadlines. libpq is
// not used again except to close.
class RawSession {
 public:
  explicit RawSession(const std::string& conninfo);
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  // Writes `bytes` in pieces of `chunk` bytes (1 = a send() per byte); false on error or after `seconds`.
  bool send(const std::string& bytes, double seconds, size_t chunk = 1 << 20);
  enum class Read { Message, Timeout, Closed };
  // One backend message, waiting until the absolute time `deadline` (routing::now_seconds()).
  Read read(BackendMessage& out, double deadline);
  // Messages until (and including) the first with tag `until`, or until EOF or the deadline; `last` says which.
  std::vector<BackendMessage> read_until(char until, double deadline, Read& last);
  // Vanishes: both directions shut down, no Terminate; the peer sees EOF or a reset.
  void abort();
  // Shuts down the sending side only (a client done writing that still reads the replies); the peer sees EOF.
  void finish_sending();

 private:
  PgConn conn_;
  int fd_;
  std::string in_;
};

// Tags of messages as a string ("TDCZ"), for messages.
std::string tags(const std::vector<BackendMessage>& messages);

}  // namespace pgmux::test::sizes
