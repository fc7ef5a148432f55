#!/usr/bin/env bash
# Installs the Debian packages pgmux needs to build and test, and only the missing ones:
# when everything is present it returns at once without touching apt.
#
#   scripts/install-deps.sh               build + test packages (PostgreSQL 15, PgBouncer, ...)
#   scripts/install-deps.sh --build-only  just what compiling needs (used by the Dockerfile)
#
# Our scripts never use the "main" PostgreSQL cluster Debian creates on 5432, and never stop it
# if it was there before. PgBouncer's own service is stopped only if this run's install started it.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev libssl-dev libpq-dev nlohmann-json3-dev prometheus-cpp-dev doctest-dev libpg-query-dev
)
# What the test suite, demo and benchmark run: servers, clients and the process/socket tools
# the support scripts call (ps, pgrep, ss, runuser/setpriv come from util-linux, which is essential);
# prometheus for promtool (the metrics and alert-rule tests); the client drivers that tests/integration/drivers
# runs through pgmux (psycopg 3 and asyncpg for Debian's python3, the JDBC driver with a JDK to compile its check);
# Debian's PgBouncer exporter, run against pgmux's console (its service is not started: no pgbouncer.service runs).
test_packages=(
  postgresql-15 postgresql-client-15 pgbouncer procps iproute2 openssl prometheus
  python3-psycopg python3-asyncpg libpostgresql-jdbc-java default-jdk-headless
  prometheus-pgbouncer-exporter
)
# The sanitizer and fuzzing stage (scripts/test-sanitizers.sh): Debian 12's clang 14, its libFuzzer and sanitizer
# runtimes, and llvm-symbolizer for readable reports.
test_packages+=(clang libclang-rt-14-dev llvm-14)
# topology.source = patroni: a Patroni pair with one etcd member (tests/support/patroni_cluster.sh); curl asks
# their HTTP APIs.
test_packages+=(patroni etcd-server curl)
# node and npm install node-postgres for the node driver test. Debian's packages only where none is installed:
# a node from another source brings its own npm, and Debian's npm conflicts with it.
command -v node >/dev/null 2>&1 || test_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || test_packages+=(npm)

packages=("${build_packages[@]}")
case "${1:-}" in
  --build-only) ;;
  "") packages+=("${test_packages[@]}") ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) echo "install-deps.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

# One dpkg-query call for all packages; unknown ones print nothing on stdout, so they count as missing.
installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)"
missing=()
for p in "${packages[@]}"; do
  if ! grep -qx "$p ii *" <<<"$installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps.sh: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
  exit 1
fi

echo "install-deps.sh: installing ${missing[*]}" >&2

# Remember PgBouncer and Prometheus processes running before, to tell afterwards whether our install started one.
pgbouncer_missing=0
prometheus_missing=0
for p in "${missing[@]}"; do
  [[ $p == pgbouncer ]] && pgbouncer_missing=1
  [[ $p == prometheus ]] && prometheus_missing=1
done
pgbouncer_before=""
if [[ $pgbouncer_missing -eq 1 ]]; then
  pgbouncer_before="$(pgrep -x pgbouncer 2>/dev/null || true)"
fi
prometheus_before="$(pgrep -x prometheus 2>/dev/null || true)"

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# Debian starts pgbouncer's service on 6432 right after install; we never use it, so stop it again,
# but only when this install is what started it.
if [[ $pgbouncer_missing -eq 1 ]]; then
  stopped=0
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet pgbouncer 2>/dev/null; then
    "${as_root[@]}" systemctl stop pgbouncer 2>/dev/null && stopped=1
  fi
  if [[ $stopped -eq 0 ]]; then
    for pid in $(pgrep -x pgbouncer 2>/dev/null || true); do
      # A process that was already there before the install is not ours to stop.
      if grep -qx "$pid" <<<"$pgbouncer_before"; then
        continue
      fi
      # Only the packaged service: it runs with the packaged config file.
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '/etc/pgbouncer/pgbouncer.ini'; then
        echo "install-deps.sh: stopping the pgbouncer service the install started (pid $pid)" >&2
        "${as_root[@]}" kill -INT "$pid" 2>/dev/null || true
      fi
    done
  fi
fi

# Only promtool is needed from the prometheus package; its server (:9090) is stopped if this install started it.
if [[ $prometheus_missing -eq 1 ]]; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    "${as_root[@]}" systemctl stop prometheus 2>/dev/null || true
  fi
  for pid in $(pgrep -x prometheus 2>/dev/null || true); do
    grep -qx "$pid" <<<"$prometheus_before" && continue
    if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == /usr/bin/prometheus ]]; then
      echo "install-deps.sh: stopping the prometheus service the install started (pid $pid)" >&2
      "${as_root[@]}" kill -TERM "$pid" 2>/dev/null || true
    fi
  done
fi

# The PgBouncer exporter is only run by its test (against pgmux); its packaged service goes if this install
# started it.
for p in "${missing[@]}"; do
  if [[ $p == prometheus-pgbouncer-exporter ]] && command -v systemctl >/dev/null 2>&1 &&
    systemctl is-active --quiet prometheus-pgbouncer-exporter 2>/dev/null; then
    "${as_root[@]}" systemctl stop prometheus-pgbouncer-exporter 2>/dev/null || true
  fi
done

echo "install-deps.sh: done" >&2
