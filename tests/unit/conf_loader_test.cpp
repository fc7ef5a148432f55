// parse_config / load_config_file: defaults filled in, shipped files load, file errors, diagnostics shape.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "conf/loader.hpp"

using namespace pgmux::conf;

namespace {

const std::string kConfDir = std::string(PGMUX_TEST_DATA) + "/../../conf";

std::string all_errors(const LoadResult& r) {
  std::string out;
  for (const Diagnostic& d : r.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("conf loader: a minimal config gets every default") {
  const LoadResult r = parse_config(R"({"backends": [{"host": "db1"}, {"host": "db2", "port": 5433}],
                                       "databases": [{"name": "app"}, {"name": "*"}]})");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].host == "127.0.0.1");
  CHECK(c.listeners[0].port == 9999);
  CHECK(c.workers == 0);
  CHECK(c.auth_method == AuthMethod::ScramSha256);
  REQUIRE(c.backends.size() == 2);
  CHECK(c.backends[0].name == "backend0");
  CHECK(c.backends[0].host == "db1");
  CHECK(c.backends[0].port == 5432);
  CHECK(c.backends[0].weight == 1);
  CHECK(c.backends[1].name == "backend1");
  CHECK(c.backends[1].port == 5433);
  CHECK(c.users.empty());
  REQUIRE(c.databases.size() == 2);
  CHECK(c.databases[0].server_database == "app");  // defaults to the name
  CHECK(c.databases[0].backends.empty());
  CHECK(c.databases[0].pool_mode == PoolMode::Session);
  CHECK(c.databases[0].pool_size == 20);
  CHECK(c.databases[1].name == "*");
  CHECK(c.databases[1].server_database.empty());  // "*" uses the requested name at connect time
  CHECK(c.max_message_size == 64u * 1024 * 1024);
  CHECK(c.max_client_conn == 10000);
  CHECK(c.admin_users.empty());
  CHECK(c.stats_users.empty());
  CHECK(c.timeouts.query_wait_timeout == 120);
  CHECK(c.timeouts.server_idle_timeout == 600);
  CHECK(c.logging.level == LogLevel::Info);
  CHECK(c.find_database("anything") == &c.databases[1]);
}

TEST_CASE("conf loader: explicit values are kept") {
  const LoadResult r = parse_config(R"({
    "listeners": [{"host": "0.0.0.0", "port": 6432}],
    "workers": 3,
    "backends": [{"name": "p", "host": "h", "port": 1, "weight": 0}],
    "auth_method": "md5",
    "users": [{"name": "u", "password": "x", "auth_method": "trust", "pool_mode": "statement"}],
    "databases": [{"name": "d", "server_database": "real", "backends": ["p"], "pool_mode": "transaction",
                   "pool_size": 7}],
    "timeouts": {"query_wait_timeout": 1.5, "server_idle_timeout": 0, "server_connect_timeout": 2,
                 "client_login_timeout": 3, "shutdown_timeout": 4},
    "logging": {"level": "warn", "file": "/tmp/x.log"},
    "max_message_size": 2048, "max_client_conn": 5,
    "admin_users": ["u"], "stats_users": ["u"]})");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.listeners[0].host == "0.0.0.0");
  CHECK(c.listeners[0].port == 6432);
  CHECK(c.workers == 3);
  CHECK(c.effective_workers() == 3);
  CHECK(c.backends[0].weight == 0);
  CHECK(c.auth_method == AuthMethod::Md5);
  CHECK(c.users[0].auth_method == AuthMethod::Trust);
  CHECK(c.users[0].pool_mode == PoolMode::Statement);
  CHECK(c.databases[0].server_database == "real");
  CHECK(c.databases[0].backends == std::vector<std::string>{"p"});
  CHECK(c.databases[0].pool_mode == PoolMode::Transaction);
  CHECK(c.databases[0].pool_size == 7);
  CHECK(c.timeouts.query_wait_timeout == 1.5);
  CHECK(c.timeouts.server_idle_timeout == 0);
  CHECK(c.timeouts.shutdown_timeout == 4);
  CHECK(c.logging.level == LogLevel::Warn);
  CHECK(c.logging.file == "/tmp/x.log");
  CHECK(c.max_message_size == 2048);
  CHECK(c.max_client_conn == 5);
  CHECK(c.admin_users == std::vector<std::string>{"u"});
  CHECK(c.find_database("other") == nullptr);  // no "*" entry
}

TEST_CASE("conf loader: errors mean no config, and every problem is listed") {
  const LoadResult r = parse_config(R"({"backends": [{"host": "h", "port": 0}], "databases": [{"name": "d",
                                       "pool_size": 0}], "bogus": 1})");
  CHECK_FALSE(r.ok());
  CHECK(r.config == nullptr);
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].pointer == "/backends/0/port");
  CHECK(r.errors[0].message == "must be 1..65535");
  CHECK(r.errors[0].to_string() == "/backends/0/port: must be 1..65535");
  CHECK(r.errors[1].to_string() == "/databases/0/pool_size: must be 1..10000");
  CHECK(r.errors[2].to_string() == "/bogus: unknown key");
}

// A listener's host may be a socket directory (libpq's form); a backend's may not: pgmux reaches backends over TCP.
TEST_CASE("conf loader: a socket directory listens on a Unix-domain socket, and is refused as a backend's host") {
  const LoadResult r = parse_config(R"({"listeners": [{"host": "/tmp", "port": 6432}],
                                       "backends": [{"host": "/var/run/postgresql", "port": 5432}],
                                       "databases": [{"name": "app"}]})");
  CHECK_FALSE(r.ok());
  INFO(all_errors(r));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() == "/backends/0/host: is a Unix-domain socket directory; pgmux connects to backends "
                                   "over TCP only (use an address such as 127.0.0.1)");
  const LoadResult ok = parse_config(R"({"listeners": [{"host": "/tmp", "port": 6432}, {"port": 6432}],
                                        "backends": [{"host": "127.0.0.1"}], "databases": [{"name": "app"}]})");
  INFO(all_errors(ok));
  REQUIRE(ok.ok());
  CHECK(ok.config->listeners[0].unix_socket());
  CHECK(ok.config->listeners[0].socket_path() == "/tmp/.s.PGSQL.6432");
  CHECK_FALSE(ok.config->listeners[1].unix_socket());
  const LoadResult twice = parse_config(R"({"listeners": [{"host": "/tmp", "port": 6432},
                                                         {"host": "/tmp/", "port": 6432}],
                                           "backends": [{"host": "127.0.0.1"}], "databases": [{"name": "app"}]})");
  REQUIRE(twice.errors.size() == 1);  // one socket file, "/tmp/" or not
  CHECK(twice.errors[0].pointer == "/listeners/1");
  const std::string long_name(64, 'n');
  const LoadResult too_long =
      parse_config(R"({"backends": [{"host": "127.0.0.1"}], "databases": [{"name": ")" + long_name +
                   R"("}], "users": [{"name": ")" + long_name + R"(", "password": "p"}]})");
  INFO(all_errors(too_long));
  REQUIRE(too_long.errors.size() == 1);  // a long user entry may serve as health_check.user
  CHECK(too_long.errors[0].pointer == "/databases/0/name");
  const LoadResult long_path = parse_config(R"({"listeners": [{"host": "/)" + std::string(100, 'd') + R"("}],
                                               "backends": [{"host": "127.0.0.1"}], "databases": [{"name": "a"}]})");
  REQUIRE(long_path.errors.size() == 1);
  CHECK(long_path.errors[0].pointer == "/listeners/0/host");
}

TEST_CASE("conf loader: syntax error is one diagnostic at the document with line and column") {
  const LoadResult r = parse_config("{\n  \"workers\": 2,\n  oops\n}");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].pointer.empty());
  CHECK(r.errors[0].message.find("line 3, column 3") != std::string::npos);
  CHECK(r.errors[0].to_string().starts_with(": parse error"));
}

TEST_CASE("conf loader: duplicate keys deep inside arrays point at the right element") {
  const LoadResult r = parse_config(R"({"backends": [{"host": "a"}, {"host": "b"}, {"host": "c", "host": "d"}],
                                       "databases": [{"name": "x", "backends": [], "backends": []}]})");
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].to_string() == "/backends/2/host: duplicate key");
  CHECK(r.errors[1].to_string() == "/databases/0/backends: duplicate key");

  const LoadResult nested = parse_config(R"({"x~": [[1, 2], [{"k": 1, "k": 2}]], "backends": [{"host": "h"}],
                                            "databases": [{"name": "d"}]})");
  REQUIRE(nested.errors.size() == 2);
  CHECK(nested.errors[0].to_string() == "/x~0/1/0/k: duplicate key");
  CHECK(nested.errors[1].to_string() == "/x~0: unknown key");
}

TEST_CASE("conf loader: files") {
  SUBCASE("missing file") {
    const LoadResult r = load_config_file("/nonexistent/pgmux.json");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].pointer.empty());
    CHECK(r.errors[0].message == "cannot read /nonexistent/pgmux.json: No such file or directory");
  }
  SUBCASE("a directory is not a config file") {
    const LoadResult r = load_config_file(std::string(PGMUX_TEST_DATA));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message.find("Is a directory") != std::string::npos);
  }
}

TEST_CASE("conf loader: transaction-pooling keys are read where they are documented") {
  const LoadResult r = parse_config(R"({
    "backends": [{"host": "db1"}],
    "users": [{"name": "app", "password": "pw", "pool_mode": "statement", "max_user_connections": 40},
              {"name": "other", "password": "pw"}],
    "databases": [{"name": "app", "pool_mode": "transaction", "pool_size": 8, "min_pool_size": 3,
                   "reserve_pool_size": 2, "max_db_connections": 30},
                  {"name": "*"}],
    "timeouts": {"reserve_pool_timeout": 1.5, "idle_transaction_timeout": 20, "client_idle_timeout": 300,
                 "server_lifetime": 0, "server_check_delay": 0.25, "auto_database_idle_timeout": 90},
    "prepared_statements": {"max_per_server": 250},
    "max_auto_databases": 7
  })");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  const Database& app = c.databases[0];
  CHECK(app.pool_mode == PoolMode::Transaction);
  CHECK(app.pool_size == 8);
  CHECK(app.min_pool_size == 3);
  CHECK(app.reserve_pool_size == 2);
  CHECK(app.max_db_connections == 30);
  const Database& any = c.databases[1];
  CHECK(any.min_pool_size == 0);
  CHECK(any.reserve_pool_size == 0);
  CHECK(any.max_db_connections == 0);
  CHECK(c.users[0].max_user_connections == 40);
  CHECK(c.users[1].max_user_connections == 0);
  CHECK(Config::effective_pool_mode(&c.users[0], app) == PoolMode::Statement);
  CHECK(Config::effective_pool_mode(&c.users[1], app) == PoolMode::Transaction);
  CHECK(c.timeouts.reserve_pool_timeout == 1.5);
  CHECK(c.timeouts.idle_transaction_timeout == 20);
  CHECK(c.timeouts.client_idle_timeout == 300);
  CHECK(c.timeouts.server_lifetime == 0);
  CHECK(c.timeouts.server_check_delay == 0.25);
  CHECK(c.timeouts.query_wait_timeout == 120);  // untouched neighbours keep their defaults
  CHECK(c.prepared_statements.max_per_server == 250);
  CHECK(c.timeouts.auto_database_idle_timeout == 90);
  CHECK(c.max_auto_databases == 7);
}

TEST_CASE("conf loader: min_pool_size is checked against pool_size and max_db_connections") {
  CHECK(parse_config(R"({"backends": [{"host": "h"}],
                         "databases": [{"name": "a", "pool_size": 4, "min_pool_size": 4,
                                        "max_db_connections": 4}]})").ok());
  const LoadResult over_pool = parse_config(R"({"backends": [{"host": "h"}],
                                               "databases": [{"name": "a", "pool_size": 4, "min_pool_size": 5}]})");
  REQUIRE(over_pool.errors.size() == 1);
  CHECK(over_pool.errors[0].to_string() == "/databases/0/min_pool_size: must be <= pool_size (4)");
  const LoadResult over_db = parse_config(R"({"backends": [{"host": "h"}],
      "databases": [{"name": "a", "pool_size": 10, "min_pool_size": 5, "max_db_connections": 2}]})");
  REQUIRE(over_db.errors.size() == 1);
  CHECK(over_db.errors[0].to_string() == "/databases/0/min_pool_size: must be <= max_db_connections (2)");
}

TEST_CASE("conf loader: shipped conf/pgmux.json loads") {
  const LoadResult r = load_config_file(kConfDir + "/pgmux.json");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  CHECK(r.config->find_user("admin") != nullptr);
  CHECK(r.config->admin_users == std::vector<std::string>{"admin"});
  // The annotated example shows every pooling key with a non-default value where it is useful.
  const Database* app = r.config->find_database("app");
  REQUIRE(app != nullptr);
  CHECK(app->pool_mode == PoolMode::Transaction);
  CHECK(app->min_pool_size <= app->pool_size);
  CHECK(r.config->prepared_statements.max_per_server == 1000);
}

TEST_CASE("conf loader: shipped conf/demo.json is the documented demo") {
  const LoadResult r = load_config_file(kConfDir + "/demo.json");
  INFO(all_errors(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].host == "127.0.0.1");
  CHECK(c.listeners[0].port == 9999);
  CHECK(c.workers == 2);
  REQUIRE(c.backends.size() == 3);
  CHECK(c.find_backend("primary")->port == 5433);
  CHECK(c.find_backend("standby1")->port == 5434);
  CHECK(c.find_backend("standby2")->port == 5435);
  REQUIRE(c.find_user("app") != nullptr);
  CHECK(c.find_user("app")->password == "app");
  CHECK(c.effective_auth_method(*c.find_user("app")) == AuthMethod::ScramSha256);
  CHECK(c.find_user("postgres")->password == "postgres");
  CHECK(c.find_user("admin")->password == "admin");
  const Database* app = c.find_database("app");
  REQUIRE(app != nullptr);
  CHECK(app->name == "app");
  CHECK(app->pool_mode == PoolMode::Session);
  CHECK(app->pool_size == 20);
  CHECK(app->backends == std::vector<std::string>{"primary", "standby1", "standby2"});
  const Database* any = c.find_database("postgres");
  REQUIRE(any != nullptr);
  CHECK(any->name == "*");
  CHECK(any->pool_size == 10);
  CHECK(any->server_database.empty());
  CHECK(any->backends == std::vector<std::string>{"primary"});
  CHECK(c.admin_users == std::vector<std::string>{"admin"});
  CHECK(c.routing.read_write_split);
  CHECK(c.health_check.user == "postgres");
  CHECK(c.health_check_password() == "postgres");
  CHECK(c.health_check.database == "postgres");
}

TEST_CASE("conf loader: the shipped configs can run side by side on one host (no port in common)") {
  std::set<std::pair<std::string, int>> taken;
  for (const char* file : {"/pgmux.json", "/demo.json"}) {
    const LoadResult r = load_config_file(kConfDir + file);
    INFO(file << ": " << all_errors(r));
    REQUIRE(r.ok());
    std::vector<int> ports;
    for (const Listener& l : r.config->listeners) ports.push_back(l.port);
    if (r.config->metrics_listen.enabled) ports.push_back(r.config->metrics_listen.port);
    for (int port : ports) {
      INFO(file << " port " << port);
      CHECK(taken.insert({file, port}).second);
      CHECK(std::none_of(taken.begin(), taken.end(),
                         [&](const auto& other) { return other.first != file && other.second == port; }));
    }
  }
}

TEST_CASE("conf loader: logging.format is text (the default) or json") {
  const std::string base = R"({"backends": [{"host": "h"}], "databases": [{"name": "app"}])";
  const LoadResult plain = parse_config(base + "}");
  INFO(all_errors(plain));
  REQUIRE(plain.ok());
  CHECK(plain.config->logging.format == LogFormat::Text);
  const LoadResult json = parse_config(base + R"(, "logging": {"format": "json"}})");
  REQUIRE(json.ok());
  CHECK(json.config->logging.format == LogFormat::Json);
  const LoadResult bad = parse_config(base + R"(, "logging": {"format": "xml"}})");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].to_string().find("/logging/format") == 0);
}
