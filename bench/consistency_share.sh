#!/usr/bin/env bash
# How many reads standbys still serve under each routing.consistency, with writes going on: pgbench writers
# (simple-update) and pgbench readers (select-only) on other connections, at the same time, through pgmux with the
# read/write split on. pgmux's own route counters (/metrics, pgmux_queries_routed_total) say where each read went.
# See bench/README.md. Everything it starts (a PostgreSQL 15 cluster on 33433-33435, pgmux on 33432 with metrics on
# 33930) lives in a temp dir and is stopped by pid when the script ends, however it ends.
set -euo pipefail
set -m  # pgmux gets its own process group; a Ctrl-C reaches only the foreground job or this script

usage() {
  cat <<'EOF'
usage: bench/consistency_share.sh [options]
  -T SECONDS          duration of each run (default 15)
  --writers N         pgbench simple-update clients (default 4)
  --readers N         pgbench select-only clients (default 8)
  --modes "causal causal+wait session eventual"
                      what to measure; causal+wait is causal with each routing.causal_wait of --waits
  --waits "0.005 0.02"
                      the routing.causal_wait values causal+wait measures (seconds)
  --pool-mode MODE    transaction (default: each read routed on its own) or session
  --scale N           pgbench scale factor (default 10)
  --pgmux PATH        pgmux binary (default: $BUILD_DIR/proxy/pgmux, BUILD_DIR defaults to build)
  --out FILE          also write the table as Markdown to FILE
  --keep              keep the temp dir (logs, configs, pgbench output)
EOF
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
PGBIN=/usr/lib/postgresql/15/bin
BASE_PORT=33433
PGMUX_PORT=33432
METRICS_PORT=33930

duration=15
writers=4
readers=8
modes="causal causal+wait session eventual"
waits="0.005 0.02"
pool_mode=transaction
scale=10
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
pgmux_bin="$build_dir/proxy/pgmux"
out_file=""
keep=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -T) duration=$2; shift 2 ;;
    --writers) writers=$2; shift 2 ;;
    --readers) readers=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --waits) waits=$2; shift 2 ;;
    --pool-mode) pool_mode=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --pgmux) pgmux_bin=$2; shift 2 ;;
    --out) out_file=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "consistency_share.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$duration" "$writers" "$readers" "$scale"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "consistency_share.sh: '$n' is not a positive integer" >&2; exit 2; }
done
for m in $modes; do
  [[ $m =~ ^(causal|causal\+wait|session|eventual)$ ]] ||
    { echo "consistency_share.sh: unknown mode '$m'" >&2; exit 2; }
done
for w in $waits; do
  [[ $w =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "consistency_share.sh: causal_wait '$w' is not a number" >&2; exit 2; }
done
[[ $pool_mode == transaction || $pool_mode == session ]] ||
  { echo "consistency_share.sh: --pool-mode must be transaction or session" >&2; exit 2; }
[[ -z $out_file || $out_file == /* ]] || out_file="$PWD/$out_file"

log() { echo "[bench] $*" >&2; }
die() { echo "consistency_share.sh: error: $*" >&2; exit 1; }

[[ -x $PGBIN/pgbench && -x $PGBIN/psql ]] || die "PostgreSQL 15 client tools not found in $PGBIN"
[[ -x $pgmux_bin ]] || die "no pgmux binary at $pgmux_bin (scripts/build.sh pgmux)"
command -v curl >/dev/null || die "curl not installed"
for port in $BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)) $PGMUX_PORT $METRICS_PORT; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is already in use"; fi
done

work=$(mktemp -d /tmp/pgmux-consistency.XXXXXX)
chmod 755 "$work"  # PostgreSQL runs as the postgres OS user when we are root
cluster_dir="$work/cluster"
pgmux_pid=""

stop_pgmux() {
  local i
  [[ -n $pgmux_pid ]] || return 0
  kill -INT "$pgmux_pid" 2>/dev/null || { pgmux_pid=""; return 0; }
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pgmux_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pgmux_pid" 2>/dev/null || true
  pgmux_pid=""
}

# shellcheck disable=SC2317  # trap handler
cleanup() {
  trap '' INT TERM
  stop_pgmux
  bash "$repo/tests/support/cluster.sh" stop "$cluster_dir" >/dev/null 2>&1 || true
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting PostgreSQL 15 (primary + 2 standbys) in $cluster_dir on $BASE_PORT"
bash "$repo/tests/support/cluster.sh" start "$cluster_dir" "$BASE_PORT" >&2
export PGPASSWORD=app PGCONNECT_TIMEOUT=10
log "pgbench -i -s $scale"
"$PGBIN/pgbench" -h 127.0.0.1 -p "$BASE_PORT" -U app -i -s "$scale" -q app >"$work/init.out" 2>&1 ||
  die "pgbench -i failed:"$'\n'"$(tail -n 20 "$work/init.out")"
# The test cluster commits asynchronously; then WAL reaches the standbys only when the WAL writer flushes it
# (every wal_writer_delay, 200 ms, under light writing), which no routing can hide. Commit as PostgreSQL does by
# default.
PGPASSWORD=postgres "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$BASE_PORT" -U postgres -d postgres \
  -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null

start_pgmux() {  # CONSISTENCY CAUSAL_WAIT
  local name="pgmux-$1-$2" i
  cat >"$work/$name.json" <<JSON
{
  "listeners": [{"host": "127.0.0.1", "port": $PGMUX_PORT}],
  "workers": 2,
  "backends": [{"name": "primary", "host": "127.0.0.1", "port": $BASE_PORT},
               {"name": "standby1", "host": "127.0.0.1", "port": $((BASE_PORT + 1))},
               {"name": "standby2", "host": "127.0.0.1", "port": $((BASE_PORT + 2))}],
  "users": [{"name": "app", "password": "app"}, {"name": "postgres", "password": "postgres"}],
  "databases": [{"name": "app", "pool_mode": "$pool_mode", "pool_size": $((writers + readers + 4))}],
  "routing": {"consistency": "$1", "causal_wait": $2},
  "health_check": {"user": "postgres"},
  "logging": {"level": "warn"},
  "metrics_listen": "127.0.0.1:$METRICS_PORT"
}
JSON
  "$pgmux_bin" -c "$work/$name.json" >"$work/$name.log" 2>&1 &
  pgmux_pid=$!
  # Ready once both standbys serve reads (the prober's first rounds).
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pgmux_pid" 2>/dev/null || die "pgmux exited at startup:"$'\n'"$(tail -n 20 "$work/$name.log")"
    if "$PGBIN/psql" -X -qAt -h 127.0.0.1 -p "$PGMUX_PORT" -U app -d app -c 'SELECT 1' >/dev/null 2>&1 &&
      [[ $(curl -s "http://127.0.0.1:$METRICS_PORT/status" | grep -o '"readable": *true' | wc -l) -ge 2 ]]; then
      return 0
    fi
    sleep 0.2
  done
  die "pgmux did not serve reads from both standbys within 30 s"
}

# pgmux_queries_routed_total{target=TARGET,reason=REASON} now (0 when absent).
routed() {  # TARGET REASON
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk -v want="pgmux_queries_routed_total{target=\"$1\",reason=\"$2\"}" '$1 == want {print int($2); found=1}
      END {if (!found) print 0}'
}

# Reads only: served by a standby, or by the primary because no standby could take them (the reasons a
# read falls back for); writes and transactions are not counted.
read_counts() {
  echo "$(routed standby read) $(routed primary causal) $(routed primary read-your-writes)" \
    "$(routed primary lag-excluded) $(routed primary fallback-to-primary)"
}

tps_of() { awk '/^tps = .*without initial connection time/ {printf "%.0f", $3}' "$1"; }
lat_of() { awk '/^latency average = / {printf "%.2f", $4}' "$1"; }

# One run: pgmux with CONSISTENCY and CAUSAL_WAIT, writers and readers at once; a row of $results.
measure() {  # CONSISTENCY CAUSAL_WAIT
  local name="$1-$2" before after standby primary share
  start_pgmux "$1" "$2"
  read -r -a before <<<"$(read_counts)"
  log "$1 (causal_wait $2): $writers simple-update writers + $readers select-only readers, ${duration}s"
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGMUX_PORT" -U app -n -b simple-update -c "$writers" -j 1 \
    -T "$duration" app >"$work/$name-writers.out" 2>&1 &
  local writer_job=$!
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGMUX_PORT" -U app -n -b select-only -c "$readers" -j 1 \
    -T "$duration" app >"$work/$name-readers.out" 2>&1 ||
    die "readers' pgbench failed: $(tail -n 5 "$work/$name-readers.out")"
  wait "$writer_job" || die "writers' pgbench failed: $(tail -n 5 "$work/$name-writers.out")"
  read -r -a after <<<"$(read_counts)"
  stop_pgmux
  standby=$((after[0] - before[0]))
  primary=$(((after[1] - before[1]) + (after[2] - before[2]) + (after[3] - before[3]) + (after[4] - before[4])))
  share=$(awk -v s="$standby" -v p="$primary" 'BEGIN {printf "%.1f", (s + p) ? 100 * s / (s + p) : 0}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$share" "$standby" "$primary" \
    "$(tps_of "$work/$name-readers.out")" "$(lat_of "$work/$name-readers.out")" \
    "$(tps_of "$work/$name-writers.out")" >>"$results"
}

results="$work/results.tsv"
: >"$results"
for mode in $modes; do
  if [[ $mode == causal+wait ]]; then
    for w in $waits; do measure causal "$w"; done
  else
    measure "$mode" 0
  fi
done

{
  echo "| consistency | causal_wait s | reads on standbys | standby reads | primary reads |" \
    "reader TPS | reader avg lat ms | writer TPS |"
  echo "|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r consistency wait share standby primary rtps rlat wtps; do
    echo "| $consistency | $wait | $share % | $standby | $primary | $rtps | $rlat | $wtps |"
  done <"$results"
} | tee "${out_file:-/dev/null}"
