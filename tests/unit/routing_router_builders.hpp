// Hand-built backend views, statements and route checks for the router's unit tests (routing_router_*_test.cpp).
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "routing/router.hpp"
#include "tests/unit/routing_probe_builders.hpp"

namespace pgmux::routing::test {

// ---- hand-built views --------------------------------------------------------------------------------------

inline BackendStatus primary_status(std::string name = "p") {
  BackendStatus b;
  b.spec.name = std::move(name);
  b.role = Role::Primary;
  b.reachable = true;
  b.ever_probed = true;
  b.readable = false;  // the topology never puts the primary in the read set
  return b;
}

inline BackendStatus standby_status(std::string name, int weight = 1, uint64_t replay_lsn = 0) {
  BackendStatus b;
  b.spec.name = std::move(name);
  b.spec.weight = weight;
  b.role = Role::Standby;
  b.reachable = true;
  b.ever_probed = true;
  b.readable = weight > 0;
  b.last.in_recovery = true;
  b.last.replay_lsn = replay_lsn;
  return b;
}

inline BackendStatus down_standby(std::string name) {
  BackendStatus b = standby_status(std::move(name));
  b.role = Role::Down;
  b.reachable = false;
  b.readable = false;
  b.failed_probes = 3;
  return b;
}

inline BackendStatus lagging_standby(std::string name) {
  BackendStatus b = standby_status(std::move(name));
  b.readable = false;
  b.lag_excluded = true;
  b.lag_bytes = 100 * 1024 * 1024;
  return b;
}

inline BackendStatus disabled_standby(std::string name) {
  BackendStatus b = standby_status(std::move(name));
  b.spec.disabled = true;
  b.readable = false;
  return b;
}

// Backend 0 the primary, then the given standbys.
inline BackendsView view_of(std::vector<BackendStatus> standbys, bool with_primary = true) {
  BackendsView v;
  v.backends.push_back(with_primary ? primary_status() : down_standby("p"));
  for (BackendStatus& s : standbys) v.backends.push_back(std::move(s));
  v.primary = with_primary ? 0 : -1;
  return v;
}

inline Classification of_kind(StatementKind kind) {
  Classification c;
  c.kind = kind;
  return c;
}
inline Classification read_stmt() { return of_kind(StatementKind::Read); }
inline Classification write_stmt() { return of_kind(StatementKind::Write); }
inline Classification begin_stmt(bool read_only) {
  Classification c = of_kind(StatementKind::TxBegin);
  c.read_only = read_only;
  return c;
}

inline Route route(const Classification& c, const ClientRouteState& s, const BackendsView& v,
                   const RouteSettings& st = {}) {
  Balancer b;
  return route_statement(c, s, v, st, b);
}

inline void check_route(const Route& r, RouteTarget target, int backend, RouteReason reason) {
  CHECK(std::string(to_string(r.target)) == to_string(target));
  CHECK(r.backend == backend);
  CHECK(std::string(to_string(r.reason)) == to_string(reason));
  // The strings could coincide; compare the enums too.
  CHECK(r.target == target);
  CHECK(r.reason == reason);
}

inline uint64_t mask_of(std::initializer_list<int> indices) {
  uint64_t m = 0;
  for (int i : indices) m |= uint64_t{1} << i;
  return m;
}

// Picks per backend over n calls with one balancer, the client holding nothing.
inline std::map<int, int> distribution(const Classification& c, const ClientRouteState& s, const BackendsView& v,
                                       int n, const RouteSettings& st = {}) {
  Balancer b;
  std::map<int, int> counts;
  for (int k = 0; k < n; ++k) {
    const Route r = route_statement(c, s, v, st, b);
    if (r.target == RouteTarget::Standby) {
      CHECK(r.reason == RouteReason::Read);
      ++counts[r.backend];
    } else {
      ++counts[-1];
    }
  }
  return counts;
}

// ---- views from a real Topology ----------------------------------------------------------------------------

// The router's read-your-writes reads the insert position and when the probe was sent.
inline ProbeResult timed_primary_probe(uint64_t lsn, double sent_at = -1, uint32_t timeline = 1) {
  ProbeResult r = primary_probe(lsn, timeline);
  r.insert_lsn = lsn;
  r.sent_at = sent_at;
  return r;
}

inline ProbeResult caught_up_standby(uint64_t replay, uint32_t timeline = 1) {
  return standby_probe(replay, 0.0, timeline);
}

}  // namespace pgmux::routing::test
