#!/usr/bin/env bash
# pgbench through pgmux: scale-1 init, then the TPC-B-like script with -M simple, extended and prepared
# (16 clients each; -n because the vacuum step would truncate pgbench_history); no failed transactions, and
# the balances must add up afterwards.
# Run under with_pgmux ($PGMUX_PORT, $PGMUX_PRIMARY_PORT).
set -uo pipefail

BIN=/usr/lib/postgresql/15/bin
: "${PGMUX_PORT:?run me under with_pgmux}" "${PGMUX_PRIMARY_PORT:?run me under with_pgmux}"
export PGPASSWORD=app PGCONNECT_TIMEOUT=5
DURATION=${PGBENCH_SECONDS:-4}
work=$(mktemp -d /tmp/pgmux-it-pgbench-XXXXXX)
trap 'rm -rf "$work"' EXIT
conn=(-h 127.0.0.1 -p "$PGMUX_PORT" -U app)
fail=0
failf() { echo "FAIL: $*" >&2; fail=1; }

timeout 120 "$BIN/pgbench" "${conn[@]}" -i -s 1 -q app >"$work/init.out" 2>&1 || {
  cat "$work/init.out" >&2
  echo "FAIL: pgbench -i through pgmux" >&2
  exit 1
}

processed_total=0
for mode in simple extended prepared; do
  out="$work/$mode.out"
  timeout $((DURATION + 60)) "$BIN/pgbench" "${conn[@]}" -n -M "$mode" -c 16 -j 2 -T "$DURATION" app >"$out" 2>&1
  rc=$?
  ((rc == 0)) || failf "pgbench -M $mode exited $rc"
  processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  [[ -n $processed && $processed -gt 0 ]] || failf "pgbench -M $mode processed no transactions"
  [[ -z $failed || $failed == 0 ]] || failf "pgbench -M $mode: $failed failed transactions"
  grep -qiE 'error|abort' "$out" && failf "pgbench -M $mode reported errors"
  echo "pgbench -M $mode: ${processed:-?} transactions, failed ${failed:-?}, $(grep -m1 '^tps' "$out")"
  processed_total=$((processed_total + ${processed:-0}))
  ((fail == 0)) || cat "$out" >&2
done

# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/../support/pgbench_checks.sh"
check_pgbench_balances app "$processed_total"

exit $fail
