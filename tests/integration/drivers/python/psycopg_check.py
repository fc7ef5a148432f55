#!/usr/bin/python3
"""psycopg 3 (Debian python3-psycopg, over libpq) as an application uses it: typed values both ways, errors,
server-side prepared statements (prepare_threshold and prepare=True), pipeline mode, COPY in both directions,
large parameters, transactions and session settings. Prints a transcript for driver_diff (see transcript.py).

    psycopg_check.py [SCENARIO ...]     connects with the PG* environment variables
"""
import sys

import psycopg
from psycopg import errors

from transcript import check, digest, error_line, out, report_uncaught, selected


def connect(**kwargs):
    return psycopg.connect("", connect_timeout=15, **kwargs)


def attempt(conn, label, query, params=None, **kwargs):
    """Runs one statement and prints its rows or its error; returns True when it succeeded."""
    try:
        cur = conn.execute(query, params, **kwargs)
        out(label, cur.fetchall() if cur.description else cur.statusmessage)
        return True
    except psycopg.Error as e:
        out(label, error_line(e))
        return False


def types():
    query = ("SELECT 1::int, 'x'::text, 1.5::numeric, NULL::int, true, '2024-02-29 12:34:56+00'::timestamptz,"
             " '\\x00ff'::bytea, ARRAY[1, 2, 3], '{\"a\": [1, 2]}'::jsonb, 9223372036854775807::int8,"
             " 'é€'::text, '1 day 02:00'::interval, 'a8098c1a-f86e-11da-bd1a-00112444be1e'::uuid")
    with connect(autocommit=True) as conn:
        out("text", conn.execute(query).fetchone())
        out("binary", conn.execute(query, binary=True).fetchone())
        params = (42, "é€ quote ' and \\ backslash", None, [1, None, 3], b"\x00\x01\xff", 3.25)
        q = "SELECT %s::int, %s::text, %s::int, %s::int[], %s::bytea, %s::float8"
        out("params", conn.execute(q, params).fetchone())
        out("params binary", conn.execute(q.replace("%s", "%b"), params).fetchone())
        out("server_version", conn.info.server_version // 10000, conn.info.parameter_status("server_encoding"))


def errors_scenario():
    with connect() as conn:
        for query in ["SELECT 1/0", "SELECT * FROM no_such_table", "SELEC 1", "SELECT 'x'::int"]:
            attempt(conn, query, query)
            conn.rollback()
        attempt(conn, "in tx", "SELECT 1")
        attempt(conn, "in tx", "SELECT 1/0")
        attempt(conn, "aborted tx", "SELECT 2")
        out("status", conn.info.transaction_status.name)
        conn.rollback()
        attempt(conn, "after rollback", "SELECT 3")
        conn.execute("DROP TABLE IF EXISTS pg_err")
        conn.execute("CREATE TABLE pg_err (id int PRIMARY KEY)")
        conn.execute("INSERT INTO pg_err VALUES (1)")
        conn.commit()
        attempt(conn, "duplicate", "INSERT INTO pg_err VALUES (%s)", (1,))
        conn.rollback()
        try:
            conn.execute("INSERT INTO pg_err VALUES (%s)", (1,))
        except errors.UniqueViolation as e:
            out("class", type(e).__name__, e.diag.constraint_name, e.diag.table_name)
        conn.rollback()


def prepared_statements():
    with connect(autocommit=True, prepare_threshold=2) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        for i in range(10):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (i, "n%d" % i))
        for i in range(6):
            out("by id", conn.execute("SELECT name FROM items WHERE id = %s", (i,)).fetchone())
        for i in range(3):
            out("forced", conn.execute("SELECT count(*) FROM items WHERE id < %s", (i,), prepare=True).fetchone())
        out("never", conn.execute("SELECT max(id) FROM items WHERE id < %s", (5,), prepare=False).fetchone())
        with conn.transaction():
            out("in tx", conn.execute("SELECT name FROM items WHERE id = %s", (7,)).fetchone())
        try:
            with conn.transaction():
                conn.execute("SELECT name FROM items WHERE id = %s", (8,))
                conn.execute("SELECT 1/0")
        except psycopg.Error as e:
            out("tx error", error_line(e))
        out("after rollback", conn.execute("SELECT name FROM items WHERE id = %s", (9,)).fetchone())
        conn.execute("DEALLOCATE ALL")
        for i in range(3):
            out("after deallocate", conn.execute("SELECT name FROM items WHERE id = %s", (i,)).fetchone())
    with connect(autocommit=True, prepare_threshold=0) as conn:
        for i in range(3):
            out("threshold 0", conn.execute("SELECT %s::int * 2", (i,)).fetchone())


def evict():
    """psycopg's statement cache, full: it evicts the least recently used statement with SQL DEALLOCATE, which
    PostgreSQL applies to statements made by the protocol's Parse too (one name space). Then an application's own
    DEALLOCATE of such a statement, and DISCARD ALL, after which none exists any more."""
    with connect(autocommit=True, prepare_threshold=0) as conn:
        conn.prepared_max = 2
        for round_ in range(2):
            for i in range(5):
                attempt(conn, "evicting %d" % round_, "SELECT %d + %%s::int" % i, (i,))
        raw = conn.pgconn
        out("protocol prepare", state_of(raw.prepare(b"mine", b"SELECT 7")))
        attempt(conn, "deallocate mine", "DEALLOCATE mine", prepare=False)
        attempt(conn, "deallocate again", "DEALLOCATE mine", prepare=False)
        attempt(conn, "deallocate prepare", "DEALLOCATE PREPARE mine", prepare=False)
        out("execute dropped", state_of(raw.exec_prepared(b"mine", [])))
        out("prepare again", state_of(raw.prepare(b"mine", b"SELECT 8")))
        out("execute new", state_of(raw.exec_prepared(b"mine", [])))
        attempt(conn, "sql prepare over parse", "PREPARE mine AS SELECT 2", prepare=False)
        attempt(conn, "after it", "SELECT 3", prepare=False)
        out("execute it still", state_of(raw.exec_prepared(b"mine", [])))
        with conn.transaction():
            attempt(conn, "deallocate in a block", "DEALLOCATE mine", prepare=False)
            attempt(conn, "in the block after", "SELECT 1", prepare=False)
        raw.prepare(b"gone_all", b"SELECT 9")
        attempt(conn, "discard all", "DISCARD ALL", prepare=False)
        for name in (b"gone_all", b"mine"):
            out("after discard", name.decode(), state_of(raw.exec_prepared(name, [])))
        out("prepare after discard", state_of(raw.prepare(b"gone_all", b"SELECT 10")))
        for i in range(3):
            attempt(conn, "after all", "SELECT %d + %%s::int" % i, (i,))


def state_of(res):
    """A libpq result as the transcript shows it: status, SQLSTATE, first value."""
    status = psycopg.pq.ExecStatus(res.status)
    value = res.get_value(0, 0) if status == psycopg.pq.ExecStatus.TUPLES_OK and res.ntuples else None
    return status.name, res.error_field(psycopg.pq.DiagnosticField.SQLSTATE), value


def failed_parse():
    """A Parse PostgreSQL refuses (25P02 in a failed block) creates nothing: the name can be executed (26000) or
    parsed again afterwards as if it had never been asked for."""
    with connect(autocommit=True) as conn:
        raw = conn.pgconn
        raw.exec_(b"BEGIN")
        out("in block", state_of(raw.exec_(b"SELECT 1/0")))
        out("parse in failed block", state_of(raw.prepare(b"zz", b"SELECT 1")))
        raw.exec_(b"ROLLBACK")
        out("execute refused", state_of(raw.exec_prepared(b"zz", [])))
        out("parse again", state_of(raw.prepare(b"zz", b"SELECT 'two'")))
        out("execute it", state_of(raw.exec_prepared(b"zz", [])))


def failed_parse_missing():
    """A Parse of a table that does not exist (42P01): the name stays free. In transaction pooling too: pgmux answers
    a lone Parse itself only while the client would wait for a full pool (README). With the split, the Parse (a read)
    goes to a standby and the execution inside a block to the primary, where pgmux used to prepare the failed text
    again (42P01 where PostgreSQL answers 26000)."""
    with connect(autocommit=True) as conn:
        raw = conn.pgconn
        out("parse missing", state_of(raw.prepare(b"m", b"SELECT * FROM no_such_table_x")))
        out("execute missing", state_of(raw.exec_prepared(b"m", [])))
        raw.exec_(b"BEGIN")
        out("execute missing in a block", state_of(raw.exec_prepared(b"m", [])))
        raw.exec_(b"ROLLBACK")
        out("parse again", state_of(raw.prepare(b"m", b"SELECT 4")))
        out("execute it", state_of(raw.exec_prepared(b"m", [])))


def plan_change():
    """A prepared SELECT * whose table gains a column: PostgreSQL answers 0A000 (cached plan must not change result
    type), which psycopg does not retry."""
    with connect(autocommit=True, prepare_threshold=0) as conn:
        conn.execute("DROP TABLE IF EXISTS plan_t")
        conn.execute("CREATE TABLE plan_t (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO plan_t SELECT g, 'n' || g FROM generate_series(0, 2) g")
        for i in range(3):
            out("star", conn.execute("SELECT * FROM plan_t WHERE id = %s", (i,)).fetchone())
        conn.execute("ALTER TABLE plan_t ADD COLUMN extra int DEFAULT 7")
        for i in range(3):
            attempt(conn, "star after alter", "SELECT * FROM plan_t WHERE id = %s", (i,))


def fresh_connection_read():
    """A commit acknowledged on one connection, then a read on a new one: what a web request that writes and the
    redirect served from another pooled connection do."""
    with connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS fresh_t")
        conn.execute("CREATE TABLE fresh_t (id int)")
    for i in range(3):
        with connect() as writer:
            writer.execute("INSERT INTO fresh_t VALUES (%s)", (i,))
        with connect(autocommit=True) as reader:
            attempt(reader, "read on a new connection", "SELECT count(*) FROM fresh_t")


def pipeline():
    with connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pipe")
        conn.execute("CREATE TABLE pipe (id int PRIMARY KEY, v text)")
        with conn.pipeline() as p:
            c1 = conn.execute("INSERT INTO pipe VALUES (%s, %s) RETURNING id", (1, "a"))
            c2 = conn.execute("INSERT INTO pipe VALUES (%s, %s) RETURNING id", (2, "b"))
            c3 = conn.execute("SELECT count(*) FROM pipe")
            p.sync()
            out("pipelined", c1.fetchone(), c2.fetchone(), c3.fetchone())
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO pipe VALUES (%s, %s)", [(i, "x" * i) for i in range(10, 210)])
            out("executemany rowcount", cur.rowcount)
        pipeline_error(conn)
        out("after pipeline error", conn.execute("SELECT count(*), sum(id) FROM pipe").fetchone())
    with connect() as conn:
        with conn.pipeline():
            conn.execute("INSERT INTO pipe VALUES (%s, %s)", (500, "in tx"))
            cur = conn.execute("SELECT v FROM pipe WHERE id = %s", (500,))
            out("pipeline in tx", cur.fetchone(), conn.info.transaction_status.name)
            conn.rollback()
        out("rolled back", conn.execute("SELECT count(*) FROM pipe WHERE id = 500").fetchone())


def pipeline_error(conn):
    """An error in the middle of a pipeline: what came before is kept, what follows is skipped until Sync."""
    cursors = []
    try:
        with conn.pipeline():
            cursors.append(conn.execute("INSERT INTO pipe VALUES (%s, %s) RETURNING id", (300, "before")))
            cursors.append(conn.execute("INSERT INTO pipe VALUES (%s, %s)", (1, "duplicate")))
            cursors.append(conn.execute("INSERT INTO pipe VALUES (%s, %s)", (301, "after")))
    except psycopg.Error as e:
        out("pipeline error", error_line(e))
    # psycopg raises the error at the first execute() after the error reply arrived, or at the end of the block:
    # which one depends on timing (direct connections too), so a third cursor may or may not exist. What ran is
    # checked by the caller's count and sum (the row after the error must be missing).
    for i, cur in enumerate(cursors[:2]):
        try:
            out("pipeline cursor", i, cur.statusmessage, cur.fetchall() if cur.description else None)
        except psycopg.Error as e:
            out("pipeline cursor", i, error_line(e))


def copy():
    with connect() as conn:
        conn.execute("DROP TABLE IF EXISTS copy_t")
        conn.execute("CREATE TABLE copy_t (id int, payload text, data bytea)")
        with conn.cursor() as cur:
            with cur.copy("COPY copy_t FROM STDIN") as cp:
                for i in range(3000):
                    cp.write_row((i, "row %d\ttab" % i, bytes([i % 256]) * (i % 50)))
                cp.write_row((9999, "é" * 1000000, b"\x00" * 100000))
            out("copy in", cur.rowcount)
            with cur.copy("COPY copy_t TO STDOUT") as cp:
                text = b"".join(bytes(chunk) for chunk in cp)
            out("copy out", len(text), digest(text))
            binary_out = "COPY (SELECT id, payload FROM copy_t WHERE id < 100 ORDER BY id) TO STDOUT (FORMAT BINARY)"
            with cur.copy(binary_out) as cp:
                cp.set_types(["int4", "text"])
                rows = list(cp.rows())
            out("copy binary out", len(rows), rows[:2], digest(rows))
        conn.commit()
        try:
            with conn.cursor() as cur, cur.copy("COPY copy_t (id) FROM STDIN") as cp:
                cp.write(b"1\n2\nnot-a-number\n")
        except psycopg.Error as e:
            out("bad copy", error_line(e))
        conn.rollback()
        out("after bad copy", conn.execute(
            "SELECT count(*), sum(id), md5(string_agg(payload, ',' ORDER BY id)) FROM copy_t").fetchone())


def large_parameters():
    big_text = "".join(chr(0x41 + i % 26) for i in range(100_000)) + "é"
    big_bytes = bytes(i % 251 for i in range(300_000))
    with connect(autocommit=True) as conn:
        for i in range(3):
            row = conn.execute("SELECT length(%s::text), md5(%s::text), length(%s::bytea), md5(%s::bytea)",
                               (big_text, big_text, big_bytes, big_bytes), prepare=(i > 0)).fetchone()
            out("large", i, row)
        check(row[0] == 100_001, "length of a 100 001-character text parameter")


def transactions():
    with connect() as conn:
        conn.execute("DROP TABLE IF EXISTS tx_t")
        conn.execute("CREATE TABLE tx_t (id int)")
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO tx_t VALUES (1)")
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO tx_t VALUES (2)")
                    conn.execute("SELECT 1/0")
            except psycopg.Error as e:
                out("savepoint rolled back", error_line(e))
            conn.execute("INSERT INTO tx_t VALUES (3)")
        out("rows", conn.execute("SELECT array_agg(id ORDER BY id) FROM tx_t").fetchone())
        conn.commit()
        conn.read_only = True
        attempt(conn, "read only select", "SELECT count(*) FROM tx_t")
        attempt(conn, "read only insert", "INSERT INTO tx_t VALUES (4)")
        conn.rollback()
        conn.read_only = None
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        attempt(conn, "isolation", "SHOW transaction_isolation")
        conn.commit()


def session_settings():
    notices = []
    with connect(autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
        attempt(conn, "set", "SET application_name = 'psycopg check'")
        out("param status", conn.info.parameter_status("application_name"))
        attempt(conn, "show", "SHOW application_name")
        attempt(conn, "set tz", "SET TimeZone = 'America/New_York'")
        attempt(conn, "tz", "SELECT '2024-07-01 12:00:00+00'::timestamptz::text")
        attempt(conn, "notice", "DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$")
        attempt(conn, "reset", "RESET ALL")
        attempt(conn, "tz after reset", "SELECT '2024-07-01 12:00:00+00'::timestamptz::text")
    out("notices", notices)


SCENARIOS = {
    "types": types,
    "errors": errors_scenario,
    "prepare": prepared_statements,
    "plan_change": plan_change,
    "evict": evict,
    "failed_parse": failed_parse,
    "failed_parse_missing": failed_parse_missing,
    "fresh_read": fresh_connection_read,
    "pipeline": pipeline,
    "copy": copy,
    "large": large_parameters,
    "transactions": transactions,
    "session": session_settings,
}


def main():
    for name in selected(SCENARIOS, sys.argv):
        out("==", name)
        try:
            SCENARIOS[name]()
        except Exception as e:  # the transcript shows it; the next scenario still runs
            report_uncaught(name, e)
    out("END")


if __name__ == "__main__":
    main()
