/**
 * PostgreSQL, for several nodes on one database. Statements run on TypeORM's
 * own connection pool (`pg`), written for PostgreSQL: arrays for batches
 * (`ANY`, `unnest`), `RETURNING` for claims.
 *
 *   publishing   every write's changes go out with `pg_notify` in the write's
 *                own transaction: other nodes hear a change if and only if it
 *                was committed. A message holds a batch of changes (under the
 *                8,000-byte payload limit); a single change too large for one
 *                tells listeners to read again what they await (`resync`).
 *   listening    one dedicated connection LISTENs; if it drops, `lost` is
 *                called at once and it reconnects with backoff, then `resync`.
 *   claims       `claimTasks` inserts or takes over task rows in one statement
 *                (a row another live node holds is left alone); the final
 *                status of a download releases this node's claim in the same
 *                transaction; `renewClaims` is one UPDATE for all of them
 *                but the ones the node no longer works on (`heldTasks` lists
 *                what it holds; clusterLink.ts tells which are strays).
 *   migrations   run under an advisory lock, so nodes started together on an
 *                empty database run them once.
 *   deadlocks    nodes write the same task rows at once (a herd asked of
 *                several nodes): each statement of a batch, and a claim, takes
 *                its rows in URL order, and so do the renewal and the release
 *                of claims, so two of them wait on each other in the same
 *                order; a transaction, claim, renewal, release or touch PostgreSQL still
 *                ends as a deadlock or a serialization failure (40P01, 40001:
 *                nothing of it was written) is run again, up to
 *                DEADLOCK_RETRIES times.
 */
import pg from 'pg';
import type { DataSource } from 'typeorm';
import type { TaskStatus } from '../../machines/types.js';
import { maskSecrets } from '../secrets.js';
import { COVER_COLUMNS, RESET_VARIANT_BYTES, coverFromRaw, coverParams, isFinal, SELECT_COVERS, TASK_DEFAULTS, TASK_EVENTS_PER_URL, TASK_PATCH_COLUMNS } from './dialect.js';
import type { CoverWriteOutcome, Dialect, Heard, ListenHandlers, Published, RawCover, TaskEventWrite, TaskWrite } from './dialect.js';
import { HOST_BACKFILL_BATCH, hostOfUrl, TASK_HOST_INDEXES } from './migrations.js';
import type { CoverRow } from './entities.js';
import type { ClaimOutcome, NewDeletion } from './ports.js';

/** The channel every node of one database listens on. */
export const CHANNEL = 'coverhelper';
/** PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more. */
const MAX_PAYLOAD = 7900;
/** Chosen once: the advisory lock key of migrations ("cover" in ASCII). */
const MIGRATION_LOCK = 0x636f766572;
/** Held by the one node building the tasks' indexes after a start (`finishSchema`); the others leave it to that node. */
const SCHEMA_LOCK = MIGRATION_LOCK + 1;
const UNFINISHED = "('waiting', 'queued', 'downloading')";

const UPSERT_COVER =
  `INSERT INTO covers (${COVER_COLUMNS.join(', ')}) VALUES (${COVER_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) ` +
  `ON CONFLICT (url) DO UPDATE SET ${COVER_COLUMNS.slice(1)
    .map((column) => `${column} = excluded.${column}`)
    .join(', ')}, ${RESET_VARIANT_BYTES}`;

/** The array type of each task column, for `unnest`. */
const TASK_COLUMN_TYPES: Record<string, string> = {
  status: 'text',
  attempts: 'int',
  error_code: 'text',
  error_message: 'text',
  bytes_done: 'bigint',
  bytes_total: 'bigint',
  started_at: 'bigint',
  finished_at: 'bigint',
  claimed_by: 'text',
  claim_expires: 'bigint',
};

/** The upsert of a batch of task rows that all set the columns in `mask`, one array parameter per column. */
function taskBatchSql(mask: number): string {
  const columns = TASK_PATCH_COLUMNS.map(([, column]) => column);
  const arrays = ['$1::text[]', ...columns.map((column, i) => `$${i + 2}::${TASK_COLUMN_TYPES[column]}[]`), `$${columns.length + 2}::bigint[]`, `$${columns.length + 3}::text[]`];
  const set = columns.filter((_, i) => mask & (1 << i)).map((column) => `${column} = excluded.${column}`);
  set.push('updated_at = excluded.updated_at');
  return (
    `INSERT INTO tasks (url, ${columns.join(', ')}, updated_at, host, created_at) ` +
    // Rows taken in URL order, byte by byte ("deadlocks" above).
    `SELECT *, u.updated FROM unnest(${arrays.join(', ')}) AS u(url, ${columns.join(', ')}, updated, host) ORDER BY u.url COLLATE "C" ` +
    `ON CONFLICT (url) DO UPDATE SET ${set.join(', ')}`
  );
}

/** Times a transaction, claim, renewal, release or touch that PostgreSQL ended as a deadlock (or serialization failure) is run again. */
export const DEADLOCK_RETRIES = 4;

/** Whether PostgreSQL ended the statement's transaction only because of another one: run again, it may pass. */
export function isDeadlock(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/**
 * Runs `attempt` again while it fails with a deadlock, at most DEADLOCK_RETRIES
 * times more, after a short random pause (so the two sides do not meet again at once).
 */
export async function retryDeadlocks<T>(attempt: () => Promise<T>, retries = DEADLOCK_RETRIES): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (tries >= retries || !isDeadlock(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * (tries + 1)));
    }
  }
}

/** The events of a batch, one array parameter per column. */
const INSERT_TASK_EVENTS =
  'INSERT INTO task_events (url, at, node, status, attempt, error_code, error_message, bytes) ' +
  'SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::bigint[])';
/** Drops each URL's events past the newest TASK_EVENTS_PER_URL (one seek per URL on the (url, id) index). */
const PRUNE_TASK_EVENTS =
  'DELETE FROM task_events e USING (SELECT u.url, (SELECT t.id FROM task_events t WHERE t.url = u.url ORDER BY t.id DESC OFFSET ' +
  `${TASK_EVENTS_PER_URL} LIMIT 1) AS cut FROM unnest($1::text[]) AS u(url)) c WHERE e.url = c.url AND e.id <= c.cut`;

/** Keeps an error message short enough for a notification. */
function shortPatch(change: Published): Published {
  if (change.kind !== 'task' || (change.patch.errorMessage?.length ?? 0) <= 500) return change;
  return { ...change, patch: { ...change.patch, errorMessage: `${change.patch.errorMessage!.slice(0, 500)}…` } };
}

/** The NOTIFY payloads carrying `changes` from `node`: as few as fit, each under the limit. */
export function payloads(node: string, changes: readonly Published[]): string[] {
  const out: string[] = [];
  let batch: string[] = [];
  let size = 0;
  const head = `{"n":${JSON.stringify(node)},"c":[`;
  const flush = () => {
    if (batch.length > 0) out.push(`${head}${batch.join(',')}]}`);
    batch = [];
    size = 0;
  };
  for (const change of changes) {
    const json = JSON.stringify(shortPatch(change));
    if (head.length + json.length + 2 > MAX_PAYLOAD) {
      // Too large to publish (a URL near 8 KB): listeners read again what they await.
      flush();
      out.push(JSON.stringify({ n: node, r: 1 }));
      continue;
    }
    if (head.length + size + json.length + batch.length + 2 > MAX_PAYLOAD) flush();
    batch.push(json);
    size += json.length;
  }
  flush();
  return out;
}

/** A connection error already told to the statement or the holder it concerns. */
const ignore = (): void => undefined;

export class PostgresDialect implements Dialect {
  readonly kind = 'postgres';
  readonly shared = true;
  readonly location: string;
  private listener: pg.Client | undefined;
  private handlers: ListenHandlers | undefined;
  private closing = false;
  private reconnectDelay = 250;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly dataSource: DataSource,
    private readonly url: string,
    private readonly node: string,
  ) {
    this.location = maskSecrets(url);
    // No connection error may end the process. The pool emits the errors of
    // idle clients (TypeORM listens; one more listener should that change), and
    // every client gets a listener of its own the moment it connects: the pool
    // hands a new client to its waiter while the first bytes are still being
    // read, so a connection killed as it opened (a storm of
    // pg_terminate_backend, a failover) would otherwise raise an unhandled
    // 'error' before any waiter could listen. The statement that was running
    // fails (its piece of work with it); the pool drops the client when it
    // comes back and opens another when one is needed.
    const pool = this.pool();
    if (pool.listenerCount('error') === 0) pool.on('error', ignore);
    pool.on('connect', (client) => client.on('error', ignore));
  }

  /** TypeORM's pool. */
  private pool(): pg.Pool {
    const pool = (this.dataSource.driver as unknown as { master?: pg.Pool }).master;
    if (!pool) throw new Error('the PostgreSQL data source is not initialized');
    return pool;
  }

  /**
   * Runs `work` in one transaction on one pooled connection, with `publish`
   * (or what it makes of the result) notified in it.
   */
  private async transaction<T>(publish: readonly Published[] | ((result: T) => readonly Published[]), work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // A deadlock rolled the whole transaction back: `work` runs again from the start.
    return retryDeadlocks(() => this.transactionOnce(publish, work));
  }

  private async transactionOnce<T>(publish: readonly Published[] | ((result: T) => readonly Published[]), work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool().connect();
    // Checked out, a client has no listener of the pool's: a connection lost
    // between two statements (the server restarted, pg_terminate_backend, an
    // idle killer) would be an unhandled 'error' that ends the process. Kept
    // here, it fails this transaction only; the pool drops the client.
    let lost: Error | undefined;
    const onError = (error: Error) => {
      lost ??= error;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await work(client);
      const changes = typeof publish === 'function' ? publish(result) : publish;
      for (const payload of payloads(this.node, changes)) await client.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (lost === undefined) await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.removeListener('error', onError);
      // A client whose connection is gone is destroyed, not put back.
      client.release(lost);
    }
  }

  async migrate(): Promise<string[]> {
    const lock = new pg.Client({ connectionString: this.url });
    // A connection lost while migrating fails the start (its statement rejects), never as an unhandled 'error'.
    lock.on('error', ignore);
    await lock.connect();
    try {
      await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      const ran = await this.dataSource.runMigrations({ transaction: 'each' });
      return ran.map((migration) => migration.name);
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await lock.end();
    }
  }

  async finishSchema(stopped: () => boolean): Promise<number> {
    const pool = this.pool();
    let given = 0;
    // Rows without a host (made before the column, or by a node of the version before it):
    // theirs, or '' for a URL that has none, so each row is looked at once.
    while (!stopped()) {
      const { rows } = await pool.query<{ url: string }>('SELECT url FROM tasks WHERE host IS NULL LIMIT $1', [HOST_BACKFILL_BATCH]);
      if (rows.length === 0) break;
      const urls = rows.map((row) => row.url);
      await pool.query('UPDATE tasks SET host = u.host FROM unnest($1::text[], $2::text[]) AS u(url, host) WHERE tasks.url = u.url AND tasks.host IS NULL', [urls, urls.map((url) => hostOfUrl(url) ?? '')]);
      given += rows.length;
      if (rows.length < HOST_BACKFILL_BATCH) break;
    }
    // One node builds the indexes; another that starts meanwhile leaves them to it (its next start looks again).
    const client = await pool.connect();
    let lost = false;
    const onError = () => (lost = true);
    client.on('error', onError);
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [SCHEMA_LOCK]);
      if (rows[0]?.locked !== true) return given;
      try {
        for (const [name, columns] of TASK_HOST_INDEXES) {
          if (stopped()) break;
          const found = await client.query<{ valid: boolean }>(
            'SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace',
            [name],
          );
          const valid = found.rows[0]?.valid;
          if (valid === true) continue;
          // A build cut off (a node stopped during it) leaves an invalid index: made again.
          if (valid === false) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
          await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON tasks (${columns.join(', ')})`);
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).catch(() => undefined);
      }
    } finally {
      client.removeListener('error', onError);
      client.release(lost);
    }
    return given;
  }

  async findCover(url: string): Promise<CoverRow | null> {
    const { rows } = await this.pool().query<RawCover>(`${SELECT_COVERS} WHERE url = $1`, [url]);
    return rows[0] ? coverFromRaw(rows[0]) : null;
  }

  async findCoverByPath(path: string): Promise<CoverRow | null> {
    const { rows } = await this.pool().query<RawCover>(`${SELECT_COVERS} WHERE path = $1 ORDER BY url LIMIT 1`, [path]);
    return rows[0] ? coverFromRaw(rows[0]) : null;
  }

  async setVariantBytes(path: string, bytes: number): Promise<void> {
    await this.pool().query('UPDATE covers SET variant_bytes = $1 WHERE path = $2', [bytes, path]);
  }

  async findCovers(urls: readonly string[]): Promise<CoverRow[]> {
    const { rows } = await this.pool().query<RawCover>(`${SELECT_COVERS} WHERE url = ANY($1::text[])`, [urls]);
    return rows.map(coverFromRaw);
  }

  async upsertCover(row: CoverRow, options: { unlessCustom?: boolean; replaced?: NewDeletion & { createdAt: number } }, publish: Published[]): Promise<CoverRow | null> {
    return this.transaction(publish, async (client) => {
      const saved = await client.query(`${UPSERT_COVER}${options.unlessCustom ? " WHERE covers.source <> 'custom'" : ''}`, coverParams(row));
      // The replaced file is recorded for deletion only when the row was written (a custom cover keeps its row).
      if (options.replaced && saved.rowCount !== 0) {
        const { url, path, kind, reason, createdAt } = options.replaced;
        await client.query(
          'INSERT INTO deletions (url, path, kind, reason, created_at, claimed_at) VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (url, path, kind) DO NOTHING',
          [url, path, kind, reason, createdAt],
        );
      }
      if (saved.rowCount !== 0) return null;
      const { rows } = await client.query<RawCover>(`${SELECT_COVERS} WHERE url = $1`, [row.url]);
      return rows[0] ? coverFromRaw(rows[0]) : null;
    });
  }

  async deleteCoverIfPath(url: string, path: string, publish: Published[]): Promise<boolean> {
    return this.transaction(publish, async (client) => (await client.query('DELETE FROM covers WHERE url = $1 AND path = $2', [url, path])).rowCount !== 0);
  }

  async markResolved(url: string, path: string, at: number, pic: string, publish: Published[]): Promise<boolean> {
    return this.transaction(publish, async (client) => (await client.query('UPDATE covers SET resolved_at = $1, resolved_pic = $2 WHERE url = $3 AND path = $4', [at, pic, url, path])).rowCount !== 0);
  }

  async setCoverColor(url: string, path: string, color: string, publish: Published[]): Promise<boolean> {
    return this.transaction(publish, async (client) => (await client.query('UPDATE covers SET color = $1 WHERE url = $2 AND path = $3 AND color IS NULL', [color, url, path])).rowCount !== 0);
  }

  async touchCovers(urls: readonly string[], now: number): Promise<void> {
    // Nodes touch the same hot rows: one ended as a deadlock is run again.
    await retryDeadlocks(() => this.pool().query('UPDATE covers SET last_asked_at = $1 WHERE url = ANY($2::text[])', [now, urls]));
  }

  /**
   * One statement per set of patched columns, each row's values in column
   * arrays (a new row gets its host); the events in one statement and each of
   * their URLs' oldest past the bound dropped in another; then this node's claims on the tasks that ended are released; all
   * in one transaction with the changes published.
   */
  async writeTasks(rows: readonly TaskWrite[], events: readonly TaskEventWrite[], publish: Published[]): Promise<CoverWriteOutcome[]> {
    const groups = new Map<number, TaskWrite[]>();
    const ended: string[] = [];
    // Each group's statement takes its rows in URL order itself (taskBatchSql); a batch's URLs are distinct (the ledger keeps one write per URL).
    for (const row of rows) {
      let mask = 0;
      for (let i = 0; i < TASK_PATCH_COLUMNS.length; i++) if (row.patch[TASK_PATCH_COLUMNS[i]![0]] !== undefined) mask |= 1 << i;
      let group = groups.get(mask);
      if (!group) groups.set(mask, (group = []));
      group.push(row);
      if (isFinal(row.patch.status)) ended.push(row.url);
    }
    await this.transaction(publish, async (client) => {
      for (const [mask, group] of groups) {
        const params: unknown[][] = [group.map((row) => row.url)];
        // A column the patch sets is written as given, nulls included; the others get a new row's defaults.
        for (const [property] of TASK_PATCH_COLUMNS) params.push(group.map((row) => (row.patch[property] === undefined ? TASK_DEFAULTS[property] : row.patch[property])));
        params.push(group.map((row) => row.at));
        params.push(group.map((row) => hostOfUrl(row.url)));
        await client.query(taskBatchSql(mask), params);
      }
      if (events.length > 0) {
        await client.query(INSERT_TASK_EVENTS, [
          events.map((e) => e.url),
          events.map((e) => e.at),
          events.map((e) => e.node),
          events.map((e) => e.status),
          events.map((e) => e.attempt),
          events.map((e) => e.errorCode),
          events.map((e) => e.errorMessage),
          events.map((e) => e.bytes),
        ]);
        await client.query(PRUNE_TASK_EVENTS, [[...new Set(events.map((e) => e.url))]]);
      }
      if (ended.length > 0) {
        await client.query('UPDATE tasks SET claimed_by = NULL, claim_expires = NULL WHERE url = ANY($1::text[]) AND claimed_by = $2', [ended, this.node]);
      }
    });
    // No cover rows: on a shared database a download's row is a write of its own (openStore).
    return [];
  }

  async deleteTask(url: string, publish: Published[]): Promise<TaskStatus | null> {
    return this.transaction(
      // Published only if a row was deleted, with the status it had.
      (status: TaskStatus | null) => (status === null ? [] : publish.map((change) => (change.kind === 'taskRemoved' ? { ...change, status } : change))),
      async (client) => {
        const status = (await client.query<{ status: TaskStatus }>('DELETE FROM tasks WHERE url = $1 RETURNING status', [url])).rows[0]?.status ?? null;
        await client.query('DELETE FROM task_events WHERE url = $1', [url]);
        return status;
      },
    );
  }

  async deleteFailedTasks(limit: number, at: number): Promise<{ url: string; status: TaskStatus }[]> {
    return this.transaction(
      (rows: { url: string; status: TaskStatus }[]) => rows.map(({ url, status }) => ({ kind: 'taskRemoved' as const, url, at, status })),
      async (client) => {
        // A failed row another node still holds (a retry it is about to start) is left alone; SKIP LOCKED passes rows being written.
        // Picked first, then deleted: a LIMIT … FOR UPDATE SKIP LOCKED subquery inside the DELETE may be run
        // again by the plan and take more than the limit.
        const picked = await client.query<{ url: string }>(
          "SELECT url FROM tasks WHERE status IN ('error', 'tle') AND (claimed_by IS NULL OR claim_expires < $2) ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED",
          [limit, at],
        );
        if (picked.rows.length === 0) return [];
        const { rows } = await client.query<{ url: string; status: TaskStatus }>(
          "DELETE FROM tasks WHERE url = ANY($1::text[]) AND status IN ('error', 'tle') RETURNING url, status",
          [picked.rows.map((row) => row.url)],
        );
        if (rows.length > 0) await client.query('DELETE FROM task_events WHERE url = ANY($1::text[])', [rows.map((row) => row.url)]);
        // Oldest first, as picked (RETURNING keeps no order).
        const order = new Map(picked.rows.map((row, i) => [row.url, i]));
        return rows.sort((a, b) => order.get(a.url)! - order.get(b.url)!);
      },
    );
  }

  async deleteUnstartedTasks(urls: readonly string[], at: number): Promise<{ url: string; status: TaskStatus }[]> {
    if (urls.length === 0) return [];
    return this.transaction(
      (rows: { url: string; status: TaskStatus }[]) => rows.map(({ url, status }) => ({ kind: 'taskRemoved' as const, url, at, status })),
      async (client) => {
        const { rows } = await client.query<{ url: string; status: TaskStatus }>(
          "DELETE FROM tasks WHERE url = ANY($1::text[]) AND status IN ('queued', 'waiting') AND (claimed_by = $2 OR claimed_by IS NULL) RETURNING url, status",
          [[...urls], this.node],
        );
        if (rows.length > 0) await client.query('DELETE FROM task_events WHERE url = ANY($1::text[])', [rows.map((row) => row.url)]);
        return rows;
      },
    );
  }

  async claimTasks(urls: readonly string[], status: 'queued' | 'waiting', node: string, now: number, until: number): Promise<ClaimOutcome> {
    const unique = [...new Set(urls)];
    // Taken in URL order by the statement's ORDER BY (see "deadlocks" above): nodes claiming the same URLs at once take them in the same order.
    const claimed = await retryDeadlocks(() =>
      this.pool().query<{ url: string }>(
        'INSERT INTO tasks (url, status, attempts, bytes_done, created_at, updated_at, claimed_by, claim_expires, host) ' +
          'SELECT u.url, $2, 0, 0, $4, $4, $3, $5, u.host FROM unnest($1::text[], $6::text[]) AS u(url, host) ORDER BY u.url COLLATE "C" ' +
          'ON CONFLICT (url) DO UPDATE SET claimed_by = excluded.claimed_by, claim_expires = excluded.claim_expires ' +
          'WHERE tasks.claimed_by IS NULL OR tasks.claimed_by = excluded.claimed_by OR tasks.claim_expires < $4 ' +
          'RETURNING url',
        [unique, status, node, now, until, unique.map(hostOfUrl)],
      ),
    );
    // Answered in the order asked: the supervisor queues this node's URLs in it.
    const got = new Set(claimed.rows.map((row) => row.url));
    const mine = unique.filter((url) => got.has(url));
    if (mine.length === unique.length) return { mine, elsewhere: [] };
    const rest = unique.filter((url) => !got.has(url));
    const { rows } = await this.pool().query<{ url: string; claimed_by: string | null }>('SELECT url, claimed_by FROM tasks WHERE url = ANY($1::text[])', [rest]);
    const holders = new Map(rows.map((row) => [row.url, row.claimed_by]));
    const elsewhere: [string, string][] = [];
    const free: string[] = [];
    for (const url of rest) {
      const holder = holders.get(url);
      if (holder) elsewhere.push([url, holder]);
      else free.push(url); // released since: claim again
    }
    if (free.length === 0) return { mine, elsewhere };
    const again = await this.claimTasks(free, status, node, now, until);
    return { mine: [...mine, ...again.mine], elsewhere: [...elsewhere, ...again.elsewhere] };
  }

  async renewClaims(node: string, until: number, except: readonly string[]): Promise<number> {
    // Rows locked in URL order, as every batch and claim takes them; a deadlock is renewed again.
    const result = await retryDeadlocks(() =>
      this.pool().query(
        'UPDATE tasks SET claim_expires = $2 WHERE claimed_by = $1 AND url IN (' +
          `SELECT url FROM tasks WHERE claimed_by = $1 AND status IN ${UNFINISHED} AND NOT (url = ANY($3::text[])) ORDER BY url COLLATE "C" FOR UPDATE)`,
        [node, until, except],
      ),
    );
    return result.rowCount ?? 0;
  }

  async heldTasks(node: string): Promise<string[]> {
    const { rows } = await this.pool().query<{ url: string }>(`SELECT url FROM tasks WHERE claimed_by = $1 AND status IN ${UNFINISHED}`, [node]);
    return rows.map((row) => row.url);
  }

  async orphanedTasks(_node: string, now: number, limit: number): Promise<string[]> {
    const { rows } = await this.pool().query<{ url: string }>(
      `SELECT url FROM tasks WHERE status IN ${UNFINISHED} AND (claimed_by IS NULL OR claim_expires < $1) ORDER BY created_at LIMIT $2`,
      [now, limit],
    );
    return rows.map((row) => row.url);
  }

  async releaseClaims(node: string, urls?: readonly string[]): Promise<void> {
    // Rows locked in URL order, as every batch and claim takes them; a deadlock is released again.
    const mine = urls === undefined ? 'claimed_by = $1' : 'claimed_by = $1 AND url = ANY($2::text[])';
    await retryDeadlocks(() =>
      this.pool().query(
        `UPDATE tasks SET claimed_by = NULL, claim_expires = NULL WHERE claimed_by = $1 AND url IN (SELECT url FROM tasks WHERE ${mine} ORDER BY url COLLATE "C" FOR UPDATE)`,
        urls === undefined ? [node] : [node, urls],
      ),
    );
  }

  async publish(changes: Published[]): Promise<void> {
    for (const payload of payloads(this.node, changes)) await this.pool().query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
  }

  async listen(handlers: ListenHandlers): Promise<void> {
    this.handlers = handlers;
    await this.connectListener();
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: `coverhelper-listen:${this.node}`.slice(0, 63) });
    let gone = false;
    const lose = () => {
      if (gone) return;
      gone = true;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.listener === client) this.listener = undefined;
      if (this.closing) return;
      this.handlers?.lost();
      this.scheduleReconnect();
    };
    client.on('error', lose);
    client.on('end', lose);
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload !== undefined) this.heard(message.payload);
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.listener = client;
    this.reconnectDelay = 250;
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer !== undefined) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connectListener().then(
        () => this.handlers?.resync(),
        () => {
          this.reconnectDelay = Math.min(5000, this.reconnectDelay * 2);
          this.scheduleReconnect();
        },
      );
    }, this.reconnectDelay);
    this.reconnectTimer.unref();
  }

  private heard(payload: string): void {
    let message: { n?: unknown; c?: unknown; r?: unknown };
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      return;
    }
    if (typeof message.n !== 'string' || message.n === this.node) return;
    if (message.r === 1) {
      this.handlers?.resync();
      return;
    }
    if (Array.isArray(message.c)) this.handlers?.heard({ node: message.n, changes: message.c as Heard['changes'] });
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    await this.listener?.end().catch(() => undefined);
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}
