/**
 * The database's tables, as TypeORM entity schemas (no decorators: tsx emits no
 * decorator metadata). Column types are ones both SQLite and PostgreSQL know;
 * times are epoch milliseconds in `bigint` columns.
 */
import { EntitySchema } from 'typeorm';
import type { ValueTransformer } from 'typeorm';
import type { CoverSource, TaskStatus } from '../../machines/types.js';
import type { JobStatus } from '../../machines/jobMachine.js';

/** PostgreSQL hands `bigint` back as a string; SQLite as a number. */
const bigintNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : Number(value)),
};

/** One stored cover per URL. */
export interface CoverRow {
  url: string;
  /** Relative to the covers folder, `/`-separated. */
  path: string;
  /** `download` or `custom` (as stored; `cache` is only an answer). */
  source: Exclude<CoverSource, 'cache'>;
  bytes: number;
  contentType: string;
  width: number;
  height: number;
  sha256: string;
  createdAt: number;
  lastAskedAt: number;
  /**
   * A video page's cover: when its page was last resolved through the view API
   * (epoch ms), and the `pic` URL it answered. Null for image URLs, custom
   * covers, and covers stored before these were kept (resolved at `createdAt`,
   * from a pic not known).
   */
  resolvedAt: number | null;
  resolvedPic: string | null;
  /**
   * The original kept beside the cover (scaled down once past `--original-max`):
   * its path (`originalPathOf(path)`, or `path` itself when the stored file is
   * the original, with `--resize off`), size and bytes. Null for covers stored
   * before originals were kept.
   */
  originalPath: string | null;
  originalWidth: number | null;
  originalHeight: number | null;
  originalBytes: number | null;
  /**
   * The cover's dominant colour, `#rrggbb` (lower case), computed once when it
   * is stored. Null for covers stored before colours were kept, until the
   * colour pass (`ColorPass`) fills it in.
   */
  color: string | null;
  /**
   * Bytes of the variants made from this cover (sizes and formats asked for on
   * demand, kept beside it), as last counted on disk after a render. Read from
   * the table (zero when the row's path changes); only `leastRecentlyAsked`
   * reads it, other rows leave it out.
   */
  variantBytes?: number;
}

/** The task of one URL: its download's status, persisted on every change. */
export interface TaskRow {
  url: string;
  status: TaskStatus;
  attempts: number;
  errorCode: string | null;
  errorMessage: string | null;
  bytesDone: number;
  bytesTotal: number | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The node holding this task (its download, or its place in that node's queue); null when none does. */
  claimedBy: string | null;
  /** When that claim runs out unless renewed (epoch ms). */
  claimExpires: number | null;
  /**
   * The URL's host name (lower case, as `URL.hostname` gives it), written when
   * the row is made: what `host=` filters on. Not read with the row.
   */
  host?: string | null;
}

/**
 * One change of a task that the timeline keeps: a status change (queued,
 * downloading with its try number, a final status with its error), or a try
 * that failed and is tried again. Progress updates are not kept. At most
 * `TASK_EVENTS_PER_URL` per URL (the oldest go first); removed with the task row.
 */
export interface TaskEventRow {
  id: number;
  url: string;
  /** When it was made (epoch ms). */
  at: number;
  /** The node that made it. */
  node: string;
  status: TaskStatus;
  /** The try it belongs to (1 for the first), when known. */
  attempt: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  /** The bytes stored, for a finished download. */
  bytes: number | null;
}

/** A node using the database, as its heartbeat last said. */
export interface NodeRow {
  id: string;
  startedAt: number;
  lastSeen: number;
  queued: number;
  downloading: number;
  /** `ready`, `tardy`, `paused`, or `stopped` after a graceful stop. */
  status: string;
}

/**
 * One secret every node of a shared database must be given alike, as its
 * digest: scrypt of a fixed label and the secret, with a random salt of this
 * row (never the secret itself). `digest` is null when the secret is absent
 * (no `--client-token`, no `--url-key`): an absent secret must match too.
 */
export interface ClusterSecretRow {
  /** The option's name without its dashes: `admin-token`, `client-token`, `callback-secret`, `url-key`. */
  name: string;
  salt: string;
  digest: string | null;
  /** The node that recorded it, and when. */
  recordedBy: string;
  recordedAt: number;
}

/** A switch every node shares (the administrator's pause). */
export interface SettingRow {
  key: string;
  value: string;
}

export const CoverEntity = new EntitySchema<CoverRow>({
  name: 'Cover',
  tableName: 'covers',
  columns: {
    url: { type: 'varchar', primary: true },
    path: { type: 'varchar' },
    source: { type: 'varchar', length: 16 },
    bytes: { type: 'bigint', transformer: bigintNumber },
    contentType: { name: 'content_type', type: 'varchar', length: 64 },
    width: { type: 'integer' },
    height: { type: 'integer' },
    sha256: { type: 'varchar', length: 64 },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    lastAskedAt: { name: 'last_asked_at', type: 'bigint', transformer: bigintNumber },
    resolvedAt: { name: 'resolved_at', type: 'bigint', nullable: true, transformer: bigintNumber },
    resolvedPic: { name: 'resolved_pic', type: 'text', nullable: true },
    originalPath: { name: 'original_path', type: 'varchar', nullable: true },
    originalWidth: { name: 'original_width', type: 'integer', nullable: true },
    originalHeight: { name: 'original_height', type: 'integer', nullable: true },
    originalBytes: { name: 'original_bytes', type: 'bigint', nullable: true, transformer: bigintNumber },
    color: { type: 'varchar', length: 7, nullable: true },
    // Not read unless asked for (`leastRecentlyAsked`): rows elsewhere are the same whichever path read them.
    variantBytes: { name: 'variant_bytes', type: 'bigint', default: 0, select: false, transformer: bigintNumber },
  },
});

export const TaskEntity = new EntitySchema<TaskRow>({
  name: 'Task',
  tableName: 'tasks',
  columns: {
    url: { type: 'varchar', primary: true },
    status: { type: 'varchar', length: 16 },
    attempts: { type: 'integer', default: 0 },
    errorCode: { name: 'error_code', type: 'varchar', length: 32, nullable: true },
    errorMessage: { name: 'error_message', type: 'text', nullable: true },
    bytesDone: { name: 'bytes_done', type: 'bigint', default: 0, transformer: bigintNumber },
    bytesTotal: { name: 'bytes_total', type: 'bigint', nullable: true, transformer: bigintNumber },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
    startedAt: { name: 'started_at', type: 'bigint', nullable: true, transformer: bigintNumber },
    finishedAt: { name: 'finished_at', type: 'bigint', nullable: true, transformer: bigintNumber },
    claimedBy: { name: 'claimed_by', type: 'varchar', length: 128, nullable: true },
    claimExpires: { name: 'claim_expires', type: 'bigint', nullable: true, transformer: bigintNumber },
    host: { type: 'varchar', length: 255, nullable: true, select: false },
  },
});

export const TaskEventEntity = new EntitySchema<TaskEventRow>({
  name: 'TaskEvent',
  tableName: 'task_events',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    url: { type: 'varchar' },
    at: { type: 'bigint', transformer: bigintNumber },
    node: { type: 'varchar', length: 128 },
    status: { type: 'varchar', length: 16 },
    attempt: { type: 'integer', nullable: true },
    errorCode: { name: 'error_code', type: 'varchar', length: 32, nullable: true },
    errorMessage: { name: 'error_message', type: 'text', nullable: true },
    bytes: { type: 'bigint', nullable: true, transformer: bigintNumber },
  },
});

export const NodeEntity = new EntitySchema<NodeRow>({
  name: 'Node',
  tableName: 'nodes',
  columns: {
    id: { type: 'varchar', length: 128, primary: true },
    startedAt: { name: 'started_at', type: 'bigint', transformer: bigintNumber },
    lastSeen: { name: 'last_seen', type: 'bigint', transformer: bigintNumber },
    queued: { type: 'integer' },
    downloading: { type: 'integer' },
    status: { type: 'varchar', length: 16 },
  },
});

export const SettingEntity = new EntitySchema<SettingRow>({
  name: 'Setting',
  tableName: 'settings',
  columns: {
    key: { type: 'varchar', length: 64, primary: true },
    value: { type: 'text' },
  },
});

export const ClusterSecretEntity = new EntitySchema<ClusterSecretRow>({
  name: 'ClusterSecret',
  tableName: 'cluster_secrets',
  columns: {
    name: { type: 'varchar', length: 32, primary: true },
    salt: { type: 'varchar', length: 64 },
    digest: { type: 'varchar', length: 128, nullable: true },
    recordedBy: { name: 'recorded_by', type: 'varchar', length: 128 },
    recordedAt: { name: 'recorded_at', type: 'bigint', transformer: bigintNumber },
  },
});

/**
 * A deletion to carry out: written first, carried out by the deletion runner,
 * removed last, so a crash between any two steps is finished by the next run.
 *   kind `entry`: the URL's cover row (if it still points at `path`), its task
 *                 row, then the file (if no row points at it any more)
 *   kind `file`:  only the file (a cover replaced by a newer one)
 *   kind `job`:   an archive job past `--job-ttl` (`url` is the job's id): its
 *                 row marked `expired`, then its archive file removed
 */
export interface DeletionRow {
  id: number;
  url: string;
  path: string;
  kind: 'entry' | 'file' | 'job';
  /** `admin`, `expired`, `cache_cap`, `replaced`, `job_expired`. */
  reason: string;
  createdAt: number;
  /** When a runner claimed it; a claim older than the lease may be taken over. */
  claimedAt: number | null;
}

export const DeletionEntity = new EntitySchema<DeletionRow>({
  name: 'Deletion',
  tableName: 'deletions',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    url: { type: 'varchar' },
    path: { type: 'varchar' },
    kind: { type: 'varchar', length: 8 },
    reason: { type: 'varchar', length: 16 },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    claimedAt: { name: 'claimed_at', type: 'bigint', nullable: true, transformer: bigintNumber },
  },
});

/**
 * An archive job (docs/JOBS.md): its URLs, its status and counts, its callback's
 * outcomes, and the claim of the node running it. The archive itself is a
 * file, `<covers>/.jobs/<id>.tar`.
 */
export interface JobRow {
  /** A random UUID. */
  id: string;
  name: string;
  status: JobStatus;
  /** The URLs, as a JSON array (read only by the node that runs the job). */
  urls: string;
  total: number;
  ok: number;
  failed: number;
  /** URLs waiting for a cooling upstream host while the job is fetching. */
  waiting: number;
  /** Where `started` and `finished` are POSTed, if anywhere. */
  callbackUrl: string | null;
  /** The outcome of the `started` callback, as JSON (`CallbackOutcome`). */
  callbackStarted: string | null;
  /** The outcome of the `finished` callback, as JSON. */
  callbackFinished: string | null;
  /** Size of the archive once ready. */
  archiveBytes: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  finishedAt: number | null;
  /** The node that ran (or runs) it. */
  node: string | null;
  claimedBy: string | null;
  claimExpires: number | null;
}

export const JobEntity = new EntitySchema<JobRow>({
  name: 'Job',
  tableName: 'jobs',
  columns: {
    id: { type: 'varchar', length: 64, primary: true },
    name: { type: 'varchar', length: 200 },
    status: { type: 'varchar', length: 16 },
    urls: { type: 'text' },
    total: { type: 'integer' },
    ok: { type: 'integer', default: 0 },
    failed: { type: 'integer', default: 0 },
    waiting: { type: 'integer', default: 0 },
    callbackUrl: { name: 'callback_url', type: 'text', nullable: true },
    callbackStarted: { name: 'callback_started', type: 'text', nullable: true },
    callbackFinished: { name: 'callback_finished', type: 'text', nullable: true },
    archiveBytes: { name: 'archive_bytes', type: 'bigint', nullable: true, transformer: bigintNumber },
    errorCode: { name: 'error_code', type: 'varchar', length: 32, nullable: true },
    errorMessage: { name: 'error_message', type: 'text', nullable: true },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
    expiresAt: { name: 'expires_at', type: 'bigint', transformer: bigintNumber },
    finishedAt: { name: 'finished_at', type: 'bigint', nullable: true, transformer: bigintNumber },
    node: { type: 'varchar', length: 128, nullable: true },
    claimedBy: { name: 'claimed_by', type: 'varchar', length: 128, nullable: true },
    claimExpires: { name: 'claim_expires', type: 'bigint', nullable: true, transformer: bigintNumber },
  },
});
