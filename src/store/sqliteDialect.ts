/**
 * SQLite, for one node: the statements run for every download or check are
 * prepared once on TypeORM's better-sqlite3 connection and run directly,
 * without TypeORM's query builder; batches are synchronous better-sqlite3
 * transactions. They share TypeORM's one connection, so every write goes
 * through the serial writer like every other write (the stores see to that).
 *
 * One node uses the file, so nothing is published beyond this process and
 * every claim is this node's: nothing to write for them.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { DataSource } from 'typeorm';
import type { TaskStatus } from '../../machines/types.js';
import { COVER_COLUMNS, RESET_VARIANT_BYTES, coverFromRaw, coverParams, SELECT_COVERS, TASK_DEFAULTS, TASK_EVENT_COLUMNS, TASK_EVENTS_PER_URL, TASK_PATCH_COLUMNS, taskEventParams } from './dialect.js';
import type { CoverWrite, CoverWriteOutcome, Dialect, Published, RawCover, TaskEventWrite, TaskWrite } from './dialect.js';
import { hostOfUrl } from './migrations.js';
import type { CoverRow } from './entities.js';
import type { ClaimOutcome, NewDeletion } from './ports.js';

type Statement = BetterSqlite3.Statement;

const UPSERT_COVER =
  `INSERT INTO covers (${COVER_COLUMNS.join(', ')}) VALUES (${COVER_COLUMNS.map(() => '?').join(', ')}) ` +
  `ON CONFLICT(url) DO UPDATE SET ${COVER_COLUMNS.slice(1)
    .map((column) => `${column} = excluded.${column}`)
    .join(', ')}, ${RESET_VARIANT_BYTES}`;
const UPSERT_COVER_UNLESS_CUSTOM = `${UPSERT_COVER} WHERE covers.source <> 'custom'`;
const INSERT_TASK_EVENT = `INSERT INTO task_events (${TASK_EVENT_COLUMNS.join(', ')}) VALUES (${TASK_EVENT_COLUMNS.map(() => '?').join(', ')})`;
/** Drops the URL's events past the newest TASK_EVENTS_PER_URL (one seek on the (url, id) index). */
const PRUNE_TASK_EVENTS = `DELETE FROM task_events WHERE url = ? AND id <= (SELECT id FROM task_events WHERE url = ? ORDER BY id DESC LIMIT 1 OFFSET ${TASK_EVENTS_PER_URL})`;
const DELETE_TASK_EVENTS = 'DELETE FROM task_events WHERE url IN (SELECT value FROM json_each(?))';
const INSERT_DELETION = 'INSERT OR IGNORE INTO deletions (url, path, kind, reason, created_at, claimed_at) VALUES (?, ?, ?, ?, ?, NULL)';

/** The upsert that sets the columns in `mask` (bits in TASK_PATCH_COLUMNS order) and `updated_at`. */
function taskUpsertSql(mask: number): string {
  const columns = TASK_PATCH_COLUMNS.map(([, column]) => column);
  const set = columns.filter((_, i) => mask & (1 << i)).map((column) => `${column} = excluded.${column}`);
  set.push('updated_at = excluded.updated_at');
  return (
    `INSERT INTO tasks (url, ${columns.join(', ')}, created_at, updated_at, host) VALUES (${Array(columns.length + 4).fill('?').join(', ')}) ` +
    `ON CONFLICT(url) DO UPDATE SET ${set.join(', ')}`
  );
}

export class SqliteDialect implements Dialect {
  readonly kind = 'sqlite';
  readonly shared = false;
  private db: BetterSqlite3.Database | undefined;
  private statements = new Map<string, Statement>();
  private writeBatch: ((rows: readonly TaskWrite[], events: readonly TaskEventWrite[], covers: readonly CoverWrite[]) => CoverWriteOutcome[]) | undefined;
  private deleteFailed: ((limit: number) => { url: string; status: TaskStatus }[]) | undefined;
  private deleteOne: ((url: string) => TaskStatus | null) | undefined;
  private deleteUnstarted: ((urls: readonly string[]) => { url: string; status: TaskStatus }[]) | undefined;
  private upsertCoverWithDeletion: ((row: CoverRow, replaced: NewDeletion & { createdAt: number }, unlessCustom: boolean) => boolean) | undefined;

  constructor(
    readonly dataSource: DataSource,
    /** The file. */
    readonly location: string,
  ) {}

  /** The better-sqlite3 connection under TypeORM (followed if the data source is initialized again). */
  private connection(): BetterSqlite3.Database {
    const db = (this.dataSource.driver as unknown as { databaseConnection?: BetterSqlite3.Database }).databaseConnection;
    if (!db?.open) throw new Error('the SQLite data source is not initialized');
    if (db !== this.db) {
      this.db = db;
      this.statements = new Map();
      this.writeBatch = undefined;
      this.deleteFailed = undefined;
      this.deleteOne = undefined;
      this.deleteUnstarted = undefined;
      this.upsertCoverWithDeletion = undefined;
    }
    return db;
  }

  /** The statement for `sql`, prepared on first use. */
  private statement(sql: string): Statement {
    const db = this.connection();
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  async migrate(): Promise<string[]> {
    const ran = await this.dataSource.runMigrations({ transaction: 'each' });
    return ran.map((migration) => migration.name);
  }

  async findCover(url: string): Promise<CoverRow | null> {
    return this.findCoverNow(url);
  }

  async findCoverByPath(path: string): Promise<CoverRow | null> {
    const found = this.statement(`${SELECT_COVERS} WHERE path = ? ORDER BY url LIMIT 1`).get(path) as RawCover | undefined;
    return found ? coverFromRaw(found) : null;
  }

  async setVariantBytes(path: string, bytes: number): Promise<void> {
    this.statement('UPDATE covers SET variant_bytes = ? WHERE path = ?').run(bytes, path);
  }

  async findCovers(urls: readonly string[]): Promise<CoverRow[]> {
    const rows = this.statement(`${SELECT_COVERS} WHERE url IN (SELECT value FROM json_each(?))`).all(JSON.stringify(urls)) as RawCover[];
    return rows.map(coverFromRaw);
  }

  async upsertCover(row: CoverRow, options: { unlessCustom?: boolean; replaced?: NewDeletion & { createdAt: number } }): Promise<CoverRow | null> {
    return this.upsertCoverNow(row, options.unlessCustom === true, options.replaced);
  }

  /** The upsert, synchronously (inside a batch's transaction, the replaced file's record is in a savepoint with it). */
  private upsertCoverNow(row: CoverRow, unlessCustom: boolean, replaced: (NewDeletion & { createdAt: number }) | undefined): CoverRow | null {
    if (replaced) {
      this.connection();
      this.upsertCoverWithDeletion ??= this.connection().transaction((cover: CoverRow, deletion: NewDeletion & { createdAt: number }, keepCustom: boolean) => {
        // The replaced file is recorded for deletion only when the row was written (a custom cover keeps its row).
        if (this.statement(keepCustom ? UPSERT_COVER_UNLESS_CUSTOM : UPSERT_COVER).run(coverParams(cover)).changes === 0) return false;
        this.statement(INSERT_DELETION).run(deletion.url, deletion.path, deletion.kind, deletion.reason, deletion.createdAt);
        return true;
      });
      return this.upsertCoverWithDeletion(row, replaced, unlessCustom) ? null : this.findCoverNow(row.url);
    }
    if (!unlessCustom) {
      this.statement(UPSERT_COVER).run(coverParams(row));
      return null;
    }
    if (this.statement(UPSERT_COVER_UNLESS_CUSTOM).run(coverParams(row)).changes > 0) return null;
    return this.findCoverNow(row.url);
  }

  private findCoverNow(url: string): CoverRow | null {
    const found = this.statement(`${SELECT_COVERS} WHERE url = ?`).get(url) as RawCover | undefined;
    return found ? coverFromRaw(found) : null;
  }

  async deleteCoverIfPath(url: string, path: string): Promise<boolean> {
    return this.statement('DELETE FROM covers WHERE url = ? AND path = ?').run(url, path).changes > 0;
  }

  async markResolved(url: string, path: string, at: number, pic: string): Promise<boolean> {
    return this.statement('UPDATE covers SET resolved_at = ?, resolved_pic = ? WHERE url = ? AND path = ?').run(at, pic, url, path).changes > 0;
  }

  async setCoverColor(url: string, path: string, color: string): Promise<boolean> {
    return this.statement('UPDATE covers SET color = ? WHERE url = ? AND path = ? AND color IS NULL').run(color, url, path).changes > 0;
  }

  async touchCovers(urls: readonly string[], now: number): Promise<void> {
    this.statement('UPDATE covers SET last_asked_at = ? WHERE url IN (SELECT value FROM json_each(?))').run(now, JSON.stringify(urls));
  }

  /**
   * The batch in one transaction: first the cover rows, each on its own (a
   * statement that fails is undone alone and is that cover's outcome, unless
   * it ended the transaction); then one prepared upsert per task row that sets
   * only the columns its patch has (and `updated_at`); a new row gets the
   * defaults for the rest, and its host. Then the events, and each of their
   * URLs' oldest events past the bound dropped. Synchronous: nothing else runs
   * on the connection meanwhile.
   */
  async writeTasks(rows: readonly TaskWrite[], events: readonly TaskEventWrite[], _publish: Published[] = [], covers: readonly CoverWrite[] = []): Promise<CoverWriteOutcome[]> {
    const db = this.connection();
    this.writeBatch ??= db.transaction((batch: readonly TaskWrite[], added: readonly TaskEventWrite[], saved: readonly CoverWrite[]) => {
      const outcomes: CoverWriteOutcome[] = new Array<CoverWriteOutcome>(saved.length);
      for (let i = 0; i < saved.length; i++) {
        const { row, unlessCustom, replaced } = saved[i]!;
        try {
          outcomes[i] = { row: this.upsertCoverNow(row, unlessCustom, replaced) };
        } catch (error) {
          // A fault that ended the transaction (disk full, I/O) fails the whole batch.
          if (!db.inTransaction) throw error;
          outcomes[i] = { error };
        }
      }
      // One parameter array for the whole batch: each run binds it before the next row refills it.
      const values: unknown[] = new Array<unknown>(TASK_PATCH_COLUMNS.length + 4);
      for (const { url, patch, at } of batch) {
        let mask = 0;
        values[0] = url;
        for (let i = 0; i < TASK_PATCH_COLUMNS.length; i++) {
          const [property] = TASK_PATCH_COLUMNS[i]!;
          const value = patch[property];
          if (value === undefined) values[i + 1] = TASK_DEFAULTS[property];
          else {
            values[i + 1] = value;
            mask |= 1 << i;
          }
        }
        values[TASK_PATCH_COLUMNS.length + 1] = at;
        values[TASK_PATCH_COLUMNS.length + 2] = at;
        values[TASK_PATCH_COLUMNS.length + 3] = hostOfUrl(url);
        this.statement(taskUpsertSql(mask)).run(values);
      }
      if (added.length === 0) return outcomes;
      const insert = this.statement(INSERT_TASK_EVENT);
      for (const event of added) insert.run(taskEventParams(event));
      const prune = this.statement(PRUNE_TASK_EVENTS);
      for (const url of new Set(added.map((event) => event.url))) prune.run(url, url);
      return outcomes;
    });
    return this.writeBatch(rows, events, covers);
  }

  async deleteTask(url: string): Promise<TaskStatus | null> {
    this.deleteOne ??= this.connection().transaction((target: string) => {
      const removed = this.statement('DELETE FROM tasks WHERE url = ? RETURNING status').get(target) as { status: TaskStatus } | undefined;
      this.statement('DELETE FROM task_events WHERE url = ?').run(target);
      return removed?.status ?? null;
    });
    return this.deleteOne(url);
  }

  async deleteUnstartedTasks(urls: readonly string[]): Promise<{ url: string; status: TaskStatus }[]> {
    if (urls.length === 0) return [];
    this.deleteUnstarted ??= this.connection().transaction((targets: readonly string[]) => {
      const removed = this.statement("DELETE FROM tasks WHERE status IN ('queued', 'waiting') AND url IN (SELECT value FROM json_each(?)) RETURNING url, status").all(JSON.stringify(targets)) as {
        url: string;
        status: TaskStatus;
      }[];
      if (removed.length > 0) this.statement(DELETE_TASK_EVENTS).run(JSON.stringify(removed.map((row) => row.url)));
      return removed;
    });
    return this.deleteUnstarted(urls);
  }

  async deleteFailedTasks(limit: number): Promise<{ url: string; status: TaskStatus }[]> {
    this.deleteFailed ??= this.connection().transaction((most: number) => {
      const removed = this.statement(
        "DELETE FROM tasks WHERE url IN (SELECT url FROM tasks WHERE status IN ('error', 'tle') ORDER BY updated_at LIMIT ?) RETURNING url, status",
      ).all(most) as { url: string; status: TaskStatus }[];
      if (removed.length > 0) this.statement(DELETE_TASK_EVENTS).run(JSON.stringify(removed.map((row) => row.url)));
      return removed;
    });
    return this.deleteFailed(limit);
  }

  async claimTasks(urls: readonly string[]): Promise<ClaimOutcome> {
    return { mine: [...urls], elsewhere: [] };
  }

  async renewClaims(): Promise<number> {
    return 0;
  }

  async orphanedTasks(): Promise<string[]> {
    return [];
  }

  async heldTasks(): Promise<string[]> {
    return [];
  }

  async releaseClaims(): Promise<void> {}

  async publish(_changes: Published[]): Promise<void> {}

  async listen(): Promise<void> {}

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}
