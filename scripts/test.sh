#!/usr/bin/env bash
# Installs missing dependencies, builds pgmux with its tests and runs them all with ctest, then the sanitizer
# and fuzzing stage (scripts/test-sanitizers.sh: ASan+UBSan build and suite, fuzz targets, TSan subset).
#   scripts/test.sh [extra ctest arguments, e.g. -R unit_]
# BUILD_DIR (default: build) picks another build directory. PGMUX_SKIP_SANITIZERS=1 skips the sanitizer stage
# (for a quick local run; CI=true runs it regardless).
#
# Tests that need scratch space should use $PGMUX_TEST_TMPDIR (emptied before each run). Before and
# after the run, any PostgreSQL or pgmux process left behind under the build directory (by a test that
# crashed or hit the ctest timeout) is stopped by pid, so two runs in a row start from a clean slate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

timed() {  # NAME COMMAND...: runs it and prints how long it took, and the machine's load then
  local name=$1 start=$SECONDS
  shift
  echo "test.sh: ---- $name ----"
  "$@"
  echo "test.sh: ---- $name took $((SECONDS - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg)) ----"
}

timed "install dependencies" bash scripts/install-deps.sh
timed "build (${BUILD_TYPE:-RelWithDebInfo})" bash scripts/build.sh

build_dir=$(cd "${BUILD_DIR:-build}" && pwd)
export PGMUX_TEST_TMPDIR="$build_dir/test-tmp"

source scripts/test-leftovers.sh

stop_leftovers "$build_dir"
rm -rf "$PGMUX_TEST_TMPDIR"
mkdir -p "$PGMUX_TEST_TMPDIR"
# Clusters run as the postgres OS user when we are root: it must be able to reach the scratch dir.
chmod 755 "$PGMUX_TEST_TMPDIR"
trap 'stop_leftovers "$build_dir"' EXIT

cd "$repo"
timed "ctest" ctest --test-dir "$build_dir" --output-on-failure --timeout 900 "$@"

if [[ ${PGMUX_SKIP_SANITIZERS:-0} == 1 && ${CI:-} != true ]]; then
  echo "test.sh: sanitizer and fuzzing stage skipped (PGMUX_SKIP_SANITIZERS=1)"
  exit 0
fi
trap 'stop_leftovers "$build_dir" build-asan build-tsan' EXIT
timed "sanitizers and fuzzing" bash scripts/test-sanitizers.sh
