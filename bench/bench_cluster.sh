# Sourced by bench scripts that need the PostgreSQL test cluster (tests/support/cluster.sh).
#
#   bench_cluster REPO DEFAULT_BASEPORT NAME
#
# With $baseport already set (the script's --baseport), uses the cluster running there. Otherwise starts one in
# /tmp/pgmux-NAME.XXXXXX on DEFAULT_BASEPORT (+1, +2), sets $baseport, and stops it (by pid, via cluster.sh stop)
# and removes the directory when the script exits, however it ends.

bench_cluster_work=""

bench_cluster_cleanup() {
  if [[ -n $bench_cluster_work ]]; then
    bash "$bench_cluster_repo/tests/support/cluster.sh" stop "$bench_cluster_work/cluster" >/dev/null 2>&1 || true
    rm -rf "$bench_cluster_work"
  fi
}

bench_cluster() {  # REPO DEFAULT_BASEPORT NAME
  bench_cluster_repo=$1
  [[ -z ${baseport:-} ]] || return 0
  baseport=$2
  bench_cluster_work=$(mktemp -d "/tmp/pgmux-$3.XXXXXX")
  trap bench_cluster_cleanup EXIT
  chmod 755 "$bench_cluster_work"  # the server runs as the postgres OS user when we are root
  echo "starting a PostgreSQL cluster on $baseport in $bench_cluster_work/cluster ..." >&2
  bash "$1/tests/support/cluster.sh" start "$bench_cluster_work/cluster" "$baseport" >/dev/null
}
