#include "proxy/client/client_auth.hpp"

#include <openssl/rand.h>

#include "protocol/auth_md5.hpp"
#include "protocol/backend_messages.hpp"
#include "protocol/frontend_messages.hpp"
#include "protocol/sqlstate.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {
// The key of every mock salt, drawn once per process: one user name always meets the same salt, as a real user
// does (a plaintext password's secret is derived once per process too, with a random salt).
std::string_view mock_nonce_key() {
  static const std::string key = [] {
    std::string bytes(32, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    return bytes;
  }();
  return key;
}
}  // namespace

ClientAuth::ClientAuth(std::string user_name, const conf::User* user, conf::AuthMethod method,
                       std::optional<ScramSecret> scram_secret, std::string channel_binding)
    : user_name_(std::move(user_name)),
      user_(user),
      method_(method),
      secret_(std::move(scram_secret)),
      channel_binding_(std::move(channel_binding)) {
  if (!user_) {
    refuse(Failure::UnknownRolePassword);
  } else if (method_ == conf::AuthMethod::ScramSha256 && !secret_) {
    refuse(Failure::NoUsableScramSecret);
  }
}

void ClientAuth::refuse(Failure why) {
  mock_failure_ = why;
  if (method_ == conf::AuthMethod::ScramSha256) secret_ = mock_scram_secret(user_name_, mock_nonce_key());
}

ClientAuth::Step ClientAuth::start() {
  Step step;
  switch (method_) {
    case conf::AuthMethod::Trust:
      step.verdict = Verdict::Ok;
      return step;
    case conf::AuthMethod::Md5:
      RAND_bytes(reinterpret_cast<unsigned char*>(md5_salt_.data()), 4);
      build_authentication_md5(step.reply, md5_salt_);
      return step;
    case conf::AuthMethod::ScramSha256:
      scram_ = std::make_unique<ScramServer>(*secret_);
      if (channel_binding_.empty()) {
        build_authentication_sasl(step.reply, {std::string(kScramSha256)});
      } else {
        // PostgreSQL's order over TLS: the bound mechanism first.
        scram_->set_channel_binding(channel_binding_);
        build_authentication_sasl(step.reply, {std::string(kScramSha256Plus), std::string(kScramSha256)});
      }
      return step;
  }
  return fail_protocol("unsupported authentication method");
}

ClientAuth::Step ClientAuth::on_message(ByteView body) {
  ++step_;
  if (method_ == conf::AuthMethod::Md5) {
    auto password = parse_password_message(body);
    if (!password) return fail_protocol("invalid password packet size");  // PostgreSQL's words for a bad length
    if (password->empty()) {
      // PostgreSQL refuses it before it looks at the role (libpq never sends one).
      Step step;
      step.verdict = Verdict::Failed;
      step.failure = FailureReport::relayed_words(Failure::AuthMessageRefused, sqlstate::kInvalidPassword,
                                                  {"empty password returned by client", ""});
      return step;
    }
    if (mock_failure_) return fail_password();
    std::string expected = is_md5_stored_hash(user_->password)
                               ? md5_response_from_stored(user_->password, md5_salt_)
                               : md5_client_response(user_->password, user_->name, md5_salt_);
    if (*password != expected) return fail_password();
    return Step{Verdict::Ok, {}, {}};
  }
  if (method_ != conf::AuthMethod::ScramSha256 || !scram_) return fail_protocol("unexpected password packet");

  if (step_ == 1) {
    auto initial = parse_sasl_initial_response(body);
    if (!initial) return fail_protocol("malformed SASLInitialResponse message");
    plus_ = initial->mechanism == kScramSha256Plus && scram_->offers_channel_binding();
    if (initial->mechanism != kScramSha256 && !plus_) {
      return fail_protocol("client selected an invalid SASL authentication mechanism");
    }
    if (initial->absent) {
      // No initial response: PostgreSQL asks for it with an empty challenge, and the client-first-message comes
      // in the next SASLResponse.
      Step step;
      build_authentication_sasl_continue(step.reply, "");
      return step;
    }
    return scram_first(initial->data);
  }
  if (step_ == 2 && !scram_->sent_first()) return scram_first(body);
  if (!scram_->sent_first() || scram_->finished()) return fail_protocol("unexpected SASL message");
  Step step;
  auto server_final = scram_->server_final(as_chars(body));
  if (!server_final) return fail_scram();
  build_authentication_sasl_final(step.reply, *server_final);
  step.verdict = Verdict::Ok;
  return step;
}

ClientAuth::Step ClientAuth::scram_first(ByteView client_first) {
  Step step;
  auto server_first = scram_->server_first(as_chars(client_first), plus_);
  if (!server_first) return fail_scram();
  build_authentication_sasl_continue(step.reply, *server_first);
  return step;
}

// PostgreSQL's SQLSTATE and words for a refused SCRAM message; a wrong proof reads as a wrong password.
ClientAuth::Step ClientAuth::fail_scram() const {
  const ScramFault& fault = scram_->fault();
  // A mock exchange (no such role) fails a malformed message the same way: only the proof's failure says more.
  if (std::string_view(fault.sqlstate) == sqlstate::kInvalidPassword) return fail_password();
  Step step;
  step.verdict = Verdict::Failed;
  step.failure =
      FailureReport::relayed_words(Failure::AuthMessageRefused, fault.sqlstate, {fault.message, fault.detail});
  return step;
}

std::optional<Sha256> ClientAuth::client_key() const {
  if (!scram_) return std::nullopt;
  return scram_->recovered_client_key();
}

ClientAuth::Step ClientAuth::refuse_unreadable(std::string why) const {
  if (scram_) return fail_password();
  Step step;
  step.verdict = Verdict::Failed;
  step.failure = FailureReport(Failure::AuthMessageInvalid, {std::move(why)});
  return step;
}

ClientAuth::Step ClientAuth::fail_password() const {
  Step step;
  step.verdict = Verdict::Failed;
  // The client reads the same either way; the log tells the operator which it was.
  step.failure = FailureReport(mock_failure_.value_or(Failure::AuthFailed), {user_name_});
  return step;
}

ClientAuth::Step ClientAuth::fail_protocol(std::string message) const {
  Step step;
  step.verdict = Verdict::Failed;
  step.failure = FailureReport(Failure::AuthProtocolViolation, {std::move(message)});
  return step;
}

}  // namespace pgmux::proxy
