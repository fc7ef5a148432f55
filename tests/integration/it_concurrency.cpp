// 200 concurrent clients (threads), 100 transactions each, every one inserting a row: afterwards every
// committed row is present exactly once and nothing else is.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {
constexpr int kClients = 200;
constexpr int kTransactions = 100;
}  // namespace

TEST_CASE("200 clients x 100 transactions: every committed row is there") {
  ProxyUnderTest target;
  {
    PgConn setup = connect(target.app_conninfo());
    exec(setup.get(), "DROP TABLE IF EXISTS it_concurrency_rows");
    exec(setup.get(),
         "CREATE TABLE it_concurrency_rows (client integer, seq integer, note text, PRIMARY KEY (client, seq))");
  }

  std::atomic<long> committed{0};
  std::atomic<int> failed_clients{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto record = [&](const std::string& e) {
    std::lock_guard<std::mutex> lock(errors_mu);
    if (errors.size() < 10) errors.push_back(e);
  };

  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      // In session pooling 200 clients queue for 20 servers at login: the last wait for the others' whole
      // sessions, so their connect timeout must cover that queue, not just a TCP handshake.
      PgConn conn = try_connect(target.app_conninfo() + " connect_timeout=60");
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        ++failed_clients;
        record("connect: " + std::string(PQerrorMessage(conn.get())));
        return;
      }
      for (int i = 0; i < kTransactions; ++i) {
        std::string sql = "BEGIN; INSERT INTO it_concurrency_rows VALUES (" + std::to_string(c) + ", " +
                          std::to_string(i) + ", 'client " + std::to_string(c) + "'); COMMIT";
        // Alternate the simple multi-statement form and separate round trips.
        std::string state;
        if (i % 2 == 0) {
          state = exec_sqlstate(conn.get(), sql);
        } else {
          state = exec_sqlstate(conn.get(), "BEGIN");
          if (state.empty()) {
            const char* params[] = {nullptr, nullptr};
            std::string cs = std::to_string(c), is = std::to_string(i);
            params[0] = cs.c_str();
            params[1] = is.c_str();
            PgResult r(PQexecParams(conn.get(), "INSERT INTO it_concurrency_rows VALUES ($1, $2, 'extended')", 2,
                                    nullptr, params, nullptr, nullptr, 0));
            state = PQresultStatus(r.get()) == PGRES_COMMAND_OK ? "" : sqlstate(r.get()) + "?";
          }
          if (state.empty()) state = exec_sqlstate(conn.get(), "COMMIT");
        }
        if (!state.empty()) {
          ++failed_clients;
          record("client " + std::to_string(c) + " tx " + std::to_string(i) + ": " + state + " " +
                 PQerrorMessage(conn.get()));
          return;
        }
        ++committed;
      }
    });
  }
  for (auto& t : threads) t.join();

  for (const auto& e : errors) MESSAGE(e);
  CHECK(failed_clients.load() == 0);
  CHECK(committed.load() == long{kClients} * kTransactions);

  PgConn check = connect(target.app_conninfo());
  CHECK(scalar(check.get(), "SELECT count(*) FROM it_concurrency_rows") == std::to_string(committed.load()));
  CHECK(scalar(check.get(), "SELECT count(*) FROM (SELECT client FROM it_concurrency_rows GROUP BY client "
                            "HAVING count(*) <> " + std::to_string(kTransactions) +
                            " OR min(seq) <> 0 OR max(seq) <> " + std::to_string(kTransactions - 1) + ") bad") == "0");
  CHECK(scalar(check.get(), "SELECT count(DISTINCT client) FROM it_concurrency_rows") == std::to_string(kClients));
  exec(check.get(), "DROP TABLE it_concurrency_rows");
}
