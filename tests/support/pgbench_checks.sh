# Sourced by pgbench tests. check_pgbench_balances DB PROCESSED: every pgbench transaction adds the same delta to
# one account, teller and branch and logs it in history, so the four sums must agree and history must hold at
# least PROCESSED rows. Reads the primary directly ($BIN/psql, $PGMUX_PRIMARY_PORT); reports through failf.
check_pgbench_balances() {
  local db=$1 processed=$2 sums accounts tellers branches history history_rows
  sums=$(timeout 30 "$BIN/psql" -X -h 127.0.0.1 -p "$PGMUX_PRIMARY_PORT" -U app -d "$db" -At -F ' ' -c "
    SELECT (SELECT sum(abalance) FROM pgbench_accounts),
           (SELECT sum(tbalance) FROM pgbench_tellers),
           (SELECT sum(bbalance) FROM pgbench_branches),
           (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
           (SELECT count(*) FROM pgbench_history)") || {
    failf "balance query failed"
    return
  }
  read -r accounts tellers branches history history_rows <<<"$sums"
  echo "balances: accounts=$accounts tellers=$tellers branches=$branches history=$history rows=$history_rows"
  [[ -n $accounts && $accounts == "$tellers" && $tellers == "$branches" && $branches == "$history" ]] ||
    failf "balances are inconsistent"
  ((history_rows >= processed)) ||
    failf "history has $history_rows rows but pgbench reported $processed committed transactions"
}
