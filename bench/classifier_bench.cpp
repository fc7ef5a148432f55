// Nanoseconds per Classifier::classify for the cases the hot path meets: a plain SELECT and INSERT settled
// by the lexer, a CTE that needs libpg_query (each call a new text, so the parser runs every time), and
// the same CTE text again (LRU cache hit). It also counts heap allocations per call: the fast path must
// make none (exit status 1 otherwise).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "routing/classifier.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using pgmux::routing::Classifier;
using pgmux::routing::StatementKind;

volatile int g_sink = 0;  // keeps the compiler from dropping the calls
size_t g_allocations = 0;  // counted by the operator new below

}  // namespace

// Counting replacements of the global allocation functions: they only count and forward to malloc/free.
void* operator new(size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace {

struct Result {
  double ns = 0;
  double allocations = 0;  // per call
};

template <class Fn>
Result measure(int iterations, Fn&& fn) {
  const size_t allocations_before = g_allocations;
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) g_sink = g_sink + static_cast<int>(fn(i).kind);
  const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
  return Result{static_cast<double>(elapsed) / iterations,
                static_cast<double>(g_allocations - allocations_before) / iterations};
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 200000;
  const int parser_iterations = iterations / 20 > 0 ? iterations / 20 : 1;
  Classifier classifier({}, 100000);

  const std::string select_sql =
      "SELECT id, name, email FROM users WHERE id = $1 AND status = 'active' ORDER BY created_at DESC LIMIT 10";
  const std::string insert_sql = "INSERT INTO events (user_id, kind, payload) VALUES ($1, $2, $3)";
  const std::string cte_sql =
      "WITH recent AS (SELECT user_id, count(*) AS n FROM events WHERE at > now() - interval '1 day' "
      "GROUP BY user_id) SELECT u.name, r.n FROM users u JOIN recent r ON r.user_id = u.id WHERE u.id = ";

  // Distinct texts for the parser-miss case are built up front so the timing holds no string building.
  std::vector<std::string> fresh;
  fresh.reserve(static_cast<size_t>(parser_iterations));
  for (int i = 0; i < parser_iterations; ++i) fresh.push_back(cte_sql + std::to_string(i));

  const Result select = measure(iterations, [&](int) { return classifier.classify(select_sql); });
  const Result insert = measure(iterations, [&](int) { return classifier.classify(insert_sql); });
  const size_t calls_before = classifier.parser_calls();
  const Result parse = measure(parser_iterations, [&](int i) { return classifier.classify(fresh[static_cast<size_t>(i)]); });
  const size_t parsed = classifier.parser_calls() - calls_before;
  const std::string cached_sql = fresh.front();
  const Result cached = measure(iterations, [&](int) { return classifier.classify(cached_sql); });

  std::printf("classifier_bench (%d iterations, %d for the parser case)\n", iterations, parser_iterations);
  std::printf("  %-24s %10s %14s\n", "case", "ns/call", "allocs/call");
  std::printf("  %-24s %10.1f %14.2f\n", "fast-path SELECT", select.ns, select.allocations);
  std::printf("  %-24s %10.1f %14.2f\n", "fast-path INSERT", insert.ns, insert.allocations);
  std::printf("  %-24s %10.1f %14.2f  (%zu parser calls)\n", "CTE, parser (1st call)", parse.ns, parse.allocations, parsed);
  std::printf("  %-24s %10.1f %14.2f  (%zu cache hits)\n", "CTE, cached", cached.ns, cached.allocations,
              classifier.cache_hits());
  const bool ok = select.allocations == 0 && insert.allocations == 0 && cached.allocations == 0 &&
                  classifier.classify(select_sql).kind == StatementKind::Read &&
                  classifier.classify(insert_sql).kind == StatementKind::Write &&
                  classifier.classify(cached_sql).kind == StatementKind::Read;
  return ok ? 0 : 1;
}
