// auth_query's pure parts: the lookup SQL (schema-qualified, the name a parameter), how a result row becomes a
// record (VALID UNTIL, LOGIN, no password, several rows), and the shared cache (time to live, forget, bound).
#include <doctest/doctest.h>

#include <string>

#include "proxy/control/auth_lookup.hpp"

using namespace pgmux;
using namespace pgmux::proxy;

TEST_CASE("auth_query SQL: only schema-qualified names, the role name as $1") {
  conf::AuthQuery settings;
  settings.user = "pgmux_auth";
  const std::string direct = auth_query_sql(settings);
  CHECK(direct.find("FROM pg_catalog.pg_authid u WHERE u.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name") !=
        std::string::npos);
  settings.function = "Auth_Schema.look$up";
  const std::string function = auth_query_sql(settings);
  CHECK(function.find("FROM \"Auth_Schema\".\"look$up\"($1::pg_catalog.text) u") != std::string::npos);
  for (const std::string& sql : {direct, function}) {
    CAPTURE(sql);
    CHECK(sql.starts_with("SELECT u.rolpassword, pg_catalog.date_part('epoch', u.rolvaliduntil) "
                          "OPERATOR(pg_catalog.-) pg_catalog.date_part('epoch', pg_catalog.now()), u.rolcanlogin"));
    // No operator or name that a search_path could resolve.
    CHECK(sql.find(" = ") == std::string::npos);
    CHECK(sql.find(" - ") == std::string::npos);
  }
}

TEST_CASE("auth_query record: rows and columns as PostgreSQL returns them") {
  CHECK(auth_record_from(0, std::nullopt, std::nullopt, std::nullopt).kind == AuthRecord::Kind::NoRole);

  AuthRecord role = auth_record_from(1, "SCRAM-SHA-256$4096:c2FsdA==$a:b", std::nullopt, "t");
  CHECK(role.kind == AuthRecord::Kind::Role);
  CHECK(role.secret == "SCRAM-SHA-256$4096:c2FsdA==$a:b");
  CHECK(role.can_login);
  CHECK_FALSE(role.expired);
  CHECK(role.valid_for < 0);

  AuthRecord expired = auth_record_from(1, "md5abc", "-12.5", "t");
  CHECK(expired.expired);
  AuthRecord later = auth_record_from(1, "md5abc", "30.25", "t");
  CHECK_FALSE(later.expired);
  CHECK(later.valid_for == doctest::Approx(30.25));
  CHECK_FALSE(auth_record_from(1, "md5abc", "Infinity", "t").expired);
  CHECK(auth_record_from(1, "md5abc", "-Infinity", "t").expired);

  AuthRecord nologin = auth_record_from(1, "md5abc", std::nullopt, "f");
  CHECK_FALSE(nologin.can_login);
  AuthRecord no_password = auth_record_from(1, std::nullopt, std::nullopt, "t");
  CHECK(no_password.kind == AuthRecord::Kind::Role);
  CHECK(no_password.secret.empty());

  AuthRecord two = auth_record_from(2, "md5abc", std::nullopt, "t");  // a lookup function gone wrong
  CHECK(two.kind == AuthRecord::Kind::Failed);
  CHECK(two.error == "the lookup returned 2 rows, not one");
}

TEST_CASE("auth cache: a record lives until its expiry; forget and clear drop it; the size is bounded") {
  AuthCache cache;
  AuthRecord role = auth_record_from(1, "md5abc", std::nullopt, "t");
  cache.store("alice", role, 100, 0);
  REQUIRE(cache.find("alice", 99.9));
  CHECK(cache.find("alice", 99.9)->secret == "md5abc");
  CHECK_FALSE(cache.find("alice", 100));
  CHECK_FALSE(cache.find("bob", 1));
  cache.forget("alice");
  CHECK_FALSE(cache.find("alice", 1));

  for (size_t i = 0; i < AuthCache::kMaxEntries; ++i) cache.store("user" + std::to_string(i), role, i < 10 ? 5 : 50, 0);
  CHECK(cache.size() == AuthCache::kMaxEntries);
  cache.store("one-more", role, 50, 6);  // the ten expired entries make room
  CHECK(cache.size() == AuthCache::kMaxEntries - 9);
  CHECK(cache.find("one-more", 7));
  CHECK(cache.find("user10", 7));
  while (cache.size() < AuthCache::kMaxEntries) cache.store("filler" + std::to_string(cache.size()), role, 50, 6);
  cache.store("overflow", role, 50, 6);  // full of live entries: they go, the database answers again
  CHECK(cache.size() == 1);
  CHECK(cache.find("overflow", 7));
  cache.clear();
  CHECK(cache.size() == 0);
}
