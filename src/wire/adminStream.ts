/**
 * Wire contract: the admin stream's frames (`/admin/ws`) and the admin API's
 * JSON answers the dashboard reads (docs/ADMIN.md). Built by
 * src/admin/adminSocket.ts, adminFeed.ts, adminApi.ts (`taskJson`, `nodeJson`
 * and the handlers) and taskHistory.ts; read by the dashboard
 * (src/admin/dashboard/dashboard.js, JSDoc `import()` types checked by
 * tsconfig.dashboard.json) and the tests.
 *
 * Types only: this module imports nothing but the job contract's types and runs
 * nothing, so the dashboard's browser script can name its types (no Node types
 * there). The unions below (task, gate and job statuses) are the machines'
 * own; the server modules that build these frames hold them equal.
 */
import type { JobJson } from './jobs.js';

/** A task's state (machines/types.ts `TaskStatus`). */
export type TaskStatus = 'waiting' | 'queued' | 'downloading' | 'ok' | 'error' | 'tle';

/** A node's gate (machines/supervisorMachine.ts `GateStatus`). */
export type GateStatus = 'ready' | 'tardy' | 'paused';

/** An error as tasks carry it. */
export interface TaskError {
  code: string;
  message: string;
}

/** A task change, as the `task` frame shows it (without `type`). */
export interface TaskEvent {
  url: string;
  /** The node that made the change. */
  node: string;
  status: TaskStatus;
  bytes: number;
  total: number | null;
  error: TaskError | null;
  /** The entry was deleted (the frame carries the status it had). */
  removed?: true;
  at: string;
}

/** A task row as the admin API shows it (`GET /admin/api/tasks`, `…/task`). */
export interface TaskJson {
  url: string;
  status: TaskStatus;
  attempts: number;
  error: TaskError | null;
  bytes: number;
  total: number | null;
  createdAt: string | null;
  updatedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** The node holding the task (running or queueing its download), if any. */
  node: string | null;
}

/** An unfinished task as the snapshot lists it: its row, `updatedAt` as `at`. */
export type SnapshotTask = Omit<TaskJson, 'createdAt' | 'updatedAt' | 'finishedAt'> & { at: string | null };

/** A stats frame's `upstream` entry: a host that cooled within the hour. */
export interface UpstreamHost {
  state: 'open' | 'cooling';
  /** While cooling: when it reopens (ISO). */
  retryAt?: string;
  /** Why it cooled last (`HTTP 429`, `API code -352`). */
  reason?: string;
  /** When it last started cooling (ISO). */
  cooledAt?: string;
}

/** The counters since this node started (src/stats.ts `Stats.snapshot`). */
export interface Counters {
  checks: number;
  urls: number;
  hits: number;
  misses: number;
  coalesced: number;
  dropped: number;
  downloads: { ok: number; error: number; tle: number };
  bytes: number;
  connections: number;
  connectionsByKind: { client: number; admin: number; legacy: number };
}

/** The gate's status, since when, and why. */
export interface GateShown {
  status: GateStatus;
  /** When tardy: the limits passed. */
  reasons?: string[];
  since: string;
  /** When tardy or paused: why, in words. */
  why?: string;
}

/** A stats frame without `type` (also the snapshot's `stats`, without `reasons`). */
export interface StatsBody extends GateShown, Counters {
  queued: number;
  downloading: number;
  /** Per host; absent when no host cooled within the hour. */
  upstream?: Record<string, UpstreamHost>;
}

/** A job change, as the `job` frame shows it (without `type`). */
export type JobUpdate = JobJson & { at: string };

export type SnapshotFrame = { type: 'snapshot' } & GateShown & {
  tasks: SnapshotTask[];
  jobs: JobJson[];
  stats: Omit<StatsBody, 'reasons'>;
};
export type TaskFrame = { type: 'task' } & TaskEvent;
export type StatsFrame = { type: 'stats' } & StatsBody;
export type JobFrame = { type: 'job' } & JobUpdate;

/** Every frame of `/admin/ws`. */
export type AdminFrame = SnapshotFrame | TaskFrame | StatsFrame | JobFrame;

/** `GET /admin/api/tasks`. */
export interface TasksPage {
  tasks: TaskJson[];
  total: number;
  limit: number;
  offset: number;
}

/** One entry of `GET /admin/api/task`'s `timeline`. */
export interface TimelineEvent {
  url: string;
  /** The node that made the change. */
  node: string;
  status: TaskStatus;
  /** The try it belongs to (1 for the first), when known. */
  try: number | null;
  /** The bytes stored, for an `ok`; else 0. */
  bytes: number;
  total: null;
  error: TaskError | null;
  at: string;
}

/** A variant kept of a cover (`GET /admin/api/task`'s `variants`). */
export interface VariantJson {
  path: string;
  coverUrl: string;
  format: 'jpeg' | 'png' | 'webp' | 'avif';
  width: number | null;
  height: number | null;
  bytes: number;
}

/** A stored cover as `GET /admin/api/task` shows it. */
export interface CoverJson {
  url: string;
  path: string;
  source: 'download' | 'custom';
  bytes: number;
  contentType: string;
  width: number;
  height: number;
  sha256: string;
  originalPath: string | null;
  originalWidth: number | null;
  originalHeight: number | null;
  originalBytes: number | null;
  coverUrl: string;
  createdAt: string;
  lastAskedAt: string;
  /** What ok answers say of it: the original's size, the colour when known. */
  answer: { width?: number; height?: number; color?: string };
}

/** `GET /admin/api/task`. */
export interface TaskDetail {
  task: TaskJson | null;
  cover: CoverJson | null;
  variants: VariantJson[];
  variantsTotal: number;
  timeline: TimelineEvent[];
}

/** `GET /admin/api/summary`: what the tables hold. */
export interface Summary {
  tasks: Record<TaskStatus, number>;
  covers: { count: number; downloadedBytes: number };
}

/** A node as `GET /admin/api/nodes` shows it. */
export interface NodeJson {
  id: string;
  started: string | null;
  lastSeen: string | null;
  queued: number;
  downloading: number;
  /** What it last said (`starting`, `ready`, `tardy`, `paused`), `stopped`, or `gone`. */
  status: string;
}

/** `GET /admin/api/nodes`. */
export interface NodesAnswer {
  self: string;
  nodes: NodeJson[];
}

/**
 * A frame or answer as a reader has it before checking it: each field may be
 * missing or of any type. The dashboard reads what comes from the server
 * through this, so a field renamed here is a field it no longer reads.
 */
export type Unchecked<T> = { [K in keyof T]?: unknown };
