#!/usr/bin/python3
"""asyncpg (Debian python3-asyncpg) as an application uses it: named prepared statements and its statement cache,
large arguments (>40 KB, more than one read buffer of pgmux), executemany, cursors (portals fetched in parts),
binary COPY, a pool, errors, and a custom enum type created and then used on fresh connections (asyncpg
introspects an unknown type between preparing its statement and executing it). Every connect and query is bounded
by a timeout, so a stall prints TimeoutError instead of hanging. Prints a transcript for driver_diff.

    asyncpg_check.py [SCENARIO ...]     connects with the PG* environment variables
"""
import asyncio
import sys

import asyncpg

from transcript import check, digest, error_line, out, report_uncaught, selected

CONNECT_TIMEOUT = 15  # generous: a loaded 2-core CI machine
QUERY_TIMEOUT = 10


async def connect():
    return await asyncpg.connect(timeout=CONNECT_TIMEOUT, command_timeout=QUERY_TIMEOUT)


async def attempt(label, call, timeout=QUERY_TIMEOUT):
    """Awaits one call and prints its result or its error (a stall ends as TimeoutError)."""
    try:
        result = await asyncio.wait_for(call, timeout)
        out(label, [tuple(r) if isinstance(r, asyncpg.Record) else r for r in result]
            if isinstance(result, list) else result)
        return True
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError, asyncio.CancelledError) as e:
        # CancelledError: asyncpg cancels the waiter of a connection whose earlier call timed out.
        out(label, error_line(e))
        return False


async def named_statements():
    conn = await connect()
    try:
        stmt = await conn.prepare("SELECT $1::int + $2::int AS total, $3::text AS label")
        out("parameters", [t.name for t in stmt.get_parameters()])
        out("attributes", [(a.name, a.type.name) for a in stmt.get_attributes()])
        for i in range(5):
            out("fetchrow", tuple(await stmt.fetchrow(i, i * 2, "n%d" % i)))
        named = await conn.prepare("SELECT $1::int * 10", name="my_named_stmt")
        out("explicit name", await named.fetchval(7))
        for i in range(6):  # the statement cache prepares once and reuses the named statement
            out("cached", await conn.fetchval("SELECT count(*) FROM generate_series(1, $1::int)", i))
        async with conn.transaction():
            out("cached in tx", await conn.fetchval("SELECT count(*) FROM generate_series(1, $1::int)", 9))
        out("explicit name again", await named.fetchval(8))
    finally:
        await conn.close(timeout=5)


async def duplicate_name():
    """Preparing a statement under a name already in use: PostgreSQL's 42P05."""
    conn = await connect()
    try:
        named = await conn.prepare("SELECT $1::int * 10", name="my_named_stmt")
        out("explicit name", await named.fetchval(7))
        async def prepare_again():
            await conn.prepare("SELECT 2", name="my_named_stmt")
            return "prepared"
        await attempt("same name again", prepare_again())
        out("first still usable", await named.fetchval(3))
    finally:
        await conn.close(timeout=5)


async def plan_change():
    """A cached statement whose table gains a column: PostgreSQL answers 0A000 and asyncpg re-prepares it (outside a
    transaction) and returns the new row."""
    conn = await connect()
    try:
        await conn.execute("DROP TABLE IF EXISTS a_items")
        await conn.execute("CREATE TABLE a_items (id int PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO a_items SELECT g, 'n' || g FROM generate_series(1, 5) g")
        out("star", tuple(await conn.fetchrow("SELECT * FROM a_items WHERE id = $1", 1)))
        await conn.execute("ALTER TABLE a_items ADD COLUMN extra int DEFAULT 7")
        await attempt("star after alter", conn.fetch("SELECT * FROM a_items WHERE id = $1", 1))
        await attempt("star again", conn.fetch("SELECT * FROM a_items WHERE id = $1", 2))
    finally:
        await conn.close(timeout=5)


async def large_arguments():
    big_text = "".join(chr(0x61 + i % 26) for i in range(100_000)) + "€"
    big_bytes = bytes(i % 253 for i in range(300_000))
    big_array = list(range(20_000))
    conn = await connect()
    try:
        for i in range(3):
            row = await conn.fetchrow("SELECT length($1::text), md5($1::text), length($2::bytea), md5($2::bytea),"
                                      " cardinality($3::int[]), (SELECT sum(x) FROM unnest($3::int[]) x)",
                                      big_text, big_bytes, big_array)
            out("large", i, tuple(row))
        check(row[0] == 100_001, "length of a 100 001-character text argument")
        echoed = await conn.fetchval("SELECT $1::bytea", big_bytes)
        out("echo", len(echoed), digest(echoed) == digest(big_bytes))
    finally:
        await conn.close(timeout=5)


async def executemany():
    conn = await connect()
    try:
        await conn.execute("DROP TABLE IF EXISTS a_many")
        await conn.execute("CREATE TABLE a_many (id int PRIMARY KEY, v text)")
        await conn.executemany("INSERT INTO a_many VALUES ($1, $2)", [(i, "v%d" % i) for i in range(500)])
        out("inserted", tuple(await conn.fetchrow("SELECT count(*), sum(id) FROM a_many")))
        rows = [(1000 + i, "w") for i in range(50)] + [(3, "duplicate")] + [(2000, "after")]
        await attempt("with duplicate", conn.executemany("INSERT INTO a_many VALUES ($1, $2)", rows))
        out("after failed executemany", tuple(await conn.fetchrow("SELECT count(*), sum(id) FROM a_many")))
        async with conn.transaction():
            await conn.executemany("UPDATE a_many SET v = $2 WHERE id = $1", [(i, "u") for i in range(0, 500, 7)])
        out("updated", await conn.fetchval("SELECT count(*) FROM a_many WHERE v = 'u'"))
    finally:
        await conn.close(timeout=5)


async def cursors_and_copy():
    conn = await connect()
    try:
        total = 0
        async with conn.transaction():
            async for record in conn.cursor("SELECT g FROM generate_series(1, 1000) g", prefetch=50):
                total += record[0]
            cur = await conn.cursor("SELECT g, repeat('x', g) FROM generate_series(1, 300) g")
            first = await cur.fetch(10)
            await cur.forward(100)
            later = await cur.fetchrow()
        out("cursor", total, [r[0] for r in first], later[0], len(later[1]))
        await conn.execute("DROP TABLE IF EXISTS a_copy")
        await conn.execute("CREATE TABLE a_copy (id int, payload text)")
        result = await conn.copy_records_to_table("a_copy", records=[(i, "p" * (i % 97)) for i in range(5000)])
        out("copy records", result)
        rows = await conn.fetch("SELECT id, payload FROM a_copy ORDER BY id")
        out("copied", len(rows), digest([tuple(r) for r in rows]))
    finally:
        await conn.close(timeout=5)


async def errors_scenario():
    conn = await connect()
    try:
        for query in ["SELECT 1/0", "SELECT * FROM no_such_table", "SELEC 1", "SELECT $1::int"]:
            await attempt(query, conn.fetch(query, *(["x"] if "$1" in query else [])))
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1")
                await conn.execute("SELECT 1/0")
        except asyncpg.PostgresError as e:
            out("transaction", error_line(e))
        out("after rollback", await conn.fetchval("SELECT 3"), conn.is_in_transaction())
    finally:
        await conn.close(timeout=5)


async def pool():
    async with asyncpg.create_pool(min_size=2, max_size=4, timeout=CONNECT_TIMEOUT,
                                   command_timeout=QUERY_TIMEOUT) as p:
        results = await asyncio.wait_for(
            asyncio.gather(*(p.fetchval("SELECT $1::int * $1::int", i) for i in range(20))), 30)
        out("squares", results)
        async with p.acquire() as conn:
            async with conn.transaction():
                await conn.execute("DROP TABLE IF EXISTS a_pool")
                await conn.execute("CREATE TABLE a_pool (id int)")
                await conn.execute("INSERT INTO a_pool VALUES (1), (2)")
            out("in pool connection", await conn.fetchval("SELECT sum(id) FROM a_pool"))


async def pool_reset():
    """asyncpg resets a released pool connection with one multi-statement string (pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL): the next user of that connection sees the defaults again."""
    async with asyncpg.create_pool(min_size=1, max_size=1, timeout=CONNECT_TIMEOUT,
                                   command_timeout=QUERY_TIMEOUT) as p:
        async with p.acquire() as conn:
            await conn.execute("SET application_name = 'dirty'")
            await conn.execute("SET search_path = nowhere")
            out("before release", await conn.fetchval("SELECT current_setting('application_name')"))
        async with p.acquire() as conn:
            out("after reset", await conn.fetchval(
                "SELECT current_setting('application_name') || '|' || current_setting('search_path')"))


async def enum_on_fresh_connections():
    """Issue 10: the first use of a new enum type on fresh connections (asyncpg introspects the type between
    Parse/Describe and Bind/Execute of its statement)."""
    conn = await connect()
    try:
        await conn.execute("DROP TABLE IF EXISTS a_moods")
        await conn.execute("DROP TYPE IF EXISTS mood")
        await conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        await conn.execute("CREATE TABLE a_moods (id int, m mood)")
    finally:
        await conn.close(timeout=5)
    for i in range(6):
        try:
            fresh = await connect()
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as e:
            out("fresh connect", i, error_line(e))
            continue
        try:  # after a stall the connection is unusable: its remaining steps are skipped (5 s each at most)
            steps = [("cast", lambda: fresh.fetchval("SELECT $1::mood", "happy")),
                     ("insert", lambda: fresh.execute("INSERT INTO a_moods VALUES ($1, $2)", i, "ok")),
                     ("range", lambda: fresh.fetchval("SELECT enum_range(NULL::mood)"))]
            for step, call in steps:
                if not await attempt("fresh %d %s" % (i, step), call(), timeout=5):
                    break
        finally:
            fresh.terminate()
    conn = await connect()
    try:
        await attempt("stored", conn.fetch("SELECT id, m FROM a_moods ORDER BY id"))
    finally:
        await conn.close(timeout=5)


SCENARIOS = {
    "named": named_statements,
    "duplicate_name": duplicate_name,
    "plan_change": plan_change,
    "large": large_arguments,
    "executemany": executemany,
    "cursors_copy": cursors_and_copy,
    "errors": errors_scenario,
    "pool": pool,
    "pool_reset": pool_reset,
    "enum": enum_on_fresh_connections,
}


async def main():
    for name in selected(SCENARIOS, sys.argv):
        out("==", name)
        try:
            await SCENARIOS[name]()
        except Exception as e:  # the transcript shows it; the next scenario still runs
            report_uncaught(name, e)
    out("END")


if __name__ == "__main__":
    asyncio.run(main())
