// A server connection that vanishes without a word (a network cut, a crashed host: no FATAL, just a closed
// socket) under a client inside a transaction: the client is told its transaction did not commit (08006), or, when
// its COMMIT was running, that the outcome is unknown (08007). pgmux reaches the primary through a relay of the
// test's own, which cuts every connection it carries on demand. A deferred constraint trigger keeps COMMIT
// running for a second, so the cut falls inside it.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

using namespace pgmux::test;

namespace {

// Forwards every connection to 127.0.0.1:target; cut() closes them all (both sides) at once.
class CuttingRelay {
 public:
  explicit CuttingRelay(int target) : target_(target) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    port_ = pick_listen_port();
    sockaddr_in address = loopback_address(port_);
    REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(listen(listener_, 16) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~CuttingRelay() {
    stop_ = true;
    thread_.join();
    close(listener_);
    cut();
  }
  int port() const { return port_; }
  void cut() {
    std::lock_guard lock(mutex_);
    for (auto& [a, b] : pairs_) {
      shutdown(a, SHUT_RDWR);
      shutdown(b, SHUT_RDWR);
      close(a);
      close(b);
    }
    pairs_.clear();
  }

 private:
  void run() {
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      {
        std::lock_guard lock(mutex_);
        for (auto& [a, b] : pairs_) {
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, POLLIN, 0});
        }
      }
      if (poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) accept_one();
      std::lock_guard lock(mutex_);
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        for (auto& [a, b] : pairs_) {
          if (fds[i].fd != a && fds[i].fd != b) continue;
          char buf[65536];
          const ssize_t n = read(fds[i].fd, buf, sizeof buf);
          const int to = fds[i].fd == a ? b : a;
          if (n > 0 && write(to, buf, static_cast<size_t>(n)) == n) break;
          shutdown(to, SHUT_RDWR);  // one side closed: the other hears EOF
          break;
        }
      }
    }
  }
  void accept_one() {
    const int client = accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address = loopback_address(target_);
    if (connect(server, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      close(client);
      close(server);
      return;
    }
    std::lock_guard lock(mutex_);
    pairs_.emplace_back(client, server);
  }

  int target_;
  int port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::pair<int, int>> pairs_;
  std::thread thread_;
};

// "ok", or the SQLSTATE and message of the first result: a FATAL that came while the client was idle is that
// result (PQexec would report libpq's own "server closed the connection" instead).
std::string outcome_of(PGconn* conn, const char* sql) {
  if (PQsendQuery(conn, sql) != 1) return std::string("send failed: ") + PQerrorMessage(conn);
  PgResult first(PQgetResult(conn));
  while (PgResult rest{PQgetResult(conn)}) {
  }
  const ExecStatusType status = PQresultStatus(first.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return "ok";
  return first ? sqlstate(first.get()) + " " + PQresultErrorMessage(first.get()) : std::string("no result");
}

}  // namespace

TEST_CASE("a server cut inside a transaction: 08006 it did not commit; during COMMIT: 08007 outcome unknown") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  {
    PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
    exec(admin.get(),
         "DROP TABLE IF EXISTS cut_t; CREATE TABLE cut_t (id int); ALTER TABLE cut_t OWNER TO app;"
         "CREATE OR REPLACE FUNCTION cut_slow_commit() RETURNS trigger LANGUAGE plpgsql"
         " AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;"
         "CREATE CONSTRAINT TRIGGER cut_slow AFTER INSERT ON cut_t DEFERRABLE INITIALLY DEFERRED"
         " FOR EACH ROW EXECUTE FUNCTION cut_slow_commit()");
  }
  CuttingRelay relay(ports.primary);
  const int listen = pick_listen_port();
  nlohmann::json config = default_config(listen);
  config["backends"][0]["port"] = relay.port();
  config["routing"] = {{"failover_timeout", 0}};  // nothing to wait for: the relay stays, the servers are gone
  ProxyUnderTest proxy(config.dump(2), listen);
  // With failover_timeout 0 a statement fails until the first probe round has found the primary (a loaded
  // machine takes a while): wait for that first.
  bool primary_known = false;
  for (int i = 0; i < 200 && !primary_known; ++i) {
    PgConn probe = try_connect(proxy.conninfo("app", "app", "app"));
    primary_known = probe && PQstatus(probe.get()) == CONNECTION_OK && outcome_of(probe.get(), "BEGIN") == "ok" &&
                    outcome_of(probe.get(), "SELECT 1") == "ok";
    if (!primary_known) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE_MESSAGE(primary_known, "pgmux found no primary within 10 s");

  // Idle inside a transaction when the cut comes.
  PgConn idle = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(idle.get(), "BEGIN") == "ok");
  CHECK(outcome_of(idle.get(), "SELECT 1") == "ok");
  relay.cut();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string idle_outcome = outcome_of(idle.get(), "SELECT 2");
  CAPTURE(idle_outcome);
  CHECK(idle_outcome.rfind("08006 FATAL:  server connection lost (backend \"primary\") inside a transaction: the "
                           "transaction did not commit", 0) == 0);

  // COMMIT running (the deferred trigger sleeps) when the cut comes.
  PgConn committing = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(committing.get(), "BEGIN") == "ok");
  CHECK(outcome_of(committing.get(), "INSERT INTO cut_t VALUES (1)") == "ok");
  REQUIRE(PQsendQuery(committing.get(), "COMMIT") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  relay.cut();
  PgResult commit(PQgetResult(committing.get()));
  REQUIRE(commit);
  CHECK(sqlstate(commit.get()) == "08007");
  CHECK(std::string(PQresultErrorMessage(commit.get())).find("may or may not have committed") != std::string::npos);
  while (PgResult rest{PQgetResult(committing.get())}) {
  }

  // Others go on: a new client gets a new server through the relay.
  PgConn after = connect(proxy.conninfo("app", "app", "app"));
  CHECK(outcome_of(after.get(), "SELECT 1") == "ok");
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "app"));
  exec(admin.get(), "DROP TABLE cut_t; DROP FUNCTION cut_slow_commit()");
}
