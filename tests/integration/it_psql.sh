#!/usr/bin/env bash
# psql through pgmux must print exactly what psql prints against the primary: meta-commands (\d, \l), a
# multi-statement string, errors with SQLSTATE, NOTICEs. Run under with_pgmux ($PGMUX_PORT, $PGMUX_PRIMARY_PORT).
set -uo pipefail

PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
: "${PGMUX_PORT:?run me under with_pgmux}" "${PGMUX_PRIMARY_PORT:?run me under with_pgmux}"
export PGPASSWORD=app PGCONNECT_TIMEOUT=5
work=$(mktemp -d /tmp/pgmux-it-psql-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
failf() { echo "FAIL: $*" >&2; fail=1; }

run_psql() {  # PORT OUTFILE ARGS... ; psql without ~/.psqlrc, errors do not stop the script
  local port=$1 out=$2
  shift 2
  timeout 30 "$PSQL" -X -h 127.0.0.1 -p "$port" -U app -d app -v ON_ERROR_STOP=0 "$@" >"$out" 2>&1
}

# Fixture objects for \d, created directly on the primary (idempotent).
run_psql "$PGMUX_PRIMARY_PORT" "$work/setup.out" -v ON_ERROR_STOP=1 <<'EOF' || { cat "$work/setup.out"; exit 1; }
CREATE TABLE IF NOT EXISTS psql_fixture (
  id integer PRIMARY KEY,
  name text NOT NULL DEFAULT 'x',
  created timestamptz
);
CREATE INDEX IF NOT EXISTS psql_fixture_name ON psql_fixture (name);
CREATE OR REPLACE VIEW psql_fixture_view AS SELECT id, name FROM psql_fixture;
EOF

cat >"$work/script.sql" <<'EOF'
\set VERBOSITY verbose
\pset pager off
\d psql_fixture
\d psql_fixture*
\dv psql_fixture_view
\l app
\l postgres
\dn public
SELECT 1 AS one; SELECT 'two' AS two, 2 + 2 AS four; SELECT generate_series(1, 3) AS g;
SELECT * FROM no_such_table_for_psql;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT 1/0;
\echo sqlstate :LAST_ERROR_SQLSTATE
BEGIN;
SELECT 1/0;
SELECT 1;
\echo sqlstate :LAST_ERROR_SQLSTATE
ROLLBACK;
DO $$BEGIN RAISE NOTICE 'hello from %', 'a DO block'; END$$;
DO $$BEGIN RAISE WARNING 'careful: %', 42; END$$;
SELECT current_user, current_database(), 'é€'::text AS utf8;
\echo done
EOF

run_psql "$PGMUX_PORT" "$work/via_pgmux.out" -f "$work/script.sql" || failf "psql via pgmux exited $?"
run_psql "$PGMUX_PRIMARY_PORT" "$work/direct.out" -f "$work/script.sql" || failf "psql direct exited $?"

# A multi-statement string through -c (one simple Query message with three statements).
multi="SELECT 10 AS a; SELECT 20 AS b; SELECT 30 AS c"
run_psql "$PGMUX_PORT" "$work/multi_pgmux.out" -c "$multi" || failf "psql -c via pgmux exited $?"
run_psql "$PGMUX_PRIMARY_PORT" "$work/multi_direct.out" -c "$multi" || failf "psql -c direct exited $?"
# An error inside a multi-statement string aborts the rest of it.
bad="SELECT 1 AS before_error; SELECT 1/0; SELECT 3 AS never"
run_psql "$PGMUX_PORT" "$work/bad_pgmux.out" -c "$bad" && failf "psql -c with an error should exit non-zero"
run_psql "$PGMUX_PRIMARY_PORT" "$work/bad_direct.out" -c "$bad"

for pair in "via_pgmux direct" "multi_pgmux multi_direct" "bad_pgmux bad_direct"; do
  set -- $pair
  if ! diff -u "$work/$2.out" "$work/$1.out" >"$work/$1.diff"; then
    failf "output through pgmux differs from the primary's ($1):"
    cat "$work/$1.diff" >&2
  fi
done

# The comparison alone would pass if both sides failed the same way: check what must be there.
expect() {  # FILE PATTERN
  grep -qF -- "$2" "$work/$1.out" || failf "$1 output lacks: $2"
}
expect via_pgmux 'Table "public.psql_fixture"'
expect via_pgmux '"psql_fixture_pkey" PRIMARY KEY, btree (id)'
expect via_pgmux 'psql_fixture_view'
expect via_pgmux 'List of databases'
expect via_pgmux ' app '
expect via_pgmux '42P01'
expect via_pgmux 'relation "no_such_table_for_psql" does not exist'
expect via_pgmux 'sqlstate 42P01'
expect via_pgmux 'ERROR:  22012: division by zero'
expect via_pgmux 'sqlstate 22012'
expect via_pgmux 'sqlstate 25P02'
expect via_pgmux 'NOTICE:  00000: hello from a DO block'
expect via_pgmux 'WARNING:  01000: careful: 42'
expect via_pgmux 'é€'
expect via_pgmux 'done'
expect multi_pgmux '30'
expect bad_pgmux 'division by zero'
grep -q never "$work/bad_pgmux.out" && failf "statement after the error ran"

if ((fail)); then
  echo "--- psql via pgmux ---" >&2
  cat "$work/via_pgmux.out" >&2
  exit 1
fi
echo "it_psql: all psql checks passed"
