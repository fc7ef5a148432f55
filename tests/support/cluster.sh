#!/usr/bin/env bash
# Local PostgreSQL 15 test bed: one primary and two streaming hot standbys on 127.0.0.1.
#
#   cluster.sh start  DIR BASEPORT   primary on BASEPORT, standbys on BASEPORT+1 and BASEPORT+2
#   cluster.sh stop   DIR            fast shutdown of all nodes (by the pids in postmaster.pid); idempotent
#   cluster.sh status DIR
#   cluster.sh stop-node  DIR NODE   pg_ctl stop -m fast for one node (primary|standby1|standby2)
#   cluster.sh start-node DIR NODE   start one node again; for the primary, also waits for both standbys
#   cluster.sh wait-streaming DIR    wait until the primary reports 2 streaming standbys
#   cluster.sh rejoin DIR NODE NEW   fast stop NODE (a former primary) and start it as a standby of node NEW
#   cluster.sh follow DIR NODE NEW   repoint standby NODE at node NEW (primary_conninfo, reloaded: no restart)
#
# Roles: postgres/postgres (superuser), app/app (owns database app), md5user/md5user (md5 secret).
# Runs the server binaries as the `postgres` OS user when invoked as root.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
NODES=(primary standby1 standby2)
STREAM_TIMEOUT=${CLUSTER_STREAM_TIMEOUT:-60}

die() { echo "cluster.sh: error: $*" >&2; exit 1; }

# Run a command as the postgres OS user when we are root (PostgreSQL refuses to run as root).
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

node_port() {  # DIR NODE
  local base
  base=$(cat "$1/baseport" 2>/dev/null) || die "$1 has no baseport file (was it created by 'start'?)"
  case $2 in
    primary) echo "$base" ;;
    standby1) echo $((base + 1)) ;;
    standby2) echo $((base + 2)) ;;
    *) die "unknown node '$2' (primary|standby1|standby2)" ;;
  esac
}

# Prints the postmaster pid of a node if that postmaster is alive, else nothing.
node_pid() {  # DIR NODE
  local pidfile="$1/$2/postmaster.pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  # Only report a pid that really is a postgres process (the file may be stale after a crash).
  if kill -0 "$pid" 2>/dev/null && grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
    echo "$pid"
  fi
}

psql_local() {  # DIR PORT SQL...  (trust over the unix socket in DIR)
  local dir=$1 port=$2
  shift 2
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}

wait_streaming() {  # DIR
  local dir=$1 port n deadline
  port=$(node_port "$dir" primary)
  deadline=$((SECONDS + STREAM_TIMEOUT))
  while :; do
    n=$(psql_local "$dir" "$port" -At -c \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo 0)
    [[ $n == 2 ]] && return 0
    ((SECONDS < deadline)) || die "standbys not streaming after ${STREAM_TIMEOUT}s (have $n); see $dir/*.log"
    sleep 0.2
  done
}

pg_ctl_start() {  # DIR NODE
  local dir=$1 node=$2
  as_pg "$PGBIN/pg_ctl" start -D "$dir/$node" -l "$dir/$node.log" -w -t 60 >/dev/null ||
    die "$node failed to start; log: $dir/$node.log"$'\n'"$(tail -n 20 "$dir/$node.log" 2>/dev/null)"
}

cmd_start() {
  local dir=$1 base=$2
  [[ $base =~ ^[0-9]+$ ]] && ((base > 1023 && base < 65533)) || die "bad BASEPORT '$base'"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local node
  for node in "${NODES[@]}"; do
    [[ -z $(node_pid "$dir" "$node") ]] || die "a cluster is already running in $dir ($node); stop it first"
  done
  # Fresh data directories every time: tests must not depend on leftovers.
  rm -rf "${dir:?}/primary" "$dir/standby1" "$dir/standby2" "$dir"/*.log "$dir/baseport" "$dir/pwfile"
  echo "$base" >"$dir/baseport"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$dir"
  fi

  local p=$base s1=$((base + 1)) s2=$((base + 2)) port
  for port in $p $s1 $s2; do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is already in use"
    fi
  done

  echo postgres >"$dir/pwfile"
  [[ $(id -u) -ne 0 ]] || chown postgres:postgres "$dir/pwfile"
  as_pg "$PGBIN/initdb" -D "$dir/primary" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    die "initdb failed; log: $dir/initdb.log"
  rm -f "$dir/pwfile"

  cat >>"$dir/primary/postgresql.conf" <<EOF

# --- pgmux test bed ---
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$dir'
password_encryption = 'scram-sha-256'
max_connections = 300
wal_level = replica
hot_standby = on
max_wal_senders = 10
max_replication_slots = 10
max_prepared_transactions = 10  # two-phase commit through pgmux (standbys copy this: they need as many)
wal_keep_size = '256MB'
shared_buffers = '128MB'
# Tests only: durability is traded for speed. Never use these settings for real data.
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_line_prefix = '%m [%p] %u@%d '
EOF

  # Trust only on the unix socket (setup); md5user's line precedes the generic scram line.
  cat >"$dir/primary/pg_hba.conf" <<EOF
local   all          all                      trust
local   replication  all                      trust
host    all          md5user   127.0.0.1/32   md5
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
EOF

  pg_ctl_start "$dir" primary
  psql_local "$dir" "$p" >/dev/null <<'EOF' || die "role/database setup failed"
CREATE ROLE app LOGIN PASSWORD 'app';
CREATE DATABASE app OWNER app;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5user';
RESET password_encryption;
GRANT ALL ON DATABASE app TO md5user;
SELECT pg_create_physical_replication_slot('standby1');
SELECT pg_create_physical_replication_slot('standby2');
EOF
  psql_local "$dir" "$p" -d app -c "GRANT ALL ON SCHEMA public TO md5user" >/dev/null ||
    die "schema grant failed"

  local n sp
  for n in 1 2; do
    sp=$((base + n))
    # -R writes primary_conninfo (unix socket, trust) and standby.signal; -S uses the slot.
    as_pg "$PGBIN/pg_basebackup" -h "$dir" -p "$p" -U postgres -D "$dir/standby$n" -R -S "standby$n" \
      -X stream -c fast >"$dir/basebackup$n.log" 2>&1 ||
      die "pg_basebackup for standby$n failed; log: $dir/basebackup$n.log"
    printf "\n# --- standby%s ---\nport = %s\ncluster_name = 'standby%s'\n" "$n" "$sp" "$n" \
      >>"$dir/standby$n/postgresql.conf"
    pg_ctl_start "$dir" "standby$n"
  done
  wait_streaming "$dir"
  echo "cluster up in $dir: primary 127.0.0.1:$p, standbys 127.0.0.1:$s1, 127.0.0.1:$s2"
}

stop_pid() {  # DIR NODE PID: SIGINT = fast shutdown; bounded wait, then SIGQUIT (immediate)
  local dir=$1 node=$2 pid=$3 i
  kill -INT "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "cluster.sh: $node (pid $pid) did not stop in 30s; sending SIGQUIT" >&2
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "$node (pid $pid) in $dir would not stop"
}

cmd_stop() {
  local dir=$1 node pid
  [[ -d $dir ]] || return 0
  # Standbys first so they do not spin reconnecting to a stopped primary.
  for node in standby2 standby1 primary; do
    pid=$(node_pid "$dir" "$node")
    [[ -z $pid ]] || stop_pid "$dir" "$node" "$pid"
  done
  echo "cluster in $dir stopped"
}

cmd_status() {
  local dir=$1 node pid rc=0
  [[ -f $dir/baseport ]] || { echo "no cluster in $dir"; return 1; }
  for node in "${NODES[@]}"; do
    pid=$(node_pid "$dir" "$node")
    if [[ -n $pid ]]; then
      echo "$node: running, pid $pid, port $(node_port "$dir" "$node")"
    else
      echo "$node: stopped"
      rc=1
    fi
  done
  if [[ -n $(node_pid "$dir" primary) ]]; then
    psql_local "$dir" "$(node_port "$dir" primary)" -At -F ' ' -c \
      "SELECT 'replication:', application_name, state FROM pg_stat_replication ORDER BY 2" || rc=1
  fi
  return $rc
}

cmd_stop_node() {  # DIR NODE [MODE: fast (default) or immediate, a crash's way out]
  local dir=$1 node=$2 mode=${3:-fast}
  [[ $mode == fast || $mode == immediate ]] || die "stop-node: unknown mode $mode"
  node_port "$dir" "$node" >/dev/null
  [[ -n $(node_pid "$dir" "$node") ]] || return 0
  as_pg "$PGBIN/pg_ctl" stop -D "$dir/$node" -m "$mode" -w -t 30 >/dev/null || die "pg_ctl stop $node failed"
}

cmd_start_node() {
  local dir=$1 node=$2
  node_port "$dir" "$node" >/dev/null
  [[ -z $(node_pid "$dir" "$node") ]] || return 0
  pg_ctl_start "$dir" "$node"
  [[ $node != primary ]] || wait_streaming "$dir"
}

# Replication from node NEW, by unix socket and trust; no slot (the new primary has none; wal_keep_size covers).
standby_of() {  # DIR NODE NEW
  printf "primary_conninfo = 'host=%s port=%s user=postgres application_name=%s'\nprimary_slot_name = ''\n" \
    "$1" "$(node_port "$1" "$3")" "$2"
}

# A clean switchover's old primary: its fast shutdown wrote a final checkpoint its standbys received, so it can
# follow the promoted standby's new timeline without pg_rewind (recovery_target_timeline is 'latest').
cmd_rejoin() {
  local dir=$1 node=$2 new=$3
  node_port "$dir" "$new" >/dev/null
  cmd_stop_node "$dir" "$node"
  standby_of "$dir" "$node" "$new" | as_pg tee -a "$dir/$node/postgresql.auto.conf" >/dev/null
  as_pg touch "$dir/$node/standby.signal"
  pg_ctl_start "$dir" "$node"
}

cmd_follow() {
  local dir=$1 node=$2 new=$3 conninfo
  conninfo="host=$dir port=$(node_port "$dir" "$new") user=postgres application_name=$node"
  psql_local "$dir" "$(node_port "$dir" "$node")" >/dev/null <<EOF || die "repointing $node at $new failed"
ALTER SYSTEM SET primary_conninfo = '$conninfo';
ALTER SYSTEM SET primary_slot_name = '';
SELECT pg_reload_conf();
EOF
}

usage() {
  echo "usage: cluster.sh start DIR BASEPORT | stop DIR | status DIR | stop-node DIR NODE [fast|immediate] |" \
    "start-node DIR NODE | wait-streaming DIR | rejoin DIR NODE NEW | follow DIR NODE NEW" >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
cmd=$1
dir=${2%/}
case $cmd in
  start) [[ $# -eq 3 ]] || usage; cmd_start "$dir" "$3" ;;
  stop) cmd_stop "$dir" ;;
  status) cmd_status "$dir" ;;
  stop-node) [[ $# -eq 3 || $# -eq 4 ]] || usage; cmd_stop_node "$dir" "$3" "${4:-fast}" ;;
  start-node) [[ $# -eq 3 ]] || usage; cmd_start_node "$dir" "$3" ;;
  wait-streaming) wait_streaming "$dir" ;;
  rejoin) [[ $# -eq 4 ]] || usage; cmd_rejoin "$dir" "$3" "$4" ;;
  follow) [[ $# -eq 4 ]] || usage; cmd_follow "$dir" "$3" "$4" ;;
  *) usage ;;
esac
