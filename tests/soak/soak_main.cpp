// pgmux_soak: opens and closes many client connections through one pgmux, with faults mixed in (see
// soak_client.hpp), while a churn thread kills pgmux's server connections so that it opens many of those too; then
// checks that pgmux's open descriptors and resident memory are back at the warmed-up baseline, that it still
// answers a query in both pool modes, and that its log has no ERROR line. Prints the figures; exits 1 on a
// failed check. ctest runs a short variant (it_soak_short), bench/soak.sh the full one.
//
//   pgmux_soak [--clients N] [--servers N] [--warmup N] [--concurrency N] [--mode both|session|transaction]
//              [--time-limit S] [--rss-slack-mib M] [--fd-tolerance N]
// Defaults come from env PGMUX_SOAK_CLIENTS / PGMUX_SOAK_SERVERS (else 5000 / 500). The cluster comes from
// PGMUX_TEST_BASEPORT as for the integration tests.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "tests/soak/soak_run.hpp"

namespace {

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? static_cast<size_t>(std::atol(v)) : fallback;
}

pgmux::soak::SoakOptions parse_options(int argc, char** argv) {
  pgmux::soak::SoakOptions o;
  o.clients = env_size("PGMUX_SOAK_CLIENTS", o.clients);
  o.servers = env_size("PGMUX_SOAK_SERVERS", o.servers);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("missing value after " + arg);
    const std::string value = argv[++i];
    if (arg == "--clients") o.clients = std::stoul(value);
    else if (arg == "--servers") o.servers = std::stoul(value);
    else if (arg == "--warmup") o.warmup = std::stoul(value);
    else if (arg == "--concurrency") o.concurrency = std::stoul(value);
    else if (arg == "--mode") o.mode = value;
    else if (arg == "--time-limit") o.time_limit_s = std::stod(value);
    else if (arg == "--rss-slack-mib") o.rss_slack_mib = std::stod(value);
    else if (arg == "--fd-tolerance") o.fd_tolerance = std::stol(value);
    else throw std::runtime_error("unknown option " + arg + " (see the comment at the top of soak_main.cpp)");
  }
  if (o.mode != "both" && o.mode != "session" && o.mode != "transaction") throw std::runtime_error("bad --mode");
  if (o.warmup == 0) o.warmup = std::max<size_t>(200, o.clients / 10);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  try {
    return pgmux::soak::run_soak(parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgmux_soak: %s\n", e.what());
    return 2;
  }
}
