#!/usr/bin/env bash
# Installs missing dependencies, builds pgmux and runs its tests: the whole suite (unit tests + end-to-end tests
# against a real PostgreSQL cluster) runs once, under ASan + UBSan, in the sanitizer and fuzzing stage
# (scripts/test-sanitizers.sh: ASan+UBSan build, fuzz targets, the suite, a TSan subset); the plain
# RelWithDebInfo build that ships is built and checked first with the unit tests and a psql smoke test.
#   scripts/test.sh [extra ctest arguments, e.g. -R it_auth]   (they go to the run of the whole suite)
# PGMUX_SKIP_SANITIZERS=1 skips the sanitizer stage for a quick local run: the plain build then runs the whole
# suite, as it did before the sanitizer stage existed. CI (CI=true) always runs the sanitizer stage.
# BUILD_DIR (default: build) picks the plain build directory.
#
# Tests that need scratch space should use $PGMUX_TEST_TMPDIR (emptied before each run). Before and
# after the run, any PostgreSQL or pgmux process left behind under the build directories (by a test that
# crashed or hit the ctest timeout) is stopped by pid, so two runs in a row start from a clean slate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
source scripts/test-lib.sh  # timed, stop_leftovers

sanitizers=1
if [[ ${PGMUX_SKIP_SANITIZERS:-0} == 1 ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "test.sh: PGMUX_SKIP_SANITIZERS=1 ignored in CI: the sanitizer stage always runs there"
  else
    sanitizers=0
  fi
fi

timed "install dependencies" bash scripts/install-deps.sh
if [[ $sanitizers == 1 ]]; then
  # Two cores cannot run the suite twice within CI's budget: the plain build gets what a release needs checked
  # (it compiles with GCC -Werror, the unit tests pass, a psql session works through it) and the tests whose
  # memory budgets only mean something without a sanitizer's shadow memory (the soak's RSS check among them).
  plain_tests_re='^(unit_.*|it_psql|it_txpool_idle|it_large_result|it_tls_data|it_soak_short)$'
  plain_targets=(pgmux with_pgmux unit_protocol unit_routing unit_conf unit_proxy it_txpool_idle it_large_result
    it_tls_data pgmux_soak)
  plain_tests=(-R "$plain_tests_re")
else
  plain_targets=()
  plain_tests=("$@")
fi
timed "build (${BUILD_TYPE:-RelWithDebInfo})" bash scripts/build.sh "${plain_targets[@]}"

build_dir=$(cd "${BUILD_DIR:-build}" && pwd)
export PGMUX_TEST_TMPDIR="$build_dir/test-tmp"


stop_leftovers "$build_dir"
rm -rf "$PGMUX_TEST_TMPDIR"
mkdir -p "$PGMUX_TEST_TMPDIR"
# Clusters run as the postgres OS user when we are root: it must be able to reach the scratch dir.
chmod 755 "$PGMUX_TEST_TMPDIR"
trap 'stop_leftovers "$build_dir"' EXIT

cd "$repo"
timed "ctest (plain build)" ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --timeout 900 "${plain_tests[@]}"

if [[ $sanitizers == 0 ]]; then
  echo "test.sh: sanitizer and fuzzing stage skipped (PGMUX_SKIP_SANITIZERS=1)"
  exit 0
fi
trap 'stop_leftovers "$build_dir" build-asan build-tsan' EXIT
timed "sanitizers and fuzzing" bash scripts/test-sanitizers.sh asan fuzz suite tsan "$@"
