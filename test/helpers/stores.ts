/**
 * Fresh databases for tests: a SQLite file in a temp folder, or, when
 * COVERHELPER_TEST_PG names a PostgreSQL server, a new database on it made for
 * the test and dropped after (so test files run in parallel and leave nothing).
 * Tests that need PostgreSQL skip with a message when it is not named.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openStore } from '../../src/store/index.js';
import type { OpenStore, StoreOptions } from '../../src/store/index.js';
import { tempDir } from './tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];

export type Backend = 'sqlite' | 'postgres';

/** The server tests may make databases on, if any. */
export const testPg = process.env.COVERHELPER_TEST_PG;

/** Every database this run can test against. */
export const backends: Backend[] = testPg ? ['sqlite', 'postgres'] : ['sqlite'];

/** For `it(…, { skip })`: a reason to skip a PostgreSQL-only test, or false. */
export const skipWithoutPg: string | false = testPg ? false : 'PostgreSQL tests need COVERHELPER_TEST_PG (for example postgres://postgres@127.0.0.1:5432/test)';

/** A new, empty PostgreSQL database on the test server, dropped after the test; its URL. */
export async function freshPgDatabase(t: TestContext): Promise<string> {
  if (!testPg) throw new Error('COVERHELPER_TEST_PG is not set');
  const name = `coverhelper_t_${process.pid}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: testPg });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  t.after(async () => {
    const dropper = new pg.Client({ connectionString: testPg });
    await dropper.connect();
    try {
      await dropper.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await dropper.end();
    }
  });
  const url = new URL(testPg);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A fresh database of `backend`: its `--db` value. */
export async function freshDatabase(t: TestContext, backend: Backend): Promise<string> {
  if (backend === 'postgres') return freshPgDatabase(t);
  return path.join(await tempDir(t), 'test.sqlite');
}

/** Runs one statement on `db` over a connection of its own (`?` placeholders on both databases). */
export async function rawSql<T = Record<string, unknown>>(db: string, text: string, ...params: unknown[]): Promise<T[]> {
  if (db.startsWith('postgres')) {
    let n = 0;
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    try {
      return (await client.query(text.replace(/\?/g, () => `$${++n}`), params)).rows as T[];
    } finally {
      await client.end();
    }
  }
  const sqlite = new Database(db);
  try {
    const statement = sqlite.prepare(text);
    return statement.reader ? (statement.all(...params) as T[]) : (statement.run(...params), []);
  } finally {
    sqlite.close();
  }
}

/**
 * A store on a fresh database (or `options.db`), closed after the test (before
 * its database is dropped: `t.after` hooks run in the order they were added).
 */
export async function openTestStore(t: TestContext, backend: Backend, options: Partial<StoreOptions> = {}): Promise<{ store: OpenStore; db: string }> {
  const opened: { store?: OpenStore } = {};
  t.after(async () => {
    await opened.store?.close();
  });
  const db = options.db ?? (await freshDatabase(t, backend));
  // A task batch that fails to write fails the test (as an unhandled error) unless the test listens itself.
  const failLoudly = (error: unknown) => {
    throw error;
  };
  const store = await openStore({ db, node: 'test-node', leaseMs: 30_000, onTaskWriteError: failLoudly, ...options });
  opened.store = store;
  return { store, db };
}
