// Runs many SoakClients at once from one epoll loop: bounded concurrency, every client with its own deadline,
// the whole run bounded in time. Scenarios are drawn from a fixed mix by a seeded hash of the client's index, so
// a run can be repeated; each client goes to the session-mode or the transaction-mode database.
#pragma once
#include <atomic>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "tests/soak/soak_client.hpp"

namespace pgmux::soak {

struct DriverOptions {
  int port = 0;
  std::string user = "app";
  std::string password = "app";
  std::vector<std::string> databases;  // each client takes one in turn (session pool, transaction pool)
  size_t concurrency = 64;
  double client_timeout_s = 60;
  double time_limit_s = 600;  // no new client starts after this
  uint64_t seed = 1;
};

struct DriverResult {
  size_t started = 0;
  size_t finished = 0;
  size_t failed = 0;                                // outcomes the scenario does not allow
  std::map<std::string, size_t> outcomes;           // "scenario outcome" -> count
  std::vector<std::string> failure_samples;         // the first few failures, described
  double seconds = 0;
  bool time_limit_hit = false;
};

class SoakDriver {
 public:
  explicit SoakDriver(DriverOptions options);
  // Runs `clients` more clients (indexes continue across calls, so each call draws new scenarios).
  DriverResult run(size_t clients);
  // Clients finished over every run so far; read by the server churn thread to pace itself.
  const std::atomic<size_t>& finished() const { return finished_; }

 private:
  Scenario scenario_for(size_t index) const;
  DriverOptions options_;
  size_t next_index_ = 0;
  std::atomic<size_t> finished_{0};
};

// The fixed scenario mix, in percent of clients (sums to 100).
const std::map<Scenario, int>& scenario_mix();

// "scenario outcome: count" lines, sorted.
std::string format_outcomes(const DriverResult& result);

}  // namespace pgmux::soak
