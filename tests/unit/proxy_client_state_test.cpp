#include <doctest/doctest.h>

#include <set>
#include <string>

#include "proxy/client/client_state.hpp"

using pgmux::proxy::ClientState;
using pgmux::proxy::is_legal_transition;
using pgmux::proxy::kClientStateCount;

namespace {
ClientState state(int i) { return static_cast<ClientState>(i); }
}  // namespace

TEST_CASE("client states: every state has its own name") {
  std::set<std::string> names;
  for (int i = 0; i < kClientStateCount; ++i) {
    const std::string name = pgmux::proxy::to_string(state(i));
    CHECK(name != "?");
    names.insert(name);
  }
  CHECK(names.size() == static_cast<size_t>(kClientStateCount));
}

TEST_CASE("client states: every state may close, and nothing leaves Closing") {
  for (int i = 0; i < kClientStateCount; ++i) {
    CHECK(is_legal_transition(state(i), ClientState::Closing));
    if (state(i) != ClientState::Closing) CHECK_FALSE(is_legal_transition(ClientState::Closing, state(i)));
  }
}

TEST_CASE("client states: login goes startup -> auth -> (server) -> ready, never back") {
  CHECK(is_legal_transition(ClientState::Startup, ClientState::Auth));
  CHECK(is_legal_transition(ClientState::Auth, ClientState::LoginWait));
  CHECK(is_legal_transition(ClientState::Auth, ClientState::Ready));  // transaction pooling: no server needed
  CHECK(is_legal_transition(ClientState::Auth, ClientState::Admin));
  CHECK(is_legal_transition(ClientState::LoginWait, ClientState::Ready));
  // auth_query: the lookup comes between the startup packet and the password exchange.
  CHECK(is_legal_transition(ClientState::Startup, ClientState::AuthLookup));
  CHECK(is_legal_transition(ClientState::AuthLookup, ClientState::Auth));
  CHECK_FALSE(is_legal_transition(ClientState::AuthLookup, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::Startup, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::Ready, ClientState::Auth));
  CHECK_FALSE(is_legal_transition(ClientState::Ready, ClientState::LoginWait));
  CHECK_FALSE(is_legal_transition(ClientState::Admin, ClientState::Ready));
}

TEST_CASE("client states: a login held for a primary (split off) goes on to a pool's wait, never straight in") {
  CHECK(is_legal_transition(ClientState::Auth, ClientState::LoginPrimaryWait));       // no primary known
  CHECK(is_legal_transition(ClientState::LoginWait, ClientState::LoginPrimaryWait));  // its connection failed
  CHECK(is_legal_transition(ClientState::LoginPrimaryWait, ClientState::LoginWait));  // a primary appeared
  CHECK_FALSE(is_legal_transition(ClientState::LoginPrimaryWait, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::LoginPrimaryWait, ClientState::PrimaryWait));
  CHECK_FALSE(is_legal_transition(ClientState::Ready, ClientState::LoginPrimaryWait));
  CHECK_FALSE(pgmux::proxy::is_logged_in(ClientState::LoginPrimaryWait));
  CHECK(pgmux::proxy::is_waiting(ClientState::LoginPrimaryWait));
  CHECK(pgmux::proxy::waits_for_primary(ClientState::LoginPrimaryWait));
  CHECK(pgmux::proxy::waits_for_primary(ClientState::PrimaryWait));
  CHECK_FALSE(pgmux::proxy::waits_for_pool(ClientState::LoginPrimaryWait));
  CHECK_FALSE(pgmux::proxy::holds_unsent_request(ClientState::LoginPrimaryWait));  // no cancel key yet
}

TEST_CASE("client states: each wait of a request starts and ends in Ready") {
  for (ClientState wait : {ClientState::ServerWait, ClientState::PrimaryWait, ClientState::ReplayWait,
                           ClientState::Paused, ClientState::CatalogWait, ClientState::Draining,
                           ClientState::Ending, ClientState::Preparing}) {
    CAPTURE(pgmux::proxy::to_string(wait));
    CHECK(is_legal_transition(ClientState::Ready, wait));
    CHECK(is_legal_transition(wait, ClientState::Ready));
    CHECK(pgmux::proxy::is_waiting(wait));
    CHECK(pgmux::proxy::is_logged_in(wait));
    CHECK_FALSE(pgmux::proxy::reads_requests(wait));
    for (ClientState other : {ClientState::ServerWait, ClientState::PrimaryWait, ClientState::ReplayWait,
                              ClientState::Paused, ClientState::CatalogWait, ClientState::Draining,
                              ClientState::Ending, ClientState::Preparing}) {
      if (other != wait) CHECK_FALSE(is_legal_transition(wait, other));
    }
  }
}

TEST_CASE("client states: a client's end passed on to its server ends only in Closing") {
  CHECK(is_legal_transition(ClientState::Ready, ClientState::EndForwarded));
  CHECK_FALSE(is_legal_transition(ClientState::EndForwarded, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::Ending, ClientState::EndForwarded));  // from the pump, in Ready
  CHECK(pgmux::proxy::is_waiting(ClientState::EndForwarded));
  CHECK_FALSE(pgmux::proxy::reads_requests(ClientState::EndForwarded));
  CHECK_FALSE(pgmux::proxy::holds_unsent_request(ClientState::EndForwarded));
}

TEST_CASE("client states: predicates") {
  CHECK(pgmux::proxy::reads_requests(ClientState::Ready));
  CHECK(pgmux::proxy::reads_requests(ClientState::Admin));
  CHECK_FALSE(pgmux::proxy::reads_requests(ClientState::AdminBusy));
  CHECK_FALSE(pgmux::proxy::is_logged_in(ClientState::LoginWait));
  CHECK_FALSE(pgmux::proxy::is_logged_in(ClientState::Closing));
  CHECK(pgmux::proxy::waits_for_pool(ClientState::LoginWait));
  CHECK(pgmux::proxy::waits_for_pool(ClientState::ServerWait));
  CHECK_FALSE(pgmux::proxy::waits_for_pool(ClientState::PrimaryWait));
  CHECK_FALSE(pgmux::proxy::waits_for_pool(ClientState::ReplayWait));
  CHECK_FALSE(pgmux::proxy::is_waiting(ClientState::Ready));
  // What a cancel request fails unsent: not LoginWait (no key yet), Draining or Preparing (a server works for it).
  for (ClientState s : {ClientState::ServerWait, ClientState::PrimaryWait, ClientState::ReplayWait,
                        ClientState::Paused, ClientState::CatalogWait}) {
    CHECK(pgmux::proxy::holds_unsent_request(s));
  }
  for (ClientState s : {ClientState::LoginWait, ClientState::Ready, ClientState::Draining, ClientState::Ending,
                        ClientState::Preparing, ClientState::ServerEnding, ClientState::AdminBusy}) {
    CHECK_FALSE(pgmux::proxy::holds_unsent_request(s));
  }
}

TEST_CASE("client states: an idle session's ended primary connection is decided from Ready, back to Ready") {
  CHECK(is_legal_transition(ClientState::Ready, ClientState::ServerEnding));
  CHECK(is_legal_transition(ClientState::ServerEnding, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::ServerEnding, ClientState::ServerWait));
  CHECK_FALSE(is_legal_transition(ClientState::ServerWait, ClientState::ServerEnding));
  CHECK(pgmux::proxy::is_waiting(ClientState::ServerEnding));
  CHECK(pgmux::proxy::is_logged_in(ClientState::ServerEnding));
  CHECK_FALSE(pgmux::proxy::is_logged_in(ClientState::AuthLookup));
}

TEST_CASE("client states: a cancel during Preparing is remembered as a state of its own, which ends in Ready") {
  CHECK(is_legal_transition(ClientState::Preparing, ClientState::PreparingCanceled));
  CHECK(is_legal_transition(ClientState::PreparingCanceled, ClientState::Ready));
  CHECK_FALSE(is_legal_transition(ClientState::Ready, ClientState::PreparingCanceled));
  CHECK_FALSE(is_legal_transition(ClientState::PreparingCanceled, ClientState::Preparing));
  CHECK_FALSE(is_legal_transition(ClientState::ServerWait, ClientState::PreparingCanceled));
  CHECK(pgmux::proxy::is_waiting(ClientState::PreparingCanceled));
  CHECK(pgmux::proxy::is_logged_in(ClientState::PreparingCanceled));
  CHECK_FALSE(pgmux::proxy::reads_requests(ClientState::PreparingCanceled));
  CHECK_FALSE(pgmux::proxy::holds_unsent_request(ClientState::PreparingCanceled));  // its cancel came already
}
