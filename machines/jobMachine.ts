/**
 * jobMachine — the life of one archive job (a list of URLs packed into a tar).
 *
 * States (and what moves between them):
 *
 *   queued     Created (or resumed after a restart). START (this node holds the
 *              job's claim) → fetching. STOP → stopped.
 *   fetching   Invokes `fetchUrls` (provided from src/: asks the same checks as
 *              every `/ws` check, so the same supervisor, worker slots and
 *              tardy/paused gate; one download per URL for everyone; a URL whose
 *              upstream host cools is asked again when it reopens). It sends
 *              PROGRESS (ok, failed, waiting) as answers come and FETCHED with every answer → packing;
 *              an error → failed. Entering it runs `announce` with `started`.
 *   packing    Invokes `packArchive` (provided: streams the tar to a temp file
 *              and renames it into place). Done → ready; error → failed.
 *   ready      Final: the archive can be downloaded. Runs `announce` with `finished`.
 *   failed     Final: the archive could not be made. Runs `announce` with `finished`.
 *
 * The job's row lives on after its actor: `expired` is written to the row by
 * the deletion runner when `--job-ttl` has passed (on whichever node runs it),
 * with no actor kept for hours only to wait for that.
 *   stopped    Final: the service is stopping; the job keeps its last persisted
 *              status and the next start (or another node) resumes it.
 *
 * Every status change and every PROGRESS runs `persist` (provided: writes the
 * job row, which publishes the change). The defaults here do nothing, so a
 * test can run the machine with fakes.
 */
import { assign, fromCallback, fromPromise, setup } from 'xstate';

export type JobStatus = 'queued' | 'fetching' | 'packing' | 'ready' | 'failed' | 'expired';

/** One URL's answer, as the archive's README lists it. */
export interface JobEntry {
  url: string;
  /** The cover's path under the covers folder when it is ok. */
  path?: string;
  /** When ok: the original's size and the dominant colour (`#rrggbb`, when known), as answers carry them. */
  width?: number;
  height?: number;
  color?: string;
  /** Why it has no file: a stable code and a message. */
  error?: { code: string; message: string };
}

export interface JobInput {
  id: string;
  urls: readonly string[];
}

export interface JobContext extends JobInput {
  status: JobStatus;
  ok: number;
  failed: number;
  /** URLs waiting for a cooling upstream host while fetching (asked again when it reopens). */
  waiting: number;
  entries: JobEntry[] | undefined;
  /** The archive written: its size in bytes. */
  archiveBytes: number | undefined;
  error: { code: string; message: string } | undefined;
}

export type JobEvent =
  | { type: 'START' }
  | { type: 'STOP' }
  | { type: 'PROGRESS'; ok: number; failed: number; waiting?: number }
  | { type: 'FETCHED'; entries: JobEntry[] }
  /** The checks themselves failed (a database error): the job fails. */
  | { type: 'FETCH_FAILED'; error: { code: string; message: string } };

/** What `fetchUrls` gets. */
export interface FetchUrlsInput {
  id: string;
  urls: readonly string[];
}

/** What `packArchive` gets and resolves with. */
export interface PackInput {
  id: string;
  entries: readonly JobEntry[];
}
export interface PackOutput {
  bytes: number;
  /** Entries whose file had gone by the time it was packed (then listed as failed). */
  missing: number;
}

function errorOf(error: unknown): { code: string; message: string } {
  if (typeof error === 'object' && error !== null) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (typeof message === 'string') return { code: typeof code === 'string' ? code : 'internal_error', message };
  }
  return { code: 'internal_error', message: String(error) };
}

export const jobMachine = setup({
  types: {
    context: {} as JobContext,
    events: {} as JobEvent,
    input: {} as JobInput,
  },
  actors: {
    fetchUrls: fromCallback<JobEvent, FetchUrlsInput>(() => undefined),
    packArchive: fromPromise<PackOutput, PackInput>(async () => ({ bytes: 0, missing: 0 })),
  },
  actions: {
    /** Writes the job's status and counts (provided). */
    persist: (_, _params: { context: JobContext }) => {},
    /** Sends the `started` or `finished` callback, when the job has one (provided). */
    announce: (_, _params: { event: 'started' | 'finished'; context: JobContext }) => {},
  },
}).createMachine({
  id: 'job',
  context: ({ input }) => ({ ...input, status: 'queued', ok: 0, failed: 0, waiting: 0, entries: undefined, archiveBytes: undefined, error: undefined }),
  initial: 'queued',
  states: {
    queued: {
      description: 'Waiting until this node holds the job (START).',
      on: { START: 'fetching', STOP: 'stopped' },
    },
    fetching: {
      description: 'Every URL asked of the checks; PROGRESS as answers come, FETCHED with all of them.',
      entry: [
        assign({ status: 'fetching', ok: 0, failed: 0, waiting: 0 }),
        { type: 'persist', params: ({ context }) => ({ context }) },
        { type: 'announce', params: ({ context }) => ({ event: 'started' as const, context }) },
      ],
      invoke: {
        src: 'fetchUrls',
        input: ({ context }) => ({ id: context.id, urls: context.urls }),
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorOf(event.error) }) },
      },
      on: {
        PROGRESS: {
          actions: [assign({ ok: ({ event }) => event.ok, failed: ({ event }) => event.failed, waiting: ({ event }) => event.waiting ?? 0 }), { type: 'persist', params: ({ context }) => ({ context }) }],
        },
        FETCHED: {
          target: 'packing',
          actions: assign({
            waiting: 0,
            entries: ({ event }) => event.entries,
            ok: ({ event }) => event.entries.filter((entry) => entry.path !== undefined).length,
            failed: ({ event }) => event.entries.filter((entry) => entry.path === undefined).length,
          }),
        },
        FETCH_FAILED: { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
        STOP: 'stopped',
      },
    },
    packing: {
      description: 'The tar streamed to a temp file and renamed into place.',
      entry: [assign({ status: 'packing' }), { type: 'persist', params: ({ context }) => ({ context }) }],
      invoke: {
        src: 'packArchive',
        input: ({ context }) => ({ id: context.id, entries: context.entries ?? [] }),
        onDone: {
          target: 'ready',
          actions: assign({
            archiveBytes: ({ event }) => event.output.bytes,
            ok: ({ context, event }) => context.ok - event.output.missing,
            failed: ({ context, event }) => context.failed + event.output.missing,
          }),
        },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorOf(event.error) }) },
      },
      on: { STOP: 'stopped' },
    },
    ready: {
      type: 'final',
      description: 'The archive can be downloaded until the job expires.',
      entry: [
        assign({ status: 'ready', entries: undefined }),
        { type: 'persist', params: ({ context }) => ({ context }) },
        { type: 'announce', params: ({ context }) => ({ event: 'finished' as const, context }) },
      ],
    },
    failed: {
      type: 'final',
      description: 'No archive could be made (the error says why).',
      entry: [
        assign({ status: 'failed', entries: undefined }),
        { type: 'persist', params: ({ context }) => ({ context }) },
        { type: 'announce', params: ({ context }) => ({ event: 'finished' as const, context }) },
      ],
    },
    stopped: {
      type: 'final',
      description: 'The service is stopping: the job is resumed from its row later.',
    },
  },
});

export type JobMachine = typeof jobMachine;
