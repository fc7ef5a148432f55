// pg_dump --jobs through pgmux with the read/write split, in both pool modes: the dump restores to the same SQL as
// one taken directly from the primary. Each of pg_dump's connections sends BEGIN, then SET TRANSACTION ISOLATION
// LEVEL REPEATABLE READ, READ ONLY; the leader exports its snapshot (pg_export_snapshot()) and each worker imports
// it (SET TRANSACTION SNAPSHOT), which only works on the node that exported it. pgmux holds the SET TRANSACTION back
// with the BEGIN, so a block whose next statement is the export or the import runs on the primary
// (it_routing_standby_refusals sends these statements alone and fails without that). pg_dump 15.8 and later also
// set restrict_nonsystem_relation_kind at login by a set_config over pg_settings, which pgmux cannot replay on a
// standby, so today every statement of theirs runs on the primary anyway: this test guards the whole path a user
// takes (session replay, the held BEGIN, COPY TO, prepared catalog queries), not the standby choice.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_pg_dump";
const char* const kBin = "/usr/lib/postgresql/15/bin/";

// Tables enough for three workers, with rows, a sequence in use and a view.
bool make_database(const ClusterPorts& ports) {
  recreate_database(ports, kDb,
                    {"CREATE TABLE a (id int PRIMARY KEY, v text)",
                     "INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
                     "CREATE TABLE b (id bigserial PRIMARY KEY, a_id int REFERENCES a)",
                     "INSERT INTO b (a_id) SELECT g FROM generate_series(1, 500) g",
                     "CREATE TABLE c (k text, n numeric)", "INSERT INTO c VALUES ('x', 1.5), ('y', NULL)",
                     "CREATE TABLE d (j jsonb)", "INSERT INTO d VALUES ('{\"k\": [1, 2]}')",
                     "CREATE VIEW a_view AS SELECT id FROM a WHERE id < 10"});
  return wait_replayed(ports, 20);
}

// A script without its \restrict / \unrestrict lines (newer pg_restore writes a random key in them each run).
std::string without_restrict_keys(const std::string& sql) {
  std::string out;
  size_t at = 0;
  while (at < sql.size()) {
    size_t end = sql.find('\n', at);
    end = end == std::string::npos ? sql.size() : end + 1;
    const std::string_view line(sql.data() + at, end - at);
    if (!line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict ")) out.append(line);
    at = end;
  }
  return out;
}

// pg_dump --jobs 3 in directory format from `port`, then that dump as SQL (pg_restore -f -). Empty when pg_dump
// failed (its output in *log).
std::string dump_as_sql(int port, const std::string& dir, std::string* log) {
  std::filesystem::remove_all(dir);
  const std::string conninfo = "'" + pgmux::test::conninfo(port, "postgres", "postgres", kDb) + "'";
  if (run_shell("timeout 120 " + std::string(kBin) + "pg_dump --jobs=3 -Fd -f " + dir + " -d " + conninfo, log) != 0) {
    return "";
  }
  std::string sql;
  if (run_shell("timeout 60 " + std::string(kBin) + "pg_restore -f - " + dir, &sql) != 0) return "pg_restore failed";
  return without_restrict_keys(sql);
}

}  // namespace

TEST_CASE("pg_dump --jobs 3 through the split dumps what a direct dump does, both pool modes") {
  const ClusterPorts ports = cluster_ports();
  REQUIRE(make_database(ports));
  char pattern[] = "/tmp/pgmux-test-dump-XXXXXX";
  REQUIRE(mkdtemp(pattern) != nullptr);
  const std::string parent(pattern);
  const std::string dir = parent + "/dump";  // pg_dump -Fd makes it
  struct Cleanup {  // also when a REQUIRE ends the test midway
    std::string parent;
    ClusterPorts ports;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(parent, ignored);
      try {
        drop_database(ports, kDb);
      } catch (...) {
      }
    }
  } cleanup{parent, ports};
  std::string log;
  const std::string direct = dump_as_sql(ports.primary, dir, &log);
  REQUIRE_MESSAGE(!direct.empty(), log);
  CHECK(direct.find("COPY public.a (id, v) FROM stdin;") != std::string::npos);  // the oracle has the rows
  for (const char* mode : {"session", "transaction"}) {
    const std::string mode_name(mode);  // CAPTURE keeps a reference
    CAPTURE(mode_name);
    const int listen = pick_listen_port();
    nlohmann::json config = routing_config(listen, ports);
    config["databases"] = nlohmann::json::array({{{"name", kDb}, {"pool_mode", mode_name}, {"pool_size", 10}}});
    ProxyUnderTest proxy(config.dump(), listen);
    REQUIRE(wait_ports_serving(proxy.conninfo("app", "app", kDb), {ports.standby1, ports.standby2}, 20));
    for (int round = 0; round < 2; ++round) {  // standbys by round robin: each worker may land on either
      CAPTURE(round);
      std::string proxy_log;
      const std::string through = dump_as_sql(proxy.port(), dir, &proxy_log);
      CHECK_MESSAGE(through == direct, proxy_log);
    }
  }
}
