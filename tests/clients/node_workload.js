// node-postgres (pg) through pgtenant, as a Node service would use it: a
// pool of clients sharing a small transaction-mode pool, parameterized
// (unnamed) and named prepared queries, transactions, multi-statement
// simple queries, errors with their SQLSTATE, type round-trips, and a
// statement ended by a transaction's own statement_timeout.
// Exits non-zero with the first error. Env: PGT_DSN; NODE_PATH finds pg.
'use strict';

const assert = require('node:assert/strict');
const { Pool } = require('pg');

const TASKS = 200;

async function task(pool, i) {
  const c = await pool.connect();
  try {
    const doubled = await c.query('SELECT $1::int * 2 AS v, current_user AS who', [i]);
    assert.equal(doubled.rows[0].v, i * 2);

    // A named statement: parsed once per pg client, then only bound; it
    // must follow the client to whichever server connection it gets.
    const counted = await c.query({
      name: 'items-upto',
      text: 'SELECT count(*)::int AS n FROM node_items WHERE id <= $1',
      values: [i % 50],
    });
    assert.equal(counted.rows[0].n, i % 50);

    await c.query('BEGIN');
    await c.query('UPDATE node_items SET hits = hits + 1 WHERE id = $1', [(i % 50) + 1]);
    const json = await c.query("SELECT $1::jsonb AS doc, '2026-12-06 12:30:00+02'::timestamptz AS at, 9007199254740993::bigint AS big", [{ i, tags: ['a', 'b'] }]);
    assert.deepEqual(json.rows[0].doc, { i, tags: ['a', 'b'] });
    assert.equal(json.rows[0].at.toISOString(), '2026-12-06T10:30:00.000Z');
    assert.equal(json.rows[0].big, '9007199254740993');
    await c.query('COMMIT');

    // An error carries its SQLSTATE; a failed transaction rolls back.
    await c.query('BEGIN');
    await assert.rejects(c.query('SELECT * FROM no_such_table'), (e) => e.code === '42P01');
    await assert.rejects(c.query('SELECT 1'), (e) => e.code === '25P02');
    await c.query('ROLLBACK');

    // Several statements in one simple Query: one result each.
    const many = await c.query("SELECT 1 AS a; SELECT 'two' AS b");
    assert.equal(many.length, 2);
    assert.equal(many[1].rows[0].b, 'two');

    const rows = await c.query({ text: 'SELECT id, name FROM node_items ORDER BY id LIMIT 3', rowMode: 'array' });
    assert.deepEqual(rows.rows[0], [1, 'item1']);
  } finally {
    c.release();
  }
}

async function main() {
  // Timeouts: a reply that never comes fails the run instead of hanging it.
  const pool = new Pool({
    connectionString: process.env.PGT_DSN,
    max: 8,
    connectionTimeoutMillis: 30000,
    query_timeout: 60000,
  });
  await pool.query('DROP TABLE IF EXISTS node_items');
  await pool.query('CREATE TABLE node_items (id int PRIMARY KEY, name text, hits int NOT NULL DEFAULT 0)');
  await pool.query("INSERT INTO node_items (id, name) SELECT g, 'item' || g FROM generate_series(1, 50) g");

  await Promise.all(Array.from({ length: TASKS }, (_, i) => task(pool, i)));

  const hits = await pool.query('SELECT sum(hits)::int AS n FROM node_items');
  assert.equal(hits.rows[0].n, TASKS);

  // The server's statement_timeout, set for one transaction, ends a long
  // statement with 57014; the next transaction runs without it.
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query("SET LOCAL statement_timeout = '200ms'");
    await assert.rejects(c.query('SELECT pg_sleep(30)'), (e) => e.code === '57014');
    await c.query('ROLLBACK');
    const slept = await c.query('SELECT 1 AS ok FROM pg_sleep(0.3)');
    assert.equal(slept.rows[0].ok, 1);
  } finally {
    c.release();
  }
  await pool.end();
  console.log(`node-postgres workload: ${TASKS} tasks ok`);
}

main().catch((e) => {
  console.error(`node-postgres workload failed: ${e.stack || e}`);
  process.exit(1);
});
