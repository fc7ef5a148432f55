#!/usr/bin/env bash
# The sanitizer and fuzzing stage of the test suite (issue 11, items 6 and 7); scripts/test.sh runs it last.
#   1. build-asan: clang, ASan + UBSan, every target and the libFuzzer targets (-DPGMUX_FUZZ=ON)
#   2. each fuzz target for PGMUX_FUZZ_SECONDS (default 40), two at a time, from tests/fuzz/corpus
#   3. the whole ctest suite (unit + integration) on build-asan: the tests spawn the sanitized pgmux
#   4. build-tsan: clang, TSan, pgmux alone; the multi-worker and reload tests run build-asan's test programs
#      against it (PGMUX_BINARY)
# Any sanitizer report fails the stage: the processes stop at the first one (halt_on_error,
# -fno-sanitize-recover), and every report file they write (log_path) is printed and counted at the end.
#   scripts/test-sanitizers.sh [asan|fuzz|suite|tsan ...] [ctest arguments for the suite, e.g. -R it_auth]
# (default stages: all four, in that order)
# ASAN_BUILD_DIR / TSAN_BUILD_DIR pick the build directories (default build-asan, build-tsan).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
source scripts/test-lib.sh  # timed, stop_leftovers

asan_dir="${ASAN_BUILD_DIR:-build-asan}"
tsan_dir="${TSAN_BUILD_DIR:-build-tsan}"
fuzz_seconds="${PGMUX_FUZZ_SECONDS:-40}"
# Multi-worker tests where workers, the control loop and the prober share state (every test runs 2 workers), and
# the Patroni source, whose HTTP requests run in libuv's thread pool.
tsan_tests='^(it_reload_.*|it_concurrency|it_prober|it_cancel|it_shutdown|it_routing_failover|it_routing_patroni)$'
stages=()
suite_args=()
for arg in "$@"; do
  if [[ ${#suite_args[@]} -gt 0 || $arg == -* ]]; then suite_args+=("$arg"); else stages+=("$arg"); fi
done
[[ ${#stages[@]} -gt 0 ]] || stages=(asan fuzz suite tsan)

reports="$repo/$asan_dir/sanitizer-reports"
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
common="halt_on_error=1:print_stacktrace=1:log_path=$reports/report${symbolizer:+:external_symbolizer_path=$symbolizer}"
export ASAN_OPTIONS="$common:detect_leaks=1:abort_on_error=0:check_initialization_order=1"
export UBSAN_OPTIONS="$common"
export LSAN_OPTIONS="suppressions=$repo/tests/sanitizers/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="$common:second_deadlock_stack=1:suppressions=$repo/tests/sanitizers/tsan.supp"
export PGMUX_SANITIZER_REPORTS="$reports"  # the test harness prints a report pgmux left as it stops it


configure() {  # DIR SANITIZE [more cmake args]
  local dir=$1 sanitize=$2
  shift 2
  # -O1: the sanitizers' own advice (readable stacks, a fraction of -O2's compile time); asserts stay on.
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_DEBUG=-O1 -gline-tables-only" \
    -DPGMUX_SANITIZE="$sanitize" "$@" ${CMAKE_ARGS:-} >/dev/null
}

# Prints every report file and fails when there is one.
check_reports() {
  local files
  files=$(find "$reports" -type f 2>/dev/null | sort)
  [[ -z $files ]] && return 0
  for f in $files; do
    echo "==== sanitizer report $f ====" >&2
    head -c 20000 "$f" >&2
  done
  echo "test-sanitizers.sh: $(wc -w <<<"$files") sanitizer report(s); see above" >&2
  return 1
}

build_asan() {
  configure "$asan_dir" address,undefined -DPGMUX_FUZZ=ON
  ninja -C "$asan_dir"
}

# One target: its own working corpus (new inputs land there, the seeds stay untouched), a log and any crash
# input under $asan_dir/fuzz/. libFuzzer exits non-zero on a crash, a leak, a timeout or a sanitizer report.
fuzz_one() {  # TARGET
  local name=$1 out="$repo/$asan_dir/fuzz" status=0
  mkdir -p "$out/$name.corpus"
  "$repo/$asan_dir/tests/fuzz/$name" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/$name-" "$out/$name.corpus" "$repo/tests/fuzz/corpus/$name" \
    >"$out/$name.log" 2>&1 || status=$?
  local runs
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$' || echo '?')
  if [[ $status -ne 0 ]]; then
    echo "fuzz: $name FAILED (exit $status); last lines of $out/$name.log:" >&2
    tail -n 60 "$out/$name.log" >&2
    return 1
  fi
  echo "fuzz: $name ok, $runs runs in ${fuzz_seconds} s"
}
export -f fuzz_one
export repo asan_dir fuzz_seconds

run_fuzzers() {
  rm -rf "$asan_dir/fuzz"
  mkdir -p "$asan_dir/fuzz"
  # libFuzzer writes its own reports to stderr (the log above), not to log_path.
  local targets
  targets=$(cd "$repo/tests/fuzz" && ls ./*_fuzz.cpp | sed 's|^\./||; s|\.cpp$||')
  ASAN_OPTIONS="halt_on_error=1:detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    xargs -P 2 -n 1 bash -c 'fuzz_one "$1"' _ <<<"$targets"
}

# ctest on a build directory with the scratch space test.sh would give it.
run_ctest() {  # BUILD_DIR [ctest args]
  local dir=$1
  shift
  export PGMUX_TEST_TMPDIR="$repo/$dir/test-tmp"
  rm -rf "$PGMUX_TEST_TMPDIR"
  mkdir -p "$PGMUX_TEST_TMPDIR"
  chmod 755 "$PGMUX_TEST_TMPDIR"
  ctest --test-dir "$repo/$dir" --output-on-failure --no-tests=error --timeout 900 "$@"
}

run_suite() {
  rm -rf "$reports"
  mkdir -p "$reports"
  local status=0
  run_ctest "$asan_dir" "${suite_args[@]}" || status=$?
  check_reports || status=1
  return $status
}

build_tsan() {
  configure "$tsan_dir" thread -DBUILD_TESTING=OFF
  ninja -C "$tsan_dir" pgmux
}

run_tsan_tests() {
  rm -rf "$reports"
  mkdir -p "$reports"
  local status=0
  PGMUX_BINARY="$repo/$tsan_dir/proxy/pgmux" run_ctest "$asan_dir" -R "$tsan_tests" || status=$?
  check_reports || status=1
  return $status
}

stop_leftovers "$asan_dir" "$tsan_dir"
trap 'stop_leftovers "$asan_dir" "$tsan_dir"' EXIT

for stage in "${stages[@]}"; do
  case $stage in
    asan) timed "ASan+UBSan build (with fuzz targets)" build_asan ;;
    fuzz) timed "fuzz targets, ${fuzz_seconds} s each, 2 at a time" run_fuzzers ;;
    suite) timed "unit + integration suite under ASan+UBSan" run_suite ;;
    tsan)
      timed "TSan build of pgmux" build_tsan
      timed "multi-worker/reload tests against the TSan pgmux" run_tsan_tests
      ;;
    *) echo "test-sanitizers.sh: unknown stage '$stage' (asan, fuzz, suite, tsan)" >&2; exit 2 ;;
  esac
done
