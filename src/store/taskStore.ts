/**
 * The task table: one row per URL with its download's status.
 *
 * Every change is handed to `update()` the moment it happens. Changes are
 * merged per URL and written through the serial writer, a batch per event-loop
 * turn in one transaction, so writes never interleave on SQLite's single
 * connection and 10,000 URLs arriving at once cost one transaction, not 10,000.
 * On SQLite each changed row is one prepared upsert run on the better-sqlite3
 * connection (see `writeSqlite`); other databases go through TypeORM.
 */
import { In, MoreThan } from 'typeorm';
import type { DataSource, EntityManager, Repository } from 'typeorm';
import { TaskEntity } from './entities.js';
import type { TaskRow } from './entities.js';
import type { TaskStatus } from '../../machines/types.js';
import type { SerialWriter } from './serialWriter.js';
import { sqliteStatements } from './sqlite.js';
import type { SqliteStatement, SqliteStatements } from './sqlite.js';

export type TaskPatch = Partial<Omit<TaskRow, 'url' | 'createdAt' | 'updatedAt'>> & { status?: TaskStatus };

type Batch = Map<string, { patch: TaskPatch; at: number }>;
type PatchProperty = keyof Omit<TaskRow, 'url' | 'createdAt' | 'updatedAt'>;

/** The columns a patch may set, in the order of the upsert's parameters (after `url`). */
const PATCH_COLUMNS: readonly (readonly [PatchProperty, string])[] = [
  ['status', 'status'],
  ['attempts', 'attempts'],
  ['errorCode', 'error_code'],
  ['errorMessage', 'error_message'],
  ['bytesDone', 'bytes_done'],
  ['bytesTotal', 'bytes_total'],
  ['startedAt', 'started_at'],
  ['finishedAt', 'finished_at'],
];

/** What a new row holds in the columns its first patch leaves out. */
const TASK_DEFAULTS: Record<PatchProperty, unknown> = {
  status: 'queued',
  attempts: 0,
  errorCode: null,
  errorMessage: null,
  bytesDone: 0,
  bytesTotal: null,
  startedAt: null,
  finishedAt: null,
};

/** The SQLite upsert that updates the columns in `mask` (bits in PATCH_COLUMNS order) and `updated_at`. */
function upsertSql(mask: number): string {
  const columns = PATCH_COLUMNS.map(([, column]) => column);
  const set = columns.filter((_, i) => mask & (1 << i)).map((column) => `${column} = excluded.${column}`);
  set.push('updated_at = excluded.updated_at');
  return (
    `INSERT INTO tasks (url, ${columns.join(', ')}, created_at, updated_at) VALUES (${Array(columns.length + 3).fill('?').join(', ')}) ` +
    `ON CONFLICT(url) DO UPDATE SET ${set.join(', ')}`
  );
}

export class TaskStore {
  private readonly repo: Repository<TaskRow>;
  private pending = new Map<string, { patch: TaskPatch; at: number }>();
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();
  /** SQLite: the prepared upsert per set of patched columns, and the batch's transaction. */
  private readonly upserts = new Map<number, SqliteStatement>();
  private sqliteBatch: { db: SqliteStatements['db']; write: (rows: Batch) => void } | undefined;

  constructor(
    private readonly dataSource: DataSource,
    private readonly writer: SerialWriter,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.repo = dataSource.getRepository(TaskEntity);
  }

  /** Records a change of the URL's task; written within this event-loop turn. */
  update(url: string, patch: TaskPatch): void {
    const entry = this.pending.get(url);
    if (entry) {
      Object.assign(entry.patch, patch);
      entry.at = this.now();
    } else {
      this.pending.set(url, { patch: { ...patch }, at: this.now() });
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.flush();
      });
    }
  }

  /** Writes everything recorded so far; resolves when it is on disk. */
  flush(): Promise<void> {
    if (this.pending.size === 0) return this.chain;
    const batch = this.pending;
    this.pending = new Map();
    this.chain = this.writer
      .run(async () => {
        const sqlite = sqliteStatements(this.dataSource);
        if (sqlite) this.writeSqlite(sqlite, batch);
        else await this.dataSource.transaction((manager) => this.write(manager, batch));
      })
      .catch(this.onError);
    return this.chain;
  }

  /**
   * SQLite: the whole batch in one transaction, one prepared upsert per URL that
   * sets only the columns its patch has (and `updated_at`); a new row gets the
   * defaults for the rest. Synchronous: nothing else runs on the connection meanwhile.
   */
  private writeSqlite(sqlite: SqliteStatements, batch: Batch): void {
    if (this.sqliteBatch?.db !== sqlite.db) {
      this.upserts.clear();
      this.sqliteBatch = { db: sqlite.db, write: sqlite.db.transaction((rows: Batch) => this.upsertRows(sqlite, rows)) };
    }
    this.sqliteBatch.write(batch);
  }

  private upsertRows(sqlite: SqliteStatements, batch: Batch): void {
    // One parameter array for the whole batch: each run binds it before the next row refills it.
    const values: unknown[] = new Array<unknown>(PATCH_COLUMNS.length + 3);
    for (const [url, { patch, at }] of batch) {
      let mask = 0;
      values[0] = url;
      for (let i = 0; i < PATCH_COLUMNS.length; i++) {
        const [property] = PATCH_COLUMNS[i]!;
        const value = patch[property];
        if (value === undefined) values[i + 1] = TASK_DEFAULTS[property];
        else {
          values[i + 1] = value;
          mask |= 1 << i;
        }
      }
      values[PATCH_COLUMNS.length + 1] = at;
      values[PATCH_COLUMNS.length + 2] = at;
      let statement = this.upserts.get(mask);
      if (!statement) {
        statement = sqlite.get(upsertSql(mask));
        this.upserts.set(mask, statement);
      }
      statement.run(values);
    }
  }

  /** Any other database: through TypeORM, update then insert if there was no row. */
  private async write(manager: EntityManager, batch: Batch): Promise<void> {
    const repo = manager.getRepository(TaskEntity);
    for (const [url, { patch, at }] of batch) {
      const result = await repo.update({ url }, { ...patch, updatedAt: at });
      if (!result.affected) {
        await repo.insert({
          url,
          status: 'queued',
          attempts: 0,
          errorCode: null,
          errorMessage: null,
          bytesDone: 0,
          bytesTotal: null,
          startedAt: null,
          finishedAt: null,
          ...patch,
          createdAt: at,
          updatedAt: at,
        });
      }
    }
  }

  /** Deletes the URL's task row (after writing any change still pending for it). */
  async remove(url: string): Promise<void> {
    await this.flush();
    await this.writer.run(() => this.repo.delete({ url }));
  }

  async get(url: string): Promise<TaskRow | null> {
    await this.flush();
    return this.repo.findOneBy({ url });
  }

  /** Tasks that failed (error or tle) and finished after `since` (epoch ms). */
  async failedSince(since: number): Promise<TaskRow[]> {
    await this.flush();
    return this.repo.find({ where: { status: In(['error', 'tle']), finishedAt: MoreThan(since) } });
  }

  /** Tasks, newest change first, optionally of one status. */
  async list(options: { status?: TaskStatus | undefined; limit: number; offset: number }): Promise<{ tasks: TaskRow[]; total: number }> {
    await this.flush();
    const where = options.status ? { status: options.status } : {};
    const [tasks, total] = await this.repo.findAndCount({ where, order: { updatedAt: 'DESC', url: 'ASC' }, take: options.limit, skip: options.offset });
    return { tasks, total };
  }

  /** Tasks that a restart must resume. */
  async unfinished(): Promise<TaskRow[]> {
    await this.flush();
    return this.repo.find({ where: { status: In(['waiting', 'queued', 'downloading']) }, order: { createdAt: 'ASC' } });
  }
}
