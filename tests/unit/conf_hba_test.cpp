// hba rules: addresses and networks, first match wins, groups, and what the loader refuses.
#include <doctest/doctest.h>

#include <string>

#include "conf/hba.hpp"
#include "conf/loader.hpp"

using namespace pgmux::conf;

namespace {

std::array<uint8_t, 16> ip(const char* text) { return parse_ip(text).value(); }

HbaRule rule(HbaConnection c, std::vector<std::string> db, std::vector<std::string> user, const char* cidr,
             HbaMethod m) {
  return HbaRule{c, std::move(db), std::move(user), parse_cidr(cidr).value(), m};
}

HbaRequest request(const char* address, const char* user, const char* db, bool tls = false) {
  return HbaRequest{tls, ip(address), user, db};
}

std::string errors_of(const std::string& json) {
  const LoadResult r = parse_config(json);
  std::string out;
  for (const Diagnostic& d : r.errors) out += d.to_string() + "\n";
  return out;
}

// tls: the "tls" section (TLS on, client certificates checked against ca.crt, unless given).
std::string with_hba(const std::string& hba, const std::string& groups = "[]",
                     const std::string& tls = R"({"client": {"mode": "prefer", "cert_file": "s.crt",
                                                             "key_file": "s.key", "ca_file": "ca.crt"}})") {
  return R"({"backends": [{"host": "db"}], "databases": [{"name": "*"}], "groups": )" + groups +
         R"(, "hba": )" + hba + R"(, "tls": )" + tls + "}";
}

}  // namespace

TEST_CASE("hba: networks contain the addresses they should, IPv4 and IPv6") {
  CHECK(parse_cidr("10.0.0.0/8")->contains(ip("10.200.3.4")));
  CHECK_FALSE(parse_cidr("10.0.0.0/8")->contains(ip("11.0.0.1")));
  CHECK(parse_cidr("127.0.0.1")->contains(ip("127.0.0.1")));  // a bare address is one host
  CHECK_FALSE(parse_cidr("127.0.0.1")->contains(ip("127.0.0.2")));
  CHECK(parse_cidr("0.0.0.0/0")->contains(ip("203.0.113.9")));
  CHECK_FALSE(parse_cidr("0.0.0.0/0")->contains(ip("::1")));  // IPv4 networks hold no IPv6 client
  CHECK(parse_cidr("all")->contains(ip("::1")));
  CHECK(parse_cidr("::1/128")->contains(ip("::1")));
  CHECK(parse_cidr("fd00::/8")->contains(ip("fd12:3456::1")));
  CHECK(parse_cidr("10.0.0.0/8")->contains(ip("::ffff:10.1.2.3")));  // a mapped address is the IPv4 client
  CHECK_FALSE(parse_cidr("10.0.0.1/8"));  // bits past the prefix: a typo
  CHECK_FALSE(parse_cidr("10.0.0.0/33"));
  CHECK_FALSE(parse_cidr("10.0.0/8"));
  CHECK_FALSE(parse_cidr("10.0.0.0/"));
  CHECK_FALSE(parse_cidr("host.example"));
}

TEST_CASE("hba: the first matching rule wins; no match is -1") {
  const std::vector<HbaRule> rules = {
      rule(HbaConnection::Host, {"all"}, {"mallory"}, "all", HbaMethod::Reject),
      rule(HbaConnection::HostSsl, {"app"}, {"all"}, "all", HbaMethod::Cert),
      rule(HbaConnection::Host, {"app", "pgmux"}, {"+admins"}, "10.0.0.0/8", HbaMethod::Md5),
      rule(HbaConnection::HostNoSsl, {"sameuser"}, {"all"}, "127.0.0.1/32", HbaMethod::Trust),
      rule(HbaConnection::Host, {"all"}, {"all"}, "127.0.0.0/8", HbaMethod::ScramSha256),
  };
  const std::vector<Group> groups = {{"admins", {"alice", "bob"}}};
  CHECK(match_hba(rules, groups, request("127.0.0.1", "mallory", "app")) == 0);
  CHECK(match_hba(rules, groups, request("127.0.0.1", "alice", "app", true)) == 1);   // hostssl needs TLS
  CHECK(match_hba(rules, groups, request("10.1.1.1", "alice", "app")) == 2);          // a member of +admins
  CHECK(match_hba(rules, groups, request("10.1.1.1", "alice", "pgmux")) == 2);
  CHECK(match_hba(rules, groups, request("10.1.1.1", "carol", "app")) == -1);         // not a member
  CHECK(match_hba(rules, groups, request("127.0.0.1", "carol", "carol")) == 3);       // sameuser, hostnossl
  CHECK(match_hba(rules, groups, request("127.0.0.1", "carol", "carol", true)) == 4); // not hostnossl with TLS
  CHECK(match_hba(rules, groups, request("127.0.0.1", "carol", "app")) == 4);
  CHECK(match_hba(rules, groups, request("192.0.2.1", "carol", "app")) == -1);
  CHECK(match_hba({}, groups, request("127.0.0.1", "carol", "app")) == -1);
}

// As pg_hba.conf: a local rule matches only Unix-domain socket connections, and host rules only TCP ones.
TEST_CASE("hba: local rules match Unix-domain socket connections only") {
  const std::vector<HbaRule> rules = {rule(HbaConnection::Local, {"all"}, {"app"}, "all", HbaMethod::Trust),
                                      rule(HbaConnection::Host, {"all"}, {"all"}, "all", HbaMethod::Md5),
                                      rule(HbaConnection::Local, {"all"}, {"all"}, "all", HbaMethod::Reject)};
  HbaRequest local{false, {}, "app", "app", true};
  CHECK(match_hba(rules, {}, local) == 0);
  local.user = "other";
  CHECK(match_hba(rules, {}, local) == 2);
  CHECK(match_hba(rules, {}, request("127.0.0.1", "app", "app")) == 1);
  const std::vector<HbaRule> tcp_only = {rule(HbaConnection::Host, {"all"}, {"all"}, "all", HbaMethod::Trust),
                                         rule(HbaConnection::HostNoSsl, {"all"}, {"all"}, "all", HbaMethod::Trust)};
  CHECK(match_hba(tcp_only, {}, local) == -1);
  CHECK(errors_of(with_hba(R"([{"type": "local", "database": "all", "user": "all", "method": "trust"}])")).empty());
  CHECK(errors_of(with_hba(R"([{"type": "local", "database": "all", "user": "all", "address": "all",
                               "method": "trust"}])")) == "/hba/0/address: a local rule takes no address\n");
}

TEST_CASE("hba: the loader reads rules and groups, and names what is wrong") {
  const LoadResult ok = parse_config(with_hba(
      R"([{"type": "host", "database": ["app", "pgmux"], "user": "+ops", "address": "10.0.0.0/8", "method": "md5"},
          {"type": "hostssl", "database": "all", "user": "all", "address": "::/0", "method": "cert"}])",
      R"([{"name": "ops", "members": ["alice"]}])"));
  REQUIRE(ok.ok());
  REQUIRE(ok.config->hba.size() == 2);
  CHECK(ok.config->hba[0].databases == std::vector<std::string>{"app", "pgmux"});
  CHECK(ok.config->hba[0].users == std::vector<std::string>{"+ops"});
  CHECK(ok.config->hba[0].method == HbaMethod::Md5);
  CHECK(ok.config->hba[1].connection == HbaConnection::HostSsl);
  CHECK(ok.config->groups[0].members == std::vector<std::string>{"alice"});

  CHECK(errors_of(with_hba(R"([{"type": "hostgssenc", "database": "all", "user": "all", "address": "all",
                                "method": "trust"}])")).find("/hba/0/type") != std::string::npos);
  CHECK(errors_of(with_hba(R"([{"type": "host", "database": "all", "user": "all", "address": "10.0.0.1/8",
                                "method": "trust"}])")).find("/hba/0/address") != std::string::npos);
  CHECK(errors_of(with_hba(R"([{"type": "host", "database": "all", "user": "all", "address": "all",
                                "method": "cert"}])")).find("/hba/0/method: cert is only supported on hostssl") !=
        std::string::npos);
  // As PostgreSQL refuses to load such lines: rules that could never admit anyone.
  const std::string hostssl_cert = R"([{"type": "hostssl", "database": "all", "user": "all", "address": "all",
                                        "method": "cert"}])";
  CHECK(errors_of(with_hba(hostssl_cert, "[]", R"({"client": {"mode": "disable"}})")) ==
        "/hba/0/type: hostssl cannot match while tls.client.mode is \"disable\" (PostgreSQL: hostssl record cannot "
        "match because SSL is disabled)\n");
  CHECK(errors_of(with_hba(hostssl_cert, "[]", R"({"client": {"mode": "require", "cert_file": "s.crt",
                                                              "key_file": "s.key"}})")) ==
        "/hba/0/method: cert needs tls.client.ca_file: client certificates can only be checked if a root "
        "certificate store is available\n");
  CHECK(errors_of(with_hba(R"([{"type": "host", "database": "all", "user": "+nobody", "address": "all",
                                "method": "trust"}])")).find("/hba/0/user: unknown group \"nobody\"") !=
        std::string::npos);
  CHECK(errors_of(with_hba(R"([{"type": "host", "database": [], "user": "all", "address": "all",
                                "method": "trust"}])")).find("/hba/0/database") != std::string::npos);
  CHECK(errors_of(with_hba(R"([{"type": "host", "user": "all", "address": "all", "method": "trust"}])"))
            .find("/hba/0/database: is required") != std::string::npos);
  CHECK(errors_of(with_hba(R"([{"type": "host", "database": "all", "user": "all", "address": "all",
                                "method": "password"}])")).find("/hba/0/method: must be one of") != std::string::npos);
}
