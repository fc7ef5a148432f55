// auth_query (issue 11 item 4) end to end. Roles the config does not list log in with the secret PostgreSQL keeps
// for them (SCRAM; md5 through an hba md5 rule), in session and transaction pooling, and run as themselves on the
// server. A wrong password, an unknown role, an expired password, no password and NOLOGIN get PostgreSQL's own
// answers, compared with a direct login to the primary. The lookup cannot be steered by search_path (decoys named
// pg_authid and lookup in the auth user's first schema), both through pg_authid and through the documented
// SECURITY DEFINER function (conf/auth_query.sql, run as written). A lookup that cannot run is an error that names
// auth_query; a password changed in the database is taken by the next login after a failed one.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "tests/support/pg_client.hpp"
#include "tests/support/pgmux_process.hpp"
#include "tests/support/raw_startup.hpp"

using namespace pgmux::test;
using nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Roles only the database knows, the documented lookup function, and decoys in the auth user's search_path.
void create_roles(const ClusterPorts& ports) {
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "postgres"));
  exec(admin.get(),
       "DROP SCHEMA IF EXISTS aq_decoy CASCADE;"
       "DROP SCHEMA IF EXISTS pgmux_auth CASCADE;"
       "DROP ROLE IF EXISTS aq_alice, aq_expired, aq_nologin, aq_nopass, aq_lookup, aq_super;"
       "CREATE ROLE aq_super SUPERUSER LOGIN PASSWORD 'super-pw';"
       "CREATE ROLE aq_alice LOGIN PASSWORD 'alice-pw';"
       "CREATE ROLE aq_expired LOGIN PASSWORD 'expired-pw' VALID UNTIL '2001-01-01';"
       "CREATE ROLE aq_nologin NOLOGIN PASSWORD 'nologin-pw';"
       "CREATE ROLE aq_nopass LOGIN;"
       "CREATE ROLE aq_lookup LOGIN PASSWORD 'lookup-pw';");
  exec(admin.get(), read_file(std::string(PGMUX_SOURCE_DIR) + "/conf/auth_query.sql"));
  exec(admin.get(),
       "GRANT USAGE ON SCHEMA pgmux_auth TO aq_lookup;"
       "GRANT EXECUTE ON FUNCTION pgmux_auth.lookup(text) TO aq_lookup;"
       // Decoys: aq_alice with a password of the attacker's choosing, found first by an unqualified query.
       "CREATE SCHEMA aq_decoy;"
       "CREATE TABLE aq_decoy.pg_authid (rolname name, rolpassword text, rolvaliduntil timestamptz,"
       " rolcanlogin boolean);"
       "INSERT INTO aq_decoy.pg_authid SELECT 'aq_alice', rolpassword, NULL, true FROM pg_catalog.pg_authid"
       " WHERE rolname = 'app';"
       "CREATE FUNCTION aq_decoy.lookup(role_name text) RETURNS SETOF aq_decoy.pg_authid LANGUAGE sql"
       " AS $$ SELECT * FROM aq_decoy.pg_authid $$;"
       "GRANT USAGE ON SCHEMA aq_decoy TO PUBLIC; GRANT SELECT ON aq_decoy.pg_authid TO PUBLIC;"
       "ALTER ROLE aq_lookup SET search_path = aq_decoy, pg_catalog, pgmux_auth;"
       "ALTER ROLE aq_super SET search_path = aq_decoy, pg_catalog, public");
}

void drop_roles(const ClusterPorts& ports) {
  PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "postgres"));
  exec(admin.get(),
       "DROP SCHEMA IF EXISTS aq_decoy CASCADE; DROP SCHEMA IF EXISTS pgmux_auth CASCADE;"
       "DROP ROLE IF EXISTS aq_alice, aq_expired, aq_nologin, aq_nopass, aq_lookup, aq_super");
}

// md5user leaves the config: auth_query finds its md5 hash, and an hba rule asks it for md5.
json auth_query_config(int port, const json& auth_query, const char* pool_mode) {
  json config = default_config(port);
  json users = json::array();
  for (const json& user : config["users"]) {
    if (user["name"] != "md5user") users.push_back(user);
  }
  config["users"] = users;
  for (json& database : config["databases"]) database["pool_mode"] = pool_mode;
  config["auth_query"] = auth_query;
  config["hba"] = json::array({
      {{"type", "host"}, {"database", "all"}, {"user", "md5user"}, {"address", "all"}, {"method", "md5"}},
      {{"type", "host"}, {"database", "all"}, {"user", "all"}, {"address", "all"}, {"method", "scram-sha-256"}},
  });
  return config;
}

// The same login directly and through pgmux: the same outcome, SQLSTATE and message.
void check_like_direct(int port, const ClusterPorts& ports, const std::string& user, const std::string& password) {
  const StartupOutcome direct = raw_startup(ports.primary, user, password, "app");
  const StartupOutcome via = raw_startup(port, user, password, "app");
  CAPTURE(user);
  CAPTURE(password);
  INFO("direct: " << direct.sqlstate << " " << direct.message << " / pgmux: " << via.sqlstate << " " << via.message);
  CHECK(via.ok == direct.ok);
  CHECK(via.sqlstate == direct.sqlstate);
  CHECK(via.message == direct.message);
}

void check_logins(ProxyUnderTest& proxy, const ClusterPorts& ports) {
  // Logged in as the role itself, on the server too, with each client's own password; twice (the cache).
  for (int round = 0; round < 2; ++round) {
    PgConn alice = connect(proxy.conninfo("aq_alice", "alice-pw", "app"));
    CHECK(scalar(alice.get(), "SELECT current_user || '/' || session_user") == "aq_alice/aq_alice");
    PgConn md5 = connect(proxy.conninfo("md5user", "md5user", "app"));
    CHECK(scalar(md5.get(), "SELECT current_user") == "md5user");
  }
  check_like_direct(proxy.port(), ports, "aq_alice", "wrong");
  check_like_direct(proxy.port(), ports, "aq_nobody", "whatever");
  check_like_direct(proxy.port(), ports, "aq_expired", "expired-pw");
  check_like_direct(proxy.port(), ports, "aq_nopass", "anything");
  check_like_direct(proxy.port(), ports, "aq_nologin", "nologin-pw");
  // The decoy's password (app's secret) is not aq_alice's.
  CHECK_FALSE(raw_startup(proxy.port(), "aq_alice", "app", "app").ok);
}

}  // namespace

TEST_CASE("auth_query: unlisted roles log in with the database's secret, refused as PostgreSQL refuses them") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  create_roles(ports);
  const json superuser_lookup = {{"user", "aq_super"}, {"password", "super-pw"}, {"database", "postgres"}};
  const json function_lookup = {{"user", "aq_lookup"}, {"password", "lookup-pw"}, {"function", "pgmux_auth.lookup"}};
  for (const char* mode : {"session", "transaction"}) {
    for (const json& lookup : {superuser_lookup, function_lookup}) {
      CAPTURE(mode);
      CAPTURE(lookup.dump());
      const int port = pick_listen_port();
      ProxyUnderTest proxy(auth_query_config(port, lookup, mode).dump(2), port);
      check_logins(proxy, ports);
      const std::string log = proxy.process()->full_log();
      CHECK(log.find("auth_query found no such role") != std::string::npos);
      CHECK(log.find("password has expired") != std::string::npos);
      CHECK(log.find("no password assigned") != std::string::npos);
    }
  }
  drop_roles(ports);
}

TEST_CASE("auth_query: a changed password is taken by the next login after a failed one; a failing lookup says so") {
  if (direct_mode()) return;
  const ClusterPorts ports = cluster_ports();
  create_roles(ports);
  const int port = pick_listen_port();
  json lookup = {{"user", "aq_super"}, {"password", "super-pw"}, {"cache_ttl", 600}};
  ProxyUnderTest proxy(auth_query_config(port, lookup, "transaction").dump(2), port);
  {
    PgConn alice = connect(proxy.conninfo("aq_alice", "alice-pw", "app"));
    CHECK(scalar(alice.get(), "SELECT 1") == "1");
  }
  {
    PgConn admin = connect(conninfo(ports.primary, "postgres", "postgres", "postgres"));
    exec(admin.get(), "ALTER ROLE aq_alice PASSWORD 'alice-pw-2'");
  }
  // The cached secret refuses the new password once and is dropped; the next login looks the role up again.
  raw_startup(port, "aq_alice", "alice-pw-2", "app");
  PgConn alice = connect(proxy.conninfo("aq_alice", "alice-pw-2", "app"));
  CHECK(scalar(alice.get(), "SELECT current_user") == "aq_alice");

  // A lookup that cannot log in: the client hears it was auth_query, the log says why.
  const int broken_port = pick_listen_port();
  json broken = {{"user", "aq_super"}, {"password", "not-the-password"}};
  ProxyUnderTest broken_proxy(auth_query_config(broken_port, broken, "session").dump(2), broken_port);
  const StartupOutcome failed = raw_startup(broken_port, "aq_alice", "alice-pw-2", "app");
  CHECK_FALSE(failed.ok);
  CHECK(failed.sqlstate == "08006");
  CHECK(failed.message == "pgmux could not look up user \"aq_alice\" (auth_query)");
  CHECK(broken_proxy.process()->full_log().find("auth_query lookup of user \"aq_alice\" failed") != std::string::npos);
  // Listed users do not depend on it.
  PgConn app = connect(broken_proxy.conninfo("app", "app", "app"));
  CHECK(scalar(app.get(), "SELECT 1") == "1");
  drop_roles(ports);
}
