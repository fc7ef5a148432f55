#!/usr/bin/env bash
# A longer fuzzing run than CI's 60 s per target: every libFuzzer target of tests/fuzz for SECONDS each, JOBS
# targets at a time, each growing its own corpus in $OUT/<target>.corpus from tests/fuzz/corpus (kept between runs,
# so a second run goes on where the first stopped). Prints one line per target: wall and CPU time, executions, coverage
# (libFuzzer's cov/ft counters), corpus size, and what it found (crash/leak/timeout inputs under $OUT).
#   bash bench/fuzz_long.sh [SECONDS per target, default 3600] [JOBS, default 2]
# Needs the ASan+UBSan build with fuzz targets: bash scripts/test-sanitizers.sh asan (ASAN_BUILD_DIR picks it).
# OUT (default build-asan/fuzz-long) holds corpora, logs and findings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
seconds="${1:-3600}"
jobs="${2:-2}"
asan_dir="${ASAN_BUILD_DIR:-build-asan}"
out="${OUT:-$asan_dir/fuzz-long}"
[[ -x $asan_dir/tests/fuzz/framer_fuzz ]] ||
  { echo "fuzz_long.sh: build first: bash scripts/test-sanitizers.sh asan" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

run_target() {  # NAME: one target for $seconds; prints its summary line
  local name=$1 log="$out/$1.log" status=0
  mkdir -p "$out/$name.corpus"
  local start
  start=$(date +%s)
  # /usr/bin/time: the CPU seconds the target really got (the wall-clock limit says little on a busy machine).
  ASAN_OPTIONS="halt_on_error=1:detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    /usr/bin/time -o "$out/$name.cpu" -f '%U %S' "$repo/$asan_dir/tests/fuzz/$name" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/$name-" "$out/$name.corpus" "$repo/tests/fuzz/corpus/$name" \
    >"$log" 2>&1 || status=$?
  local took=$(($(date +%s) - start))
  local runs cov ft corpus found cpu
  # The last line: after a failure time(1) writes "Command exited with ..." first.
  cpu=$(tail -n 1 "$out/$name.cpu" 2>/dev/null | awk '{printf "%d", $1 + $2}')
  runs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
  corpus=$(find "$out/$name.corpus" -type f | wc -l)
  found=$(find "$out" -maxdepth 1 -name "$name-*" -type f | wc -l)
  printf '%-18s wall %6d s  cpu %6s s  exit %-3s %11s runs  cov %-6s ft %-6s corpus %-6d findings %d\n' \
    "$name" "$took" "$cpu" "$status" "$runs" "$cov" "$ft" "$corpus" "$found"
}
export -f run_target
export repo seconds asan_dir out

echo "fuzz_long.sh: $seconds s per target, $jobs at a time, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
targets=$(cd tests/fuzz && ls ./*_fuzz.cpp | sed 's|^\./||; s|\.cpp$||')
xargs -P "$jobs" -n 1 bash -c 'run_target "$1"' _ <<<"$targets" | sort
echo "fuzz_long.sh: findings (crash-*, leak-*, timeout-*, oom-*) and logs are in $out"
