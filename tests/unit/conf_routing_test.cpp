// The read/write split keys: defaults, values read, per-backend overrides, the prober's login.
#include <doctest/doctest.h>

#include <string>

#include "conf/loader.hpp"

using namespace pgmux::conf;

namespace {

std::string all_errors(const LoadResult& r) {
  std::string out;
  for (const Diagnostic& d : r.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("conf routing: defaults when routing and health_check are absent") {
  const LoadResult r = parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}]})");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK_FALSE(c.backends[0].standby_only);
  CHECK_FALSE(c.backends[0].max_lag_bytes);
  CHECK_FALSE(c.backends[0].max_lag_seconds);
  CHECK(c.routing.read_write_split);
  CHECK(c.routing.max_lag_bytes == 16777216);
  CHECK(c.routing.max_lag_seconds == 10);
  CHECK(c.routing.lag_hysteresis == 5);
  CHECK(c.routing.fallback_to_primary);
  CHECK(c.routing.consistency == Consistency::Causal);
  CHECK(c.routing.causal_wait == 0);
  CHECK(c.routing.causal_poll_interval == 0.002);
  CHECK_FALSE(c.routing.remote_apply_reads);
  CHECK(c.routing.write_functions.empty());
  CHECK(c.routing.failover_timeout == 30);
  CHECK(c.routing.function_catalog_refresh == 30);
  CHECK(c.health_check.period == 1);
  CHECK(c.health_check.timeout == 2);
  CHECK(c.health_check.max_retries == 2);
  CHECK(c.health_check.user.empty());
  CHECK(c.health_check.password.empty());
  CHECK(c.health_check.database == "postgres");
  CHECK(c.health_check_user() == "postgres");  // no users at all
  CHECK(c.health_check_password().empty());
}

TEST_CASE("conf routing: values are read") {
  const LoadResult r = parse_config(R"({
    "backends": [{"name": "p", "host": "db1"},
                 {"name": "s", "host": "db2", "role": "standby", "max_lag_bytes": 1024, "max_lag_seconds": 2.5}],
    "users": [{"name": "app", "password": "apppw"}, {"name": "mon", "password": "md5fe63fea7be31b0200b496d08bc6b517d"}],
    "auth_method": "md5",
    "databases": [{"name": "app"}],
    "routing": {"read_write_split": false, "max_lag_bytes": 1e3, "max_lag_seconds": 1.5, "lag_hysteresis": 0,
                "fallback_to_primary": false, "read_your_writes": false, "write_functions": ["nextval", "f"],
                "failover_timeout": 7.5, "function_catalog_refresh": 2.5},
    "health_check": {"period": 0.25, "timeout": 0.75, "max_retries": 4, "database": "app"}})");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK_FALSE(c.backends[0].standby_only);
  CHECK(c.backends[1].standby_only);
  CHECK(c.backends[1].max_lag_bytes == 1024);
  CHECK(c.backends[1].max_lag_seconds == 2.5);
  CHECK_FALSE(c.routing.read_write_split);
  CHECK(c.routing.max_lag_bytes == 1000);
  CHECK(c.routing.max_lag_seconds == 1.5);
  CHECK(c.routing.lag_hysteresis == 0);
  CHECK_FALSE(c.routing.fallback_to_primary);
  CHECK(c.routing.consistency == Consistency::Eventual);  // read_your_writes false, the old key
  CHECK(c.routing.write_functions == std::vector<std::string>{"nextval", "f"});
  CHECK(c.routing.failover_timeout == 7.5);
  CHECK(c.routing.function_catalog_refresh == 2.5);
  CHECK(c.health_check.period == 0.25);
  CHECK(c.health_check.timeout == 0.75);
  CHECK(c.health_check.max_retries == 4);
  CHECK(c.health_check.database == "app");
  // The first user logs in, with its plaintext password.
  CHECK(c.health_check_user() == "app");
  CHECK(c.health_check_password() == "apppw");
}

TEST_CASE("conf routing: health_check user and password") {
  const LoadResult r = parse_config(R"({
    "backends": [{"host": "db1"}], "databases": [{"name": "app"}], "auth_method": "md5",
    "users": [{"name": "app", "password": "apppw"}, {"name": "mon", "password": "md5fe63fea7be31b0200b496d08bc6b517d"}],
    "health_check": {"user": "mon"}})");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  CHECK(r.config->health_check_user() == "mon");
  CHECK(r.config->health_check_password().empty());  // an md5 hash cannot log in
  const LoadResult explicit_pw = parse_config(R"({
    "backends": [{"host": "db1"}], "databases": [{"name": "app"}],
    "users": [{"name": "app", "password": "apppw"}],
    "health_check": {"user": "app", "password": "other"}})");
  REQUIRE(explicit_pw.ok());
  CHECK(explicit_pw.config->health_check_password() == "other");
  const LoadResult unknown = parse_config(R"({
    "backends": [{"host": "db1"}], "databases": [{"name": "app"}],
    "users": [{"name": "app", "password": "apppw"}], "health_check": {"user": "ghost"}})");
  CHECK_FALSE(unknown.ok());
  CHECK(all_errors(unknown) == "/health_check/user: unknown user \"ghost\"\n");
}

TEST_CASE("conf routing: consistency, its old key read_your_writes, and the causal knobs") {
  auto with_routing = [](const std::string& routing) {
    return parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}], "routing": )" + routing +
                        "}");
  };
  for (const auto& [text, expected] : {std::pair{"causal", Consistency::Causal}, {"session", Consistency::Session},
                                       {"eventual", Consistency::Eventual}}) {
    const LoadResult r = with_routing(std::string(R"({"consistency": ")") + text + "\"}");
    INFO(all_errors(r));
    REQUIRE(r.ok());
    CHECK(r.config->routing.consistency == expected);
    CHECK(std::string(to_string(expected)) == text);
    CHECK(parse_consistency(text) == expected);
  }
  CHECK_FALSE(parse_consistency("Causal"));
  const LoadResult on = with_routing(R"({"read_your_writes": true})");
  REQUIRE(on.ok());
  CHECK(on.config->routing.consistency == Consistency::Causal);
  const LoadResult knobs =
      with_routing(R"({"causal_wait": 0.05, "causal_poll_interval": 0, "remote_apply_reads": true})");
  REQUIRE(knobs.ok());
  CHECK(knobs.config->routing.remote_apply_reads);
  CHECK(knobs.config->routing.causal_wait == 0.05);
  CHECK(knobs.config->routing.causal_poll_interval == 0);

  CHECK(all_errors(with_routing(R"({"consistency": "strong"})")) ==
        "/routing/consistency: must be one of \"causal\", \"session\", \"eventual\"\n");
  CHECK(all_errors(with_routing(R"({"consistency": "session", "read_your_writes": true})")) ==
        "/routing/read_your_writes: is replaced by consistency; give only consistency\n");
  CHECK(all_errors(with_routing(R"({"read_your_writes": "yes"})")) == "/routing/read_your_writes: must be a boolean\n");
  CHECK(all_errors(with_routing(R"({"causal_wait": -1})")) == "/routing/causal_wait: must be >= 0\n");
}

TEST_CASE("conf failover: mode external (default) or pgmux; switchover settings") {
  const std::string base = R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}])";
  const LoadResult defaults = parse_config(base + "}");
  REQUIRE(defaults.ok());
  CHECK(defaults.config->failover.mode == FailoverMode::External);
  CHECK(defaults.config->switchover.drain_timeout == 10);
  CHECK(defaults.config->switchover.promote_command.empty());

  const LoadResult pgmux = parse_config(base + R"(, "failover": {"mode": "pgmux"},
      "switchover": {"drain_timeout": 2, "promote_command": "promote %n on %h:%p"}})");
  INFO(all_errors(pgmux));
  REQUIRE(pgmux.ok());
  CHECK(pgmux.config->failover.mode == FailoverMode::Pgmux);
  CHECK(std::string(to_string(FailoverMode::Pgmux)) == "pgmux");
  CHECK(pgmux.config->switchover.drain_timeout == 2);
  CHECK(pgmux.config->switchover.promote_command == "promote %n on %h:%p");

  CHECK(all_errors(parse_config(base + R"(, "failover": {"mode": "auto"}})")) ==
        "/failover/mode: must be one of \"external\", \"pgmux\"\n");
  CHECK(all_errors(parse_config(base + R"(, "failover": {"mod": "pgmux"}})")).find("/failover/mod") == 0);
  CHECK(all_errors(parse_config(base + R"(, "switchover": {"drain_timeout": 0}})")).find("/switchover/drain_timeout") ==
        0);
}

TEST_CASE("conf topology: source probe (default) or patroni with its REST API addresses") {
  const std::string base = R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}])";
  const LoadResult defaults = parse_config(base + "}");
  REQUIRE(defaults.ok());
  CHECK(defaults.config->topology.kind == TopologySourceKind::Probe);
  CHECK(defaults.config->topology.poll_interval == 1);

  const LoadResult patroni = parse_config(base + R"(, "topology": {"source": "patroni",
      "patroni_urls": ["http://10.0.0.1:8008", "http://pg-b:8008/"], "poll_interval": 0.5, "timeout": 3}})");
  INFO(all_errors(patroni));
  REQUIRE(patroni.ok());
  CHECK(patroni.config->topology.kind == TopologySourceKind::Patroni);
  CHECK(patroni.config->topology.patroni_urls.size() == 2);
  CHECK(patroni.config->topology.poll_interval == 0.5);
  CHECK(patroni.config->topology.timeout == 3);
  CHECK(std::string(to_string(TopologySourceKind::Patroni)) == "patroni");

  CHECK(all_errors(parse_config(base + R"(, "topology": {"source": "consul"}})")) ==
        "/topology/source: must be one of \"probe\", \"patroni\"\n");
  CHECK(all_errors(parse_config(base + R"(, "topology": {"source": "patroni"}})")) ==
        "/topology: source \"patroni\" needs \"patroni_urls\" (at least one REST API address)\n");
  CHECK(all_errors(parse_config(base +
                                R"(, "topology": {"source": "patroni", "patroni_urls": ["https://a:8008"]}})")) ==
        "/topology/patroni_urls/0: must be \"http://host:port\" (Patroni's REST API), got \"https://a:8008\"\n");
  CHECK(all_errors(parse_config(base + R"(, "failover": {"mode": "pgmux"},
      "topology": {"source": "patroni", "patroni_urls": ["http://a:8008"]}})")) ==
        "/failover/mode: must be \"external\" when topology.source is \"patroni\" (Patroni promotes; pgmux follows its "
        "leader)\n");
}

TEST_CASE("conf topology: etcd_urls watch Patroni's failover key under namespace and scope") {
  const std::string base = R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}], "topology": )";
  const LoadResult watched = parse_config(base + R"({"source": "patroni", "patroni_urls": ["http://a:8008"],
      "etcd_urls": ["http://127.0.0.1:2379", "http://etcd-b:2379"], "patroni_scope": "main"}})");
  INFO(all_errors(watched));
  REQUIRE(watched.ok());
  CHECK(watched.config->topology.etcd_urls.size() == 2);
  CHECK(watched.config->topology.patroni_scope == "main");
  CHECK(watched.config->topology.patroni_namespace == "/service");

  const std::string patroni = R"({"source": "patroni", "patroni_urls": ["http://a:8008"], )";
  CHECK(all_errors(parse_config(base + patroni + R"("etcd_urls": ["http://e:2379"]}})")) ==
        "/topology/patroni_scope: is needed with \"etcd_urls\": the \"scope\" of Patroni's config (its keys live "
        "under <patroni_namespace>/<scope>/)\n");
  CHECK(all_errors(parse_config(base + patroni +
                                R"("etcd_urls": ["e:2379"], "patroni_scope": "main"}})")) ==
        "/topology/etcd_urls/0: must be \"http://host:port\" (etcd's client URL), got \"e:2379\"\n");
  CHECK(
      all_errors(parse_config(
          base + patroni + R"("etcd_urls": ["http://e:2379"], "patroni_scope": "main", "patroni_namespace": "x"}})")) ==
      "/topology/patroni_namespace: must start with \"/\" (Patroni's default: /service)\n");
  CHECK(all_errors(parse_config(base + R"({"etcd_urls": ["http://e:2379"], "patroni_scope": "main"}})")) ==
        "/topology/etcd_urls: needs source \"patroni\" (it watches Patroni's failover key)\n");
}

TEST_CASE("conf topology: parse_http_url") {
  auto url = parse_http_url("http://127.0.0.1:8008");
  REQUIRE(url);
  CHECK(url->host == "127.0.0.1");
  CHECK(url->port == 8008);
  url = parse_http_url("http://pg-a/");
  REQUIRE(url);
  CHECK(url->host == "pg-a");
  CHECK(url->port == 80);
  url = parse_http_url("http://[::1]:8009");
  REQUIRE(url);
  CHECK(url->host == "::1");
  CHECK(url->port == 8009);
  CHECK_FALSE(parse_http_url("https://a:8008"));
  CHECK_FALSE(parse_http_url("http://a:0"));
  CHECK_FALSE(parse_http_url("http://a:70000"));
  CHECK_FALSE(parse_http_url("http://a:80/cluster"));
  CHECK_FALSE(parse_http_url("http://user@a:80"));
  CHECK_FALSE(parse_http_url("http://"));
}

TEST_CASE("conf consistency_check: off by default; interval, database and tables") {
  const std::string base = R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}])";
  const LoadResult defaults = parse_config(base + "}");
  REQUIRE(defaults.ok());
  CHECK(defaults.config->consistency_check.interval == 0);
  const LoadResult set = parse_config(base + R"(, "consistency_check": {"interval": 300, "database": "app",
      "tables": ["public.orders", "items"]}})");
  INFO(all_errors(set));
  REQUIRE(set.ok());
  CHECK(set.config->consistency_check.interval == 300);
  CHECK(set.config->consistency_check.database == "app");
  CHECK(set.config->consistency_check.tables == std::vector<std::string>{"public.orders", "items"});
  CHECK(all_errors(parse_config(base + R"(, "consistency_check": {"interval": -1}})"))
            .find("/consistency_check/interval") == 0);
  CHECK(all_errors(parse_config(base + R"(, "consistency_check": {"every": 1}})"))
            .find("/consistency_check/every") == 0);
}
