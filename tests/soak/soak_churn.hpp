// Churn for the soak test: a thread that kills pgmux's server connections with pg_terminate_backend from a direct
// superuser connection (the "killed backends" fault), paced so that the number of server connections pgmux has
// opened (its pgmux_server_connects_total) keeps up with the share of clients done times the target. The victims
// come from the admin console's SHOW SERVERS (remote_pid), so nothing outside this pgmux is touched. It also
// disconnects a few clients with the console's KILL_CLIENT.
#pragma once
#include <libpq-fe.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <random>
#include <string>
#include <thread>

namespace pgmux::soak {

struct ChurnOptions {
  int pgmux_port = 0;
  int metrics_port = 0;
  std::string admin_user = "postgres";
  std::string admin_password = "postgres";
  int primary_port = 0;
  std::string superuser = "postgres";
  std::string superuser_password = "postgres";
  size_t server_target = 0;        // server connections to have opened when progress() reaches 1
  std::function<double()> progress;  // 0..1: the share of the clients done
  size_t clients = 0;                // clients of the round, for client_kill_share
  double client_kill_share = 0.01;   // of the clients, disconnected from the admin console with KILL_CLIENT
};

class ServerChurn {
 public:
  explicit ServerChurn(ChurnOptions options);
  ~ServerChurn();  // stops the thread
  ServerChurn(const ServerChurn&) = delete;
  ServerChurn& operator=(const ServerChurn&) = delete;

  void start();
  void stop();
  size_t killed() const { return killed_.load(); }
  size_t clients_killed() const { return clients_killed_.load(); }
  size_t errors() const { return errors_.load(); }  // failed console or superuser calls (reconnected)
  // pgmux_server_connects_total at start(), so opened() = now - that.
  double connects_at_start() const { return connects_at_start_; }
  double opened() const { return opened_.load(); }

 private:
  void loop();
  bool kill_servers(PGconn* admin, PGconn* superuser);
  bool kill_clients(PGconn* admin);

  ChurnOptions options_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> killed_{0};
  std::atomic<size_t> clients_killed_{0};
  std::atomic<size_t> errors_{0};
  std::mt19937 random_{12345};  // used by the churn thread only
  std::atomic<double> opened_{0};
  double connects_at_start_ = 0;
};

}  // namespace pgmux::soak
