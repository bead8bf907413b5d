/**
 * What differs between the databases, behind one interface (as pg-boss keeps
 * every SQLite/PostgreSQL difference behind one `Dialect`): the statements on
 * the hot paths, claims, and how a change reaches other nodes. Everything else
 * the stores do goes through TypeORM repositories, the same on both.
 *
 *   sqliteDialect.ts    one node: prepared better-sqlite3 statements on the
 *                       hot paths, synchronous transactions, nothing published
 *                       beyond this process
 *   postgresDialect.ts  several nodes: claims with leases, every write's changes
 *                       published by NOTIFY in its own transaction and heard
 *                       through LISTEN, migrations under an advisory lock
 *
 * Every write method takes the changes it makes (`Published`); a dialect that
 * shares its database publishes them in the write's transaction, so a change is
 * heard by other nodes if and only if it was committed.
 */
import type { DataSource } from 'typeorm';
import type { TaskStatus } from '../../machines/types.js';
import type { CoverRow, TaskEventRow, TaskRow } from './entities.js';
import type { ClaimOutcome, NewDeletion, TaskPatch } from './ports.js';

/** The covers table's columns, in the order the hot-path statements of both dialects name them. */
export const COVER_COLUMNS = ['url', 'path', 'source', 'bytes', 'content_type', 'width', 'height', 'sha256', 'created_at', 'last_asked_at', 'resolved_at', 'resolved_pic', 'original_path', 'original_width', 'original_height', 'original_bytes', 'color'] as const;
export const SELECT_COVERS = `SELECT ${COVER_COLUMNS.join(', ')} FROM covers`;
/**
 * The upsert's last assignment: a row whose path changes (a new download, an
 * upload) no longer has the old path's variants, so their bytes go to zero
 * (the old files are removed with the old path).
 */
export const RESET_VARIANT_BYTES = 'variant_bytes = CASE WHEN covers.path = excluded.path THEN covers.variant_bytes ELSE 0 END';

/** A covers row as a driver hands it out (PostgreSQL's pg gives bigint columns as strings). */
export interface RawCover {
  url: string;
  path: string;
  source: CoverRow['source'];
  bytes: number | string;
  content_type: string;
  width: number;
  height: number;
  sha256: string;
  created_at: number | string;
  last_asked_at: number | string;
  resolved_at: number | string | null;
  resolved_pic: string | null;
  original_path: string | null;
  original_width: number | null;
  original_height: number | null;
  original_bytes: number | string | null;
  color: string | null;
}

export function coverFromRaw(row: RawCover): CoverRow {
  return {
    url: row.url,
    path: row.path,
    source: row.source,
    bytes: Number(row.bytes),
    contentType: row.content_type,
    width: row.width,
    height: row.height,
    sha256: row.sha256,
    createdAt: Number(row.created_at),
    lastAskedAt: Number(row.last_asked_at),
    resolvedAt: row.resolved_at === null ? null : Number(row.resolved_at),
    resolvedPic: row.resolved_pic,
    originalPath: row.original_path,
    originalWidth: row.original_width,
    originalHeight: row.original_height,
    originalBytes: row.original_bytes === null ? null : Number(row.original_bytes),
    color: row.color,
  };
}

/** A cover's values in COVER_COLUMNS order: the upsert's parameters. */
export function coverParams(row: CoverRow): unknown[] {
  return [row.url, row.path, row.source, row.bytes, row.contentType, row.width, row.height, row.sha256, row.createdAt, row.lastAskedAt, row.resolvedAt, row.resolvedPic, row.originalPath, row.originalWidth, row.originalHeight, row.originalBytes, row.color];
}

/** A change as other nodes hear it. */
export type Published =
  | { kind: 'task'; url: string; at: number; patch: TaskPatch }
  | { kind: 'taskRemoved'; url: string; at: number; status: TaskStatus }
  | { kind: 'cover'; url: string; removed: boolean }
  | { kind: 'gate'; paused: boolean }
  /** A job row changed: listeners read it again. */
  | { kind: 'job'; id: string };

/** How many timeline events are kept per URL: the oldest go when more are written. */
export const TASK_EVENTS_PER_URL = 40;
/** The longest error message a timeline event keeps. */
export const TASK_EVENT_MESSAGE_MAX = 1000;

/** One timeline event to be written (a `TaskEventRow` without its id). */
export type TaskEventWrite = Omit<TaskEventRow, 'id'>;

/** The columns of `task_events` in the order both dialects' inserts name them. */
export const TASK_EVENT_COLUMNS = ['url', 'at', 'node', 'status', 'attempt', 'error_code', 'error_message', 'bytes'] as const;

/** An event's values in TASK_EVENT_COLUMNS order. */
export function taskEventParams(event: TaskEventWrite): unknown[] {
  return [event.url, event.at, event.node, event.status, event.attempt, event.errorCode, event.errorMessage, event.bytes];
}

/** One task row's merged changes, to be written. */
export interface TaskWrite {
  url: string;
  patch: TaskPatch;
  at: number;
}

/** A cover row to be written with a task batch (a download's row, after its file is in place). */
export interface CoverWrite {
  row: CoverRow;
  /** A custom row is kept (and answered) instead of being replaced. */
  unlessCustom: boolean;
  /** The file the row replaces, recorded for deletion when the row is written. */
  replaced?: NewDeletion & { createdAt: number };
}

/** What became of one cover write of a batch: saved (`row` null), refused (`row` the custom row kept), or its statement's error. */
export type CoverWriteOutcome = { row: CoverRow | null } | { error: unknown };

/** What another node published, as the listener hands it over. */
export interface Heard {
  node: string;
  changes: Published[];
}

export interface ListenHandlers {
  /** Changes another node published. */
  heard(message: Heard): void;
  /** Notifications can no longer be heard (the listener's connection dropped). */
  lost(): void;
  /** Listening again after `lost` (or a message too large was skipped): what was missed must be read again. */
  resync(): void;
}

export interface Dialect {
  readonly kind: 'sqlite' | 'postgres';
  /** Several nodes may use this database. */
  readonly shared: boolean;
  readonly dataSource: DataSource;
  /** Where the data lives: a file path, or a URL without its password. */
  readonly location: string;

  /**
   * After the start, in the background: schema work a shared database does
   * outside the migrations' transaction (PostgreSQL: the tasks' host for rows
   * without one, a batch at a time, and the admin list's indexes built
   * CONCURRENTLY), checking `stopped` between steps. Resolves with the rows given
   * a host. SQLite does it all in its migration.
   */
  finishSchema?(stopped: () => boolean): Promise<number>;
  /** Runs the migrations not yet run (once across nodes); resolves with their names. */
  migrate(): Promise<string[]>;

  findCover(url: string): Promise<CoverRow | null>;
  /** The row whose cover is stored at `path` (the first by URL if several share it). */
  findCoverByPath(path: string): Promise<CoverRow | null>;
  /** Records the bytes of the variants kept beside the cover stored at `path`. */
  setVariantBytes(path: string, bytes: number): Promise<void>;
  /** The rows of these URLs (any number of them). */
  findCovers(urls: readonly string[]): Promise<CoverRow[]>;
  /**
   * Inserts or replaces a cover row. With `unlessCustom`, a custom row is kept
   * and returned; with `replaced`, the deletion of the file it replaces is
   * recorded in the same transaction. Null when `row` was saved.
   */
  upsertCover(row: CoverRow, options: { unlessCustom?: boolean; replaced?: NewDeletion & { createdAt: number } }, publish: Published[]): Promise<CoverRow | null>;
  /** Deletes the URL's row if it points at `path`; whether it did. */
  deleteCoverIfPath(url: string, path: string, publish: Published[]): Promise<boolean>;
  /** Sets `last_asked_at` of these URLs (one statement). */
  touchCovers(urls: readonly string[], now: number): Promise<void>;
  /** Records that the URL's video page was resolved at `at` to `pic`, if its row still points at `path`. */
  markResolved(url: string, path: string, at: number, pic: string, publish: Published[]): Promise<boolean>;
  /** Sets the URL's colour if its row still points at `path` and has none yet; whether it did. */
  setCoverColor(url: string, path: string, color: string, publish: Published[]): Promise<boolean>;

  /**
   * Writes a batch of task changes and their timeline events in one
   * transaction (a new row is given its host), then drops each URL's events
   * past the newest `TASK_EVENTS_PER_URL`; on a shared database it also
   * releases this node's claims on the tasks it finished. On a database one
   * node uses (SQLite), the cover rows `covers` (as `upsertCover` with
   * `unlessCustom`/`replaced`) go in the same transaction, first: one commit
   * for a turn's downloads, not one more each. Resolves with each cover's
   * outcome, in order: a cover whose statement fails is that cover's error
   * alone (the statement is undone, the rest commits). A shared database's
   * dialect takes no covers (nodes' batches would lock task and cover rows in
   * their own orders) and resolves with none.
   */
  writeTasks(rows: readonly TaskWrite[], events: readonly TaskEventWrite[], publish: Published[], covers?: readonly CoverWrite[]): Promise<CoverWriteOutcome[]>;
  /**
   * Deletes up to `limit` rows that are `error` or `tle` (on a shared database
   * claimed by nobody, or by a node whose claim ran out by `at`), oldest change
   * first, and their events; the rows deleted. Each is published as `taskRemoved`.
   */
  deleteFailedTasks(limit: number, at: number): Promise<{ url: string; status: TaskStatus }[]>;
  /** Deletes the URL's task row (and its events); its status before, or null when there was none. */
  deleteTask(url: string, publish: Published[]): Promise<TaskStatus | null>;
  /**
   * Deletes, in one statement, the rows of `urls` that are still `queued` or
   * `waiting` (on a shared database: claimed by this node or by nobody); the
   * rows deleted, with their status. Each is published as `taskRemoved`.
   */
  deleteUnstartedTasks(urls: readonly string[], at: number): Promise<{ url: string; status: TaskStatus }[]>;

  /** Claims task rows for `node` until `until` (see `Claims.claim`). */
  claimTasks(urls: readonly string[], status: 'queued' | 'waiting', node: string, now: number, until: number): Promise<ClaimOutcome>;
  /** Extends `node`'s claims on unfinished tasks to `until`, but not those of the URLs in `except`. */
  renewClaims(node: string, until: number, except: readonly string[]): Promise<number>;
  orphanedTasks(node: string, now: number, limit: number): Promise<string[]>;
  /** The unfinished tasks `node` holds claims on. */
  heldTasks(node: string): Promise<string[]>;
  /** Lets go of `node`'s claims: all of them, or those of `urls`. */
  releaseClaims(node: string, urls?: readonly string[]): Promise<void>;

  /** Publishes changes that no row write carries (the gate). */
  publish(changes: Published[]): Promise<void>;
  /** Starts hearing what other nodes publish (nothing to hear on a database one node uses). */
  listen(handlers: ListenHandlers): Promise<void>;

  close(): Promise<void>;
}

type PatchProperty = keyof Omit<TaskRow, 'url' | 'createdAt' | 'updatedAt' | 'host'>;

/** The columns a task patch may set, in the order of the upsert's parameters (after `url`). */
export const TASK_PATCH_COLUMNS: readonly (readonly [PatchProperty, string])[] = [
  ['status', 'status'],
  ['attempts', 'attempts'],
  ['errorCode', 'error_code'],
  ['errorMessage', 'error_message'],
  ['bytesDone', 'bytes_done'],
  ['bytesTotal', 'bytes_total'],
  ['startedAt', 'started_at'],
  ['finishedAt', 'finished_at'],
  ['claimedBy', 'claimed_by'],
  ['claimExpires', 'claim_expires'],
];

/** What a new task row holds in the columns its first patch leaves out. */
export const TASK_DEFAULTS: Record<PatchProperty, unknown> = {
  status: 'queued',
  attempts: 0,
  errorCode: null,
  errorMessage: null,
  bytesDone: 0,
  bytesTotal: null,
  startedAt: null,
  finishedAt: null,
  claimedBy: null,
  claimExpires: null,
};

/** Whether a status ends a download (its claim is then released). */
export function isFinal(status: TaskStatus | undefined): boolean {
  return status === 'ok' || status === 'error' || status === 'tle';
}
