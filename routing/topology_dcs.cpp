// topology.source patroni: the DCS (through Patroni's /cluster) names the leader; probes still decide whether it
// is out of recovery yet, and measure health and lag. Only the leader may be the primary, so several pgmux
// instances agree on it, and a former primary Patroni has not demoted yet (its daemon died) gets no write.
#include "routing/topology.hpp"

namespace pgmux::routing {

void Topology::on_dcs_cluster(DcsCluster cluster, std::string source, double now) {
  last_now_ = now;
  dcs_.answered = true;
  ++dcs_.answers;
  dcs_.reachable = true;
  dcs_.error.clear();
  dcs_.source = std::move(source);
  dcs_.cluster = std::move(cluster);
  recompute(now);
  publish(now);
}

void Topology::on_dcs_failed(std::string error, double now) {
  last_now_ = now;
  const bool changed = dcs_.reachable || dcs_.error != error;
  dcs_.reachable = false;
  dcs_.error = std::move(error);
  if (!changed) return;
  recompute(now);
  publish(now);
}

// Each backend's member: the one of its name, else the one at its host and port.
void Topology::match_dcs_members(std::vector<std::string>& alarms) {
  dcs_.leader.clear();
  dcs_.leader_index = -1;
  for (BackendStatus& b : backends_) {
    b.dcs_role.clear();
    b.dcs_noloadbalance = false;
  }
  if (!dcs_.enabled) return;
  for (const DcsMember& m : dcs_.cluster.members) {
    if (m.role == "leader") dcs_.leader = m.name;
    int index = -1;
    for (size_t i = 0; i < backends_.size() && index < 0; ++i) {
      if (backends_[i].spec.name == m.name) index = static_cast<int>(i);
    }
    for (size_t i = 0; i < backends_.size() && index < 0; ++i) {
      if (backends_[i].spec.host == m.host && backends_[i].spec.port == m.port) index = static_cast<int>(i);
    }
    if (index < 0) {
      alarms.push_back("Patroni member " + m.name + " (" + m.host + ":" + std::to_string(m.port) +
                       ") is not among pgmux's backends" +
                       (m.role == "leader" ? ": no primary until it is added to the config" : ""));
      continue;
    }
    BackendStatus& b = backends_[static_cast<size_t>(index)];
    b.dcs_role = m.role;
    b.dcs_noloadbalance = m.noloadbalance;
    if (m.role == "leader") dcs_.leader_index = index;
  }
  if (dcs_.answered && !dcs_.reachable) {
    alarms.push_back("Patroni is not answering (" + dcs_.error + "); following its last answer" +
                     (dcs_.leader.empty() ? std::string() : " (leader " + dcs_.leader + ")"));
  }
}

std::string Topology::dcs_refusal(size_t index) const {
  if (!dcs_.enabled) return {};
  // Maintenance mode: Patroni promotes nobody and its leader key may lapse; the operator runs the cluster, and
  // pgmux's own rules (one server out of recovery, timelines) decide meanwhile.
  if (dcs_.answered && dcs_.cluster.paused && dcs_.leader.empty()) return {};
  if (!dcs_.answered) return "Patroni has not named a leader yet" + (dcs_.error.empty() ? "" : " (" + dcs_.error + ")");
  if (dcs_.leader.empty()) return "Patroni names no leader";
  if (dcs_.leader_index != static_cast<int>(index)) return "not Patroni's leader (" + dcs_.leader + " is)";
  return {};
}

std::string dcs_member_of(const BackendsView& view, size_t index) {
  if (index >= view.backends.size()) return {};
  const BackendSpec& spec = view.backends[index].spec;
  for (const DcsMember& m : view.dcs.cluster.members) {
    if (m.name == spec.name) return m.name;
  }
  for (const DcsMember& m : view.dcs.cluster.members) {
    if (m.host == spec.host && m.port == spec.port) return m.name;
  }
  return {};
}

}  // namespace pgmux::routing
