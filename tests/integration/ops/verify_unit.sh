#!/usr/bin/env bash
# verify_unit.sh UNIT PGMUX: systemd-analyze verify on UNIT with its pgmux path pointed at PGMUX (the unit names
# /usr/local/bin/pgmux, which a build machine does not have), plus the settings pgmux relies on.
set -euo pipefail
unit=$1 binary=$2
work=$(mktemp -d /tmp/pgmux-unit-XXXXXX)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/pgmux|$binary|g" "$unit" >"$work/pgmux.service"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$work/pgmux.service" 2>&1) || {
  echo "$out" >&2
  exit 1
}
# Warnings about this machine (no systemd running, no pgmux user) are fine; complaints about the file are not.
if grep -E "pgmux.service:[0-9]+:" <<<"$out" >&2; then exit 1; fi
for setting in '^Type=notify$' '^ExecReload=/bin/kill -HUP \$MAINPID$' '^NotifyAccess=main$'; do
  grep -Eq "$setting" "$unit" || { echo "missing $setting in $unit" >&2; exit 1; }
done
echo "ok: $unit"
