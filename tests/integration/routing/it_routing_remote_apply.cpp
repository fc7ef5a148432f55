// Synchronous replication with remote_apply (issue 12, item 5): with the primary's synchronous_commit at
// remote_apply and synchronous_standby_names = 'FIRST 1 (standby1)' (set with ALTER SYSTEM, restored at the end),
// every commit returns only after standby1 applied it, so with routing.remote_apply_reads a read right after a
// commit goes there at once (causal reads, causal_wait 0, the replay poller slowed to once a second so that it
// cannot be what lets the read go). Each read must see the commit acknowledged just before it. A session that sets
// its own synchronous_commit (SET, set_config in the transaction, a startup option) commits without that wait:
// the reads after its commits go to the primary. (Killed by ctest's timeout, the test leaves the settings until
// the next cluster_start, which makes a new cluster.)
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/routing/routing_support.hpp"

using namespace pgmux::test;
using namespace pgmux::test::routing;

namespace {

const char* const kDb = "rt_remote_apply";

// The primary commits with remote_apply for standby1 while it lives; role or database settings of
// synchronous_commit (another test's) are set aside meanwhile, then everything is put back.
struct RemoteApplyPrimary {
  int port;
  std::vector<std::string> restore;  // statements that put the role and database settings back
  explicit RemoteApplyPrimary(int primary_port) : port(primary_port) {
    PgConn p = admin(port);
    PgResult saved(PQexec(p.get(),
                          "SELECT coalesce(d.datname, ''), coalesce(r.rolname, ''), c FROM pg_db_role_setting s"
                          " LEFT JOIN pg_database d ON d.oid = s.setdatabase"
                          " LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) AS c"
                          " WHERE c ILIKE 'synchronous\\_commit=%'"));
    for (int i = 0; i < PQntuples(saved.get()); ++i) {
      const std::string db = PQgetvalue(saved.get(), i, 0), role = PQgetvalue(saved.get(), i, 1);
      const std::string value = std::string(PQgetvalue(saved.get(), i, 2)).substr(sizeof("synchronous_commit=") - 1);
      const std::string in_db = db.empty() ? "" : " IN DATABASE \"" + db + "\"";
      const std::string target = role.empty() ? "DATABASE \"" + db + "\"" : "ROLE \"" + role + "\"" + in_db;
      exec(p.get(), "ALTER " + target + " RESET synchronous_commit");
      restore.push_back("ALTER " + target + " SET synchronous_commit = '" + value + "'");
    }
    exec(p.get(), "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'");
    exec(p.get(), "ALTER SYSTEM SET synchronous_commit = 'remote_apply'");
    exec(p.get(), "SELECT pg_reload_conf()");
  }
  ~RemoteApplyPrimary() {
    PgConn p = admin(port);
    exec(p.get(), "ALTER SYSTEM RESET synchronous_standby_names");
    exec(p.get(), "ALTER SYSTEM RESET synchronous_commit");
    exec(p.get(), "SELECT pg_reload_conf()");
    for (const std::string& sql : restore) exec(p.get(), sql);
  }
};

struct Tally {
  int reads = 0;
  int stale = 0;
  std::map<int, int> ports;
};

// `rounds` times: a row inserted through `writer`, then counted through `reader` at once. in_transaction: the
// writer is inside a transaction that set synchronous_commit locally; each round commits it and starts the next.
Tally write_then_read(PGconn* writer, PGconn* reader, int rounds, int* rows, bool in_transaction = false,
                      const std::string& table = "t") {
  Tally t;
  for (int i = 0; i < rounds; ++i) {
    exec(writer, "INSERT INTO " + table + " VALUES (1)");
    if (in_transaction) exec(writer, "COMMIT");
    ++*rows;
    PgResult r = exec(reader, "SELECT count(*), inet_server_port() FROM " + table);
    ++t.reads;
    t.stale += std::atoi(PQgetvalue(r.get(), 0, 0)) < *rows;
    ++t.ports[std::atoi(PQgetvalue(r.get(), 0, 1))];
    if (in_transaction) {
      exec(writer, "BEGIN");
      exec(writer, "SELECT set_config('synchronous_commit', 'local', true)");
    }
  }
  if (in_transaction) exec(writer, "COMMIT");
  return t;
}

}  // namespace

TEST_CASE("remote_apply: a read right after a commit goes to the standby that applied it, and sees it") {
  const ClusterPorts ports = cluster_ports();
  // Rows inserted into tn raise a notice, as a cancelled wait for a synchronous standby would.
  recreate_database(ports, kDb,
                    {"CREATE TABLE t (n int)", "ALTER TABLE t OWNER TO app", "CREATE TABLE tn (n int)",
                     "ALTER TABLE tn OWNER TO app",
                     "CREATE FUNCTION say() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'row'; "
                     "RETURN NEW; END$$",
                     "CREATE TRIGGER say AFTER INSERT ON tn FOR EACH ROW EXECUTE FUNCTION say()"});
  RemoteApplyPrimary remote_apply(ports.primary);
  {
    PgConn p = admin(ports.primary);
    const char* state = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'";
    REQUIRE(wait_until([&] { return scalar(p.get(), state) == "sync"; }, 20));
  }
  const int listen = pick_listen_port();
  nlohmann::json config = routing_config(listen, ports);
  config["databases"].insert(config["databases"].begin(),
                             nlohmann::json::object({{"name", kDb}, {"pool_mode", "transaction"}, {"pool_size", 4}}));
  config["routing"] = {{"consistency", "causal"}, {"causal_wait", 0}, {"causal_poll_interval", 1},
                       {"max_lag_seconds", 60}, {"remote_apply_reads", true}};
  config["users"].push_back({{"name", "admin"}, {"password", "admin"}});
  config["admin_users"] = nlohmann::json::array({"admin"});
  ProxyUnderTest proxy(config.dump(), listen);
  if (proxy.direct()) return;
  const std::string ci = proxy.conninfo("app", "app", kDb);
  const std::string admin_ci = proxy.conninfo("admin", "admin", "pgmux");
  REQUIRE(wait_ports_serving(ci, {ports.standby1, ports.standby2}, 20));
  REQUIRE(wait_until([&] { return backend_field(admin_ci, "standby1", "applies_commits") == "t"; }, 10));
  CHECK(backend_field(admin_ci, "standby2", "applies_commits") == "f");
  // Commits acknowledged before standby1 was seen to apply every commit bind it until a primary position sampled
  // after that moment (the next probe round, 0.2 s) shows it has them.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));

  PgConn writer = connect(ci);
  PgConn reader = connect(ci);
  int rows = 0;
  Tally applied = write_then_read(writer.get(), reader.get(), 100, &rows);
  MESSAGE("after remote_apply commits: " << applied.stale << " stale of " << applied.reads << ", served by "
                                         << describe(applied.ports, ports));
  CHECK(applied.stale == 0);
  CHECK(applied.ports[ports.standby1] >= 90);  // at once, not after a replay position (the poller: once a second)

  // The same with writers whose sessions commit without waiting for standby1's apply: the reads after their
  // commits go to the primary (or, after a replay position, to a standby that has them).
  PgConn set_writer = connect(ci);
  exec(set_writer.get(), "SET synchronous_commit = local");
  PgConn option_writer = connect(ci + " options='-c synchronous_commit=local'");
  PgConn local_writer = connect(ci);  // set_config(..., true) inside each transaction
  exec(local_writer.get(), "BEGIN");
  exec(local_writer.get(), "SELECT set_config('synchronous_commit', 'local', true)");
  const std::vector<std::pair<std::string, PGconn*>> writers{
      {"SET", set_writer.get()}, {"startup option", option_writer.get()}, {"set_config", local_writer.get()}};
  for (const auto& writer : writers) {
    const std::string how = writer.first;  // a plain variable: clang 14 cannot capture a structured binding
    PGconn* conn = writer.second;
    CAPTURE(how);
    Tally local = write_then_read(conn, reader.get(), 50, &rows, how == "set_config");
    MESSAGE("after commits with synchronous_commit local (" << how << "): " << local.stale << " stale of "
                                                            << local.reads << ", served by "
                                                            << describe(local.ports, ports));
    CHECK(local.stale == 0);
    CHECK(local.ports[ports.primary] >= 40);
  }
  // A commit whose transaction's replies carried a notice may not have waited: reads after it wait as well.
  PgConn noisy_writer = connect(ci);
  int noisy_rows = 0;
  Tally noisy = write_then_read(noisy_writer.get(), reader.get(), 50, &noisy_rows, false, "tn");
  MESSAGE("after commits with a notice: " << noisy.stale << " stale of " << noisy.reads << ", served by "
                                          << describe(noisy.ports, ports));
  CHECK(noisy.stale == 0);
  CHECK(noisy.ports[ports.primary] >= 40);
}
