#!/usr/bin/env bash
# Instructions per transaction through one pgmux worker, counted by valgrind's callgrind: a figure that
# does not move with the machine's load (unlike CPU time), for tracking the hot path commit by commit. See
# bench/README.md ("callgrind_per_txn.sh").
#
# pgmux (1 worker) runs under callgrind. For each workload pgbench runs SHORT and then LONG transactions per
# client, each run a fresh set of connections; callgrind's counters are dumped (and zeroed) after each run,
# so each dump holds one run: its logins, its transactions, its disconnects. The difference of the two runs
# is (LONG - SHORT) x clients transactions and nothing else, so
#   instructions per transaction = (I_long - I_short) / ((LONG - SHORT) x clients)
#   per-run fixed cost (connections) = I_short - SHORT x clients x that
# Everything (a PostgreSQL 15 cluster, pgmux) lives in a temp dir and is stopped by pid at the end.
set -euo pipefail
set -m

usage() {
  cat <<'EOF'
usage: bench/callgrind_per_txn.sh [options]
  --workloads "select-only:simple select-only:extended select-only:prepared tpcb-like:simple"
                      pgbench builtin:-M pairs to measure
  --clients N         pgbench clients (default 1: strictly one request in flight, so every read and
                      write carries the same bytes whatever the timing)
  --short N           transactions per client of the short run (default 200)
  --long N            transactions per client of the long run (default 1200)
  --pool-mode MODE    session (default) or transaction
  --scale N           pgbench scale factor (default 1)
  --split             pgmux with both standbys in the database's read set (bench/compare_procs.sh start_pgmux)
  --pgmux PATH        pgmux binary (default: $BUILD_DIR/proxy/pgmux, BUILD_DIR defaults to build)
  --pgbouncer PATH    measure this PgBouncer instead of pgmux (one thread: all of it counts as "worker")
  --cluster-port P    PostgreSQL primary on P, standbys on P+1, P+2 (default 31733)
  --proxy-port P      pgmux on P (default 31743)
  --out FILE          also write the table (Markdown) to FILE
  --keep              keep the temp dir (callgrind dumps, logs) for inspection, e.g. callgrind_annotate
EOF
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
PGBIN=/usr/lib/postgresql/15/bin
workloads="select-only:simple select-only:extended select-only:prepared tpcb-like:simple"
clients=1
short=200
long=1200
pool_mode=session
scale=1
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
pgmux_bin="$build_dir/proxy/pgmux"
CLUSTER_PORT=31733
proxy_port=31743
out_file=""
keep=0
split=""
pgbouncer_bin=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --workloads) workloads=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --short) short=$2; shift 2 ;;
    --long) long=$2; shift 2 ;;
    --pool-mode) pool_mode=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --pgmux) pgmux_bin=$2; shift 2 ;;
    --pgbouncer) pgbouncer_bin=$2; shift 2 ;;
    --cluster-port) CLUSTER_PORT=$2; shift 2 ;;
    --proxy-port) proxy_port=$2; shift 2 ;;
    --out) out_file=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --split) split=split; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "callgrind_per_txn.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$clients" "$short" "$long" "$scale" "$CLUSTER_PORT" "$proxy_port"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "callgrind_per_txn.sh: '$n' is not a positive integer" >&2; exit 2; }
done
((long > short)) || { echo "callgrind_per_txn.sh: --long must exceed --short" >&2; exit 2; }
[[ $pool_mode == session || $pool_mode == transaction ]] ||
  { echo "callgrind_per_txn.sh: --pool-mode is session or transaction" >&2; exit 2; }
if [[ -n $out_file && $out_file != /* ]]; then
  out_file="$PWD/$out_file"
fi

log() { echo "[callgrind] $*" >&2; }
die() { echo "callgrind_per_txn.sh: error: $*" >&2; exit 1; }
# shellcheck source=bench/compare_procs.sh
source "$repo/bench/compare_procs.sh"

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  die "valgrind is not installed"
fi
if [[ -n $pgbouncer_bin ]]; then
  [[ -x $pgbouncer_bin ]] || die "no PgBouncer binary at $pgbouncer_bin"
else
  [[ -x $pgmux_bin ]] || die "no pgmux binary at $pgmux_bin"
fi
for port in $CLUSTER_PORT $((CLUSTER_PORT + 1)) $((CLUSTER_PORT + 2)) "$proxy_port"; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is already in use"; fi
done

setup_workdir pgmux-callgrind
start_cluster "$scale"
export PGPASSWORD=app PGCONNECT_TIMEOUT=30

# --dump-instr=yes keeps per-instruction counts in the dumps for callgrind_annotate --auto=yes (with --keep);
# --compress-strings=no names every function in every dump, so each one can be annotated on its own.
ready_tries=600  # valgrind reads the binary's debug info first: allow 2 minutes
if [[ -n $pgbouncer_bin ]]; then
  # PgBouncer runs as the postgres OS user when we are root: its dumps go to its own (chowned) dir.
  dump_dir="$work/pgbouncer"
  pgbouncer_prepared=200 duration=100
  pgbouncer_wrapper=(valgrind --tool=callgrind --dump-instr=yes --compress-strings=no --separate-threads=yes
    --callgrind-out-file="$dump_dir/callgrind.out.%p")
  start_pgbouncer pgbouncer "$proxy_port" "$pool_mode" 4
  pid_of[pgbouncer]=$started_pid
  worker_threads_from=1  # one thread does everything
  # vgdb finds a valgrind process by FIFOs named after its user: ask as that user.
  # (setpriv keeps our environment, so the FIFOs carry our USER, unset here: vgdb must look with none)
  [[ $(id -u) -ne 0 ]] || control_as=(runuser -u postgres -- env -u USER -u LOGNAME)
  measured="$(pgbouncer_version)"
else
  dump_dir="$work"
  pgmux_workers=1
  pgmux_wrapper=(valgrind --tool=callgrind --dump-instr=yes --compress-strings=no --separate-threads=yes
    --callgrind-out-file="$dump_dir/callgrind.out.%p")
  start_pgmux pgmux "$proxy_port" "$pool_mode" 4 $split
  pid_of[pgmux]=$started_pid
  worker_threads_from=2  # thread 1 is pgmux's control thread
  measured="pgmux $(git -C "$repo" describe --always --dirty 2>/dev/null ||
    echo '?'), 1 worker${split:+, read/write split over 3 backends}"
fi
proxy_pid=$started_pid

# Dumps callgrind's counters (and zeroes them) under LABEL; prints the instructions counted since the last
# dump by all threads, then by all but thread 1. pgmux's main thread is its control thread (config, health
# checks, the replay poller's timer); the others are the workers that carry the traffic. Called in a command
# substitution (a subshell): the dump files are found by their label, not by a counter.
dump_counters() {  # LABEL
  local files
  timeout 60 ${control_as[@]+"${control_as[@]}"} callgrind_control -d "$1" "$proxy_pid" \
    >>"$work/callgrind_control.log" 2>&1 ||
    die "callgrind_control -d failed"
  mapfile -t files < <(grep -l -x "desc: Trigger: dump $1" "$dump_dir/callgrind.out.$proxy_pid".* || true)
  ((${#files[@]} > 0)) || die "no callgrind dump labelled $1"
  # --separate-threads=yes names each thread's dump ...-NN.
  awk -v from="$worker_threads_from" '/^(summary|totals):/ && !seen[FILENAME]++ {
         all += $2; n = FILENAME; sub(/.*-/, "", n); if (n + 0 >= from) workers += $2 }
       END { printf "%d %d\n", all, workers }' "${files[@]}"
}

run_pgbench() {  # BUILTIN PROTOCOL TRANSACTIONS_PER_CLIENT TAG
  local out="$work/$4.out" done_txns
  timeout 600 "$PGBIN/pgbench" -h 127.0.0.1 -p "$proxy_port" -U app -n -b "$1" -M "$2" -c "$clients" \
    -j 1 -t "$3" app </dev/null >"$out" 2>&1 || die "pgbench $4 failed:"$'\n'"$(tail -n 5 "$out")"
  done_txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  [[ $done_txns == $(($3 * clients)) ]] || die "pgbench $4 processed '$done_txns' transactions"
}

# Warm-up: every workload once, so the first run of each path (pool and catalog loads, the first
# server login's SCRAM key derivation, allocator growth) falls outside the measured dumps.
for w in $workloads; do
  run_pgbench "${w%%:*}" "${w#*:}" 20 "warmup-${w/:/-}"
done
read -r startup _ < <(dump_counters startup)
log "startup and warm-up: $startup instructions"
# Timers (health checks, pool maintenance) run whether or not traffic flows, and the long run lasts longer
# than the short one: what an idle second costs shows how much of the per-transaction figure is not traffic.
sleep 5
read -r idle idle_workers < <(dump_counters idle-5s)

rows=()
for w in $workloads; do
  builtin=${w%%:*} protocol=${w#*:}
  log "$builtin -M $protocol: $short then $long transactions per client, $clients client(s)"
  # A second before each run, so the server the last client left is reset and idle again when the next one
  # comes: a client arriving during the reset (DISCARD ALL, slow under callgrind) made the pool log in a new
  # server, whose SCRAM then counted in one run only. The same pause before both runs cancels out.
  sleep 1
  run_pgbench "$builtin" "$protocol" "$short" "$builtin-$protocol-short"
  read -r a_short w_short < <(dump_counters "$builtin-$protocol-short")
  sleep 1
  run_pgbench "$builtin" "$protocol" "$long" "$builtin-$protocol-long"
  read -r a_long w_long < <(dump_counters "$builtin-$protocol-long")
  # dump_counters runs in a subshell, where die cannot end the script: check that it printed figures.
  [[ -n $w_short && -n $w_long ]] || die "no callgrind figures for $builtin -M $protocol"
  rows+=("$(awk -v b="$builtin" -v p="$protocol" -v as="$a_short" -v al="$a_long" -v ws="$w_short" \
    -v wl="$w_long" -v s="$short" -v l="$long" -v c="$clients" 'BEGIN {
      n = (l - s) * c; per = (wl - ws) / n; fixed = ws - s * c * per
      printf "| %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f |", b, p, per, (al - as) / n, fixed / c, ws, wl }')")
done

table() {
  echo "$measured, $pool_mode mode," \
    "$clients pgbench client(s), $short / $long transactions per client, scale $scale, $(date -u +%Y-%m-%d)"
  echo
  echo "| workload | -M | worker instructions per txn | all threads per txn |" \
    "worker fixed cost per connection | worker, short run | worker, long run |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Startup under callgrind plus the warm-up runs: $startup instructions. 5 idle seconds: $idle"
  echo "instructions, $idle_workers of them in the workers."
}
echo
table
if [[ -n $out_file ]]; then
  table >"$out_file"
  log "wrote $out_file"
fi
