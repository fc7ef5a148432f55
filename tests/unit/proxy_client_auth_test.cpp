// ClientAuth, the server side of a client's login: a user the config lacks goes through the same messages as a
// known user with a wrong password and fails at the same step with the same words.
#include <doctest/doctest.h>

#include "protocol/auth_scram.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/client/client_auth.hpp"

using namespace pgmux;
using namespace pgmux::proxy;

namespace {

// The body of the one message in `bytes` (tag and length cut off).
protocol::ByteView body_of(const protocol::ByteVector& bytes) { return protocol::ByteView(bytes).subspan(5); }

// A SCRAM login with `password` through `auth`: the tags of the replies, and the final step.
ClientAuth::Step scram_login(ClientAuth& auth, const std::string& password, std::string* server_first) {
  ClientAuth::Step step = auth.start();
  REQUIRE(step.verdict == ClientAuth::Verdict::Continue);
  protocol::ScramClient client(password);
  protocol::ByteVector initial;
  protocol::build_sasl_initial_response(initial, "SCRAM-SHA-256", client.client_first());
  step = auth.on_message(body_of(initial));
  REQUIRE(step.verdict == ClientAuth::Verdict::Continue);
  *server_first = std::string(reinterpret_cast<const char*>(step.reply.data()) + 9, step.reply.size() - 9);
  auto final_message = client.client_final(*server_first);
  REQUIRE(final_message);
  protocol::ByteVector response;
  protocol::build_sasl_response(response, *final_message);
  return auth.on_message(body_of(response));
}

std::string salt_of(const std::string& server_first) { return server_first.substr(server_first.find(",s=")); }

}  // namespace

TEST_CASE("client auth: an unknown user's SCRAM exchange fails on the proof, as a wrong password does") {
  conf::User app{"app", "secret", {}, {}, 0};
  const protocol::ScramSecret secret = protocol::make_scram_secret("secret", "0123456789abcdef");

  ClientAuth known(app.name, &app, conf::AuthMethod::ScramSha256, secret);
  std::string known_first;
  ClientAuth::Step wrong = scram_login(known, "not-secret", &known_first);

  ClientAuth unknown("nobody", nullptr, conf::AuthMethod::ScramSha256, std::nullopt);
  std::string unknown_first;
  ClientAuth::Step mock = scram_login(unknown, "anything", &unknown_first);

  REQUIRE(wrong.verdict == ClientAuth::Verdict::Failed);
  REQUIRE(mock.verdict == ClientAuth::Verdict::Failed);
  CHECK(wrong.failure->failure() == Failure::AuthFailed);
  CHECK(mock.failure->failure() == Failure::UnknownRolePassword);
  CHECK(wrong.failure->sqlstate() == mock.failure->sqlstate());
  CHECK(mock.failure->message() == "password authentication failed for user \"nobody\"");
  CHECK(mock.reply.empty());

  // The same name meets the same salt again (a real user's stored secret does too).
  ClientAuth again("nobody", nullptr, conf::AuthMethod::ScramSha256, std::nullopt);
  std::string again_first;
  scram_login(again, "other", &again_first);
  CHECK(salt_of(again_first) == salt_of(unknown_first));
  CHECK(salt_of(unknown_first).ends_with(",i=4096"));
}

TEST_CASE("client auth: an unknown user under md5 gets the challenge and fails at the response") {
  ClientAuth unknown("nobody", nullptr, conf::AuthMethod::Md5, std::nullopt);
  ClientAuth::Step step = unknown.start();
  CHECK(step.verdict == ClientAuth::Verdict::Continue);
  CHECK_FALSE(step.reply.empty());  // AuthenticationMD5Password
  protocol::ByteVector password;
  protocol::build_password_message(password, "md5000000000000000000000000000000000");
  step = unknown.on_message(body_of(password));
  REQUIRE(step.verdict == ClientAuth::Verdict::Failed);
  CHECK(step.failure->failure() == Failure::UnknownRolePassword);
}

TEST_CASE("client auth: a known user without a usable SCRAM secret runs the mock exchange") {
  conf::User hashed{"old", "md5" + std::string(32, 'a'), {}, {}, 0};
  ClientAuth auth(hashed.name, &hashed, conf::AuthMethod::ScramSha256, std::nullopt);
  std::string first;
  ClientAuth::Step step = scram_login(auth, "whatever", &first);
  REQUIRE(step.verdict == ClientAuth::Verdict::Failed);
  CHECK(step.failure->failure() == Failure::NoUsableScramSecret);
  CHECK(step.failure->message() == "password authentication failed for user \"old\"");
}

TEST_CASE("client auth: a refused user (auth_query: expired, no password) fails like a wrong password, right or not") {
  conf::User expired{"late", "secret", {}, {}, 0};
  const protocol::ScramSecret secret = protocol::make_scram_secret("secret", "0123456789abcdef");
  ClientAuth scram(expired.name, &expired, conf::AuthMethod::ScramSha256, secret);
  scram.refuse(Failure::PasswordExpired);
  std::string first;
  ClientAuth::Step step = scram_login(scram, "secret", &first);  // the right password
  REQUIRE(step.verdict == ClientAuth::Verdict::Failed);
  CHECK(step.failure->failure() == Failure::PasswordExpired);
  CHECK(step.failure->sqlstate() == "28P01");
  CHECK(step.failure->message() == "password authentication failed for user \"late\"");
  CHECK_FALSE(scram.client_key());  // nothing to log in to servers with

  // md5: the right response for the stored password is refused too.
  ClientAuth md5(expired.name, &expired, conf::AuthMethod::Md5, std::nullopt);
  md5.refuse(Failure::NoPasswordAssigned);
  step = md5.start();
  REQUIRE(step.verdict == ClientAuth::Verdict::Continue);
  protocol::ByteVector password;
  protocol::build_password_message(password, "md5000000000000000000000000000000000");
  step = md5.on_message(body_of(password));
  REQUIRE(step.verdict == ClientAuth::Verdict::Failed);
  CHECK(step.failure->failure() == Failure::NoPasswordAssigned);
}
