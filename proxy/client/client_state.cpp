#include "proxy/client/client_state.hpp"

#include <array>
#include <initializer_list>

namespace pgmux::proxy {

namespace {

using S = ClientState;

struct Row {
  S from;
  std::initializer_list<S> to;  // besides Closing, which every state may enter
};

// Who may follow whom. A request's waits all start from Ready and end in Ready (or Closing); a wait for a pool
// may begin again on another pool (a reload moved the backend, or the server died while being synced).
constexpr Row kTransitions[] = {
    {S::Startup, {S::AuthLookup, S::Auth}},
    {S::AuthLookup, {S::Auth}},
    {S::Auth, {S::LoginWait, S::LoginPrimaryWait, S::Ready, S::Admin}},
    {S::LoginWait, {S::Ready, S::LoginPrimaryWait}},
    {S::LoginPrimaryWait, {S::LoginWait}},
    {S::Ready,
     {S::ServerWait, S::PrimaryWait, S::ReplayWait, S::Paused, S::CatalogWait, S::Draining, S::Ending, S::Preparing,
      S::ServerEnding, S::EndForwarded}},
    {S::ServerWait, {S::Ready}},
    {S::PrimaryWait, {S::Ready}},
    {S::ReplayWait, {S::Ready}},
    {S::Paused, {S::Ready}},
    {S::CatalogWait, {S::Ready}},
    {S::Draining, {S::Ready}},
    {S::Ending, {S::Ready}},  // to look again from the pump (a read retried on the primary goes out first)
    {S::EndForwarded, {}},    // only to Closing, when the server closes
    {S::Preparing, {S::Ready, S::PreparingCanceled}},
    {S::PreparingCanceled, {S::Ready}},
    {S::ServerEnding, {S::Ready}},
    {S::Admin, {S::AdminBusy}},
    {S::AdminBusy, {S::Admin}},
    {S::Closing, {}},
};

}  // namespace

const char* to_string(ClientState s) {
  switch (s) {
    case S::Startup: return "startup";
    case S::AuthLookup: return "auth_lookup";
    case S::Auth: return "auth";
    case S::LoginWait: return "login_wait";
    case S::LoginPrimaryWait: return "login_primary_wait";
    case S::Ready: return "ready";
    case S::ServerWait: return "server_wait";
    case S::PrimaryWait: return "primary_wait";
    case S::ReplayWait: return "replay_wait";
    case S::CatalogWait: return "catalog_wait";
    case S::Paused: return "paused";
    case S::Draining: return "draining";
    case S::Ending: return "ending";
    case S::EndForwarded: return "end_forwarded";
    case S::Preparing: return "preparing";
    case S::PreparingCanceled: return "preparing_canceled";
    case S::ServerEnding: return "server_ending";
    case S::Admin: return "admin";
    case S::AdminBusy: return "admin_busy";
    case S::Closing: return "closing";
  }
  return "?";
}

namespace {
// kTransitions as one bit mask of the legal next states per state: set_state asks at every change.
struct TransitionMasks {
  uint32_t allowed[kClientStateCount] = {};
  constexpr TransitionMasks() {
    for (const Row& row : kTransitions) {
      for (S next : row.to) allowed[static_cast<int>(row.from)] |= 1u << static_cast<int>(next);
    }
  }
};
constexpr TransitionMasks kMasks;
static_assert(kClientStateCount <= 32);
}  // namespace

bool is_legal_transition(ClientState from, ClientState to) {
  if (from == to || to == S::Closing) return true;
  return (kMasks.allowed[static_cast<int>(from)] >> static_cast<int>(to)) & 1u;
}

}  // namespace pgmux::proxy
