#!/usr/bin/env bash
# pgbench through pgmux in transaction mode: scale-1 init, then the TPC-B-like script with each of
# $TXPOOL_MODES (default: simple extended prepared), $TXPOOL_CLIENTS clients (default 200) for
# $TXPOOL_SECONDS (default 5), -n (the vacuum step would truncate pgbench_history). No failed transactions, no
# error lines, and the balances must add up afterwards (read on the primary directly).
# Environment: PGMUX_PORT, PGMUX_PRIMARY_PORT, TXPOOL_DB (set by it_txpool_pgbench).
set -uo pipefail

BIN=/usr/lib/postgresql/15/bin
: "${PGMUX_PORT:?}" "${PGMUX_PRIMARY_PORT:?}" "${TXPOOL_DB:?}"
export PGPASSWORD=app PGCONNECT_TIMEOUT=10
DURATION=${TXPOOL_SECONDS:-5}
CLIENTS=${TXPOOL_CLIENTS:-200}
MODES=${TXPOOL_MODES:-simple extended prepared}
work=$(mktemp -d /tmp/pgmux-txpool-pgbench-XXXXXX)
trap 'rm -rf "$work"' EXIT
conn=(-h 127.0.0.1 -p "$PGMUX_PORT" -U app)
fail=0
failf() { echo "FAIL: $*"; fail=1; }

timeout 60 "$BIN/pgbench" "${conn[@]}" -i -s 1 -q "$TXPOOL_DB" >"$work/init.out" 2>&1 || {
  cat "$work/init.out"
  echo "FAIL: pgbench -i through pgmux (transaction mode)"
  exit 1
}

processed_total=0
for mode in $MODES; do
  out="$work/$mode.out"
  timeout $((DURATION + 20)) "$BIN/pgbench" "${conn[@]}" -n -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION" \
    "$TXPOOL_DB" >"$out" 2>&1
  rc=$?
  mode_fail=0
  ((rc == 0)) || { failf "pgbench -M $mode exited $rc"; mode_fail=1; }
  processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  [[ -n $processed && $processed -gt 0 ]] || { failf "pgbench -M $mode processed no transactions"; mode_fail=1; }
  [[ -z $failed || $failed == 0 ]] || { failf "pgbench -M $mode: $failed failed transactions"; mode_fail=1; }
  if grep -qiE 'error|abort' "$out"; then
    failf "pgbench -M $mode reported errors"
    mode_fail=1
  fi
  echo "pgbench -M $mode -c $CLIENTS: ${processed:-?} transactions, failed ${failed:-?}, $(grep -m1 '^tps' "$out")"
  processed_total=$((processed_total + ${processed:-0}))
  # First distinct error lines only: 200 clients can print 200 copies of the same one.
  ((mode_fail == 0)) || grep -iE 'error|abort|fatal' "$out" | sort | uniq -c | sort -rn | head -n 8
done

# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/../../support/pgbench_checks.sh"
check_pgbench_balances "$TXPOOL_DB" "$processed_total"

exit $fail
