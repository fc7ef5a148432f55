#!/usr/bin/env bash
# pgmux memory per idle client: N logged-in, idle client connections (default 10000) over plain TCP to a pgmux in
# transaction mode (2 workers, pool 10, trust auth), while 50 others run queries; prints pgmux's RSS growth per
# idle client in bytes (issue 4 target: <= 4096). Runs the it_txpool_idle test binary (build it first:
# ninja -C build pgmux it_txpool_idle).
#
#   bench/idle_clients.sh [-n CLIENTS] [--build DIR] [--baseport PORT]
#
# With --baseport, uses the test cluster already running there (tests/support/cluster.sh); otherwise starts one
# in a temp dir on 31533 (+1, +2) and stops it (by pid, via cluster.sh stop) when done, however the script ends.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
clients=10000
build_dir=${BUILD_DIR:-build}
baseport=""
while (($#)); do
  case $1 in
    -n) clients=$2; shift 2 ;;
    --build) build_dir=$2; shift 2 ;;
    --baseport) baseport=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
binary="$build_dir/tests/integration/txpool/it_txpool_idle"
[[ -x $binary ]] || { echo "missing $binary: ninja -C $build_dir pgmux it_txpool_idle" >&2; exit 2; }

source "$repo/bench/bench_cluster.sh"
bench_cluster "$repo" 31533 idle-bench

# Both this shell's children and pgmux need one descriptor per client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(PGMUX_TEST_BASEPORT=$baseport TXPOOL_IDLE_CLIENTS=$clients "$binary" -tc='*connections held open*' 2>&1) || {
  echo "$out" | grep -v ' INFO ' >&2
  exit 1
}
echo "$out" | grep -E 'idle clients logged in|queries in' | sed 's/^.*MESSAGE: //'
echo "$out" | grep -m1 '^bytes per idle client'
