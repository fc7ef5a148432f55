// What a reload may change live and how it is summarised (proxy/config_diff.cpp): settings_needing_restart()
// refuses listener, worker, metrics listener and log file changes; describe_changes() is the reload log line's
// summary.
#include <doctest/doctest.h>

#include "proxy/control/config_diff.hpp"

using namespace pgmux;
using pgmux::proxy::describe_changes;
using pgmux::proxy::settings_needing_restart;

namespace {

conf::Backend backend(const std::string& name, uint16_t port, int weight = 1) {
  conf::Backend b;
  b.name = name;
  b.host = "127.0.0.1";
  b.port = port;
  b.weight = weight;
  return b;
}

// Two workers, one listener, three backends, one user and one database: the "running" config of these tests.
conf::Config base() {
  conf::Config c;
  c.workers = 2;
  c.listeners = {conf::Listener{"127.0.0.1", 6432}};
  c.backends = {backend("primary", 5432), backend("standby1", 5433), backend("standby2", 5434)};
  conf::User user;
  user.name = "app";
  user.password = "secret";
  c.users = {user};
  conf::Database db;
  db.name = "app";
  db.pool_size = 2;
  c.databases = {db};
  return c;
}

}  // namespace

TEST_CASE("config_diff: an identical config needs no restart and changes nothing") {
  const conf::Config c = base();
  CHECK(settings_needing_restart(c, c).empty());
  CHECK(describe_changes(c, c) == "no changes");
}

TEST_CASE("config_diff: listeners, workers and metrics_listen need a restart, one message each") {
  const conf::Config current = base();
  conf::Config next = base();
  next.listeners = {conf::Listener{"127.0.0.1", 6432}, conf::Listener{"0.0.0.0", 7000}};
  next.workers = 4;
  next.metrics_listen.enabled = false;
  const std::vector<std::string> refused = settings_needing_restart(current, next);
  REQUIRE(refused.size() == 3);
  CHECK(refused[0] ==
        "/listeners: changed from 127.0.0.1:6432 to 127.0.0.1:6432, 0.0.0.0:7000; listeners change only with a "
        "restart");
  CHECK(refused[1] == "/workers: changed from 2 to 4; the worker count changes only with a restart");
  CHECK(refused[2] ==
        "/metrics_listen: changed from 127.0.0.1:9930 to off; the metrics listener changes only with a restart");
}

TEST_CASE("config_diff: a listener port change alone is refused") {
  const conf::Config current = base();
  conf::Config next = base();
  next.listeners[0].port = 6433;
  const std::vector<std::string> refused = settings_needing_restart(current, next);
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].rfind("/listeners: changed from 127.0.0.1:6432 to 127.0.0.1:6433", 0) == 0);
}

TEST_CASE("config_diff: workers compare by their effective count") {
  conf::Config current = base();
  current.workers = 0;  // = hardware concurrency
  conf::Config next = base();
  next.workers = current.effective_workers();
  CHECK(settings_needing_restart(current, next).empty());
  next.workers = current.effective_workers() + 1;
  CHECK(settings_needing_restart(current, next).size() == 1);
}

TEST_CASE("config_diff: a metrics listener moving to another port is refused") {
  const conf::Config current = base();
  conf::Config next = base();
  next.metrics_listen.port = 9931;
  const std::vector<std::string> refused = settings_needing_restart(current, next);
  REQUIRE(refused.size() == 1);
  CHECK(refused[0] ==
        "/metrics_listen: changed from 127.0.0.1:9930 to 127.0.0.1:9931; the metrics listener changes only with a "
        "restart");
}

TEST_CASE("config_diff: the log file needs a restart, the log level does not") {
  const conf::Config current = base();
  conf::Config next = base();
  next.logging.file = "/var/log/pgmux.log";
  next.logging.level = conf::LogLevel::Debug;
  const std::vector<std::string> refused = settings_needing_restart(current, next);
  REQUIRE(refused.size() == 1);
  CHECK(refused[0] ==
        "/logging/file: changed from stderr to /var/log/pgmux.log; the log file changes only with a restart");
}

TEST_CASE("config_diff: everything a reload applies live needs no restart") {
  const conf::Config current = base();
  conf::Config next = base();
  next.backends.push_back(backend("standby3", 5435));
  next.backends.erase(next.backends.begin() + 1);
  next.backends[0].weight = 7;
  next.databases[0].pool_size = 40;
  next.users[0].password = "other";
  next.routing.read_write_split = false;
  next.timeouts.query_wait_timeout = 3;
  next.health_check.period = 0.5;
  next.logging.level = conf::LogLevel::Debug;
  next.max_client_conn = 5;
  CHECK(settings_needing_restart(current, next).empty());
}

TEST_CASE("config_diff: backends added, removed, changed and re-weighted") {
  const conf::Config current = base();
  conf::Config next = base();
  next.backends.erase(next.backends.begin() + 2);  // -standby2
  next.backends.push_back(backend("standby3", 5435));  // +standby3
  next.backends[1].port = 6543;  // ~standby1
  next.backends[0].weight = 3;   // weight only: not a "~"
  CHECK(describe_changes(current, next) == "backends ~standby1 +standby3 -standby2, weight primary 1->3");
}

TEST_CASE("config_diff: a weight change alone") {
  const conf::Config current = base();
  conf::Config next = base();
  next.backends[1].weight = 0;
  next.backends[2].weight = 5;
  CHECK(describe_changes(current, next) == "backends weight standby1 1->0, weight standby2 1->5");
}

TEST_CASE("config_diff: reordering backends is not a change") {
  const conf::Config current = base();
  conf::Config next = base();
  std::swap(next.backends[1], next.backends[2]);
  CHECK(describe_changes(current, next) == "no changes");
}

TEST_CASE("config_diff: databases and users by name") {
  const conf::Config current = base();
  conf::Config next = base();
  next.databases[0].pool_size = 4;
  conf::Database reports;
  reports.name = "reports";
  next.databases.push_back(reports);
  next.users[0].password = "rotated";
  conf::User bob;
  bob.name = "bob";
  next.users.push_back(bob);
  CHECK(describe_changes(current, next) == "databases ~app +reports; users ~app +bob");

  conf::Config fewer = base();
  fewer.users.clear();
  fewer.databases.clear();
  CHECK(describe_changes(current, fewer) == "databases -app; users -app");
}

TEST_CASE("config_diff: each setting group is named once, in a fixed order") {
  const conf::Config current = base();
  conf::Config next = base();
  next.routing.max_lag_bytes = 1;
  next.routing.failover_timeout = 3;
  next.timeouts.server_idle_timeout = 1;
  next.health_check.timeout = 9;
  next.logging.level = conf::LogLevel::Warn;
  next.max_client_conn = 7;
  CHECK(describe_changes(current, next) == "routing; timeouts; health_check; log level warn; limits/access");
}

TEST_CASE("config_diff: each limits/access setting counts") {
  const conf::Config current = base();
  auto changed = [&](auto&& edit) {
    conf::Config next = base();
    edit(next);
    return describe_changes(current, next);
  };
  CHECK(changed([](conf::Config& c) { c.max_message_size = 1024; }) == "limits/access");
  CHECK(changed([](conf::Config& c) { c.admin_users = {"ops"}; }) == "limits/access");
  CHECK(changed([](conf::Config& c) { c.stats_users = {"ops"}; }) == "limits/access");
  CHECK(changed([](conf::Config& c) { c.auth_method = conf::AuthMethod::Md5; }) == "limits/access");
  CHECK(changed([](conf::Config& c) { c.prepared_statements.max_per_server = 5; }) == "limits/access");
}

TEST_CASE("describe_changes: tls.client's mode, and its files read again at every reload") {
  pgmux::conf::Config current;
  pgmux::conf::Config next = current;
  next.tls.client.mode = pgmux::conf::TlsMode::Require;
  next.tls.client.cert_file = "/etc/pgmux/server.crt";
  CHECK(describe_changes(current, next) ==
        "tls.client.mode disable->require; TLS certificate files read again (/etc/pgmux/server.crt)");
  CHECK(describe_changes(next, next) == "TLS certificate files read again (/etc/pgmux/server.crt)");
  CHECK(settings_needing_restart(current, next).empty());  // TLS settings apply to new connections at a reload
}
