#!/usr/bin/env bash
# pgmux soak, full size (issue 11, item 8): 100,000 client connections and 10,000 server connections through one
# pgmux, with faults mixed in (wrong passwords, unknown users and databases, clients vanishing before, during and
# after login, mid-request and inside transactions, TCP resets, cancels; server connections killed with
# pg_terminate_backend), in session and transaction pooling at once. Prints the time, pgmux's open descriptors and
# RSS at the warmed-up baseline and after the run, its peak RSS, the server connections it opened, every outcome
# and the shapes of its log lines; exits 1 when descriptors or RSS did not come back (see tests/soak/).
# Build first: ninja -C build pgmux pgmux_soak.
#
#   bench/soak.sh [--clients N] [--servers N] [--concurrency N] [--mode both|session|transaction]
#                 [--build DIR] [--baseport PORT]
#
# With --baseport, uses the test cluster already running there (tests/support/cluster.sh); otherwise starts one
# in a temp dir on 31633 (+1, +2) and stops it (by pid, via cluster.sh stop) when done, however the script ends.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
clients=100000
servers=10000
concurrency=64
mode=both
build_dir=${BUILD_DIR:-build}
baseport=""
while (($#)); do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --build) build_dir=$2; shift 2 ;;
    --baseport) baseport=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
binary="$build_dir/tests/integration/soak/pgmux_soak"
[[ -x $binary ]] || { echo "missing $binary: ninja -C $build_dir pgmux pgmux_soak" >&2; exit 2; }

source "$repo/bench/bench_cluster.sh"
bench_cluster "$repo" 31633 soak-bench

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "pgmux soak: $clients clients, $servers server connections, $concurrency at once, mode $mode ($(nproc) cores)"
PGMUX_TEST_BASEPORT=$baseport "$binary" --clients "$clients" --servers "$servers" --concurrency "$concurrency" \
  --mode "$mode" --time-limit 1800
