#!/usr/bin/env bash
# pgbench through pgmux, PgBouncer and a bare relay, and straight to PostgreSQL, in one run on this machine:
# session pooling (select-only with each query protocol, tpcb-like), then transaction pooling (a small pool
# shared by many clients, -M prepared and simple). Every row runs once per round, rounds interleaved, and
# the table shows medians and ranges. See bench/README.md. Everything it starts (a PostgreSQL 15 cluster,
# the proxies) lives in a temp dir and is stopped by pid when the script ends, however it ends.
set -euo pipefail
# Job control: the proxies get their own process groups with SIGINT at its default (a plain background
# job would ignore it), and a Ctrl-C reaches only the foreground pgbench or this script.
set -m

usage() {
  cat <<'EOF'
usage: bench/pgbench_compare.sh [options]
  -T SECONDS          duration of each pgbench run (default 15)
  --rounds N          run every row N times, in interleaved rounds (default 1); the table shows
                      medians and min–max, ratios taken within each round
  --clients "8 64"    client counts of the session-mode rows
  --modes "select-only tpcb-like"
  --protocols "simple extended prepared"
                      pgbench -M values of the session-mode select-only rows (tpcb-like: simple only);
                      "connect" is -M simple -C: a new connection, with its SCRAM login, per transaction
  --scale N           pgbench scale factor (default 10)
  --pool-size N       session-mode server connections per pool, pgmux and PgBouncer alike (default 128:
                      pgmux splits the pool across its workers, which the kernel does not fill evenly)
  --threads N         pgbench -j (default 2)
  --rate TPS          pgbench -R: every run is throttled to TPS transactions a second, so targets are compared
                      at the same load (CPU per transaction at equal TPS); one that cannot keep up shows it in
                      its TPS and latency
  --pgmux-workers N   pgmux worker threads (default 2; PgBouncer has one: 1 compares thread for thread)
  --pgmux PATH        pgmux binary (default: $BUILD_DIR/proxy/pgmux, BUILD_DIR defaults to build)
  --pgbouncer PATH    PgBouncer binary (default: pgbouncer on PATH); its version goes into the table
  --pgbouncer-prepared N
                      PgBouncer's max_prepared_statements (default 200)
  --relay PATH        bare relay binary (default: $BUILD_DIR/bench/bare_relay; ninja bare_relay)
  --odyssey PATH      also run Odyssey (built from source, bench/README.md), same pools, --pgmux-workers workers
  --split             add a "split" target: pgmux with both standbys in the read set (read/write split),
                      and a "CPU ÷ pgmux" column comparing it with the primary-only pgmux
  --skip-pgmux, --skip-pgbouncer, --skip-relay, --skip-direct
                      leave that target out
  --skip-txn          skip the transaction-mode rows
  --txn-clients N     pgbench clients of the transaction-mode rows (default 64)
  --txn-pool-size N   server connections per pool in transaction mode (default 10)
  --txn-protocols "prepared simple"
                      pgbench -M values of the transaction-mode rows
  --cluster-port P    PostgreSQL primary on P, standbys on P+1, P+2 (default 35433)
  --proxy-port P      the proxies on P..P+8 (default 32434)
  --perf-stat         count each proxy's syscalls and context switches per transaction with perf stat
                      (tracepoint raw_syscalls:sys_enter; needs perf and perf_event_paranoid <= 2 or root)
  --out FILE          also write the results (Markdown) to FILE
  --keep              keep the temp dir (logs, configs, pgbench output, results.tsv) for inspection
EOF
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
PGBIN=/usr/lib/postgresql/15/bin

duration=15
rounds=1
clients_list="8 64"
modes="select-only tpcb-like"
protocols="simple extended prepared"
scale=10
pool_size=128
threads=2
rate=0
pgmux_workers=2
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
pgmux_bin="$build_dir/proxy/pgmux"
pgbouncer_bin=""
pgbouncer_prepared=200
relay_bin="$build_dir/bench/bare_relay"
odyssey_bin=""
skip_pgmux=0 skip_pgbouncer=0 skip_relay=0 skip_direct=0 skip_txn=0 split=0
txn_clients=64
txn_pool_size=10
txn_protocols="prepared simple"
CLUSTER_PORT=35433
proxy_port=32434
out_file=""
keep=0
perf_stat=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -T) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --protocols) protocols=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --pool-size) pool_size=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --pgmux-workers) pgmux_workers=$2; shift 2 ;;
    --pgmux) pgmux_bin=$2; shift 2 ;;
    --pgbouncer) pgbouncer_bin=$2; shift 2 ;;
    --pgbouncer-prepared) pgbouncer_prepared=$2; shift 2 ;;
    --relay) relay_bin=$2; shift 2 ;;
    --odyssey) odyssey_bin=$2; shift 2 ;;
    --skip-pgmux) skip_pgmux=1; shift ;;
    --skip-pgbouncer) skip_pgbouncer=1; shift ;;
    --skip-relay) skip_relay=1; shift ;;
    --split) split=1; shift ;;
    --skip-direct) skip_direct=1; shift ;;
    --skip-txn) skip_txn=1; shift ;;
    --txn-clients) txn_clients=$2; shift 2 ;;
    --txn-pool-size) txn_pool_size=$2; shift 2 ;;
    --txn-protocols) txn_protocols=$2; shift 2 ;;
    --cluster-port) CLUSTER_PORT=$2; shift 2 ;;
    --proxy-port) proxy_port=$2; shift 2 ;;
    --out) out_file=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --perf-stat) perf_stat=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pgbench_compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$duration" "$rounds" "$scale" "$pool_size" "$threads" "$txn_clients" "$txn_pool_size" \
  "$pgbouncer_prepared" "$CLUSTER_PORT" "$proxy_port" $clients_list; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "pgbench_compare.sh: '$n' is not a positive integer" >&2; exit 2; }
done
[[ $rate =~ ^[0-9]+$ ]] ||
  { echo "pgbench_compare.sh: --rate '$rate' is not a number of transactions a second" >&2; exit 2; }
for m in $modes; do
  [[ $m == select-only || $m == tpcb-like ]] || { echo "pgbench_compare.sh: unknown mode '$m'" >&2; exit 2; }
done
for m in $protocols $txn_protocols; do
  [[ $m == prepared || $m == simple || $m == extended || $m == connect ]] ||
    { echo "pgbench_compare.sh: unknown pgbench protocol '$m'" >&2; exit 2; }
done
if [[ -n $out_file && $out_file != /* ]]; then
  out_file="$PWD/$out_file"
fi

log() { echo "[bench] $*" >&2; }
die() { echo "pgbench_compare.sh: error: $*" >&2; exit 1; }

# shellcheck source=bench/compare_procs.sh
source "$repo/bench/compare_procs.sh"
# shellcheck source=bench/compare_report.sh
source "$repo/bench/compare_report.sh"

# Every proxy starts before the first run and stays up to the end, so rows of both pool modes can be
# interleaved. The ports sit below Linux's ephemeral range (32768-60999) by default: thousands of
# connections come and go during a run, and one of them could otherwise hold a port we need later.
declare -A port_of=([direct]=$CLUSTER_PORT)
port_of[session/pgmux]=$proxy_port
port_of[session/pgbouncer]=$((proxy_port + 1))
port_of[session/relay]=$((proxy_port + 2))
port_of[transaction/pgmux]=$((proxy_port + 3))
port_of[transaction/pgbouncer]=$((proxy_port + 4))
port_of[session/split]=$((proxy_port + 5))
port_of[transaction/split]=$((proxy_port + 6))
port_of[session/odyssey]=$((proxy_port + 7))
port_of[transaction/odyssey]=$((proxy_port + 8))

[[ -x $PGBIN/pgbench && -x $PGBIN/psql ]] || die "PostgreSQL 15 client tools not found in $PGBIN"
if ((perf_stat)); then
  perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1 ||
    die "--perf-stat: perf stat cannot count raw_syscalls:sys_enter here"
fi
if ((!skip_pgbouncer)); then
  [[ -n $pgbouncer_bin ]] || pgbouncer_bin=$(command -v pgbouncer || true)
  [[ -n $pgbouncer_bin && -x $pgbouncer_bin ]] ||
    die "no PgBouncer binary (--pgbouncer PATH, see bench/README.md), or pass --skip-pgbouncer"
fi
if ((!skip_pgmux)); then
  [[ -x $pgmux_bin ]] || die "no pgmux binary at $pgmux_bin (scripts/build.sh), or pass --skip-pgmux"
fi
if [[ -n $odyssey_bin && ! -x $odyssey_bin ]]; then die "no Odyssey binary at $odyssey_bin"; fi
if ((!skip_relay)); then
  [[ -x $relay_bin ]] || die "no bare relay at $relay_bin (ninja -C build bare_relay), or pass --skip-relay"
fi
for port in $CLUSTER_PORT $((CLUSTER_PORT + 1)) $((CLUSTER_PORT + 2)) $(seq "$proxy_port" $((proxy_port + 8))); do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is already in use"
  fi
done

setup_workdir pgmux-bench
start_cluster "$scale"
direct=(-h 127.0.0.1 -p "$CLUSTER_PORT" -U app)
export PGPASSWORD=app PGCONNECT_TIMEOUT=10

# Starts TARGET (pgmux, pgbouncer or relay) for POOL (session or transaction) on its port.
start_target() {  # POOL TARGET
  local pool=$1 target=$2 port=${port_of[$1/$2]} size=$pool_size
  [[ $pool == session ]] || size=$txn_pool_size
  case $target in
    pgmux) start_pgmux "pgmux-$pool" "$port" "$pool" "$size" ;;
    split) start_pgmux "split-$pool" "$port" "$pool" "$size" split ;;
    pgbouncer) start_pgbouncer "pgbouncer-$pool" "$port" "$pool" "$size" ;;
    relay) start_relay relay "$port" ;;
    odyssey) start_odyssey "odyssey-$pool" "$port" "$pool" "$size" ;;
  esac
  pid_of[$pool/$target]=$started_pid
}

session_targets=() txn_targets=()
((skip_direct)) || session_targets+=(direct)
((skip_pgmux)) || { session_targets+=(pgmux); txn_targets+=(pgmux); }
((skip_pgbouncer)) || { session_targets+=(pgbouncer); txn_targets+=(pgbouncer); }
((skip_relay)) || session_targets+=(relay)
((!split)) || { session_targets+=(split); txn_targets+=(split); }
[[ -z $odyssey_bin ]] || { session_targets+=(odyssey); txn_targets+=(odyssey); }
((!skip_txn)) || txn_targets=()
for target in "${session_targets[@]}"; do
  [[ $target == direct ]] || start_target session "$target"
done
for target in "${txn_targets[@]}"; do start_target transaction "$target"; done

clk_tck=$(getconf CLK_TCK)

# One pgbench run; appends its line to $results (see bench/compare_report.sh for the columns). The proxy's
# CPU per transaction is its utime + stime over the run (all threads) divided by the transactions pgbench
# counted; it includes the C clients' logins, small next to a run of several seconds.
run_pgbench() {  # ROUND POOL TARGET MODE PROTOCOL CLIENTS
  local round=$1 pool=$2 target=$3 mode=$4 protocol=$5 clients=$6 key pid port j before=0 after txns outf
  local ok=1 tps lat cpu=- failed errors aborted perf_pid="" syscalls=- switches=- protocol_args
  protocol_args=(-M "$protocol")
  [[ $protocol != connect ]] || protocol_args=(-M simple -C)  # a login per transaction
  ((rate == 0)) || protocol_args+=(-R "$rate")
  key="$pool/$target"
  [[ $target == direct ]] && key=direct
  port=${port_of[$key]} pid=${pid_of[$key]:-}
  outf="$work/r$round-$pool-$target-$mode-$protocol-$clients.out"
  if [[ $mode == tpcb-like ]]; then
    # What pgbench's own pre-run vacuum does, done directly so every target starts alike.
    "$PGBIN/psql" -X -q "${direct[@]}" -d app \
      -c 'VACUUM pgbench_branches' -c 'VACUUM pgbench_tellers' -c 'TRUNCATE pgbench_history' </dev/null >/dev/null
  fi
  j=$((threads < clients ? threads : clients))
  log "round $round: $pool $target $mode -M $protocol, $clients clients, ${duration}s"
  [[ -z $pid ]] || before=$(cpu_ticks "$pid")
  if ((perf_stat)) && [[ -n $pid ]]; then
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -o "$outf.perf" -p "$pid" &
    perf_pid=$!
  fi
  timeout $((duration + 120)) "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U app \
    -n -b "$mode" "${protocol_args[@]}" -c "$clients" -j "$j" -T "$duration" app </dev/null >"$outf" 2>&1 || ok=0
  [[ -z $pid ]] || after=$(cpu_ticks "$pid")
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" || true
    syscalls=$(awk -F, '$3 ~ /sys_enter/ {print $1}' "$outf.perf" 2>/dev/null)
    switches=$(awk -F, '$3 ~ /context-switches/ {print $1}' "$outf.perf" 2>/dev/null)
  fi
  errors=$(grep -c 'ERROR:\|FATAL:' "$outf" || true)
  aborted=$(grep -c 'aborted in command' "$outf" || true)
  txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$outf")
  # With -C pgbench counts the reconnections in: "tps = N (including reconnection times)".
  tps=$(sed -n \
    's/^tps = \([0-9.]*\) (\(without initial connection\|including reconnection\) times\{0,1\})/\1/p' "$outf")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$outf")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$outf")
  if ((ok)) && [[ -z $txns || -z $tps || -z $lat || $txns -eq 0 ]]; then
    ok=0
  fi
  if ((ok)) && [[ -n $pid ]]; then
    cpu=$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$txns" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')
    [[ ! $syscalls =~ ^[0-9]+$ ]] || syscalls=$(awk -v c="$syscalls" -v n="$txns" 'BEGIN {printf "%.2f", c / n}')
    [[ ! $switches =~ ^[0-9]+$ ]] || switches=$(awk -v c="$switches" -v n="$txns" 'BEGIN {printf "%.2f", c / n}')
  fi
  if ((!ok)); then
    log "pgbench against $pool $target failed ($errors errors):"$'\n'"$(grep -m 3 'ERROR:\|error:' "$outf" ||
      tail -n 5 "$outf")"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$pool" "$target" "$mode" \
    "$protocol" "$clients" "$ok" "${tps:--}" "${lat:--}" "$cpu" "${failed:-0}" "$errors" "$aborted" "$syscalls" \
    "$switches" >>"$results"
}

# The workloads, one per line: POOL MODE PROTOCOL CLIENTS.
workloads=()
for mode in $modes; do
  for clients in $clients_list; do
    if [[ $mode == tpcb-like ]]; then
      workloads+=("session $mode simple $clients")
    else
      for protocol in $protocols; do workloads+=("session $mode $protocol $clients"); done
    fi
  done
done
if ((!skip_txn)) && ((${#txn_targets[@]} > 0)); then
  for mode in $modes; do
    for protocol in $txn_protocols; do workloads+=("transaction $mode $protocol $txn_clients"); done
  done
fi

# Round r runs the workloads starting at a different one each round (rotated by r-1), and within a
# workload the targets rotated by r-1 too: no target is always the first after a tpcb-like vacuum or
# always the last, and drift of the machine's load over a round hits every target alike over the rounds.
rotated() {  # OFFSET ITEM... : prints the items rotated left by OFFSET, one per line
  local offset=$1 n i
  shift
  n=$#
  local items=("$@")
  for ((i = 0; i < n; i++)); do echo "${items[(i + offset) % n]}"; done
}

results="$work/results.tsv"
: >"$results"
for ((round = 1; round <= rounds; round++)); do
  while read -r pool mode protocol clients; do
    if [[ $pool == session ]]; then targets=("${session_targets[@]}"); else targets=("${txn_targets[@]}"); fi
    ((${#targets[@]} > 0)) || continue
    while read -r target; do
      run_pgbench "$round" "$pool" "$target" "$mode" "$protocol" "$clients"
    done < <(rotated $((round - 1)) "${targets[@]}")
  done < <(rotated $((round - 1)) "${workloads[@]}")
done

# ---------------------------------------------------------------------------------------------------
pgbouncer_label="no PgBouncer"
((skip_pgbouncer)) || pgbouncer_label=$(pgbouncer_version)
[[ -z $odyssey_bin ]] || pgbouncer_label+=", $("$odyssey_bin" --version 2>/dev/null | head -n 1)"
machine="$(nproc) CPUs, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), $pgbouncer_label"
machine+=", pgmux $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)"
header="pgbench -T $duration, scale $scale, -j $threads, $rounds round(s); session pool $pool_size;"
header+=" transaction pool $txn_pool_size for $txn_clients clients; pgmux workers $pgmux_workers"
((rate == 0)) || header+="; throttled to $rate TPS (pgbench -R)"
{
  echo "$machine"
  echo
  echo "$header"
  echo
  report_table "$results" "$perf_stat" "$split"
} >"$work/report.md"
echo
cat "$work/report.md"
if [[ -n $out_file ]]; then
  cp "$work/report.md" "$out_file"
  cp "$results" "${out_file%.md}.tsv"
  log "wrote $out_file and ${out_file%.md}.tsv"
fi

# A failed run is shown in the table (rounds ok, notes) and makes the script exit 1.
failures=$(awk -F'\t' '$7 != 1' "$results" | wc -l)
if ((failures > 0)); then
  log "$failures pgbench run(s) failed (see the table)"
  exit 1
fi
