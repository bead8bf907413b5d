/**
 * The store's ports: what the rest of the service may ask of the database.
 *
 * Nothing outside src/store/ knows which database answers. `openStore` picks an
 * implementation from `--db`: SQLite (one node; prepared better-sqlite3
 * statements on the hot paths) or PostgreSQL (several nodes; claims, leases
 * and LISTEN/NOTIFY). The differences live in one dialect file each
 * (`sqliteDialect.ts`, `postgresDialect.ts`); the classes behind these ports
 * (`coverIndex.ts`, `taskLedger.ts`, `deletionQueue.ts`, `claims.ts`,
 * `clusterState.ts`) are the same for both.
 *
 * Changes are published where they are written: every task and cover write
 * emits a change on `Store.events` after it is written (and, on a shared
 * database, reaches every other node through NOTIFY in the same transaction),
 * so the admin stream, the cover memory and the other nodes hear of uploads,
 * deletions and retries as well as downloads. Nothing else announces them.
 */
import type { JoinOutcome, SharedSecrets } from './clusterJoin.js';
import type { EventEmitter } from 'node:events';
import type { TaskStatus } from '../../machines/types.js';
import type { JobStatus } from '../../machines/jobMachine.js';
import type { Remembered } from './coverMemory.js';
import type { CoverRow, DeletionRow, JobRow, NodeRow, TaskEventRow, TaskRow } from './entities.js';

/** A row as memory holds it (`allInMemory`): `stillInMemory` tells whether it is still the URL's row. */
export type HeldRow = Remembered<CoverRow>;

/** The columns of a task a change may set (the URL and the times are the ledger's). */
export type TaskPatch = Partial<Omit<TaskRow, 'url' | 'createdAt' | 'updatedAt' | 'host'>> & { status?: TaskStatus };

/** One change of a task row, as it was written. */
export interface TaskChange {
  url: string;
  /** The node that wrote it. */
  node: string;
  /** When it was written (epoch ms). */
  at: number;
  /** What was set; `status` is always there unless the row was removed. */
  patch: TaskPatch;
  /** The row was deleted (the deletion runner removed the entry). */
  removed?: true;
  /** It came from another node. */
  remote: boolean;
}

/** A cover row written or removed. */
export interface CoverChange {
  url: string;
  node: string;
  removed: boolean;
  remote: boolean;
}

/** The administrator held or released new downloads (on every node of a shared database). */
export interface GateChange {
  paused: boolean;
  node: string;
  remote: boolean;
}

/** A job row written (on this node or, with `remote`, another). */
export interface JobChange {
  /** The row as written, without its URL list. */
  job: JobSummary;
  node: string;
  remote: boolean;
}

/** A job row without its URL list (what lists and changes carry). */
export type JobSummary = Omit<JobRow, 'urls'>;

/** The columns of a job a change may set. */
export type JobPatch = Partial<Omit<JobRow, 'id' | 'urls' | 'total' | 'createdAt' | 'updatedAt' | 'expiresAt' | 'callbackUrl'>>;

export interface StoreEventMap {
  task: [TaskChange];
  job: [JobChange];
  cover: [CoverChange];
  gate: [GateChange];
  /** Other nodes' changes can no longer be heard (the listener's connection dropped); `resync` follows when they can. */
  lost: [];
  /**
   * Notifications from other nodes may have been missed (the listener was
   * disconnected, or a change was too large to publish): whatever is awaited
   * from other nodes must be read again from the tables.
   */
  resync: [];
}

/** The cover index: url → stored cover, with the most recently asked-for rows kept in memory. */
export interface CoverIndex {
  /** How much older than a row's last ask its stored "last asked for" time may be, in ms (`touchPrecisionFor`). */
  readonly touchPrecisionMs: number;
  /** The URL's row, from the table. */
  find(url: string): Promise<CoverRow | null>;
  /** From memory when there (memory is kept in step with every write, on every node), else the table. */
  findRemembered(url: string): Promise<CoverRow | null>;
  /**
   * The hot path of a check: the rows memory holds for `urls`, aligned with them
   * (undefined where it holds none: ask `findMany`), touching no database.
   * With `touch`, the found URLs are noted as asked for now.
   */
  findInMemory(urls: readonly string[], options?: { touch?: boolean }): (CoverRow | undefined)[];
  /**
   * Memory's entries for every URL of `urls`, aligned with them (each holds its
   * row), or undefined as soon as one is not there (then ask `findInMemory` and
   * `findMany`). With `touch`, the URLs found are noted as asked for now.
   */
  allInMemory(urls: readonly string[], options?: { touch?: boolean }): HeldRow[] | undefined;
  /**
   * Whether memory still holds every one of `held` (entries `allInMemory` gave),
   * none written, forgotten or evicted since: then they count as asked for again
   * (with `touch`, noted as asked for now), with no lookup per URL.
   */
  stillInMemory(held: readonly HeldRow[], options?: { touch?: boolean }): boolean;
  /** The stored covers of these URLs, by URL (memory first). With `touch`, noted as asked for now. */
  findMany(urls: readonly string[], options?: { touch?: boolean }): Promise<Map<string, CoverRow>>;
  /** Inserts or replaces the URL's cover. */
  save(row: CoverRow): Promise<void>;
  /**
   * Saves a downloaded cover unless the URL has a custom one (an upload that
   * landed while the download ran wins): null when saved, else the custom row kept.
   */
  saveUnlessCustom(row: CoverRow): Promise<CoverRow | null>;
  /** Replaces the URL's cover and records, in the same transaction, the deletion of the file it replaces. */
  replace(row: CoverRow, replacedPath: string, reason: string): Promise<void>;
  /**
   * `replace`, unless the URL's cover is custom (uploaded meanwhile): then nothing
   * is written and the custom row is returned; null when replaced. One write, so
   * an upload is never overwritten.
   */
  replaceUnlessCustom(row: CoverRow, replacedPath: string, reason: string): Promise<CoverRow | null>;
  /** Notes that these URLs were asked for now; written within the touch interval (30 s). */
  touch(urls: Iterable<string>): void;
  /** Writes the pending "last asked for" times. */
  flushTouches(): Promise<void>;
  count(): Promise<number>;
  /** Deletes the URL's row if it still points at `path`. */
  removeIfPath(url: string, path: string): Promise<void>;
  /**
   * Records that the URL's video page was resolved again at `at` and answered
   * `pic`, if its row still points at `path` (a cover replaced meanwhile is left
   * alone). Says whether the row was updated.
   */
  markResolved(url: string, path: string, at: number, pic: string): Promise<boolean>;
  /**
   * Records the URL's dominant colour if its row still points at `path` and has
   * none yet (a cover replaced meanwhile is left alone). Says whether it did.
   */
  setColor(url: string, path: string, color: string): Promise<boolean>;
  /** Rows without a colour (stored before colours were kept), by URL after `after`, at most `limit`. */
  lackingColor(after: string, limit: number): Promise<CoverRow[]>;
  /** Whether any row points at this file. */
  pathInUse(path: string): Promise<boolean>;
  /** Downloaded covers not asked for since `before` (epoch ms), oldest first. */
  downloadedNotAskedSince(before: number, limit: number): Promise<CoverRow[]>;
  /** A row whose cover is stored at `path` (the first by URL when several share the file), from the table. */
  findByPath(path: string): Promise<CoverRow | null>;
  /** Records the bytes of the variants kept beside the file at `path` (every row pointing at it). */
  setVariantBytes(path: string, bytes: number): Promise<void>;
  /** Total bytes of downloaded (not custom) covers: files, originals and variants. */
  downloadedBytes(): Promise<number>;
  /** Downloaded covers, least recently asked for first, a page at a time. */
  leastRecentlyAsked(limit: number, offset: number): Promise<CoverRow[]>;
}

/** How `TaskLedger.list` orders tasks. */
export type TaskSort = 'changed' | 'tries';

export interface TaskListOptions {
  status?: TaskStatus | undefined;
  search?: string | undefined;
  errorCode?: string | undefined;
  host?: string | undefined;
  sort?: TaskSort | undefined;
  limit: number;
  offset: number;
}

/** The task ledger: one row per URL with its download's status, written as it changes. */
export interface TaskLedger {
  /** Records a change of the URL's task; written (and published) within this event-loop turn. */
  update(url: string, patch: TaskPatch): void;
  /** Writes everything recorded so far; resolves when it is written. */
  flush(): Promise<void>;
  /** Deletes the URL's task row (after any change still pending for it). */
  remove(url: string): Promise<void>;
  /**
   * Deletes the rows of downloads dropped before they started, in one statement
   * (after every change pending): only rows still `queued` or `waiting` (on a
   * shared database claimed by this node or nobody), and not those `wanted`
   * says were asked for again by the time the statement runs. Resolves with the
   * URLs deleted.
   */
  removeUnstarted(urls: readonly string[], wanted: (url: string) => boolean): Promise<string[]>;
  get(url: string): Promise<TaskRow | null>;
  /** The rows of these URLs (those that have one). */
  getMany(urls: readonly string[]): Promise<TaskRow[]>;
  /** Tasks that failed (error or tle) and finished after `since`. */
  failedSince(since: number): Promise<TaskRow[]>;
  /**
   * Tasks, optionally of one status, with URLs containing `search`, of one
   * error code, of one host (`URL.hostname`); newest change first (`changed`,
   * the default) or most tries first (`tries`).
   */
  list(options: TaskListOptions): Promise<{ tasks: TaskRow[]; total: number }>;
  /**
   * Records a try that failed and is tried again (the row is not changed): kept
   * in the URL's timeline with the change `update` makes, in the same write.
   */
  noteTry(url: string, attempt: number, error: { code: string; message: string }): void;
  /** The URL's timeline: its last status changes, tries and errors (at most `TASK_EVENTS_PER_URL`), oldest first. */
  timeline(url: string): Promise<TaskEventRow[]>;
  /**
   * Deletes up to `limit` failed tasks (error or tle; on a shared database those
   * no live node holds) with their timelines, oldest change first, in one
   * statement; each is published as removed. Resolves with the URLs deleted.
   */
  removeFailed(limit: number): Promise<string[]>;
  /** How many tasks have each status. */
  countByStatus(): Promise<Record<TaskStatus, number>>;
  /** Unfinished tasks (waiting, queued, downloading), oldest first; on a shared database only those no other live node holds. */
  unfinished(): Promise<TaskRow[]>;
}

/** The outcome of claiming URLs: those this node may download, and those another live node holds (with its id). */
export interface ClaimOutcome {
  mine: string[];
  elsewhere: [url: string, node: string][];
}

/**
 * Claims on task rows, across nodes. A node downloads a URL only after claiming
 * its row (one statement for a batch); a claim lasts the lease unless renewed,
 * and is released when the download ends. On a database only one node uses,
 * every claim is this node's and nothing is written.
 */
export interface Claims {
  /** Whether several nodes share the database (claims are real). */
  readonly shared: boolean;
  /** Claims the rows of `urls` (created as `status` if new); a row another live node holds is left alone. */
  claim(urls: readonly string[], status: 'queued' | 'waiting'): Promise<ClaimOutcome>;
  /** Extends every claim of this node on an unfinished task but those of `except`, in one statement. Resolves with how many. */
  renew(except?: readonly string[]): Promise<number>;
  /** The unfinished tasks this node holds claims on (what it should be working on). */
  held(): Promise<string[]>;
  /** Lets go of this node's claims on these URLs' tasks, so any node may take them at once. */
  release(urls: readonly string[]): Promise<void>;
  /** Unfinished tasks whose claim ran out (or that nobody holds): for a living node to take over. */
  orphaned(limit: number): Promise<string[]>;
  /** Lets go of this node's claims on unfinished tasks (at shutdown), so other nodes take them at once. */
  releaseAll(): Promise<void>;
}

/** What the deletion runner carries out (see `DeletionRow`). */
export type NewDeletion = Pick<DeletionRow, 'url' | 'path' | 'kind' | 'reason'>;

/** The deletion queue: recorded first, claimed by one runner at a time, removed when carried out. */
export interface DeletionQueue {
  schedule(deletions: readonly NewDeletion[], now?: number): Promise<void>;
  /** Claims up to `limit` records nobody holds (or whose claim is older than `leaseMs`). */
  claim(limit: number, now: number, leaseMs: number): Promise<DeletionRow[]>;
  remove(id: number): Promise<void>;
  /** Drops every claim (at start, on a database only this node uses). */
  releaseClaims(): Promise<void>;
  pending(): Promise<DeletionRow[]>;
  pendingFor(urls: readonly string[]): Promise<DeletionRow[]>;
}

/** What a node says of itself at every heartbeat. */
export type NodeReport = Pick<NodeRow, 'queued' | 'downloading' | 'status'>;

/** The nodes using the database, and the switches they share. */
export interface ClusterState {
  /** This node's id (`--node-id`). */
  readonly node: string;
  /**
   * At start, on a shared database: refuses (`joined: false`) when a live node
   * holds this node's id (a heartbeat after the one seen; a row seen less than
   * a lease ago is watched, `onWait` told, until it beats or goes stale) or
   * when a shared secret differs from the one the database records; otherwise
   * records this node (and the secrets, if first). A database one node uses
   * always says joined, and writes nothing.
   */
  join(secrets: SharedSecrets, leaseMs: number, onWait?: (lastSeen: number) => void): Promise<JoinOutcome>;
  /** Records this node as alive, with its counts. */
  heartbeat(report: NodeReport): Promise<void>;
  /** Every node seen, newest first. */
  nodes(): Promise<NodeRow[]>;
  /** Whether the administrator holds new downloads (shared by every node). */
  paused(): Promise<boolean>;
  /** The pause switch, with when it was turned on and from which node (null when off or not recorded). */
  pauseSwitch(): Promise<PauseSwitch>;
  /** Holds or releases new downloads on every node; published as a `gate` change. */
  setPaused(paused: boolean): Promise<void>;
  /** Marks this node stopped (at a graceful stop). */
  leave(): Promise<void>;
}

/**
 * Archive jobs: one row per job, written on every change (and published as a
 * `job` change, to every node). The node that runs a job holds its claim (a
 * lease renewed while it works, like task claims): a job whose node died is
 * taken over by another node, or by this one at its next start.
 */
export interface JobStore {
  create(row: Omit<JobRow, 'updatedAt' | 'claimedBy' | 'claimExpires' | 'node' | 'waiting'>): Promise<JobSummary>;
  get(id: string): Promise<JobRow | null>;
  /** Jobs, newest first, without their URL lists. */
  list(options: { limit: number; offset: number }): Promise<{ jobs: JobSummary[]; total: number }>;
  /** Writes a change of the job and publishes it; the row as written, or null when there is none. */
  update(id: string, patch: JobPatch): Promise<JobSummary | null>;
  /** Claims an unfinished job for this node (one statement); false when another live node holds it or it is finished. */
  claim(id: string): Promise<boolean>;
  /** Unfinished jobs nobody alive holds (or this node holds), oldest first. */
  claimable(limit: number): Promise<string[]>;
  /** Extends this node's claims on unfinished jobs, in one statement. */
  renew(): Promise<number>;
  /** Lets go of this node's claims (at shutdown), so another node takes its jobs at once. */
  releaseAll(): Promise<void>;
  /**
   * Finished jobs with a callback whose `finished` call was not delivered or
   * given up (a kill cut its tries off), and that no other live node holds:
   * claimed for this node, at most `limit`.
   */
  claimUndelivered(limit: number): Promise<JobSummary[]>;
  /** Finished jobs (ready or failed) whose time ran out by `now`. */
  expiredBy(now: number, limit: number): Promise<JobSummary[]>;
  /** How many jobs have each status. */
  countByStatus(): Promise<Record<JobStatus, number>>;
}

/** The whole store. */
export interface Store {
  covers: CoverIndex;
  tasks: TaskLedger;
  deletions: DeletionQueue;
  claims: Claims;
  cluster: ClusterState;
  jobs: JobStore;
  events: EventEmitter<StoreEventMap>;
  /** Where the data lives, for the start line (a file path, or a URL without its password). */
  readonly location: string;
  /**
   * How long a file whose row was removed is kept before it is deleted, so every
   * node has dropped the row from its memory first: 0 on a database one node uses.
   */
  readonly fileGraceMs: number;
  /** Writes what is pending and closes the connections. */
  close(): Promise<void>;
}

/** The administrator's pause switch as stored: on or off, since when (ms) and from which node it was turned on. */
export interface PauseSwitch {
  paused: boolean;
  since: number | null;
  by: string | null;
}
