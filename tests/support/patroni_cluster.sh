#!/usr/bin/env bash
# A Patroni-managed PostgreSQL 15 pair on 127.0.0.1, with one etcd member as the DCS (Debian's `patroni` and
# `etcd-server`): the test bed for topology.source = patroni.
#
#   patroni_cluster.sh start DIR BASEPORT  etcd on BASEPORT+20 (peer +21); node1 and node2: PostgreSQL on
#                                          BASEPORT and BASEPORT+1, Patroni's REST API on BASEPORT+10 and +11.
#                                          Waits for a leader and a streaming replica, then creates the roles.
#   patroni_cluster.sh stop DIR            stops both Patroni daemons (and their PostgreSQL), then etcd; by pid
#   patroni_cluster.sh leader DIR          prints the leader's name (from Patroni's /cluster)
#   patroni_cluster.sh wait-replica DIR    waits until the non-leader member streams from the leader
#   patroni_cluster.sh available           exit 0 when patroni and etcd are installed
#
# Roles: postgres/postgres (superuser), app/app (owns database app). Patroni's REST API asks patroni/patroni for
# its unsafe endpoints (POST /switchover). Patroni and PostgreSQL run as the
# `postgres` OS user when invoked as root. Patroni's own settings: ttl 20 s, loop_wait 1 s.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PATRONI=${PATRONI:-/usr/bin/patroni}
ETCD=${ETCD:-/usr/bin/etcd}
WAIT_TIMEOUT=${PATRONI_WAIT_TIMEOUT:-90}
SCOPE=pgmux-test

die() { echo "patroni_cluster.sh: error: $*" >&2; exit 1; }

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

base_of() { cat "$1/baseport" 2>/dev/null || die "$1 has no baseport file (was it created by 'start'?)"; }

write_node_config() {  # DIR BASE NAME INDEX
  local dir=$1 base=$2 name=$3 index=$4
  local pg_port=$((base + index)) rest_port=$((base + 10 + index))
  cat >"$dir/$name.yml" <<EOF
scope: $SCOPE
name: $name
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest_port
  connect_address: 127.0.0.1:$rest_port
  authentication:
    username: patroni
    password: patroni
etcd3:
  hosts: 127.0.0.1:$((base + 20))
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 16777216
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 200
  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $dir/$name
  bin_dir: $PGBIN
  pgpass: $dir/$name.pgpass
  authentication:
    replication:
      username: replicator
      password: replicator
    superuser:
      username: postgres
      password: postgres
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: '$dir'
    password_encryption: scram-sha-256
EOF
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Starts a daemon in the background as the postgres OS user; PIDFILE gets the daemon's own pid (not runuser's,
# which would not pass a signal on), so stop and the tests signal the process itself.
start_daemon() {  # PIDFILE LOG COMMAND...
  local pidfile=$1 log=$2
  shift 2
  rm -f "$pidfile"
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$log" 2>&1 &
  else
    bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$log" 2>&1 &
  fi
  for _ in $(seq 1 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  die "could not start $1"
}

start_etcd() {  # DIR BASE
  local dir=$1 base=$2
  local client="http://127.0.0.1:$((base + 20))" peer="http://127.0.0.1:$((base + 21))"
  mkdir -p "$dir/etcd"
  chown postgres "$dir/etcd" 2>/dev/null || true
  chmod 700 "$dir/etcd"
  start_daemon "$dir/etcd.pid" "$dir/etcd.log" "$ETCD" --name e1 --data-dir "$dir/etcd" \
    --listen-client-urls "$client" --advertise-client-urls "$client" --listen-peer-urls "$peer" \
    --initial-advertise-peer-urls "$peer" --initial-cluster "e1=$peer" --enable-v2=false
  local deadline=$((SECONDS + 30))
  until curl -fsS "$client/health" 2>/dev/null | grep -q '"health":"true"'; do
    ((SECONDS < deadline)) || die "etcd did not become healthy; log: $dir/etcd.log"$'\n'"$(tail -n 20 "$dir/etcd.log")"
    sleep 0.2
  done
}

start_node() {  # DIR NAME
  local dir=$1 name=$2
  start_daemon "$dir/$name.pid" "$dir/$name.log" "$PATRONI" "$dir/$name.yml"
}

cluster_json() {  # DIR: Patroni's /cluster from whichever node answers
  local base
  base=$(base_of "$1")
  curl -fsS --max-time 2 "http://127.0.0.1:$((base + 10))/cluster" 2>/dev/null ||
    curl -fsS --max-time 2 "http://127.0.0.1:$((base + 11))/cluster" 2>/dev/null
}

cmd_leader() {
  cluster_json "$1" | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
print(next(m["name"] for m in members if m["role"] == "leader"))'
}

cmd_wait_replica() {  # DIR: one leader running, one replica streaming (state "streaming" or "running")
  local dir=$1 deadline=$((SECONDS + WAIT_TIMEOUT)) json
  while :; do
    json=$(cluster_json "$dir" || true)
    if [[ -n $json ]] && python3 -c '
import json, sys
members = json.loads(sys.argv[1])["members"]
leaders = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
replicas = [m for m in members if m["role"] != "leader" and m["state"] in ("streaming", "running")]
sys.exit(0 if len(leaders) == 1 and len(replicas) == 1 else 1)' "$json"; then
      local port leader
      leader=$(cmd_leader "$dir")
      port=$(($(base_of "$dir") + ${leader#node} - 1))
      local n
      n=$(as_pg "$PGBIN/psql" -X -At -h "$dir" -p "$port" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo 0)
      [[ $n == 1 ]] && return 0
    fi
    ((SECONDS < deadline)) ||
      die "no leader with a streaming replica after ${WAIT_TIMEOUT}s: ${json:-no answer}; logs in $dir"
    sleep 0.3
  done
}

cmd_start() {  # DIR BASEPORT
  local dir=$1 base=$2
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ -x $PATRONI && -x $ETCD ]] || die "patroni or etcd is not installed (apt-get install patroni etcd-server)"
  echo "$base" >"$dir/baseport"
  chown postgres "$dir" 2>/dev/null || true
  start_etcd "$dir" "$base"
  write_node_config "$dir" "$base" node1 0
  write_node_config "$dir" "$base" node2 1
  start_node "$dir" node1
  # node1 bootstraps first, so the pair's roles are predictable for the first act of a test.
  local deadline=$((SECONDS + WAIT_TIMEOUT))
  until [[ $(cmd_leader "$dir" 2>/dev/null || true) == node1 ]]; do
    ((SECONDS < deadline)) ||
      die "node1 did not become leader; log: $dir/node1.log"$'\n'"$(tail -n 30 "$dir/node1.log")"
    sleep 0.3
  done
  start_node "$dir" node2
  cmd_wait_replica "$dir"
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$base" -U postgres -d postgres <<'SQL'
ALTER ROLE postgres PASSWORD 'postgres';
CREATE ROLE app LOGIN PASSWORD 'app';
CREATE DATABASE app OWNER app;
SQL
}

stop_pidfile() {  # FILE: SIGTERM, bounded wait, then SIGKILL; only the pid we started
  local file=$1 pid
  pid=$(cat "$file" 2>/dev/null || true)
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do pid_alive "$pid" || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_postgres_of() {  # DIR NAME: a postmaster Patroni left behind (its daemon was killed)
  local pidfile="$1/$2/postmaster.pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && grep -q postgres "/proc/$pid/comm" 2>/dev/null || return 0
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -QUIT "$pid" 2>/dev/null || true
}

cmd_stop() {  # DIR
  local dir=$1
  stop_pidfile "$dir/node1.pid"
  stop_pidfile "$dir/node2.pid"
  stop_postgres_of "$dir" node1
  stop_postgres_of "$dir" node2
  stop_pidfile "$dir/etcd.pid"
}

case ${1:-} in
  start) [[ $# -eq 3 ]] || die "usage: start DIR BASEPORT"; cmd_start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || die "usage: stop DIR"; cmd_stop "$2" ;;
  leader) cmd_leader "$2" ;;
  wait-replica) cmd_wait_replica "$2" ;;
  available) [[ -x $PATRONI && -x $ETCD ]] ;;
  *) die "usage: patroni_cluster.sh start|stop|leader|wait-replica|available ..." ;;
esac
