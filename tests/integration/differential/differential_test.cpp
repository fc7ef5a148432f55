// Differential protocol test: every script runs on a fresh connection straight to the PostgreSQL primary and
// through pgmux; the normalized backend streams must be identical. Each script also runs twice direct, which
// proves the script itself is deterministic before pgmux is blamed for a difference.
//
// Environment: PGMUX_TEST_BASEPORT (cluster), PGMUX_DIFF_SELF=1 or PGMUX_TEST_DIRECT=1 (second run also direct,
// no pgmux),
// PGMUX_DIFF_ONLY=<script name>, PGMUX_DIFF_STRICT_ORDER=1 (do not sort the startup ParameterStatus run),
// PGMUX_DIFF_POOL_MODE=session|transaction (pool mode of database app in pgmux's config), PGMUX_DIFF_SPLIT=1
// (the two standbys behind pgmux too, read/write split on: reads may be served by a standby), PGMUX_DIFF_VERBOSE=1,
// PGMUX_DIFF_TARGET_PORT=<port> (compare with a proxy already listening there, e.g. pgbouncer; no pgmux started).
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "tests/integration/differential/message_diff.hpp"
#include "tests/integration/differential/scripts.hpp"
#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"

namespace pgmux::difftest {
namespace {

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::string(v) == value;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The cluster's standbys as backends, probed often, with read/write split on (the default).
void add_standbys(nlohmann::json& config) {
  const test::ClusterPorts ports = test::cluster_ports();
  config["backends"].push_back({{"name", "standby1"}, {"host", "127.0.0.1"}, {"port", ports.standby1}});
  config["backends"].push_back({{"name", "standby2"}, {"host", "127.0.0.1"}, {"port", ports.standby2}});
  config["health_check"] = {{"period", 0.2}, {"timeout", 1}, {"max_retries", 1}, {"user", "postgres"}};
  config["routing"] = {{"read_write_split", true}};
}

// A script's reset runs on the primary directly, behind pgmux's back: its causal reads promise only the commits it
// acknowledged, so with the standbys behind pgmux a read could see the table as it was before the reset. Waits
// (up to 10 s) until both standbys have replayed the primary's position; an error when they have not.
std::string wait_standbys_replayed() {
  const test::ClusterPorts ports = test::cluster_ports();
  const auto open = [](int port) {
    return std::unique_ptr<PGconn, decltype(&PQfinish)>(
        PQconnectdb(("host=127.0.0.1 port=" + std::to_string(port) + " user=app password=app dbname=app").c_str()),
        &PQfinish);
  };
  const auto value = [](PGconn* conn, const std::string& sql) {
    std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn, sql.c_str()), &PQclear);
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK ? std::string(PQgetvalue(r.get(), 0, 0)) : std::string();
  };
  auto primary = open(ports.primary);
  const std::string target = value(primary.get(), test::kPrimaryReplayTargetSql);
  if (target.empty()) return "cannot read the primary's WAL position: " + std::string(PQerrorMessage(primary.get()));
  for (const int port : {ports.standby1, ports.standby2}) {
    auto standby = open(port);
    const std::string check = "SELECT pg_last_wal_replay_lsn() >= '" + target + "'::pg_lsn";
    int tries = 0;
    while (value(standby.get(), check) != "t") {
      if (++tries > 1000) return "standby on port " + std::to_string(port) + " did not replay " + target + " in 10 s";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return {};
}

LoginParams app_login() {
  LoginParams p;
  p.user = "app";
  p.database = "app";
  p.password = "app";
  // Set explicitly so neither side falls back to a default the other may not share.
  p.extra = {{"application_name", "pgmux_diff"}};
  return p;
}

// One pgmux (unless self mode) and the scripts' database objects, for the whole test binary.
struct Environment {
  Target direct;
  Target proxied;
  bool self_mode = false;
  bool split = false;  // the standbys are behind pgmux too
  Schema schema{std::to_string(getpid())};
  std::unique_ptr<test::PgmuxProcess> pgmux;
  std::string setup_error;

  Environment() {
    direct.port = test::cluster_ports().primary;
    direct.login = app_login();
    self_mode = env_is("PGMUX_DIFF_SELF", "1") || test::direct_mode();
    proxied = direct;
    const std::string target_port = env_or("PGMUX_DIFF_TARGET_PORT", "");
    if (!self_mode && !target_port.empty()) {
      proxied.port = std::atoi(target_port.c_str());
    } else if (!self_mode) {
      int port = test::pick_listen_port();  // by pid: the four differential tests run side by side
      nlohmann::json config = test::default_config(port);
      std::string mode = env_or("PGMUX_DIFF_POOL_MODE", "");
      if (!mode.empty()) {
        for (auto& db : config["databases"]) db["pool_mode"] = mode;
      }
      split = env_is("PGMUX_DIFF_SPLIT", "1");
      if (split) add_standbys(config);
      try {
        pgmux = std::make_unique<test::PgmuxProcess>(config.dump(2), port);
        proxied.port = port;
      } catch (const std::exception& e) {
        setup_error = std::string("pgmux did not start: ") + e.what();
        return;
      }
    }
    run_admin_sql(direct, schema.teardown_sql());
    setup_error = run_admin_sql(direct, schema.setup_sql());
  }
  ~Environment() {
    std::string err = run_admin_sql(direct, schema.teardown_sql());
    if (!err.empty()) std::cerr << "differential teardown: " << err << "\n";
  }

  Capture run(const Target& target, const Script& script, std::string& error) {
    error = run_admin_sql(direct, schema.reset_sql());
    if (error.empty() && split && &target == &proxied) error = wait_standbys_replayed();
    Capture c = run_script(target, script);
    NormalizeOptions opts;
    opts.strict_startup_order = env_is("PGMUX_DIFF_STRICT_ORDER", "1");
    normalize(c, opts);
    return c;
  }
};

// Differences pgmux still has in transaction pooling, each named with what the client sees and the open item of
// issue 10 that removes it. A listed script that no longer differs fails the test: the entry must go.
struct KnownDifference {
  const char* script;
  const char* why;
};
constexpr KnownDifference kTransactionPoolingDifferences[] = {
    {nullptr, nullptr},  // none left; an entry names a script and what the client sees
};

const KnownDifference* known_difference(const std::string& script) {
  if (env_or("PGMUX_DIFF_POOL_MODE", "session") != "transaction") return nullptr;
  for (const KnownDifference& known : kTransactionPoolingDifferences) {
    if (known.script && script == known.script) return &known;
  }
  return nullptr;
}

Environment& env() {
  static Environment e;
  return e;
}

}  // namespace

TEST_CASE("differential: backend replies through pgmux equal those of the primary") {
  Environment& e = env();
  REQUIRE_MESSAGE(e.setup_error.empty(), e.setup_error);
  const std::string only = env_or("PGMUX_DIFF_ONLY", "");
  const bool verbose = env_is("PGMUX_DIFF_VERBOSE", "1");
  const std::string proxied_name = e.self_mode ? "direct#2" : e.pgmux ? "pgmux" : "target";
  int ran = 0;
  for (const Script& script : all_scripts(e.schema)) {
    if (!only.empty() && script.name != only) continue;
    ++ran;
    INFO("script " << script.name);
    std::string reset_error;
    Capture first = e.run(e.direct, script, reset_error);
    REQUIRE_MESSAGE(reset_error.empty(), reset_error);
    // A script that cannot complete against PostgreSQL itself is a harness bug, not a pgmux one.
    CHECK_MESSAGE(first.error.empty(), "direct run failed: " << first.error);
    if (verbose) std::cout << script.name << ": " << tag_summary(first) << "\n";

    Capture second = e.run(e.direct, script, reset_error);
    REQUIRE_MESSAGE(reset_error.empty(), reset_error);
    auto flaky = first_difference(first, second, "direct#1", "direct#2");
    CHECK_MESSAGE(!flaky, "script is not deterministic against the primary itself:\n" << *flaky);
    if (flaky || e.self_mode) continue;

    Capture through = e.run(e.proxied, script, reset_error);
    REQUIRE_MESSAGE(reset_error.empty(), reset_error);
    auto diff = first_difference(first, through, "direct", proxied_name);
    if (const KnownDifference* known = known_difference(script.name)) {
      CHECK_MESSAGE(diff.has_value(), "listed as a known difference but now equal to the primary: remove it from "
                                      "kTransactionPoolingDifferences (" << std::string(known->why) << ")");
      if (diff) MESSAGE("known difference (" << std::string(known->why) << "):\n" << *diff);
      continue;
    }
    CHECK_MESSAGE(!diff, proxied_name << " changed the backend stream:\n" << *diff);
  }
  CHECK_MESSAGE(ran > 0, "no script named " << only);
}

}  // namespace pgmux::difftest
