// ClientConn, auth_query: a user the config does not list is looked up in the database (the shared cache first,
// else through the control loop's AuthLookup), then authenticated against the secret PostgreSQL keeps for it,
// with PostgreSQL's answers: no such role, an expired password or none at all fail like a wrong password (after
// the same exchange), a role without LOGIN is refused after it authenticated.
#include "proxy/client/client_conn.hpp"

#include "proxy/control/control.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy {

void ClientConn::look_up_user(conf::AuthMethod method) {
  if (std::optional<AuthRecord> cached = worker_.shared().auth_cache.find(user_, steady_seconds())) {
    on_user_record(*cached, method);
    return;
  }
  set_state(ClientState::AuthLookup);
  if (!alive_) alive_ = std::make_shared<char>();
  // The reply comes on the control loop and is posted back here; the client may be gone by then.
  auto reply = [worker = &worker_, alive = std::weak_ptr<char>(alive_), self = this, method](const AuthRecord& r) {
    worker->post([alive, self, method, r](Worker&) {
      if (!alive.expired() && self->open() && self->state_ == ClientState::AuthLookup) self->on_user_record(r, method);
    });
  };
  const bool posted = worker_.shared().control->post([user = user_, reply = std::move(reply)](Control& control) {
    control.auth_lookup().lookup(user, reply);
  });
  if (!posted) fail({Failure::AuthQueryFailed, {user_}});  // the control loop has ended: shutting down
}

void ClientConn::on_user_record(const AuthRecord& record, conf::AuthMethod method) {
  switch (record.kind) {
    case AuthRecord::Kind::Failed:
      LOG_ERROR("%s: auth_query lookup of user \"%s\" failed: %s", log_prefix().c_str(),
                escape_for_log(user_, 64).c_str(), record.error.c_str());
      fail({Failure::AuthQueryFailed, {user_}});
      return;
    case AuthRecord::Kind::NoRole:
      start_authentication(nullptr, method, Failure::AuthQueryNoRole);
      return;
    case AuthRecord::Kind::Role:
      break;
  }
  auto user = std::make_unique<LookedUpUser>();
  user->user.name = user_;
  user->user.password = record.secret;
  user->can_login = record.can_login;
  looked_up_user_ = std::move(user);
  std::optional<Failure> refusal;
  if (record.secret.empty()) {
    refusal = Failure::NoPasswordAssigned;
  } else if (record.expired) {
    refusal = Failure::PasswordExpired;
  }
  start_authentication(&looked_up_user_->user, method, refusal);
}

// After AuthenticationOk, as PostgreSQL checks rolcanlogin once the password was right. False: refused.
bool ClientConn::may_log_in() {
  if (!looked_up_user_ || looked_up_user_->can_login) return true;
  fail({Failure::RoleCannotLogin, {user_}});
  return false;
}

}  // namespace pgmux::proxy
