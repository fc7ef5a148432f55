// Small libpq helpers for end-to-end tests: owning handles and "run this, it must work" calls that throw
// std::runtime_error with the server's message (doctest reports it).
#pragma once
#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pgmux::test {

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// Connects; throws with PQerrorMessage on failure.
PgConn connect(const std::string& conninfo);
// Connects; returns the handle even when it failed (check PQstatus / PQerrorMessage).
PgConn try_connect(const std::string& conninfo);

// Runs sql; throws unless the result is COMMAND_OK or TUPLES_OK.
PgResult exec(PGconn* conn, const std::string& sql);
// Runs sql and returns the first column of the first row ("" for NULL); throws without a row.
std::string scalar(PGconn* conn, const std::string& sql);
// Runs sql; returns its SQLSTATE ("" when it succeeded).
std::string exec_sqlstate(PGconn* conn, const std::string& sql);

// SQLSTATE of a result ("" when none).
std::string sqlstate(const PGresult* res);

// After PQexec of a COPY ... TO STDOUT returned PGRES_COPY_OUT: every CopyData's bytes, then the command's end.
// "error SQLSTATE" when the copy ended in an error.
std::string read_copy_out(PGconn* conn);

// How many times `what` occurs in `text` (a log, for lines pgmux writes once per event).
size_t count_occurrences(const std::string& text, const std::string& what);

// Waits (poll) until the connection's socket is readable or the timeout passes; true when readable.
bool wait_readable(PGconn* conn, double seconds);

// Waits (bounded) for every result of a PQsendQuery. Returns the first result's error as "SEVERITY SQLSTATE
// message" ("" when it succeeded), "closed" when the connection ended with no result, "timeout" when it did not
// finish in time.
std::string await_error(PGconn* conn, double seconds);

// Every result of a libpq pipeline up to its `syncs`-th Sync (at most 32 results), one per line: status, SQLSTATE
// and the first value. Each result is waited for 10 s at most ("no answer within 10 s" ends the text).
std::string pipeline_results(PGconn* conn, int syncs);

// Parses `own` as the unnamed statement (unless empty), then pipelines a batch whose Parse of another one
// PostgreSQL skips (a Bind of a statement that does not exist fails first) or that fails itself (`bad`), and
// behind that batch's Sync a Bind of the unnamed statement: pipeline_results of both. Throws if libpq refuses.
std::string unnamed_use_after_skipped_parse(PGconn* conn, const std::string& own, bool bad);

// 64-bit FNV-1a, incremental: pass the previous value to continue a running checksum.
uint64_t fnv1a(const void* data, size_t size, uint64_t h = 1469598103934665603ull);

// A query for the primary's WAL position that a standby reports (pg_last_wal_replay_lsn) once it replayed everything
// inserted so far: pg_current_wal_insert_lsn(), except right past a page header, where it is the page boundary
// (routing::insert_position_as_record_end; waiting for the insert position itself can last until the next record).
inline constexpr const char* kPrimaryReplayTargetSql =
    "SELECT CASE WHEN mod(l - '0/0', 8192) IN (24, 40) THEN l - mod(l - '0/0', 8192) ELSE l END "
    "FROM (SELECT pg_current_wal_insert_lsn() AS l) AS insert_position";

}  // namespace pgmux::test
