// node-postgres (`pg` from npm, version pinned in package.json) as an application uses it: a Pool with
// concurrent queries and a checked-out transaction, many queries in flight on one client, named (prepared)
// queries, large parameters, typed values and errors. Prints a transcript for driver_diff: values, counts,
// digests and SQLSTATEs only. Every connect and query is bounded (connectionTimeoutMillis, query_timeout).
//
//   NODE_PATH=<dir>/node_modules node pg_check.js [SCENARIO ...]     (connects with PGHOST, PGPORT, ...)
'use strict';
const crypto = require('crypto');
const { Client, Pool } = require('pg');

const TIMEOUTS = { connectionTimeoutMillis: 15000, query_timeout: 10000 };

function out(...parts) {
  console.log(parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p, jsonValue))).join(' '));
}

// Buffers as hex (JSON.stringify would list every byte), everything else as JSON does.
function jsonValue(key, value) {
  const isBuffer = value && value.type === 'Buffer' && Array.isArray(value.data);
  return isBuffer ? '\\x' + Buffer.from(value.data).toString('hex') : value;
}

function check(condition, what) {
  if (!condition) out('CHECK FAILED:', what);
}

const md5 = (data) => crypto.createHash('md5').update(data).digest('hex');
// An error as the client sees it: SQLSTATE and class in the transcript, the message (may hold OIDs) on stderr.
function errorLine(e) {
  console.error(`pg_check: ${e.code || '-'}: ${e.message}`);
  return `ERROR ${e.code || '-'} ${e.constructor.name}`;
}

async function connect() {
  const client = new Client(TIMEOUTS);
  await client.connect();
  return client;
}

// Runs one query and prints its rows (or command and row count) or its error. Plain SQL text is run with
// rowMode 'array', so that unnamed columns (all called ?column?) do not overwrite each other.
async function attempt(client, label, query, values) {
  try {
    const res = await client.query(typeof query === 'string' ? { text: query, values, rowMode: 'array' } : query);
    out(label, res.command === 'SELECT' ? res.rows : `${res.command} ${res.rowCount}`);
  } catch (e) {
    out(label, errorLine(e));
  }
}

async function withClient(body) {
  const client = await connect();
  try {
    await body(client);
  } finally {
    await client.end();
  }
}

async function types() {
  await withClient(async (c) => {
    await attempt(c, 'text', "SELECT 1::int, 'x'::text, 1.5::numeric, NULL::int, true, 9223372036854775807::int8," +
      " '2024-02-29 12:34:56+00'::timestamptz, '2024-02-29'::date, '\\x00ff'::bytea, ARRAY[1, 2, 3]," +
      " '{\"a\": [1, 2]}'::jsonb, 'é€'::text, '1 day 02:00'::interval");
    await attempt(c, 'params', 'SELECT $1::int, $2::text, $3::int, $4::int[], $5::bytea, $6::jsonb, $7::timestamptz',
      [42, "é€ quote ' and \\ backslash", null, [1, null, 3], Buffer.from([0, 1, 255]), { k: [true] },
        new Date(Date.UTC(2024, 1, 29, 12, 0, 0))]);
    await attempt(c, 'row objects', { text: 'SELECT 1 AS a, 2 AS b, 3 AS a' });
  });
}

async function errors() {
  await withClient(async (c) => {
    for (const q of ['SELECT 1/0', 'SELECT * FROM no_such_table', 'SELEC 1', "SELECT 'x'::int"]) {
      await attempt(c, q, q);
    }
    await attempt(c, 'begin', 'BEGIN');
    await attempt(c, 'in tx', 'SELECT 1/0');
    await attempt(c, 'aborted tx', 'SELECT 2');
    await attempt(c, 'rollback', 'ROLLBACK');
    await attempt(c, 'after rollback', 'SELECT 3 AS three');
  });
}

// Named queries: pg parses a name once per connection and then only binds and executes it.
const byId = (id) => ({ name: 'by-id', text: 'SELECT name FROM n_items WHERE id = $1', values: [id] });
const countBelow = (id) => ({ name: 'count', text: 'SELECT count(*) FROM n_items WHERE id < $1', values: [id] });
const divide = (d) => ({ name: 'divide', text: 'SELECT 100 / $1::int AS q', values: [d] });

async function named() {
  await withClient(async (c) => {
    await c.query('DROP TABLE IF EXISTS n_items');
    await c.query('CREATE TABLE n_items (id int PRIMARY KEY, name text)');
    await c.query("INSERT INTO n_items SELECT g, 'n' || g FROM generate_series(1, 20) g");
    for (let i = 1; i <= 6; i++) await attempt(c, 'by-id', byId(i));
    for (const d of [2, 0, 4]) await attempt(c, `divide by ${d}`, divide(d));
    await attempt(c, 'bad named', { name: 'bad', text: 'SELEC $1', values: [1] });
    await attempt(c, 'bad named again', { name: 'bad', text: 'SELEC $1', values: [1] });
    await attempt(c, 'begin', 'BEGIN');
    await attempt(c, 'by-id in tx', byId(7));
    await attempt(c, 'new named in tx', countBelow(5));
    await attempt(c, 'error in tx', divide(0));
    await attempt(c, 'rollback', 'ROLLBACK');
    await attempt(c, 'count after rollback', countBelow(9));
    await attempt(c, 'by-id after rollback', byId(8));
  });
}

// Many queries handed to one client at once (pg queues them and sends each after the previous one's answer),
// one of them failing: the others are unaffected and every promise settles in order.
async function concurrentOnOneClient() {
  await withClient(async (c) => {
    const pending = [];
    for (let i = 0; i < 12; i++) {
      const query = i === 5 ? { text: 'SELECT 1 / $1::int', values: [0] }
        : i % 3 === 0 ? { name: 'sq', text: 'SELECT $1::int * $1::int AS sq', values: [i] }
          : { text: 'SELECT $1::int + 100 AS plus, pg_sleep(0.01) IS NOT NULL AS slept', values: [i] };
      pending.push(c.query(query));
    }
    const settled = await Promise.allSettled(pending);
    settled.forEach((s, i) => out('in flight', i, s.status === 'fulfilled' ? s.value.rows : errorLine(s.reason)));
  });
}

async function pool() {
  const p = new Pool({ ...TIMEOUTS, max: 4, idleTimeoutMillis: 1000 });
  try {
    const squares = await Promise.all([...Array(20).keys()].map((i) => p.query('SELECT $1::int * $1::int AS v', [i])));
    out('squares', squares.map((r) => r.rows[0].v));
    const client = await p.connect();
    try {
      await client.query('BEGIN');
      await client.query('DROP TABLE IF EXISTS n_pool');
      await client.query('CREATE TABLE n_pool (id int)');
      await client.query('INSERT INTO n_pool SELECT generate_series(1, 10)');
      await client.query('COMMIT');
      await attempt(client, 'committed on checked-out client', 'SELECT sum(id) FROM n_pool');
    } finally {
      client.release();
    }
    const eight = [...Array(8).keys()];
    const slow = await Promise.all(eight.map((i) => p.query('SELECT $1::int AS i, pg_sleep(0.05)', [i])));
    out('slow', slow.map((r) => r.rows[0].i));
    const named = await Promise.all(eight.map((i) => p.query({ name: 'pool-named', text: 'SELECT $1::int - 1 AS v',
      values: [i] })));
    out('named on pool', named.map((r) => r.rows[0].v));
  } finally {
    await p.end();
  }
}

async function large() {
  const text = Array.from({ length: 100000 }, (_, i) => String.fromCharCode(65 + (i % 26))).join('') + '€';
  const bytes = Buffer.from(Array.from({ length: 300000 }, (_, i) => i % 251));
  await withClient(async (c) => {
    for (let i = 0; i < 3; i++) {
      const res = await c.query({ name: i > 0 ? 'large' : undefined,
        text: 'SELECT length($1::text) AS tl, md5($1::text) AS tm,' +
          ' length($2::bytea) AS bl, md5($2::bytea) AS bm, $2::bytea AS echo',
        values: [text, bytes] });
      const row = res.rows[0];
      out('large', i, row.tl, row.tm, row.bl, row.bm, md5(row.echo));
      check(row.tl === 100001 && row.bm === md5(bytes), 'lengths and digests of large parameters');
    }
  });
}

const SCENARIOS = { types, errors, named, concurrent: concurrentOnOneClient, pool, large };

async function main() {
  const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(SCENARIOS);
  for (const name of names) {
    if (!SCENARIOS[name]) {
      console.error(`unknown scenario ${name} (have ${Object.keys(SCENARIOS).join(', ')})`);
      process.exit(2);
    }
    out('==', name);
    try {
      await SCENARIOS[name]();
    } catch (e) {
      out(`UNCAUGHT in ${name}:`, errorLine(e));
      console.error(e);
    }
  }
  out('END');
  process.exit(0); // a client left open by a failed scenario must not keep the process alive
}

main();
