/**
 * Wire contract: an archive job as JSON (docs/JOBS.md), the one declaration of
 * what `POST /api/jobs` (201) and `GET /api/jobs/:id` answer, what the admin
 * stream's `job` frames and `GET /admin/api/jobs` list, and what a callback
 * POSTs. Built by `jobJson` (src/jobs/jobRunner.ts) and the callbacks
 * (src/jobs/callbacks.ts); read by the dashboard (JSDoc `import()` types) and
 * the tests.
 *
 * Types only: this module imports nothing and runs nothing, so the dashboard's
 * browser script can name its types (tsconfig.dashboard.json, no Node types).
 */

/** A job's state (the job machine's, machines/jobMachine.ts, held equal to it where `jobJson` is built). */
export type JobStatus = 'queued' | 'fetching' | 'packing' | 'ready' | 'failed' | 'expired';

/** Which callback: when fetching starts, and when the job ends. */
export type CallbackEvent = 'started' | 'finished';

/** A callback's outcome, as the job shows it. */
export interface CallbackOutcome {
  /** The receiver answered 2xx. */
  ok: boolean;
  /** Tries made so far. */
  attempts: number;
  /** The receiver's last HTTP status, if it answered. */
  status?: number;
  /** Why the last try failed. */
  error?: string;
  /** More tries will follow. */
  pending?: true;
  /** When the last try ended. */
  at: string;
}

/** The job as the API, the admin stream and the callbacks show it. */
export interface JobJson {
  id: string;
  name: string;
  status: JobStatus;
  total: number;
  ok: number;
  failed: number;
  /** URLs waiting for a cooling upstream host (while fetching; 0 otherwise). */
  waiting: number;
  created: string;
  expires: string;
  /** Once `ready`: where the tar is fetched. */
  archiveUrl?: string;
  error?: { code: string; message: string };
  /** The node running it, while one does. */
  node?: string;
  /** With a callback URL: each event's outcome so far. */
  callback?: { started?: CallbackOutcome; finished?: CallbackOutcome };
}

/** The job as a callback carries it: without the node and the callbacks' own outcomes. */
export type CallbackJob = Omit<JobJson, 'callback' | 'node'>;

/** A callback's body (POSTed as JSON, signed). */
export type CallbackBody = { event: CallbackEvent } & CallbackJob;

/** `GET /admin/api/jobs`: a page of jobs, newest first. */
export interface JobsPage {
  total: number;
  jobs: JobJson[];
}
