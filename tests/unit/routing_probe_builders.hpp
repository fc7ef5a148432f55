// Probe results and backend specs for tests that drive a routing::Topology by hand (topology and router tests).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "routing/topology.hpp"

namespace pgmux::routing::test {

inline constexpr uint64_t kSysId = 7310000000000000042ull;
inline constexpr uint64_t kMiB = 1024 * 1024;

inline BackendSpec spec(std::string name, int weight = 1) {
  BackendSpec s;
  s.name = std::move(name);
  s.host = "127.0.0.1";
  s.port = 5432;
  s.weight = weight;
  return s;
}

inline ProbeResult primary_probe(uint64_t lsn, uint32_t timeline = 1, uint64_t sysid = kSysId) {
  ProbeResult r;
  r.in_recovery = false;
  r.current_lsn = lsn;
  r.timeline = timeline;
  r.system_identifier = sysid;
  return r;
}

inline ProbeResult standby_probe(uint64_t replay, std::optional<double> age = std::nullopt, uint32_t timeline = 1,
                                 uint64_t sysid = kSysId) {
  ProbeResult r;
  r.in_recovery = true;
  r.receive_lsn = replay;
  r.replay_lsn = replay;
  r.replay_age_seconds = age;
  r.timeline = timeline;
  r.system_identifier = sysid;
  return r;
}

}  // namespace pgmux::routing::test
