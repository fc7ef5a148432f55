#include "tests/support/pg_client.hpp"

#include <poll.h>

#include <chrono>
#include <stdexcept>

namespace pgmux::test {

PgConn try_connect(const std::string& conninfo) { return PgConn(PQconnectdb(conninfo.c_str())); }

PgConn connect(const std::string& conninfo) {
  PgConn conn = try_connect(conninfo);
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("connect failed (" + conninfo + "): " +
                             (conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  return conn;
}

PgResult exec(PGconn* conn, const std::string& sql) {
  PgResult res(PQexec(conn, sql.c_str()));
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn);
    throw std::runtime_error("query failed: " + sql.substr(0, 200) + ": " + msg);
  }
  return res;
}

std::string scalar(PGconn* conn, const std::string& sql) {
  PgResult res = exec(conn, sql);
  if (PQntuples(res.get()) < 1 || PQnfields(res.get()) < 1) {
    throw std::runtime_error("query returned no value: " + sql.substr(0, 200));
  }
  return PQgetvalue(res.get(), 0, 0);
}

std::string exec_sqlstate(PGconn* conn, const std::string& sql) {
  PgResult res(PQexec(conn, sql.c_str()));
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return "";
  std::string code = sqlstate(res.get());
  return code.empty() ? "?????" : code;
}

std::string sqlstate(const PGresult* res) {
  if (!res) return "";
  const char* code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  return code ? code : "";
}

std::string read_copy_out(PGconn* conn) {
  std::string data;
  char* chunk = nullptr;
  int n = 0;
  while ((n = PQgetCopyData(conn, &chunk, 0)) > 0) {
    data.append(chunk, static_cast<size_t>(n));
    PQfreemem(chunk);
  }
  PgResult done(PQgetResult(conn));
  std::string outcome = PQresultStatus(done.get()) == PGRES_COMMAND_OK ? data : "error " + sqlstate(done.get());
  while (PgResult(PQgetResult(conn))) {
  }
  return outcome;
}

size_t count_occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

bool wait_readable(PGconn* conn, double seconds) {
  pollfd pfd{PQsocket(conn), POLLIN, 0};
  int r = poll(&pfd, 1, static_cast<int>(seconds * 1000));
  return r > 0;
}

namespace {
std::string error_fields(const PGresult* res) {
  auto field = [&](int code) {
    const char* v = PQresultErrorField(res, code);
    return std::string(v ? v : "");
  };
  return field(PG_DIAG_SEVERITY_NONLOCALIZED) + " " + field(PG_DIAG_SQLSTATE) + " " +
         field(PG_DIAG_MESSAGE_PRIMARY);
}
}  // namespace

std::string await_error(PGconn* conn, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::string first;
  bool have_first = false;
  while (true) {
    while (PQisBusy(conn)) {
      const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return "timeout";
      if (PQconsumeInput(conn) == 0 && PQisBusy(conn)) return have_first ? first : "closed";
      if (PQisBusy(conn)) wait_readable(conn, left);
    }
    PgResult res(PQgetResult(conn));
    if (!res) break;
    if (!have_first) {
      const ExecStatusType st = PQresultStatus(res.get());
      first = st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ? error_fields(res.get()) : "";
      have_first = true;
    }
  }
  return first;
}

uint64_t fnv1a(const void* data, size_t size, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string pipeline_results(PGconn* conn, int syncs) {
  std::string seen;
  for (int i = 0; i < 32 && syncs > 0; ++i) {
    while (PQisBusy(conn)) {  // bounded: a proxy that never answers fails the test instead of hanging it
      if (!wait_readable(conn, 10) || PQconsumeInput(conn) == 0) return seen + "no answer within 10 s\n";
    }
    PgResult result(PQgetResult(conn));
    if (!result) continue;  // the end of one query's results
    const ExecStatusType status = PQresultStatus(result.get());
    std::string row = PQresStatus(status);
    row += " " + sqlstate(result.get());
    if (status == PGRES_TUPLES_OK && PQntuples(result.get()) > 0) {
      row += " " + std::string(PQgetvalue(result.get(), 0, 0));
    }
    seen += row + "\n";
    syncs -= status == PGRES_PIPELINE_SYNC;
  }
  return seen;
}

std::string unnamed_use_after_skipped_parse(PGconn* conn, const std::string& own, bool bad) {
  const auto check = [&](bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + ": " + PQerrorMessage(conn));
  };
  if (!own.empty()) {
    PgResult parsed(PQprepare(conn, "", own.c_str(), 0, nullptr));
    check(PQresultStatus(parsed.get()) == PGRES_COMMAND_OK, "PQprepare");
  }
  check(PQenterPipelineMode(conn) == 1, "PQenterPipelineMode");
  if (!bad) {
    check(PQsendQueryPrepared(conn, "no_such_statement", 0, nullptr, nullptr, nullptr, 0) == 1, "PQsendQueryPrepared");
  }
  check(PQsendPrepare(conn, "", bad ? "SELEC 'broken'" : "SELECT 'skipped'::text", 0, nullptr) == 1, "PQsendPrepare");
  check(PQpipelineSync(conn) == 1, "PQpipelineSync");
  check(PQsendQueryPrepared(conn, "", 0, nullptr, nullptr, nullptr, 0) == 1, "PQsendQueryPrepared");
  check(PQpipelineSync(conn) == 1, "PQpipelineSync");
  std::string seen = pipeline_results(conn, 2);
  check(PQexitPipelineMode(conn) == 1, "PQexitPipelineMode");
  return seen;
}

}  // namespace pgmux::test
