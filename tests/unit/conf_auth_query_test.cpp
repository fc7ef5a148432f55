// The auth_query section: off by default, every key read, a lookup function only as schema.name, and precise
// errors otherwise.
#include <doctest/doctest.h>

#include <string>

#include "conf/loader.hpp"

using namespace pgmux::conf;

namespace {

std::string errors_of(const std::string& auth_query) {
  const LoadResult r = parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}],
                                       "auth_query": )" + auth_query + "}");
  std::string out;
  for (const Diagnostic& d : r.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("conf auth_query: off by default; every key read") {
  const LoadResult none = parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}]})");
  REQUIRE(none.ok());
  CHECK_FALSE(none.config->auth_query.enabled());
  CHECK(none.config->auth_query.cache_ttl == 15);
  CHECK(none.config->auth_query.negative_cache_ttl == 5);

  const LoadResult r = parse_config(R"({"backends": [{"host": "db1"}], "databases": [{"name": "app"}],
      "auth_query": {"user": "pgmux_auth", "password": "pw", "database": "auth", "function": "pgmux_auth.lookup",
                     "cache_ttl": 10, "negative_cache_ttl": 0, "timeout": 2.5}})");
  REQUIRE(r.ok());
  const AuthQuery& q = r.config->auth_query;
  CHECK(q.enabled());
  CHECK(q.user == "pgmux_auth");
  CHECK(q.password == "pw");
  CHECK(q.database == "auth");
  CHECK(q.function == "pgmux_auth.lookup");
  CHECK(q.cache_ttl == 10);
  CHECK(q.negative_cache_ttl == 0);
  CHECK(q.timeout == 2.5);
}

TEST_CASE("conf auth_query: errors name the key") {
  CHECK(errors_of(R"({"password": "pw"})") == "/auth_query: needs \"user\"\n");
  CHECK(errors_of(R"({"user": ""})").find("/auth_query/user") != std::string::npos);
  for (const char* bad : {"lookup", "a.b.c", "public.look up", "s.x-y", "1s.f", ".f", "s.", "s.f;DROP"}) {
    CAPTURE(bad);
    const std::string errors = errors_of(std::string(R"({"user": "u", "function": ")") + bad + "\"}");
    CHECK(errors.find("/auth_query/function: must be a schema-qualified name") != std::string::npos);
  }
  CHECK(errors_of(R"({"user": "u", "function": "s_1.f$2"})").empty());
  CHECK(errors_of(R"({"user": "u", "timeout": 0})").find("/auth_query/timeout") != std::string::npos);
  CHECK(errors_of(R"({"user": "u", "cache_ttl": -1})").find("/auth_query/cache_ttl") != std::string::npos);
  CHECK(errors_of(R"({"user": "u", "colour": 1})").find("/auth_query/colour") != std::string::npos);
}
