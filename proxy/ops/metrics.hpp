// Counters the hot path updates. Each worker owns one WorkerMetrics and is its only writer, so an update is a
// relaxed load and store (no lock, no read-modify-write); scrapes on other threads read them relaxed and sum the
// workers. The control loop owns ControlMetrics. Rendering to Prometheus text is in metrics_export.
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "proxy/net/failure.hpp"
#include "routing/router.hpp"

namespace pgmux::proxy {

class RelaxedCounter {
 public:
  void add(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Upper bounds (seconds) of the duration histograms' buckets; +Inf is implied.
inline constexpr std::array<double, 16> kDurationBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                           1,      2.5,     5,      10};

class DurationHistogram {
 public:
  void observe_ns(uint64_t ns) {
    const double seconds = static_cast<double>(ns) / 1e9;
    size_t i = 0;
    while (i < kDurationBuckets.size() && seconds > kDurationBuckets[i]) ++i;
    buckets_[i].add();
    sum_ns_.add(ns);
  }
  // Not cumulative: bucket i counts observations in (bound[i-1], bound[i]]; the last one is (bound[15], +Inf).
  uint64_t bucket(size_t i) const { return buckets_[i].get(); }
  uint64_t sum_ns() const { return sum_ns_.get(); }

 private:
  std::array<RelaxedCounter, kDurationBuckets.size() + 1> buckets_;
  RelaxedCounter sum_ns_;
};

// The role of the server that answered, as a label.
enum class ServedBy : uint8_t { Primary, Standby, Count };
inline const char* to_string(ServedBy s) { return s == ServedBy::Primary ? "primary" : "standby"; }

inline constexpr size_t kRouteTargets = 4;  // routing::RouteTarget
inline constexpr size_t kSqlstateClasses = 36 * 36;  // plus one more slot: no or a malformed SQLSTATE

// Index of a SQLSTATE's class (its first two characters, 0-9A-Z each); kSqlstateClasses for anything else.
inline size_t sqlstate_class_index(char a, char b) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    return -1;
  };
  const int x = digit(a), y = digit(b);
  if (x < 0 || y < 0) return kSqlstateClasses;
  return static_cast<size_t>(x * 36 + y);
}
inline size_t sqlstate_class_index(std::string_view sqlstate) {
  return sqlstate.size() >= 2 ? sqlstate_class_index(sqlstate[0], sqlstate[1]) : kSqlstateClasses;
}
std::string sqlstate_class_text(size_t index);  // 10 -> "0A", kSqlstateClasses -> "unknown" (metrics_export.cpp)

// Totals since the pool was created, for SHOW STATS (written on the pool's worker only).
struct PoolStats {
  uint64_t xact_count = 0, query_count = 0;
  uint64_t server_assignments = 0;  // times a client was given a server (SHOW STATS server_assignment_count)
  // Transaction pooling's named prepared statements: Parses clients sent, Parses pgmux sent to servers (first
  // creation and re-preparing on another server), Binds of them (SHOW STATS *_parse_count, *_bind_count).
  uint64_t client_parses = 0, server_parses = 0, binds = 0;
  uint64_t reads = 0;  // read statements routed to it (SHOW BACKENDS select_cnt)
  uint64_t bytes_received = 0, bytes_sent = 0;  // from and to its servers
  uint64_t xact_time_us = 0, query_time_us = 0, wait_time_us = 0;

  // Totals of several pools (SHOW STATS, a pool's counters kept after it is deleted).
  PoolStats& operator+=(const PoolStats& other) {
    for (auto field : {&PoolStats::xact_count, &PoolStats::query_count, &PoolStats::server_assignments,
                       &PoolStats::client_parses, &PoolStats::server_parses, &PoolStats::binds, &PoolStats::reads,
                       &PoolStats::bytes_received, &PoolStats::bytes_sent, &PoolStats::xact_time_us,
                       &PoolStats::query_time_us, &PoolStats::wait_time_us}) {
      this->*field += other.*field;
    }
    return *this;
  }
};
static_assert(sizeof(PoolStats) == 12 * sizeof(uint64_t), "a counter added to PoolStats belongs in operator+= too");

// Where a connection adds the bytes it reads and writes (StreamConn). The pool totals are optional.
struct ByteCounters {
  RelaxedCounter* received = nullptr;
  RelaxedCounter* sent = nullptr;
  uint64_t* pool_received = nullptr;
  uint64_t* pool_sent = nullptr;
};

struct WorkerMetrics {
  DurationHistogram query_duration[static_cast<size_t>(ServedBy::Count)];        // request sent -> ReadyForQuery
  DurationHistogram transaction_duration[static_cast<size_t>(ServedBy::Count)];  // first request -> back to idle
  DurationHistogram pool_wait;  // a client waiting for a server connection of a pool
  // Statements routed, by where they went and why (routing::Route).
  RelaxedCounter routed[kRouteTargets][static_cast<size_t>(routing::RouteReason::Count)];
  RelaxedCounter client_bytes_received;  // from applications
  RelaxedCounter client_bytes_sent;
  RelaxedCounter server_bytes_received;  // from PostgreSQL
  RelaxedCounter server_bytes_sent;
  RelaxedCounter client_logins;          // clients that completed login
  RelaxedCounter client_login_failures;  // wrong password, unknown user or database, ...
  RelaxedCounter standby_write_retries;  // reads a standby rejected with 25006, run again on the primary
  RelaxedCounter lost_request_retries;   // requests lost with their server before any reply, sent again
  RelaxedCounter server_connects;        // server connections opened
  RelaxedCounter server_connect_failures;
  RelaxedCounter errors[kSqlstateClasses + 1];  // ErrorResponses sent to clients, by SQLSTATE class
  RelaxedCounter client_disconnects[kFailureCount];  // clients gone, by the reason their connection ended

  // The hot path's entry points: no allocation, no lock.
  void count_route(const routing::Route& route) {
    routed[static_cast<size_t>(route.target)][static_cast<size_t>(route.reason)].add();
  }
  void count_error(std::string_view sqlstate, uint64_t n = 1) { errors[sqlstate_class_index(sqlstate)].add(n); }
  void count_disconnect(Failure reason) { client_disconnects[static_cast<size_t>(reason)].add(); }
  // A request's ReadyForQuery came back (ns since it was forwarded).
  void request_done(ServedBy by, uint64_t ns, PoolStats& pool) {
    query_duration[static_cast<size_t>(by)].observe_ns(ns);
    ++pool.query_count;
    pool.query_time_us += ns / 1000;
  }
  // ReadyForQuery 'I' ended a transaction (an autocommit statement is one too).
  void transaction_done(ServedBy by, uint64_t ns, PoolStats& pool) {
    transaction_duration[static_cast<size_t>(by)].observe_ns(ns);
    ++pool.xact_count;
    pool.xact_time_us += ns / 1000;
  }
  // A client got a server connection from the pool after waiting ns.
  void pool_wait_done(uint64_t ns, PoolStats& pool) {
    pool_wait.observe_ns(ns);
    pool.wait_time_us += ns / 1000;
  }
};

// Written on the control loop only; read by the exporter on that same loop.
struct ControlMetrics {
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  double last_reload_time = 0;   // unix seconds of the last successful reload (0 = never)
  uint64_t failovers = 0;        // the primary moved to another backend (not by a SWITCHOVER)
  std::map<std::string, uint64_t> switchovers;  // by result: done, canceled, failed
  double last_switchover_write_pause = 0;       // seconds, of the last one done
  std::map<std::string, uint64_t> auto_failovers;  // failover.mode pgmux, by result: done, canceled, failed
  // Switchovers asked of Patroni directly that pgmux drained for (topology.etcd_urls), by result.
  std::map<std::string, uint64_t> patroni_switchovers;
  int etcd_watch_up = -1;  // topology.etcd_urls: 1 while the watch of Patroni's failover key is open, else 0; -1: none
  std::map<std::string, uint64_t> consistency_checks;  // by result: consistent, differences, failed
  double consistency_differences = 0;  // of the last check that ran
  double last_consistency_check = 0;   // unix seconds of it (0 = never)
  std::map<std::string, DurationHistogram> probe_duration;  // by backend name
  double started_at = 0;         // unix seconds
};

}  // namespace pgmux::proxy
