// Nanoseconds per Classifier::classify for the cases the hot path meets: a plain SELECT and INSERT settled
// by the lexer, a CTE that needs libpg_query (each call a new text, so the parser runs every time), and
// the same CTE text again (LRU cache hit); then the same with a database's function catalog (about as many
// volatile names as PostgreSQL 15 has, and a few views over them), plus a read calling a STABLE function
// (lexer only) and one calling a VOLATILE function (cached parse, then the catalog). It also counts heap
// allocations per call: none of these may make one (exit status 1 otherwise).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "routing/classifier.hpp"
#include "routing/function_catalog.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using pgmux::routing::CatalogState;
using pgmux::routing::Classifier;
using pgmux::routing::FunctionCatalog;
using pgmux::routing::FunctionCatalogBuilder;
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

// ~220 volatile function names (PostgreSQL 15 has 215 after the catalog query's exclusions) and 5 views.
FunctionCatalog realistic_catalog() {
  FunctionCatalogBuilder b;
  for (const char* f : {"nextval", "setval", "currval", "lastval", "pg_advisory_lock", "set_config", "audit_insert"}) {
    b.add_row("f", f);
  }
  for (int i = 0; i < 213; ++i) b.add_row("f", "volatile_fn_" + std::to_string(i));
  for (int i = 0; i < 5; ++i) b.add_row("v", "volatile_view_" + std::to_string(i));
  return std::move(b).build(1);
}

void print(const char* name, const Result& r) { std::printf("  %-32s %10.1f %14.2f\n", name, r.ns, r.allocations); }

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

  const FunctionCatalog catalog = realistic_catalog();
  const CatalogState with{&catalog, false};
  const std::string stable_sql = "SELECT id, lower(name), coalesce(email, '') FROM users WHERE id = $1 LIMIT 10";
  const std::string volatile_sql = "SELECT audit_insert($1), id FROM users WHERE id = $1";

  const Result select = measure(iterations, [&](int) { return classifier.classify(select_sql); });
  const Result insert = measure(iterations, [&](int) { return classifier.classify(insert_sql); });
  const size_t calls_before = classifier.parser_calls();
  const Result parse =
      measure(parser_iterations, [&](int i) { return classifier.classify(fresh[static_cast<size_t>(i)]); });
  const size_t parsed = classifier.parser_calls() - calls_before;
  const std::string cached_sql = fresh.front();
  const Result cached = measure(iterations, [&](int) { return classifier.classify(cached_sql); });
  const Result select_c = measure(iterations, [&](int) { return classifier.classify(select_sql, with); });
  const Result cached_c = measure(iterations, [&](int) { return classifier.classify(cached_sql, with); });
  const Result stable_c = measure(iterations, [&](int) { return classifier.classify(stable_sql, with); });
  classifier.classify(volatile_sql, with);  // parsed once: what follows are cache hits
  const Result volatile_c = measure(iterations, [&](int) { return classifier.classify(volatile_sql, with); });

  std::printf("classifier_bench (%d iterations, %d for the parser case)\n", iterations, parser_iterations);
  std::printf("  %-32s %10s %14s\n", "case", "ns/call", "allocs/call");
  print("fast-path SELECT", select);
  print("fast-path INSERT", insert);
  std::printf("  %-32s %10.1f %14.2f  (%zu parser calls)\n", "CTE, parser (1st call)", parse.ns, parse.allocations,
              parsed);
  print("CTE, cached", cached);
  print("catalog: fast-path SELECT", select_c);
  print("catalog: CTE, cached", cached_c);
  print("catalog: SELECT stable calls", stable_c);
  print("catalog: SELECT volatile call", volatile_c);
  const bool ok = select.allocations == 0 && insert.allocations == 0 && cached.allocations == 0 &&
                  select_c.allocations == 0 && cached_c.allocations == 0 && stable_c.allocations == 0 &&
                  volatile_c.allocations == 0 && classifier.classify(select_sql).kind == StatementKind::Read &&
                  classifier.classify(insert_sql).kind == StatementKind::Write &&
                  classifier.classify(cached_sql).kind == StatementKind::Read &&
                  classifier.classify(stable_sql, with).kind == StatementKind::Read &&
                  classifier.classify(volatile_sql, with).kind == StatementKind::Write;
  return ok ? 0 : 1;
}
