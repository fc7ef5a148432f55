#!/usr/bin/env bash
# One-command demo: installs missing dependencies, builds pgmux, starts a local PostgreSQL 15 primary
# with two hot standbys (127.0.0.1:5433-5435, data in ./.demo/cluster) and runs pgmux in the
# foreground with conf/demo.json. Ctrl-C (or SIGTERM) stops pgmux and then the cluster.
# BUILD_DIR (default: build) picks the build directory; DEMO_SKIP_BUILD=1 uses the binary as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

demo_dir="$repo/.demo"
cluster_dir="$demo_dir/cluster"
pid_file="$demo_dir/pgmux.pid"
config="$repo/conf/demo.json"
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
pgmux="$build_dir/proxy/pgmux"
cluster=(bash "$repo/tests/support/cluster.sh")
base_port=5433
listen_port=9999

bash scripts/install-deps.sh
if [[ ${DEMO_SKIP_BUILD:-0} != 1 ]]; then
  BUILD_DIR="$build_dir" bash scripts/build.sh pgmux
fi
[[ -x $pgmux ]] || { echo "demo.sh: $pgmux was not built" >&2; exit 1; }

mkdir -p "$demo_dir"
# A pgmux left by an earlier demo that was killed hard: stop it by its recorded pid, but only if
# that pid still runs our binary.
if [[ -f $pid_file ]]; then
  old=$(cat "$pid_file" 2>/dev/null || true)
  if [[ $old =~ ^[0-9]+$ && $(readlink "/proc/$old/exe" 2>/dev/null) == "$(readlink -f "$pgmux")" ]]; then
    echo "demo.sh: stopping pgmux left by an earlier demo (pid $old)" >&2
    kill -INT "$old" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$old" 2>/dev/null || true
  fi
  rm -f "$pid_file"
fi
"${cluster[@]}" stop "$cluster_dir" >/dev/null

for port in "$base_port" $((base_port + 1)) $((base_port + 2)) "$listen_port"; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo.sh: port $port on 127.0.0.1 is in use by something else; free it and retry" >&2
    exit 1
  fi
done

pgmux_pid=""
signals=0
interrupted=0

# shellcheck disable=SC2317  # trap handler
cleanup() {
  local i
  # Finish the cleanup whatever is pressed meanwhile; children inherit the ignored signals too.
  trap '' INT TERM
  if [[ -n $pgmux_pid ]] && kill -0 "$pgmux_pid" 2>/dev/null; then
    kill -INT "$pgmux_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pgmux_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pgmux_pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
  "${cluster[@]}" stop "$cluster_dir" >/dev/null || true
  echo "demo.sh: stopped" >&2
}
trap cleanup EXIT

# INT is "stop now" for pgmux and TERM is "finish sessions, then stop"; each is passed on as is.
# A third signal means pgmux is stuck: kill it.
# shellcheck disable=SC2317  # trap handler
forward() {  # SIGNAL
  interrupted=1
  signals=$((signals + 1))
  [[ -n $pgmux_pid ]] || exit 130
  if ((signals >= 3)); then
    kill -KILL "$pgmux_pid" 2>/dev/null || true
  else
    kill "-$1" "$pgmux_pid" 2>/dev/null || true
  fi
}
trap 'forward INT' INT
trap 'forward TERM' TERM

"${cluster[@]}" start "$cluster_dir" "$base_port"

echo
echo "Connect with: PGPASSWORD=app psql -h 127.0.0.1 -p $listen_port -U app app"
echo "(Ctrl-C stops pgmux and the cluster.)"
echo

# Job control from here on: pgmux gets its own process group, so a Ctrl-C at the terminal reaches
# this script only (the trap forwards it) and not pgmux twice, and SIGINT stays at its default in
# pgmux instead of being ignored as in a plain background job. (The postgres servers are already
# out of reach: pg_ctl starts them in their own session.)
set -m
"$pgmux" -c "$config" &
pgmux_pid=$!
echo "$pgmux_pid" >"$pid_file"

# `wait` returns early when a trapped signal arrives; keep waiting until pgmux itself has exited.
status=0
while :; do
  interrupted=0
  status=0
  wait "$pgmux_pid" || status=$?
  ((interrupted)) || break
done
pgmux_pid=""
echo "demo.sh: pgmux exited with status $status" >&2
exit "$status"
