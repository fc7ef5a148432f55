// A result set over 100 MB streamed through pgmux in single-row mode, every row checked; and (pgmux only)
// backpressure: a client that does not read must not make pgmux buffer the result.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

constexpr int kRows = 100000;
constexpr int kRepeat = 32;  // payload = md5(g) repeated: 32 * 32 = 1024 bytes per row

std::string md5_hex(const std::string& text) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out, &len, EVP_md5(), nullptr);
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(digits[out[i] >> 4]);
    hex.push_back(digits[out[i] & 15]);
  }
  return hex;
}

struct StreamStats {
  long rows = 0;
  size_t bytes = 0;
  long bad_rows = 0;
  std::string error;
};

// Reads a single-row-mode result to the end, checking each row's payload against md5(g).
StreamStats read_rows(PGconn* conn) {
  StreamStats st;
  while (PgResult res{PQgetResult(conn)}) {
    ExecStatusType s = PQresultStatus(res.get());
    if (s == PGRES_SINGLE_TUPLE) {
      ++st.rows;
      std::string g = PQgetvalue(res.get(), 0, 0);
      std::string payload(PQgetvalue(res.get(), 0, 1), static_cast<size_t>(PQgetlength(res.get(), 0, 1)));
      st.bytes += g.size() + payload.size();
      std::string unit = md5_hex(g);
      bool good = payload.size() == unit.size() * kRepeat && std::stol(g) == st.rows;
      for (size_t i = 0; good && i < payload.size(); i += unit.size())
        good = payload.compare(i, unit.size(), unit) == 0;
      if (!good) ++st.bad_rows;
    } else if (s != PGRES_TUPLES_OK) {
      st.error = PQresultErrorMessage(res.get());
    }
  }
  return st;
}

size_t expected_bytes() {
  size_t total = 0;
  for (int g = 1; g <= kRows; ++g) total += std::to_string(g).size() + 32 * kRepeat;
  return total;
}

}  // namespace

TEST_CASE("100 MB result set, simple protocol, single-row mode, slow start") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  exec(conn.get(), "SET statement_timeout = '120s'");
  std::string sql = "SELECT g, repeat(md5(g::text), " + std::to_string(kRepeat) + ") FROM generate_series(1, " +
                    std::to_string(kRows) + ") g";
  REQUIRE(PQsendQuery(conn.get(), sql.c_str()) == 1);
  REQUIRE(PQsetSingleRowMode(conn.get()) == 1);
  // Do not read for a while: the server keeps producing; a pooler without backpressure would buffer it all.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long rss_while_stalled = target.process() ? target.process()->peak_rss_kb() : -1;

  StreamStats st = read_rows(conn.get());
  INFO("error: " << st.error);
  CHECK(st.error.empty());
  CHECK(st.rows == kRows);
  CHECK(st.bad_rows == 0);
  CHECK(st.bytes == expected_bytes());
  CHECK(st.bytes >= 100u * 1000 * 1000);

  if (target.process()) {
    long peak = target.process()->peak_rss_kb();
    MESSAGE("pgmux peak RSS: " << peak << " kB (after the stall: " << rss_while_stalled << " kB)");
    CHECK(peak > 0);
    if (!sanitized_pgmux()) CHECK(peak < 64 * 1024);  // far below the 100 MB result
  }
  CHECK(scalar(conn.get(), "SELECT 'next'") == "next");
}

TEST_CASE("100 MB result set, extended protocol, single-row mode") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  exec(conn.get(), "SET statement_timeout = '120s'");
  std::string rows = std::to_string(kRows);
  std::string repeat = std::to_string(kRepeat);
  const char* params[] = {repeat.c_str(), rows.c_str()};
  REQUIRE(PQsendQueryParams(conn.get(), "SELECT g, repeat(md5(g::text), $1::int) FROM generate_series(1, $2::int) g",
                            2, nullptr, params, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsetSingleRowMode(conn.get()) == 1);
  StreamStats st = read_rows(conn.get());
  INFO("error: " << st.error);
  CHECK(st.error.empty());
  CHECK(st.rows == kRows);
  CHECK(st.bad_rows == 0);
  CHECK(st.bytes == expected_bytes());
}
