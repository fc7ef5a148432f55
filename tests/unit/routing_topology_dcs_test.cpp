// topology.source patroni: the DCS names the leader, probes say when it is out of recovery; nobody else is the
// primary, whatever it claims. Driven by hand with a fake clock.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "routing/topology.hpp"
#include "tests/unit/routing_probe_builders.hpp"

using namespace pgmux::routing;
using namespace pgmux::routing::test;

namespace {

TopologySettings dcs_settings() {
  TopologySettings s;
  s.dcs_decides_primary = true;
  return s;
}

BackendSpec at_port(std::string name, uint16_t port) {
  BackendSpec s = spec(std::move(name));
  s.port = port;
  return s;
}

Topology pair() { return Topology({at_port("node1", 5432), at_port("node2", 5433)}, dcs_settings()); }

DcsMember member(std::string name, std::string role, uint16_t port) {
  DcsMember m;
  m.name = std::move(name);
  m.role = std::move(role);
  m.state = "running";
  m.host = "127.0.0.1";
  m.port = port;
  return m;
}

DcsCluster cluster(std::vector<DcsMember> members) {
  DcsCluster c;
  c.members = std::move(members);
  return c;
}

}  // namespace

TEST_CASE("topology dcs: no primary before Patroni's first answer, then its leader") {
  Topology t = pair();
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_probe_ok(1, standby_probe(1000), 1.0);
  CHECK(t.view()->primary == -1);
  CHECK(t.view()->backends[0].role == Role::Unknown);  // not fenced: its servers stay while writes wait
  CHECK(t.view()->backends[0].excluded_reason ==
        "primary role not confirmed: Patroni has not named a leader yet");
  CHECK(t.view()->backends[1].readable);  // reads go on meanwhile

  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), member("node2", "replica", 5433)}), "http://x:8008", 2.0);
  auto v = t.view();
  CHECK(v->primary == 0);
  CHECK(v->dcs.leader == "node1");
  CHECK(v->dcs.leader_index == 0);
  CHECK(v->backends[0].dcs_role == "leader");
  CHECK(v->backends[1].dcs_role == "replica");
  CHECK(v->alarm.empty());
}

TEST_CASE("topology dcs: a backend out of recovery that is not the leader is fenced, with an alarm") {
  Topology t = pair();
  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), member("node2", "replica", 5433)}), "u", 1.0);
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_probe_ok(1, standby_probe(1000), 1.0);
  REQUIRE(t.view()->primary == 0);
  // Patroni promoted node2 (node1's daemon died; its PostgreSQL still runs as a primary).
  t.on_dcs_cluster(cluster({member("node1", "replica", 5432), member("node2", "leader", 5433)}), "u", 2.0);
  CHECK(t.view()->primary == -1);  // node2 has not left recovery yet: writes wait
  CHECK(t.view()->backends[0].role == Role::Fenced);
  CHECK(t.view()->backends[0].excluded_reason == "fenced: not Patroni's leader (node2 is)");
  CHECK(t.view()->alarm == "node1 is out of recovery but Patroni's leader is node2: fenced");
  t.on_probe_ok(1, primary_probe(2000, 2), 2.5);
  t.on_probe_ok(0, primary_probe(1500, 1), 2.5);
  auto v = t.view();
  CHECK(v->primary == 1);
  CHECK_FALSE(v->split_brain);
  CHECK(v->backends[0].role == Role::Fenced);  // and on an older timeline than the primary's now
}

TEST_CASE("topology dcs: two backends out of recovery are no split brain when the DCS names one") {
  Topology t = pair();
  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), member("node2", "replica", 5433)}), "u", 1.0);
  t.on_probe_ok(0, primary_probe(1000, 1), 1.0);
  t.on_probe_ok(1, primary_probe(1000, 2), 1.0);  // a higher timeline would win without the DCS
  CHECK(t.view()->primary == 0);
  CHECK_FALSE(t.view()->split_brain);
  CHECK(t.view()->backends[1].role == Role::Fenced);
}

TEST_CASE("topology dcs: members match by name, else by host and port; strangers raise an alarm") {
  Topology t({at_port("primary", 5432), at_port("standby", 5433)}, dcs_settings());
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_probe_ok(1, standby_probe(1000), 1.0);
  t.on_dcs_cluster(cluster({member("pg-a", "leader", 5432), member("pg-b", "sync_standby", 5433),
                            member("pg-c", "replica", 5499)}),
                   "u", 2.0);
  auto v = t.view();
  CHECK(v->primary == 0);
  CHECK(v->backends[1].dcs_role == "sync_standby");
  CHECK(dcs_member_of(*v, 0) == "pg-a");
  CHECK(dcs_member_of(*v, 1) == "pg-b");
  CHECK(v->alarm.find("Patroni member pg-c (127.0.0.1:5499) is not among pgmux's backends") != std::string::npos);
  // A leader pgmux does not know: no primary at all, rather than the wrong one.
  t.on_dcs_cluster(cluster({member("pg-c", "leader", 5499), member("pg-a", "replica", 5432)}), "u", 3.0);
  CHECK(t.view()->primary == -1);
  CHECK(t.view()->alarm.find("no primary until it is added to the config") != std::string::npos);
}

TEST_CASE("topology dcs: no leader named (a failover in progress) means no primary") {
  Topology t = pair();
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_dcs_cluster(cluster({member("node1", "replica", 5432), member("node2", "replica", 5433)}), "u", 1.0);
  CHECK(t.view()->primary == -1);
  CHECK(t.view()->backends[0].role == Role::Unknown);
  CHECK(t.view()->backends[0].excluded_reason == "primary role not confirmed: Patroni names no leader");
  // Maintenance mode without a leader: pgmux's own rules decide.
  DcsCluster paused = cluster({member("node1", "replica", 5432), member("node2", "replica", 5433)});
  paused.paused = true;
  t.on_dcs_cluster(paused, "u", 2.0);
  CHECK(t.view()->primary == 0);
}

TEST_CASE("topology dcs: Patroni unreachable keeps its last answer, with an alarm") {
  Topology t = pair();
  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), member("node2", "replica", 5433)}), "u", 1.0);
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  const uint64_t generation = t.view()->generation;
  t.on_dcs_failed("connection refused", 2.0);
  CHECK(t.view()->primary == 0);
  CHECK_FALSE(t.view()->dcs.reachable);
  CHECK(t.view()->alarm == "Patroni is not answering (connection refused); following its last answer (leader node1)");
  CHECK(t.view()->generation == generation + 1);
  t.on_dcs_failed("connection refused", 3.0);  // the same failure again publishes nothing
  CHECK(t.view()->generation == generation + 1);
  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), member("node2", "replica", 5433)}), "u", 4.0);
  CHECK(t.view()->alarm.empty());
}

TEST_CASE("topology dcs: the noloadbalance tag keeps a standby out of the read set") {
  Topology t = pair();
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  t.on_probe_ok(1, standby_probe(1000), 1.0);
  DcsMember replica = member("node2", "replica", 5433);
  replica.noloadbalance = true;
  t.on_dcs_cluster(cluster({member("node1", "leader", 5432), replica}), "u", 2.0);
  CHECK_FALSE(t.view()->backends[1].readable);
  CHECK(t.view()->backends[1].excluded_reason == "Patroni tag noloadbalance");
}

TEST_CASE("topology dcs: off by default, and turned off by a reconfigure") {
  Topology plain({at_port("node1", 5432)}, TopologySettings{});
  plain.on_probe_ok(0, primary_probe(1000), 1.0);
  CHECK(plain.view()->primary == 0);
  CHECK_FALSE(plain.view()->dcs.enabled);

  Topology t = pair();
  t.on_probe_ok(0, primary_probe(1000), 1.0);
  CHECK(t.view()->primary == -1);
  t.reconfigure({at_port("node1", 5432), at_port("node2", 5433)}, TopologySettings{});
  CHECK(t.view()->primary == 0);
}
