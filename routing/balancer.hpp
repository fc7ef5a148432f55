// Smooth weighted round robin (nginx's algorithm) over the readable standbys of a BackendsView.
// One per worker; not thread-safe.
#pragma once
#include <cstdint>
#include <vector>

#include "routing/topology.hpp"

namespace pgmux::routing {

class Balancer {
 public:
  // Picks among backends whose index passes `allowed` (readable standbys, weight > 0). -1 when none.
  // `allowed` is called as allowed(int index) -> bool.
  template <typename Allowed>
  int pick(const BackendsView& view, Allowed&& allowed);

 private:
  // Per backend index. int64: a sum of up to n int32 weights must not overflow.
  std::vector<int64_t> current_;
};

// Each round every allowed backend gains its weight, the one with the most credit is picked and pays the total.
// Over any window of sum(weights) picks each backend gets exactly its weight, spread out (1:3 -> b a b b ...).
// Backends outside the allowed set keep their credit frozen, so a short exclusion (or a client whose
// read-your-writes set is smaller) does not reset the rotation of the others.
template <typename Allowed>
int Balancer::pick(const BackendsView& view, Allowed&& allowed) {
  const size_t n = view.backends.size();
  if (current_.size() != n) current_.assign(n, 0);  // the only allocation: when the backend count changes
  int best = -1;
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t weight = view.backends[i].spec.weight;
    if (weight <= 0 || !allowed(static_cast<int>(i))) continue;
    current_[i] += weight;
    total += weight;
    if (best < 0 || current_[i] > current_[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[static_cast<size_t>(best)] -= total;
  return best;
}

}  // namespace pgmux::routing
