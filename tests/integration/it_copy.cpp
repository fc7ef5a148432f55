// COPY FROM STDIN and COPY TO STDOUT of more than 50 MB through pgmux, byte-for-byte checked; and a COPY the
// client aborts, after which the session must still work.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

constexpr int kRows = 560000;        // ~100 bytes per row: ~56 MB
constexpr size_t kPayloadLen = 80;

// Deterministic row text "id\tpayload\tn\n" with a pseudo-random alphanumeric payload.
struct RowGenerator {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  std::string next(int id, int64_t& n_out) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string payload(kPayloadLen, 'x');
    for (char& c : payload) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      c = alphabet[(state >> 33) % 62];
    }
    n_out = static_cast<int64_t>(state >> 20) - (int64_t{1} << 42);
    return std::to_string(id) + "\t" + payload + "\t" + std::to_string(n_out) + "\n";
  }
};

}  // namespace

TEST_CASE("COPY FROM STDIN and TO STDOUT, 56 MB, checksummed") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  exec(conn.get(), "SET statement_timeout = '120s'");
  exec(conn.get(), "CREATE TEMP TABLE copy_data (id integer, payload text, n bigint)");

  // --- COPY FROM STDIN ---
  PgResult start(PQexec(conn.get(), "COPY copy_data FROM STDIN"));
  REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
  RowGenerator gen;
  uint64_t sent_sum = fnv1a(nullptr, 0);
  size_t sent_bytes = 0;
  int64_t n_total = 0;
  std::string chunk;
  for (int id = 1; id <= kRows; ++id) {
    int64_t n = 0;
    chunk += gen.next(id, n);
    n_total += n;
    if (chunk.size() >= 64 * 1024 || id == kRows) {
      sent_sum = fnv1a(chunk.data(), chunk.size(), sent_sum);
      sent_bytes += chunk.size();
      REQUIRE(PQputCopyData(conn.get(), chunk.data(), static_cast<int>(chunk.size())) == 1);
      chunk.clear();
    }
  }
  REQUIRE(PQputCopyEnd(conn.get(), nullptr) == 1);
  PgResult done(PQgetResult(conn.get()));
  INFO(PQresultErrorMessage(done.get()));
  REQUIRE(PQresultStatus(done.get()) == PGRES_COMMAND_OK);
  CHECK(std::string(PQcmdTuples(done.get())) == std::to_string(kRows));
  PgResult tail(PQgetResult(conn.get()));
  CHECK(tail == nullptr);
  CHECK(sent_bytes >= 50u * 1024 * 1024);

  // The server holds what we sent.
  PgResult sums = exec(conn.get(), "SELECT count(*), sum(n), sum(length(payload)), min(id), max(id) FROM copy_data");
  CHECK(std::string(PQgetvalue(sums.get(), 0, 0)) == std::to_string(kRows));
  CHECK(std::string(PQgetvalue(sums.get(), 0, 1)) == std::to_string(n_total));
  CHECK(std::string(PQgetvalue(sums.get(), 0, 2)) == std::to_string(kPayloadLen * kRows));
  CHECK(std::string(PQgetvalue(sums.get(), 0, 4)) == std::to_string(kRows));

  // --- COPY TO STDOUT: the same bytes must come back ---
  PgResult out_start(PQexec(conn.get(), "COPY (SELECT id, payload, n FROM copy_data ORDER BY id) TO STDOUT"));
  REQUIRE(PQresultStatus(out_start.get()) == PGRES_COPY_OUT);
  uint64_t got_sum = fnv1a(nullptr, 0);
  size_t got_bytes = 0;
  int got_rows = 0;
  while (true) {
    char* buf = nullptr;
    int len = PQgetCopyData(conn.get(), &buf, 0);
    if (len < 0) break;
    got_sum = fnv1a(buf, static_cast<size_t>(len), got_sum);
    got_bytes += static_cast<size_t>(len);
    ++got_rows;  // text COPY sends one CopyData per row
    PQfreemem(buf);
  }
  PgResult out_done(PQgetResult(conn.get()));
  INFO(PQresultErrorMessage(out_done.get()));
  REQUIRE(PQresultStatus(out_done.get()) == PGRES_COMMAND_OK);
  CHECK(got_rows == kRows);
  CHECK(got_bytes == sent_bytes);
  CHECK(got_sum == sent_sum);

  CHECK(scalar(conn.get(), "SELECT 'still fine'") == "still fine");
}

TEST_CASE("COPY aborted by the client (CopyFail) and COPY with bad data leave a usable session") {
  ProxyUnderTest target;
  PgConn conn = connect(target.app_conninfo());
  exec(conn.get(), "CREATE TEMP TABLE copy_fail (id integer, t text)");

  SUBCASE("CopyFail") {
    PgResult start(PQexec(conn.get(), "COPY copy_fail FROM STDIN"));
    REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
    std::string rows;
    for (int i = 0; i < 10000; ++i) rows += std::to_string(i) + "\trow\n";
    REQUIRE(PQputCopyData(conn.get(), rows.data(), static_cast<int>(rows.size())) == 1);
    REQUIRE(PQputCopyEnd(conn.get(), "client changed its mind") == 1);
    PgResult res(PQgetResult(conn.get()));
    CHECK(PQresultStatus(res.get()) == PGRES_FATAL_ERROR);
    CHECK(sqlstate(res.get()) == "57014");
    while (PgResult more{PQgetResult(conn.get())}) {
    }
  }
  SUBCASE("bad data in the stream") {
    PgResult start(PQexec(conn.get(), "COPY copy_fail FROM STDIN"));
    REQUIRE(PQresultStatus(start.get()) == PGRES_COPY_IN);
    std::string rows = "1\tok\nnot-a-number\tbad\n";
    for (int i = 0; i < 20000; ++i) rows += "2\tafter the error\n";  // server ignores the rest of the stream
    REQUIRE(PQputCopyData(conn.get(), rows.data(), static_cast<int>(rows.size())) == 1);
    REQUIRE(PQputCopyEnd(conn.get(), nullptr) == 1);
    PgResult res(PQgetResult(conn.get()));
    CHECK(PQresultStatus(res.get()) == PGRES_FATAL_ERROR);
    CHECK(sqlstate(res.get()) == "22P02");
    while (PgResult more{PQgetResult(conn.get())}) {
    }
  }
  CHECK(scalar(conn.get(), "SELECT count(*) FROM copy_fail") == "0");
  CHECK(scalar(conn.get(), "SELECT 'usable'") == "usable");
}

namespace {

// One protocol message: tag, length, body.
std::string message(char tag, const std::string& body) {
  const uint32_t length = static_cast<uint32_t>(body.size() + 4);
  std::string out(1, tag);
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((length >> shift) & 0xff);
  return out + body;
}

}  // namespace

// COPY FROM STDIN through the extended protocol (PQsendQueryParams: Parse, Bind, Execute and a Sync PostgreSQL
// ignores during COPY), then COPY data with CopyDone or CopyFail, or nothing more, and the client vanishes before the
// Sync that ends the implicit transaction. PostgreSQL rolls it back. The server must not go to the pool's next client
// as it is: that client's query committed the row (and got "COPY 1" first), or waited behind the error's skip to
// Sync; session pooling kept the server "used" for good and refused every later login (53300).
TEST_CASE("a client that vanishes during an extended-protocol COPY leaves no server behind it") {
  if (direct_mode()) return;
  PgConn owner = connect(conninfo(cluster_ports().primary, "app", "app", "app"));
  exec(owner.get(), "DROP TABLE IF EXISTS copy_vanish; CREATE TABLE copy_vanish (id int)");
  for (const char* mode : {"transaction", "session"}) {
    const int port = pick_listen_port();
    auto config = default_config(port);
    config["workers"] = 1;
    config["timeouts"]["query_wait_timeout"] = 5;
    for (auto& database : config["databases"]) {
      database["pool_mode"] = mode;
      database["pool_size"] = 1;  // the next client gets the same server
    }
    PgmuxProcess pgmux(config.dump(), port);
    const std::string info = conninfo(port, "app", "app", "app");
    for (const std::string& ending : {message('d', "1\n") + message('c', ""),
                                     message('d', "1\n") + message('f', std::string("gave up") + '\0'),
                                     message('d', "1\n")}) {
      CAPTURE(mode);
      CAPTURE(ending.size());
      {
        PgConn a = connect(info);
        REQUIRE(PQsendQueryParams(a.get(), "COPY copy_vanish FROM STDIN", 0, nullptr, nullptr, nullptr, nullptr, 0));
        PgResult started(PQgetResult(a.get()));
        REQUIRE(PQresultStatus(started.get()) == PGRES_COPY_IN);
        const int fd = PQsocket(a.get());
        REQUIRE(write(fd, ending.data(), ending.size()) == static_cast<ssize_t>(ending.size()));
        shutdown(fd, SHUT_RDWR);  // gone, without the Sync (PQfinish's Terminate goes nowhere)
      }
      PgConn b = connect(info);
      CHECK(scalar(b.get(), "SELECT 'next client'") == "next client");
      CHECK(scalar(b.get(), "SELECT count(*) FROM copy_vanish") == "0");
    }
  }
  exec(owner.get(), "DROP TABLE copy_vanish");
}

