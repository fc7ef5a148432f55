// Smooth weighted round robin: exact shares, interleaving, changing allowed sets, no steady-state allocation.
#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "routing/balancer.hpp"

using namespace pgmux::routing;

namespace {

// Counts allocations while armed (global operator new is replaced for this binary; it only counts).
int g_allocations = 0;
bool g_counting = false;

BackendsView view_with_weights(const std::vector<int>& weights) {
  BackendsView v;
  for (size_t i = 0; i < weights.size(); ++i) {
    BackendStatus b;
    b.spec.name = "b" + std::to_string(i);
    b.spec.weight = weights[i];
    b.role = Role::Standby;
    b.readable = true;
    v.backends.push_back(b);
  }
  return v;
}

auto readable(const BackendsView& v) {
  return [&v](int i) { return v.backends[static_cast<size_t>(i)].readable; };
}

}  // namespace

// GCC cannot see that these replace the global pair, hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The rest of the family too: a sanitizer runtime replaces each one it is not given, and its memory (std::
// stable_sort's nothrow buffer) would then come back through the free() above as a mismatch.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_counting) ++g_allocations;
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new[](std::size_t n, const std::nothrow_t& tag) noexcept { return operator new(n, tag); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

TEST_CASE("balancer: weights 1:3 over 10000 picks give exactly 2500/7500") {
  BackendsView v = view_with_weights({1, 3});
  Balancer b;
  int counts[2] = {0, 0};
  for (int k = 0; k < 10000; ++k) {
    const int i = b.pick(v, readable(v));
    REQUIRE((i == 0 || i == 1));
    ++counts[i];
  }
  CHECK(counts[0] == 2500);
  CHECK(counts[1] == 7500);
}

TEST_CASE("balancer: smooth interleaving (nginx's 5:1:1 example)") {
  BackendsView v = view_with_weights({5, 1, 1});
  Balancer b;
  std::string seq;
  for (int k = 0; k < 14; ++k) seq += static_cast<char>('a' + b.pick(v, readable(v)));
  CHECK(seq == "aabacaaaabacaa");
  BackendsView w = view_with_weights({1, 3});
  Balancer c;
  std::string seq2;
  for (int k = 0; k < 8; ++k) seq2 += static_cast<char>('a' + c.pick(w, readable(w)));
  CHECK(seq2 == "babbbabb");
}

TEST_CASE("balancer: only allowed backends, weight 0 never, -1 when none") {
  BackendsView v = view_with_weights({1, 0, 2});
  Balancer b;
  for (int k = 0; k < 30; ++k) CHECK(b.pick(v, readable(v)) != 1);
  CHECK(b.pick(v, [](int) { return false; }) == -1);
  BackendsView empty;
  CHECK(b.pick(empty, [](int) { return true; }) == -1);
  BackendsView zero = view_with_weights({0, 0});
  CHECK(b.pick(zero, [](int) { return true; }) == -1);
}

TEST_CASE("balancer: stable under changing allowed sets") {
  BackendsView v = view_with_weights({1, 1, 1});
  Balancer b;
  int counts[3] = {0, 0, 0};
  for (int k = 0; k < 300; ++k) ++counts[b.pick(v, readable(v))];
  CHECK(counts[0] == 100);
  CHECK(counts[1] == 100);
  CHECK(counts[2] == 100);
  // b1 leaves: the others alternate.
  v.backends[1].readable = false;
  int last = -1;
  for (int k = 0; k < 100; ++k) {
    const int i = b.pick(v, readable(v));
    CHECK(i != 1);
    CHECK(i != last);
    last = i;
  }
  // Back in: the share evens out again (within one pick of the weights).
  v.backends[1].readable = true;
  int after[3] = {0, 0, 0};
  for (int k = 0; k < 3000; ++k) ++after[b.pick(v, readable(v))];
  for (int c : after) CHECK((c >= 999 && c <= 1001));
  // Interleaving a smaller set (another client's read-your-writes set) does not disturb the big one's shares.
  int mixed[3] = {0, 0, 0};
  for (int k = 0; k < 3000; ++k) {
    ++mixed[b.pick(v, readable(v))];
    CHECK(b.pick(v, [](int i) { return i == 2; }) == 2);
  }
  for (int c : mixed) CHECK((c >= 900 && c <= 1100));
  // A different backend count resets cleanly.
  BackendsView w = view_with_weights({1, 3});
  int counts2[2] = {0, 0};
  for (int k = 0; k < 400; ++k) ++counts2[b.pick(w, readable(w))];
  CHECK(counts2[0] == 100);
}

TEST_CASE("balancer: no allocation after the first pick for a backend count") {
  BackendsView v = view_with_weights({1, 2, 3, 4});
  Balancer b;
  b.pick(v, readable(v));
  g_allocations = 0;
  g_counting = true;
  int sum = 0;
  for (int k = 0; k < 1000; ++k) sum += b.pick(v, readable(v));
  g_counting = false;
  CHECK(g_allocations == 0);
  CHECK(sum > 0);
}
