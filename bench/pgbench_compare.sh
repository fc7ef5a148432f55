#!/usr/bin/env bash
# pgbench through pgmux vs PgBouncer vs straight to PostgreSQL, in one run, on this machine: session
# mode, then transaction mode with -M prepared and -M simple. See bench/README.md. Everything it starts
# (a PostgreSQL 15 cluster on 35433-35435, pgmux on 36432 and 32434, PgBouncer on 36433 and 32435)
# lives in a temp dir and is stopped by pid when the script ends, however it ends.
set -euo pipefail
# Job control: pgmux and PgBouncer get their own process groups with SIGINT at its default (a plain
# background job would ignore it), and a Ctrl-C reaches only the foreground pgbench or this script.
set -m

usage() {
  cat <<'EOF'
usage: bench/pgbench_compare.sh [options]
  -T SECONDS          duration of each pgbench run (default 15)
  --clients "8 64"    client counts to measure
  --modes "select-only tpcb-like"
  --scale N           pgbench scale factor (default 10)
  --pool-size N       server connections per pool, for pgmux and PgBouncer alike (default 128: session
                      mode holds one per client, and pgmux splits the pool across its 2 workers, which
                      the kernel does not fill evenly, so each worker's half must cover every client)
  --threads N         pgbench -j (default 2)
  --pgmux-workers N   pgmux worker threads (default 2; PgBouncer has one: 1 compares CPU per transaction
                      thread for thread, 2 shows what the second core buys)
  --pgmux PATH        pgmux binary (default: $BUILD_DIR/proxy/pgmux, BUILD_DIR defaults to build)
  --skip-pgmux        measure only direct and PgBouncer
  --skip-pgbouncer    measure only direct and pgmux
  --skip-txn          skip the transaction-mode section (pgmux vs PgBouncer, -M prepared and simple)
  --txn-clients N     pgbench clients in the transaction-mode section (default 64)
  --txn-pool-size N   server connections per pool in the transaction-mode section (default 10)
  --txn-protocols "prepared simple"
                      pgbench -M values measured in the transaction-mode section
  --out FILE          also write the results as a Markdown table to FILE
  --keep              keep the temp dir (logs, configs, pgbench output) for inspection
EOF
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
PGBIN=/usr/lib/postgresql/15/bin

duration=15
clients_list="8 64"
modes="select-only tpcb-like"
scale=10
pool_size=128
threads=2
pgmux_workers=2
build_dir=${BUILD_DIR:-build}
[[ $build_dir == /* ]] || build_dir="$repo/$build_dir"
pgmux_bin="$build_dir/proxy/pgmux"
skip_pgmux=0
skip_pgbouncer=0
skip_txn=0
txn_clients=64
txn_pool_size=10
txn_protocols="prepared simple"
out_file=""
keep=0

while [[ $# -gt 0 ]]; do
  case $1 in
    -T) duration=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --pool-size) pool_size=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --pgmux-workers) pgmux_workers=$2; shift 2 ;;
    --pgmux) pgmux_bin=$2; shift 2 ;;
    --skip-pgmux) skip_pgmux=1; shift ;;
    --skip-pgbouncer) skip_pgbouncer=1; shift ;;
    --skip-txn) skip_txn=1; shift ;;
    --txn-clients) txn_clients=$2; shift 2 ;;
    --txn-pool-size) txn_pool_size=$2; shift 2 ;;
    --txn-protocols) txn_protocols=$2; shift 2 ;;
    --out) out_file=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pgbench_compare.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$duration" "$scale" "$pool_size" "$threads" "$txn_clients" "$txn_pool_size" $clients_list; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "pgbench_compare.sh: '$n' is not a positive integer" >&2; exit 2; }
done
for m in $modes; do
  [[ $m == select-only || $m == tpcb-like ]] || { echo "pgbench_compare.sh: unknown mode '$m'" >&2; exit 2; }
done
for m in $txn_protocols; do
  [[ $m == prepared || $m == simple || $m == extended ]] ||
    { echo "pgbench_compare.sh: unknown pgbench protocol '$m'" >&2; exit 2; }
done
if [[ -n $out_file && $out_file != /* ]]; then
  out_file="$PWD/$out_file"
fi

BASE_PORT=35433
PGMUX_PORT=36432
PGBOUNCER_PORT=36433
# The transaction-mode instances start after thousands of connections have come and gone: their ports
# sit below Linux's default ephemeral range (32768-60999), where no outgoing connection can hold them.
PGMUX_TX_PORT=32434
PGBOUNCER_TX_PORT=32435

log() { echo "[bench] $*" >&2; }
die() { echo "pgbench_compare.sh: error: $*" >&2; exit 1; }

[[ -x $PGBIN/pgbench && -x $PGBIN/psql ]] || die "PostgreSQL 15 client tools not found in $PGBIN"
if ((!skip_pgbouncer)); then
  command -v pgbouncer >/dev/null || die "pgbouncer not installed (scripts/install-deps.sh), or pass --skip-pgbouncer"
fi
if ((!skip_pgmux)); then
  [[ -x $pgmux_bin ]] || die "no pgmux binary at $pgmux_bin (scripts/build.sh), or pass --skip-pgmux"
fi
for port in $BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)) $PGMUX_PORT $PGBOUNCER_PORT \
  $PGMUX_TX_PORT $PGBOUNCER_TX_PORT; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is already in use"
  fi
done

work=$(mktemp -d /tmp/pgmux-bench.XXXXXX)
# PostgreSQL and PgBouncer run as the postgres OS user when we are root: they must reach the dir.
chmod 755 "$work"
cluster_dir="$work/cluster"
pgmux_pid=""
pgbouncer_pid=""
pgmux_tx_pid=""
pgbouncer_tx_pid=""

stop_pid() {  # PID SIGNAL NAME: signal, wait up to 10 s, then SIGKILL
  local pid=$1 sig=$2 name=$3 i
  [[ -n $pid ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not stop; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # trap handler
cleanup() {
  trap '' INT TERM
  stop_pid "$pgmux_pid" INT pgmux          # pgmux: SIGINT = stop now
  stop_pid "$pgbouncer_pid" TERM pgbouncer  # PgBouncer: SIGTERM = immediate shutdown
  stop_pid "$pgmux_tx_pid" INT pgmux
  stop_pid "$pgbouncer_tx_pid" TERM pgbouncer
  bash "$repo/tests/support/cluster.sh" stop "$cluster_dir" >/dev/null 2>&1 || true
  if ((keep)); then
    log "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Replaces the (background subshell) caller with COMMAND, run as the postgres OS user when we are
# root: no intermediate process, so $! is the server's own pid (runuser would fork and wait).
# Only ever call it as `as_pg_exec ... &`.
as_pg_exec() {
  if [[ $(id -u) -eq 0 ]]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    exec "$@"
  fi
}

# Waits until a SELECT 1 through 127.0.0.1:PORT succeeds (bounded), failing if PID died.
wait_ready() {  # NAME PORT PID LOG
  local name=$1 port=$2 pid=$3 logf=$4 i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited at startup; log:"$'\n'"$(tail -n 20 "$logf" 2>/dev/null)"
    if PGPASSWORD=app PGCONNECT_TIMEOUT=2 "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U app -d app \
      -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "$name did not answer on port $port within 30 s; log:"$'\n'"$(tail -n 20 "$logf" 2>/dev/null)"
}

# utime + stime of a whole process (all threads), in clock ticks.
cpu_ticks() {  # PID
  local stat
  stat=$(cat "/proc/$1/stat")
  # Fields after "(comm) ": state is 1st, so utime (field 14) is the 12th and stime the 13th.
  awk '{print $12 + $13}' <<<"${stat##*) }"
}

# ---------------------------------------------------------------------------------------------------
log "starting PostgreSQL 15 (primary + 2 standbys) in $cluster_dir on $BASE_PORT"
bash "$repo/tests/support/cluster.sh" start "$cluster_dir" "$BASE_PORT" >&2

direct=(-h 127.0.0.1 -p "$BASE_PORT" -U app)
export PGPASSWORD=app PGCONNECT_TIMEOUT=10
log "pgbench -i -s $scale"
"$PGBIN/pgbench" "${direct[@]}" -i -s "$scale" -q app >"$work/init.out" 2>&1 ||
  die "pgbench -i failed:"$'\n'"$(tail -n 20 "$work/init.out")"

# Starts pgmux with POOL_MODE and POOL_SIZE on PORT; its pid goes to started_pid (a global: `&` in a
# command substitution would run in a subshell and lose the child).
start_pgmux() {  # NAME PORT POOL_MODE POOL_SIZE
  local name=$1 port=$2 pool_mode=$3 size=$4
  cat >"$work/$name.json" <<JSON
{
  "listeners": [{"host": "127.0.0.1", "port": $port}],
  "workers": $pgmux_workers,
  "backends": [{"name": "primary", "host": "127.0.0.1", "port": $BASE_PORT}],
  "auth_method": "scram-sha-256",
  "users": [{"name": "app", "password": "app"}],
  "databases": [{"name": "app", "backends": ["primary"], "pool_mode": "$pool_mode", "pool_size": $size}],
  "logging": {"level": "warn"},
  "metrics_listen": ""
}
JSON
  log "starting $name ($pool_mode mode, pool $size) on $port"
  "$pgmux_bin" -c "$work/$name.json" >"$work/$name.log" 2>&1 &
  started_pid=$!
  wait_ready "$name" "$port" "$started_pid" "$work/$name.log"
}

# Starts PgBouncer with POOL_MODE and POOL_SIZE on PORT, in $work/NAME; its pid goes to started_pid.
start_pgbouncer() {  # NAME PORT POOL_MODE POOL_SIZE
  local name=$1 port=$2 pool_mode=$3 size=$4 dir="$work/$1" secret
  mkdir -p "$dir"
  # The userlist holds the SCRAM secret exactly as PostgreSQL stores it: PgBouncer then verifies the
  # client's proof itself and reuses the client's keys to log in to the server.
  secret=$(PGPASSWORD=postgres "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$BASE_PORT" -U postgres -d postgres \
    -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'") || die "could not read app's SCRAM secret"
  [[ $secret == SCRAM-SHA-256\$* ]] || secret=app
  printf '"app" "%s"\n' "$secret" >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=$BASE_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = $pool_mode
default_pool_size = $size
max_client_conn = 1000
server_tls_sslmode = disable
logfile = $dir/pgbouncer.log
log_connections = 0
log_disconnections = 0
INI
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$dir"  # PgBouncer refuses to run as root
  fi
  log "starting $name ($pool_mode mode, pool $size) on $port"
  as_pg_exec pgbouncer "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
  started_pid=$!
  wait_ready "$name" "$port" "$started_pid" "$dir/pgbouncer.log"
  [[ $(cat "/proc/$started_pid/comm") == pgbouncer ]] || die "pid $started_pid is not pgbouncer"
}

targets=(direct)
if ((!skip_pgmux)); then
  start_pgmux pgmux "$PGMUX_PORT" session "$pool_size"
  pgmux_pid=$started_pid
  targets+=(pgmux)
fi
if ((!skip_pgbouncer)); then
  start_pgbouncer pgbouncer "$PGBOUNCER_PORT" session "$pool_size"
  pgbouncer_pid=$started_pid
  targets+=(pgbouncer)
fi

target_port() {
  case $1 in
    direct) echo "$BASE_PORT" ;;
    pgmux) echo "$PGMUX_PORT" ;;
    pgbouncer) echo "$PGBOUNCER_PORT" ;;
    pgmux-tx) echo "$PGMUX_TX_PORT" ;;
    pgbouncer-tx) echo "$PGBOUNCER_TX_PORT" ;;
  esac
}
target_pid() {
  case $1 in
    direct) echo "" ;;
    pgmux) echo "$pgmux_pid" ;;
    pgbouncer) echo "$pgbouncer_pid" ;;
    pgmux-tx) echo "$pgmux_tx_pid" ;;
    pgbouncer-tx) echo "$pgbouncer_tx_pid" ;;
  esac
}

clk_tck=$(getconf CLK_TCK)
failures=0

# One pgbench run. Sets run_ok (1 = pgbench succeeded), run_tps, run_lat, run_cpu (proxy CPU us per
# transaction, "-" for direct), run_failed (pgbench's failed transactions), run_errors (server ERRORs
# pgbench printed) and run_aborted (clients pgbench aborted after an error).
run_pgbench() {  # TARGET MODE CLIENTS PROTOCOL OUTFILE
  local target=$1 mode=$2 clients=$3 protocol=$4 outf=$5 pid j before after txns
  if [[ $mode == tpcb-like ]]; then
    # What pgbench's own pre-run vacuum does, done directly so every target starts alike.
    "$PGBIN/psql" -X -q "${direct[@]}" -d app \
      -c 'VACUUM pgbench_branches' -c 'VACUUM pgbench_tellers' -c 'TRUNCATE pgbench_history' >/dev/null
  fi
  pid=$(target_pid "$target")
  j=$((threads < clients ? threads : clients))
  log "$target $mode -M $protocol, $clients clients, ${duration}s"
  before=0
  [[ -z $pid ]] || before=$(cpu_ticks "$pid")
  run_ok=1 run_tps="" run_lat="" run_cpu="-" run_failed="" run_errors=0 run_aborted=0
  if ! timeout $((duration + 120)) "$PGBIN/pgbench" -h 127.0.0.1 -p "$(target_port "$target")" -U app \
    -n -b "$mode" -M "$protocol" -c "$clients" -j "$j" -T "$duration" app >"$outf" 2>&1; then
    run_ok=0
  fi
  run_errors=$(grep -c 'ERROR:' "$outf" || true)
  run_aborted=$(grep -c 'aborted in command' "$outf" || true)
  txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$outf")
  run_tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$outf")
  run_lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$outf")
  run_failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$outf")
  [[ -n $run_failed ]] || run_failed=0
  if ((run_ok)); then
    [[ -n $txns && -n $run_tps && -n $run_lat && $txns -gt 0 ]] || die "could not read pgbench output $outf"
    if [[ -n $pid ]]; then
      after=$(cpu_ticks "$pid")
      run_cpu=$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$txns" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')
    fi
  else
    log "pgbench against $target failed ($run_errors errors):"$'\n'"$(grep -m 3 'ERROR:\|error:' "$outf" || tail -n 5 "$outf")"
  fi
}

# --- session mode ----------------------------------------------------------------------------------
results="$work/results.tsv"  # target mode clients tps latency_ms cpu_us_per_txn
: >"$results"
for mode in $modes; do
  for clients in $clients_list; do
    for target in "${targets[@]}"; do
      run_pgbench "$target" "$mode" "$clients" simple "$work/$target-$mode-$clients.out"
      # A failed run is reported as such in the table; the other runs still go ahead.
      if ((!run_ok)); then
        printf '%s\t%s\t%s\tfailed\t-\t-\n' "$target" "$mode" "$clients" >>"$results"
        failures=$((failures + 1))
        continue
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$clients" "$run_tps" "$run_lat" "$run_cpu" >>"$results"
    done
  done
done

# --- transaction mode ------------------------------------------------------------------------------
# pgmux and PgBouncer with a small pool shared by many clients, -M prepared (protocol-level prepared
# statements, which the pooler must carry across server connections) and -M simple.
txn_results="$work/txn_results.tsv"  # target mode protocol clients tps latency_ms cpu_us failed errors
: >"$txn_results"
expected_failures=0
if ((!skip_txn)) && ((!skip_pgmux || !skip_pgbouncer)); then
  # The session-mode proxies hold idle server connections and are done: stop them first.
  stop_pid "$pgmux_pid" INT pgmux
  pgmux_pid=""
  stop_pid "$pgbouncer_pid" TERM pgbouncer
  pgbouncer_pid=""
  txn_targets=()
  if ((!skip_pgmux)); then
    start_pgmux pgmux-tx "$PGMUX_TX_PORT" transaction "$txn_pool_size"
    pgmux_tx_pid=$started_pid
    txn_targets+=(pgmux-tx)
  fi
  if ((!skip_pgbouncer)); then
    start_pgbouncer pgbouncer-tx "$PGBOUNCER_TX_PORT" transaction "$txn_pool_size"
    pgbouncer_tx_pid=$started_pid
    txn_targets+=(pgbouncer-tx)
  fi
  for mode in $modes; do
    for protocol in $txn_protocols; do
      for target in "${txn_targets[@]}"; do
        run_pgbench "$target" "$mode" "$txn_clients" "$protocol" "$work/$target-$mode-$protocol.out"
        if ((!run_ok)); then
          printf '%s\t%s\t%s\t%s\tfailed: %s errors (%s/%s clients aborted)\t-\t-\t%s\t%s\n' "$target" \
            "$mode" "$protocol" "$txn_clients" "$run_errors" "$run_aborted" "$txn_clients" "$run_failed" \
            "$run_errors" >>"$txn_results"
          # PgBouncer before 1.21 cannot keep protocol-level prepared statements in transaction mode:
          # its -M prepared failures are shown in the table but do not fail the script.
          if [[ $target == pgbouncer-tx && $protocol == prepared ]]; then
            expected_failures=$((expected_failures + 1))
          else
            failures=$((failures + 1))
          fi
          continue
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$protocol" "$txn_clients" \
          "$run_tps" "$run_lat" "$run_cpu" "$run_failed" "$run_errors" >>"$txn_results"
      done
    done
  done
fi

# ---------------------------------------------------------------------------------------------------
# Ratios: this row's TPS over the direct / PgBouncer row of the same mode and client count, and its
# CPU per transaction over PgBouncer's.
report() {  # FORMAT: text | markdown
  awk -F'\t' -v fmt="$1" '
    { key = $2 SUBSEP $3; tps[$1, key] = $4; cpu[$1, key] = $6; row[NR] = $0 }
    function num(x) { return x != "" && x != "-" && x != "failed" }
    function ratio(a, b) { return (!num(a) || !num(b) || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    function fixed(x, digits) { return num(x) ? sprintf("%." digits "f", x) : x }
    END {
      h[1] = "target"; h[2] = "mode"; h[3] = "clients"; h[4] = "TPS"; h[5] = "avg lat ms"
      h[6] = "proxy CPU us/txn"; h[7] = "TPS/direct"; h[8] = "TPS/PgBouncer"; h[9] = "CPU/PgBouncer"
      if (fmt == "markdown") {
        line = "|"; sep = "|"
        for (i = 1; i <= 9; i++) { line = line " " h[i] " |"; sep = sep (i <= 3 ? "---|" : "---:|") }
        print line; print sep
      } else {
        printf "%-10s %-12s %7s %10s %10s %16s %10s %13s %13s\n", h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
      }
      for (r = 1; r <= NR; r++) {
        split(row[r], f, "\t"); key = f[2] SUBSEP f[3]
        vd = ratio(f[4], tps["direct", key]); vb = ratio(f[4], tps["pgbouncer", key])
        cb = ratio(f[6], cpu["pgbouncer", key])
        if (f[1] == "direct") vd = "-"
        if (f[1] == "pgbouncer") { vb = "-"; cb = "-" }
        tp = fixed(f[4], 0); lt = fixed(f[5], 3)
        if (fmt == "markdown")
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], tp, lt, f[6], vd, vb, cb
        else
          printf "%-10s %-12s %7s %10s %10s %16s %10s %13s %13s\n", f[1], f[2], f[3], tp, lt, f[6], vd, vb, cb
      }
    }' "$results"
}

# Transaction-mode table. Ratios on pgmux rows only: its TPS and CPU per transaction over PgBouncer's
# with the same workload and protocol ("-" when PgBouncer's run failed).
txn_report() {  # FORMAT: text | markdown
  awk -F'\t' -v fmt="$1" '
    { key = $2 SUBSEP $3; tps[$1, key] = $5; cpu[$1, key] = $7; row[NR] = $0 }
    function num(x) { return x ~ /^[0-9.]+$/ }
    function ratio(a, b) { return (!num(a) || !num(b) || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    function fixed(x, digits) { return num(x) ? sprintf("%." digits "f", x) : x }
    END {
      h[1] = "target"; h[2] = "mode"; h[3] = "-M"; h[4] = "clients"; h[5] = "TPS"; h[6] = "avg lat ms"
      h[7] = "proxy CPU us/txn"; h[8] = "failed txns"; h[9] = "TPS pgmux/PgBouncer"; h[10] = "CPU pgmux/PgBouncer"
      tf = "%-13s %-12s %-9s %7s %40s %10s %16s %11s %19s %19s\n"
      if (fmt == "markdown") {
        line = "|"; sep = "|"
        for (i = 1; i <= 10; i++) { line = line " " h[i] " |"; sep = sep (i <= 4 ? "---|" : "---:|") }
        print line; print sep
      } else {
        printf tf, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10]
      }
      for (r = 1; r <= NR; r++) {
        split(row[r], f, "\t"); key = f[2] SUBSEP f[3]
        vb = "-"; cb = "-"
        if (f[1] == "pgmux-tx") { vb = ratio(f[5], tps["pgbouncer-tx", key]); cb = ratio(f[7], cpu["pgbouncer-tx", key]) }
        tp = fixed(f[5], 0); lt = fixed(f[6], 3)
        if (fmt == "markdown")
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], tp, lt, f[7], f[8], vb, cb
        else
          printf tf, f[1], f[2], f[3], f[4], tp, lt, f[7], f[8], vb, cb
      }
    }' "$txn_results"
}

session_header="session mode: pgbench -T $duration, scale $scale, pool size $pool_size, pgbench -j $threads, pgmux workers $pgmux_workers"
txn_header="transaction mode: pgbench -T $duration, scale $scale, pool size $txn_pool_size,"
txn_header+=" $txn_clients clients, pgbench -j $((threads < txn_clients ? threads : txn_clients))"
machine="$(nproc) CPUs, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), $(pgbouncer --version 2>/dev/null | head -n 1 || echo 'no PgBouncer')"
echo
echo "$machine"
echo "$session_header"
report text
if [[ -s $txn_results ]]; then
  echo
  echo "$txn_header"
  txn_report text
fi
if [[ -n $out_file ]]; then
  {
    echo "$machine, $(date -u +%Y-%m-%d)"
    echo
    echo "$session_header"
    echo
    report markdown
    if [[ -s $txn_results ]]; then
      echo
      echo "$txn_header"
      echo
      txn_report markdown
    fi
  } >"$out_file"
  log "wrote $out_file"
fi
if ((expected_failures > 0)); then
  log "$expected_failures PgBouncer -M prepared run(s) failed in transaction mode, as expected for PgBouncer" \
    "without protocol-level prepared statement support (see the table)"
fi
if ((failures > 0)); then
  log "$failures pgbench run(s) failed (see the table)"
  exit 1
fi
