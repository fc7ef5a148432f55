// What every worker and the control loop share: the current config snapshot (swapped atomically), the cancel
// registry and connection id counters. Everything here is thread-safe by construction.
#pragma once
#include <atomic>
#include <memory>

#include "conf/config.hpp"
#include "proxy/cancel.hpp"

namespace pgmux::proxy {

struct SharedState {
  explicit SharedState(std::shared_ptr<const conf::Config> initial) : config(std::move(initial)) {}

  std::atomic<std::shared_ptr<const conf::Config>> config;
  CancelRegistry cancels;
  std::atomic<uint64_t> next_client_id{0};
  std::atomic<uint64_t> next_server_id{0};
};

}  // namespace pgmux::proxy
