/**
 * The PostgreSQL server of the cluster scenario: its URL comes from
 * COVERHELPER_BENCH_PG, else COVERHELPER_TEST_PG (the tests' server). Each part
 * of a run makes a fresh database on it (`coverhelper_bench_…`) and drops it
 * after (`WITH (FORCE)`: nodes still connected do not hold the drop up).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface PgServer {
  url: string;
  /** The environment variable it came from. */
  from: string;
}

/** The server named in the environment, if any. */
export function benchPgServer(): PgServer | undefined {
  for (const from of ['COVERHELPER_BENCH_PG', 'COVERHELPER_TEST_PG']) {
    const url = process.env[from];
    if (url) return { url, from };
  }
  return undefined;
}

/** Why `url` cannot be used (not a postgres:// URL, refused, timed out), or undefined when it answers. */
export async function pgUnreachable(url: string): Promise<string | undefined> {
  if (!/^postgres(ql)?:\/\//.test(url)) return `not a postgres:// URL: ${url}`;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return (error as Error).message || String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface PgDatabase {
  /** The `--db` value of the nodes. */
  url: string;
  name: string;
  /** One statement on this database (`$1` placeholders), over one connection kept for the part. */
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /** Closes that connection and drops the database. */
  drop(): Promise<void>;
}

async function onServer(server: string, text: string): Promise<void> {
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  try {
    await admin.query(text);
  } finally {
    await admin.end();
  }
}

/** A new, empty database on `server`, named after `part`. */
export async function freshPgDatabase(server: string, part: string): Promise<PgDatabase> {
  const name = `coverhelper_bench_${part}_${process.pid}_${randomBytes(4).toString('hex')}`;
  await onServer(server, `CREATE DATABASE "${name}"`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  let client: pg.Client | undefined;
  return {
    url: url.toString(),
    name,
    async query<T>(text: string, params: unknown[] = []) {
      if (!client) {
        client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
      }
      return (await client.query(text, params)).rows as T[];
    },
    async drop() {
      await client?.end().catch(() => undefined);
      client = undefined;
      await onServer(server, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}
