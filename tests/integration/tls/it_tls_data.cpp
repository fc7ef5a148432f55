// The data path over TLS (issue 11, item 1): requests of every size around the 32 KiB receive buffer and the
// 16 KiB TLS record, up to 16 MiB, simple and extended, in session and transaction pooling; a 16 MB result;
// COPY in and out, checksummed; and backpressure: a TLS client that stops reading a 64 MB result must not make
// pgmux buffer it. What goes through encrypted must come back byte for byte.
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <chrono>
#include <thread>

#include "tests/integration/request_sizes_support.hpp"
#include "tests/integration/tls/tls_support.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;
using namespace pgmux::test::tls;
using namespace pgmux::test::sizes;

namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;
const size_t kSizes[] = {100, 16 * KiB, 31 * KiB, 32 * KiB, 33 * KiB, 100 * KiB, 1 * MiB, 16 * MiB};
const std::string kParamSql = "SELECT length($1::text), md5($1::text)";

struct TlsPool {
  explicit TlsPool(const std::string& pool_mode) : port(pick_listen_port()) {
    nlohmann::json config =
        config_with_tls(port, "require", certificates().server_crt, certificates().server_key, "");
    for (nlohmann::json& db : config["databases"]) {
      if (db["name"] == "app") db["pool_mode"] = pool_mode;
    }
    process = std::make_unique<PgmuxProcess>(config.dump(2), port);
  }
  std::string app() const { return tls_conninfo(port, "app", "app", {"require"}); }
  int port;
  std::unique_ptr<PgmuxProcess> process;
};

// One request of about `size` bytes (simple Query, or PQexecParams with the payload as its parameter); "" when
// the length and md5 the server computed match what was sent.
std::string sized_request(const TlsPool& pool, bool extended, size_t size) {
  PgConn conn = connect_nonblocking(pool.app());
  PGconn* c = conn.get();
  const std::string literal = payload(size, static_cast<unsigned>(size));
  const Limits limits = Limits::for_bytes(size);
  int sent = 0;
  if (extended) {
    const char* values[1] = {literal.c_str()};
    sent = PQsendQueryParams(c, kParamSql.c_str(), 1, nullptr, values, nullptr, nullptr, 0);
  } else {
    sent = PQsendQuery(c, literal_query(literal).c_str());
  }
  if (sent != 1) return std::string("sending: ") + PQerrorMessage(c);
  if (PQsslInUse(c) != 1) return "not over TLS";
  std::string error;
  std::vector<PgResult> results = finish(c, limits, error);
  if (!error.empty()) return error;
  if (results.size() != 1) return "expected 1 result, got " + std::to_string(results.size());
  return check_length_md5(c, results[0].get(), literal);
}

}  // namespace

TEST_CASE("requests of 100 bytes to 16 MiB over TLS come back whole, session and transaction pooling") {
  for (const char* pool_mode : {"session", "transaction"}) {
    TlsPool pool(pool_mode);
    for (bool extended : {false, true}) {
      for (size_t size : kSizes) {
        std::string error;
        try {
          error = sized_request(pool, extended, size);
        } catch (const std::exception& e) {
          error = e.what();
        }
        CHECK_MESSAGE(error.empty(), pool_mode << " pooling, " << (extended ? "PQexecParams" : "Query") << " of "
                                               << size << " bytes: " << error);
      }
    }
  }
}

TEST_CASE("a 16 MB result over TLS, checksummed") {
  TlsPool pool("session");
  PgConn conn = connect(pool.app());
  REQUIRE(PQsslInUse(conn.get()) == 1);
  const std::string rows = "FROM generate_series(1, 5000) i";
  PgResult result = exec(conn.get(), "SELECT repeat(md5(i::text), 100) " + rows + " ORDER BY i");
  REQUIRE(PQntuples(result.get()) == 5000);
  std::string all;
  for (int i = 0; i < PQntuples(result.get()); ++i) all += PQgetvalue(result.get(), i, 0);
  CHECK(all.size() == 5000u * 3200u);
  CHECK(md5_hex(all) == scalar(conn.get(), "SELECT md5(string_agg(repeat(md5(i::text), 100), '' ORDER BY i)) " + rows));
}

TEST_CASE("COPY FROM STDIN and TO STDOUT over TLS, 8 MB, byte for byte") {
  TlsPool pool("session");
  PgConn conn = connect(pool.app());
  REQUIRE(PQsslInUse(conn.get()) == 1);
  exec(conn.get(), "CREATE TEMP TABLE tls_copy (id integer, payload text)");
  PgResult start(PQexec(conn.get(), "COPY tls_copy FROM STDIN"));
  REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
  std::string sent;
  for (int id = 1; id <= 2000; ++id) {
    const std::string text = payload(4000 + static_cast<size_t>(id % 97), static_cast<unsigned>(id));
    const std::string line = std::to_string(id) + "\t" + text + "\n";
    REQUIRE(PQputCopyData(conn.get(), line.data(), static_cast<int>(line.size())) == 1);
    sent += line;
  }
  REQUIRE(PQputCopyEnd(conn.get(), nullptr) == 1);
  PgResult done(PQgetResult(conn.get()));
  REQUIRE(PQresultStatus(done.get()) == PGRES_COMMAND_OK);
  while (PgResult(PQgetResult(conn.get()))) {
  }
  CHECK(scalar(conn.get(), "SELECT count(*) FROM tls_copy") == "2000");

  PgResult out(PQexec(conn.get(), "COPY (SELECT id, payload FROM tls_copy ORDER BY id) TO STDOUT"));
  REQUIRE(PQresultStatus(out.get()) == PGRES_COPY_OUT);
  const std::string received = read_copy_out(conn.get());
  CHECK(received.size() == sent.size());
  CHECK(md5_hex(received) == md5_hex(sent));
}

TEST_CASE("a TLS client that stops reading a 64 MB result: pgmux does not buffer it (backpressure)") {
  TlsPool pool("session");
  PgConn conn = connect(pool.app());
  REQUIRE(PQsslInUse(conn.get()) == 1);
  const int rows = 64000;  // 1 KiB each
  const std::string sql = "SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, " + std::to_string(rows) + ") g";
  REQUIRE(PQsendQuery(conn.get(), sql.c_str()) == 1);
  REQUIRE(PQsetSingleRowMode(conn.get()) == 1);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the server goes on producing meanwhile
  long read = 0;
  long bad = 0;
  while (PgResult res{PQgetResult(conn.get())}) {
    if (PQresultStatus(res.get()) != PGRES_SINGLE_TUPLE) continue;
    ++read;
    const std::string g = PQgetvalue(res.get(), 0, 0);
    std::string expected;
    const std::string unit = md5_hex(g);
    for (int i = 0; i < 32; ++i) expected += unit;
    if (std::stol(g) != read || expected != PQgetvalue(res.get(), 0, 1)) ++bad;
  }
  CHECK(read == rows);
  CHECK(bad == 0);
  const long peak = pool.process->peak_rss_kb();
  MESSAGE("pgmux peak RSS with a stalled 64 MB TLS result: " << peak << " kB");
  CHECK(peak > 0);
  if (!sanitized_pgmux()) CHECK(peak < 32 * 1024);  // half the result: nothing like it is held
  CHECK(scalar(conn.get(), "SELECT 'next'") == "next");
}
