// Patroni's /cluster document -> members, and the blocking HTTP exchange the PatroniSource runs in libuv's thread
// pool, against a one-shot server on 127.0.0.1 that answers what each case gives it.
#include <doctest/doctest.h>

#include <string>

#include "one_shot_server.hpp"
#include "proxy/control/http_client.hpp"
#include "proxy/control/patroni_source.hpp"

using namespace pgmux::proxy;
using pgmux::test::OneShotServer;

namespace {

HttpRequestSpec get(uint16_t port, double timeout = 2) {
  HttpRequestSpec spec;
  spec.url.host = "127.0.0.1";
  spec.url.port = port;
  spec.path = "/cluster";
  spec.timeout = timeout;
  return spec;
}

}  // namespace

TEST_CASE("patroni: /cluster members, roles, tags; not that document") {
  std::string error;
  const auto cluster = parse_patroni_cluster(R"({"members": [
      {"name": "node1", "role": "leader", "state": "running", "host": "127.0.0.1", "port": 5432, "timeline": 3},
      {"name": "node2", "role": "replica", "state": "streaming", "host": "10.0.0.2", "port": 5433, "timeline": 3,
       "lag": 0, "tags": {"noloadbalance": true}},
      {"name": "node3", "role": "sync_standby", "state": "running", "tags": {"noloadbalance": "false"}},
      {"role": "replica"}], "pause": true})",
                                             &error);
  REQUIRE(cluster);
  REQUIRE(cluster->members.size() == 3);  // a member without a name is skipped
  CHECK(cluster->paused);
  CHECK(cluster->members[0].role == "leader");
  CHECK(cluster->members[0].port == 5432);
  CHECK(cluster->members[0].timeline == 3);
  CHECK_FALSE(cluster->members[0].noloadbalance);
  CHECK(cluster->members[1].host == "10.0.0.2");
  CHECK(cluster->members[1].noloadbalance);
  CHECK_FALSE(cluster->members[2].noloadbalance);
  CHECK(cluster->members[2].port == 0);

  CHECK_FALSE(parse_patroni_cluster("not json", &error));
  CHECK(error == "the /cluster answer is not a JSON object");
  CHECK_FALSE(parse_patroni_cluster(R"({"state": "running"})", &error));
  CHECK(error == "the /cluster answer has no \"members\" array");
}

TEST_CASE("http: a response with Content-Length; the request names host, path and closes") {
  OneShotServer server(
      "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"members\": []}");
  const HttpResult r = http_exchange(get(server.port()));
  CHECK(r.ok);
  CHECK(r.status == 200);
  CHECK(r.body == "{\"members\": []}");
  CHECK(server.request().find("GET /cluster HTTP/1.1\r\n") == 0);
  CHECK(server.request().find("Connection: close\r\n") != std::string::npos);
}

TEST_CASE("http: a body delimited by the close; a POST carries its JSON body") {
  OneShotServer server("HTTP/1.1 412 Precondition Failed\r\n\r\ncandidate does not exists");
  HttpRequestSpec spec = get(server.port());
  spec.method = "POST";
  spec.path = "/switchover";
  spec.body = R"({"leader":"a"})";
  spec.basic_auth = "patroni:s3cret";
  const HttpResult r = http_exchange(spec);
  CHECK(server.request().find("Authorization: Basic cGF0cm9uaTpzM2NyZXQ=\r\n") != std::string::npos);
  CHECK(r.ok);
  CHECK(r.status == 412);
  CHECK(r.body == "candidate does not exists");
}

TEST_CASE("http: failures say what went wrong") {
  SUBCASE("malformed status line") {
    OneShotServer server("SSH-2.0-OpenSSH\r\n\r\n");
    const HttpResult r = http_exchange(get(server.port()));
    CHECK_FALSE(r.ok);
    CHECK(r.error == "malformed HTTP response head");
  }
  SUBCASE("closed before the announced body") {
    OneShotServer server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    const HttpResult r = http_exchange(get(server.port()));
    CHECK_FALSE(r.ok);
    CHECK(r.error == "connection closed before the response was complete");
  }
  SUBCASE("a server that never answers: the timeout") {
    OneShotServer server("", /*hang=*/true);
    const HttpResult r = http_exchange(get(server.port(), 0.2));
    CHECK_FALSE(r.ok);
    CHECK(r.error == "timed out after 0.2 s");
  }
  SUBCASE("nobody listening") {
    uint16_t port = 0;
    {
      OneShotServer probe("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
      port = probe.port();
      http_exchange(get(port));  // lets it finish; the port is free afterwards
    }
    const HttpResult r = http_exchange(get(port));
    CHECK_FALSE(r.ok);
    CHECK(r.error == "Connection refused");
  }
}
