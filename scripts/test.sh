#!/usr/bin/env bash
# Installs missing dependencies, builds pgmux with its tests and runs them all with ctest.
#   scripts/test.sh [extra ctest arguments, e.g. -R unit_]
# BUILD_DIR (default: build) picks another build directory.
#
# Tests that need scratch space should use $PGMUX_TEST_TMPDIR (emptied before each run). Before and
# after the run, any PostgreSQL or pgmux process left behind under the build directory (by a test that
# crashed or hit the ctest timeout) is stopped by pid, so two runs in a row start from a clean slate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

bash scripts/install-deps.sh
bash scripts/build.sh

build_dir=$(cd "${BUILD_DIR:-build}" && pwd)
export PGMUX_TEST_TMPDIR="$build_dir/test-tmp"

# Waits up to ~10 s for PID to exit; then SIGKILL.
stop_pid() {  # PID SIGNAL WHAT
  local pid=$1 sig=$2 what=$3 i
  echo "test.sh: stopping leftover $what (pid $pid)" >&2
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops what earlier test processes left: postmasters whose data directory is under the build
# directory (a postmaster's cwd is its data directory, so the pid file is checked against it) and
# pgmux processes running this build's binary. Nothing else is touched.
stop_leftovers() {
  local pidfile pid dir exe
  while IFS= read -r -d '' pidfile; do
    pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || continue
    dir=$(dirname "$pidfile")
    if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir" ]]; then
      stop_pid "$pid" INT "postgres in $dir"  # SIGINT = fast shutdown
    fi
  done < <(find "$build_dir" -name postmaster.pid -print0 2>/dev/null)
  for pid in $(pgrep -x pgmux 2>/dev/null || true); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    if [[ $exe == "$build_dir/"* ]]; then
      stop_pid "$pid" INT "pgmux"
    fi
  done
}

stop_leftovers
rm -rf "$PGMUX_TEST_TMPDIR"
mkdir -p "$PGMUX_TEST_TMPDIR"
# Clusters run as the postgres OS user when we are root: it must be able to reach the scratch dir.
chmod 755 "$PGMUX_TEST_TMPDIR"
trap stop_leftovers EXIT

cd "$repo"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 "$@"
