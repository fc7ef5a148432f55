// SCRAM-SHA-256-PLUS with tls-server-end-point channel binding: both roles, and PostgreSQL's refusals when the
// mechanism, the gs2 flag and the binding data do not agree.
#include <doctest/doctest.h>

#include "protocol/auth_scram.hpp"

using namespace pgmux::protocol;

namespace {

ScramSecret secret() { return make_scram_secret("pencil", "0123456789abcdef", 4096); }
const std::string kHash(32, '\x5a');  // stands for the SHA-256 of the server's certificate

// client-first with the binding, server-first, client-final, server-final; "" when all agreed, else the error.
std::string bound_exchange(const std::string& client_hash, const std::string& server_hash) {
  ScramClient client("pencil");
  client.set_channel_binding(client_hash);
  ScramServer server(secret());
  server.set_channel_binding(server_hash);
  auto first = server.server_first(client.client_first(), /*plus=*/true);
  if (!first) return server.error();
  auto final = client.client_final(*first);
  if (!final) return client.error();
  auto server_final = server.server_final(*final);
  if (!server_final) return server.error();
  return client.verify_server_final(*server_final) ? "" : client.error();
}

}  // namespace

TEST_CASE("SCRAM-SHA-256-PLUS: the same certificate hash on both sides logs in") {
  ScramClient client("pencil");
  client.set_channel_binding(kHash);
  CHECK(client.client_first().rfind("p=tls-server-end-point,,n=,r=", 0) == 0);
  CHECK(bound_exchange(kHash, kHash) == "");
}

TEST_CASE("SCRAM-SHA-256-PLUS: another certificate (a man in the middle's) fails the binding check") {
  CHECK(bound_exchange(std::string(32, '\x01'), kHash) == "SCRAM: SCRAM channel binding check failed");
}

TEST_CASE("SCRAM-SHA-256-PLUS: mechanism and gs2 flag must agree, as PostgreSQL requires") {
  ScramServer plus_without_data(secret());
  plus_without_data.set_channel_binding(kHash);
  CHECK_FALSE(plus_without_data.server_first("n,,n=,r=abc", /*plus=*/true));
  CHECK(plus_without_data.error().find("does not include channel binding data") != std::string::npos);

  ScramServer data_without_plus(secret());
  data_without_plus.set_channel_binding(kHash);
  CHECK_FALSE(data_without_plus.server_first("p=tls-server-end-point,,n=,r=abc", /*plus=*/false));
  CHECK(data_without_plus.error().find("includes channel binding data") != std::string::npos);

  ScramServer other_type(secret());
  other_type.set_channel_binding(kHash);
  CHECK_FALSE(other_type.server_first("p=tls-unique,,n=,r=abc", /*plus=*/true));
  CHECK(other_type.error() == "SCRAM: unsupported SCRAM channel-binding type \"tls-unique\"");

  // "y": the client could bind but believes the server cannot. Over TLS the server can: refused.
  ScramServer y_over_tls(secret());
  y_over_tls.set_channel_binding(kHash);
  CHECK_FALSE(y_over_tls.server_first("y,,n=,r=abc"));
  CHECK(y_over_tls.error().find("SCRAM channel binding negotiation error") != std::string::npos);
  ScramServer y_plain(secret());
  CHECK(y_plain.server_first("y,,n=,r=abc"));
}

TEST_CASE("SCRAM-SHA-256 without binding still logs in over TLS ('n' flag)") {
  ScramClient client("pencil");
  ScramServer server(secret());
  server.set_channel_binding(kHash);
  auto first = server.server_first(client.client_first());
  REQUIRE(first);
  auto final = client.client_final(*first);
  REQUIRE(final);
  CHECK(final->rfind("c=biws,", 0) == 0);
  CHECK(server.server_final(*final));
}
