# Sourced by scripts/test.sh and scripts/test-sanitizers.sh: stage timing, and stopping what earlier test
# processes left behind (a test that crashed or hit the ctest timeout), by pid, so two runs in a row start from a
# clean slate.

# timed NAME COMMAND...: runs it, then prints its wall and CPU time and the machine's load, under the calling
# script's name.
timed() {
  local name=$1 script
  script=$(basename "$0")
  shift
  echo "$script: ---- $name ----"
  local TIMEFORMAT="$script: ---- $name took %0R s (CPU: %0U s user + %0S s sys) ----"
  time "$@"
  echo "$script: ---- load after $name: $(cut -d' ' -f1-3 /proc/loadavg) ----"
}

# Waits up to ~10 s for PID to exit; then SIGKILL.
stop_pid() {  # PID SIGNAL WHAT
  local pid=$1 sig=$2 what=$3 i
  echo "test: stopping leftover $what (pid $pid)" >&2
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Postmasters whose data directory is under one of the build directories (a postmaster's cwd is its data
# directory, so the pid file is checked against it) and pgmux processes running one of their binaries.
# Nothing else is touched.
stop_leftovers() {  # BUILD_DIR...
  local build_dir pidfile pid dir exe
  for build_dir in "$@"; do
    [[ -d $build_dir ]] || continue
    build_dir=$(cd "$build_dir" && pwd)
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
  done
}
