# shellcheck shell=bash
# Sourced by bench/pgbench_compare.sh: the results table. Input, one line per pgbench run (tab-separated):
#   round pool target mode protocol clients ok tps latency_ms cpu_us_per_txn failed_txns errors aborted
#   syscalls_per_txn context_switches_per_txn   (the last two "-" without --perf-stat)
# Output, one Markdown row per (pool mode, workload, target): medians over the rounds that succeeded, with
# min–max in parentheses when there was more than one. The ratios are taken round by round (this target's
# figure over PgBouncer's, or the relay's, in the same round, so both ran minutes apart at most, on the same
# machine load) and then summarised: a ratio's median is not the ratio of the medians.

report_table() {  # RESULTS_TSV PERF(0|1: add the syscall and context-switch columns) SPLIT(0|1: CPU ÷ pgmux)
  awk -F'\t' -v perf="$2" -v split_col="${3:-0}" '
    function num(x) { return x ~ /^[0-9.]+$/ }
    function add(list, k, v) { if (num(v)) { list[k, ++list[k]] = v + 0 } }
    # Median and range of the values stored under k, formatted with `digits` decimals.
    function summary(list, k, digits,    n, i, j, v, a, med, fmt) {
      n = list[k] + 0
      if (n == 0) return "-"
      for (i = 1; i <= n; i++) a[i] = list[k, i]
      for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
      med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      fmt = "%." digits "f"
      if (n == 1) return sprintf(fmt, med)
      return sprintf(fmt " (" fmt "–" fmt ")", med, a[1], a[n])
    }
    {
      w = $2 SUBSEP $4 SUBSEP $5 SUBSEP $6; k = w SUBSEP $3
      if (!(k in seen)) { seen[k] = 1; order[++rows] = k }
      runs[k]++
      if ($7 == 1) {
        okruns[k]++; tps[k, $1] = $8; cpu[k, $1] = $10
        add(TPS, k, $8); add(LAT, k, $9); add(CPU, k, $10); add(SC, k, $14); add(CS, k, $15)
      } else {
        errs[k] += $12; aborted[k] += $13
      }
      failed[k] += $11
      line[NR] = $0
    }
    END {
      # Per-round ratios, now that every run of every round is known.
      for (r = 1; r <= NR; r++) {
        split(line[r], f, "\t"); w = f[2] SUBSEP f[4] SUBSEP f[5] SUBSEP f[6]; k = w SUBSEP f[3]
        if (f[7] != 1) continue
        pb = w SUBSEP "pgbouncer"
        if (f[3] != "pgbouncer" && num(tps[pb, f[1]]) && tps[pb, f[1]] > 0) add(RT, k, f[8] / tps[pb, f[1]])
        if (f[3] != "pgbouncer" && num(cpu[pb, f[1]]) && cpu[pb, f[1]] > 0 && num(f[10]))
          add(RC, k, f[10] / cpu[pb, f[1]])
        # The relay is no pooler: it is the floor for both pool modes, measured in session mode.
        pm = w SUBSEP "pgmux"
        if (f[3] == "split" && num(cpu[pm, f[1]]) && cpu[pm, f[1]] > 0 && num(f[10])) add(RM, k, f[10] / cpu[pm, f[1]])
        rl = "session" SUBSEP f[4] SUBSEP f[5] SUBSEP f[6] SUBSEP "relay"
        if (f[3] != "relay" && num(cpu[rl, f[1]]) && cpu[rl, f[1]] > 0 && num(f[10]))
          add(RR, k, f[10] / cpu[rl, f[1]])
      }
      printf "| pool | mode | -M | clients | target | rounds ok | TPS | avg lat ms | proxy CPU µs/txn" \
        " | TPS ÷ PgBouncer"
      printf " | CPU ÷ PgBouncer | CPU ÷ relay |%s%s notes |\n", split_col ? " CPU ÷ pgmux |" : "", \
        perf ? " syscalls/txn | context switches/txn |" : ""
      print "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|" (split_col ? "---:|" : "") \
        (perf ? "---:|---:|" : "") "---|"
      for (i = 1; i <= rows; i++) {
        k = order[i]; split(k, f, SUBSEP)
        note = ""
        if (okruns[k] < runs[k])
          note = sprintf("failed %d×: %d ERROR/FATAL, %d clients aborted", runs[k] - okruns[k], errs[k], aborted[k])
        if (failed[k] > 0) note = note (note == "" ? "" : "; ") failed[k] " failed txns"
        extra = (split_col ? sprintf(" %s |", summary(RM, k, 2)) : "") \
          (perf ? sprintf(" %s | %s |", summary(SC, k, 2), summary(CS, k, 2)) : "")
        printf "| %s | %s | %s | %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |%s %s |\n", \
          f[1], f[2], f[3], f[4], f[5], \
          okruns[k], runs[k], summary(TPS, k, 0), summary(LAT, k, 3), summary(CPU, k, 1), summary(RT, k, 2), \
          summary(RC, k, 2), summary(RR, k, 2), extra, note
      }
    }' "$1"
}
