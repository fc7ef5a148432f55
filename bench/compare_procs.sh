# shellcheck shell=bash disable=SC2154  # sourced: the variables named below come from the caller
# Sourced by bench/pgbench_compare.sh and bench/callgrind_per_txn.sh: starting, watching and stopping the
# processes they measure. Expects $work, $repo, $PGBIN, $CLUSTER_PORT, $pgmux_bin, $pgbouncer_bin, $relay_bin,
# $pgmux_workers and $pgbouncer_prepared (the last three as needed), $keep, and the functions log and die.
# Every start_* function leaves the new process's pid in started_pid (a global: `&` inside a command
# substitution would run in a subshell and lose the child); the caller records it in pid_of.

declare -A pid_of=()  # what to stop at the end: name -> pid (names ending in pgbouncer get SIGTERM)

# A fresh temp dir for everything, and traps that stop every process in pid_of and the cluster, then remove
# it (unless $keep), however the script ends. PostgreSQL and PgBouncer run as the postgres OS user when we
# are root: they must reach the dir.
setup_workdir() {  # PREFIX
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$work"
  cluster_dir="$work/cluster"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# shellcheck disable=SC2317  # trap handler
cleanup() {
  trap '' INT TERM
  local key
  for key in "${!pid_of[@]}"; do
    # pgmux: SIGINT = stop now; PgBouncer: SIGTERM = immediate shutdown; the relay stops on either.
    if [[ $key == *pgbouncer ]]; then
      stop_pid "${pid_of[$key]}" TERM "$key"
    else
      stop_pid "${pid_of[$key]}" INT "$key"
    fi
  done
  bash "$repo/tests/support/cluster.sh" stop "$cluster_dir" >/dev/null 2>&1 || true
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
}

# The PostgreSQL 15 test cluster (primary + 2 standbys) on $CLUSTER_PORT, initialised for pgbench at SCALE.
start_cluster() {  # SCALE
  log "starting PostgreSQL 15 (primary + 2 standbys) in $cluster_dir on $CLUSTER_PORT"
  bash "$repo/tests/support/cluster.sh" start "$cluster_dir" "$CLUSTER_PORT" >&2
  log "pgbench -i -s $1"
  PGPASSWORD=app "$PGBIN/pgbench" -h 127.0.0.1 -p "$CLUSTER_PORT" -U app -i -s "$1" -q app >"$work/init.out" 2>&1 ||
    die "pgbench -i failed:"$'\n'"$(tail -n 20 "$work/init.out")"
}

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

# Waits until a SELECT 1 through 127.0.0.1:PORT succeeds (bounded: $ready_tries times 0.2 s, default 150),
# failing if PID died.
wait_ready() {  # NAME PORT PID LOG
  local name=$1 port=$2 pid=$3 logf=$4 i
  for ((i = 0; i < ${ready_tries:-150}; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited at startup; log:"$'\n'"$(tail -n 20 "$logf" 2>/dev/null)"
    if PGPASSWORD=app PGCONNECT_TIMEOUT=2 "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U app -d app \
      -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "$name did not answer on port $port in time; log:"$'\n'"$(tail -n 20 "$logf" 2>/dev/null)"
}

# utime + stime of a whole process (all threads), in clock ticks.
cpu_ticks() {  # PID
  local stat
  stat=$(cat "/proc/$1/stat")
  # Fields after "(comm) ": state is 1st, so utime (field 14) is the 12th and stime the 13th.
  awk '{print $12 + $13}' <<<"${stat##*) }"
}

# pgmux runs under the command in the array pgmux_wrapper when it is set (bench/callgrind_per_txn.sh: valgrind).
# With "split", the database has both standbys in its read set too (roles found by pgmux's health checks,
# as the postgres user; routing left at its defaults).
start_pgmux() {  # NAME PORT POOL_MODE POOL_SIZE [split]
  local name=$1 port=$2 pool_mode=$3 size=$4 read_set='"primary"' users='{"name": "app", "password": "app"}' extra=""
  local backends="{\"name\": \"primary\", \"host\": \"127.0.0.1\", \"port\": $CLUSTER_PORT}"
  if [[ ${5:-} == split ]]; then
    read_set='"primary", "standby1", "standby2"'
    backends+=", {\"name\": \"standby1\", \"host\": \"127.0.0.1\", \"port\": $((CLUSTER_PORT + 1))}"
    backends+=", {\"name\": \"standby2\", \"host\": \"127.0.0.1\", \"port\": $((CLUSTER_PORT + 2))}"
    users+=', {"name": "postgres", "password": "postgres"}'
    extra='"health_check": {"user": "postgres"},'
  fi
  cat >"$work/$name.json" <<JSON
{
  "listeners": [{"host": "127.0.0.1", "port": $port}],
  "workers": $pgmux_workers,
  "backends": [$backends],
  "auth_method": "scram-sha-256",
  "users": [$users],
  "databases": [{"name": "app", "backends": [$read_set], "pool_mode": "$pool_mode", "pool_size": $size}],
  $extra
  "logging": {"level": "warn"},
  "metrics_listen": ""
}
JSON
  log "starting $name ($pool_mode mode, pool $size) on $port"
  ${pgmux_wrapper[@]+"${pgmux_wrapper[@]}"} "$pgmux_bin" -c "$work/$name.json" >"$work/$name.log" 2>&1 &
  started_pid=$!
  wait_ready "$name" "$port" "$started_pid" "$work/$name.log"
}

# PgBouncer with POOL_MODE and POOL_SIZE on PORT, in $work/NAME (under the command in the array
# pgbouncer_wrapper when it is set). max_prepared_statements lets transaction
# pooling carry pgbench -M prepared (PgBouncer 1.21+; older versions ignore the unknown setting with a
# warning and fail those runs, which the table then shows). A client waiting for a server longer than the
# run lasts means the run is stuck: query_wait_timeout ends it then rather than after the default 120 s.
start_pgbouncer() {  # NAME PORT POOL_MODE POOL_SIZE
  local name=$1 port=$2 pool_mode=$3 size=$4 dir="$work/$1" secret
  mkdir -p "$dir"
  # The userlist holds the SCRAM secret exactly as PostgreSQL stores it: PgBouncer then verifies the
  # client's proof itself and reuses the client's keys to log in to the server.
  secret=$(PGPASSWORD=postgres "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$CLUSTER_PORT" -U postgres -d postgres \
    -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'") || die "could not read app's SCRAM secret"
  [[ $secret == SCRAM-SHA-256\$* ]] || secret=app
  printf '"app" "%s"\n' "$secret" >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=$CLUSTER_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = $pool_mode
default_pool_size = $size
max_client_conn = 1000
max_prepared_statements = $pgbouncer_prepared
query_wait_timeout = $((duration + 20))
server_tls_sslmode = disable
logfile = $dir/pgbouncer.log
log_connections = 0
log_disconnections = 0
INI
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$dir"  # PgBouncer refuses to run as root
  fi
  log "starting $name ($pool_mode mode, pool $size) on $port"
  as_pg_exec ${pgbouncer_wrapper[@]+"${pgbouncer_wrapper[@]}"} "$pgbouncer_bin" "$dir/pgbouncer.ini" \
    >"$dir/stdout.log" 2>&1 &
  started_pid=$!
  wait_ready "$name" "$port" "$started_pid" "$dir/pgbouncer.log"
  # Under a wrapper (valgrind) the process has the wrapper's name.
  [[ -n ${pgbouncer_wrapper[*]+x} || $(cat "/proc/$started_pid/comm") == pgbouncer ]] ||
    die "pid $started_pid is not pgbouncer"
}

# Odyssey (bench/README.md: built from source) with POOL_MODE and POOL_SIZE on PORT, in $work/NAME: SCRAM to the
# clients, app/app to the server, $pgmux_workers worker threads (its accepting "system" thread, resolver and logger
# threads come on top, and count in its CPU). Transaction pooling keeps prepared statements
# (pool_reserve_prepared_statement, its counterpart of PgBouncer's max_prepared_statements); Odyssey turns that off in
# session pooling, where every server keeps its client's statements anyway. pool_discard: DISCARD ALL when a session's
# server goes back, as pgmux and PgBouncer reset it; in transaction pooling off (Odyssey would otherwise swap in its own
# lighter reset).
start_odyssey() {  # NAME PORT POOL_MODE POOL_SIZE
  local name=$1 port=$2 pool_mode=$3 size=$4 dir="$work/$1" discard=yes prepared=no
  [[ $pool_mode == session ]] || { discard=no; prepared=yes; }
  mkdir -p "$dir"
  cat >"$dir/odyssey.conf" <<CONF
daemonize no
pid_file "$dir/odyssey.pid"
locks_dir "$dir"
log_file "$dir/odyssey.log"
log_format "%p %t %l [%i %s] (%c) %m\n"
log_to_stdout no
log_session no
log_query no
log_stats no
workers $pgmux_workers
resolvers 1
enable_online_restart no
nodelay yes
client_max 1000
listen {
	host "127.0.0.1"
	port $port
	tls "disable"
}
storage "primary" {
	type "remote"
	host "127.0.0.1"
	port $CLUSTER_PORT
	tls "disable"
}
database "app" {
	user "app" {
		authentication "scram-sha-256"
		password "app"
		storage "primary"
		storage_db "app"
		storage_user "app"
		storage_password "app"
		pool "$pool_mode"
		pool_size $size
		pool_discard $discard
		pool_reserve_prepared_statement $prepared
		pool_timeout $(((duration + 20) * 1000))
		pool_rollback yes
	}
}
CONF
  log "starting $name ($pool_mode mode, pool $size) on $port"
  "$odyssey_bin" "$dir/odyssey.conf" >"$dir/stdout.log" 2>&1 &
  started_pid=$!
  wait_ready "$name" "$port" "$started_pid" "$dir/odyssey.log"
}

start_relay() {  # NAME PORT
  log "starting $1 (bare relay) on $2"
  "$relay_bin" "$2" "$CLUSTER_PORT" >"$work/$1.log" 2>&1 &
  started_pid=$!
  wait_ready "$1" "$2" "$started_pid" "$work/$1.log"
}

# The first line of `BIN --version`, e.g. "PgBouncer 1.25.2".
pgbouncer_version() {
  "$pgbouncer_bin" --version 2>/dev/null | head -n 1 || echo 'PgBouncer (version unknown)'
}
