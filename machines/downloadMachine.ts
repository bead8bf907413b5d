/**
 * downloadMachine — the life of one URL's download.
 *
 * States (and what moves between them):
 *
 *   idle        Spawned by the supervisor when the URL gets a worker slot (a URL
 *               waiting for one has no actor yet); START follows at once, and
 *               starts the time limit: a delayed TIME_LIMIT event (`timeLimit`)
 *               that ends the download as timedOut from running or backoff,
 *               retries included. Leaving `running` aborts the fetch through
 *               its AbortSignal; reaching any final state cancels the timer.
 *   running     Invokes `fetchCover` (the real I/O, provided from src/) for one
 *               try. Resolved → done. Rejected → failing.
 *   failing     A transient failure while tries are left → backoff; otherwise → failed.
 *   backoff     Waits `retryDelay` (exponential with jitter), then → running.
 *   done        Final. Output `{ status: 'ok', cover, source }`.
 *   failed      Final. Output `{ status: 'error', error }` with the last error.
 *   timedOut    Final. Output `{ status: 'error', error: { code: 'tle' } }`.
 *   cancelled   Final (CANCEL, shutdown; from any state). Output `{ status:
 *               'error', error: { code: 'shutting_down' } }`. The task keeps
 *               its last status: the next start resumes it.
 *   aborted     Final (ABORT, the administrator; from any state). Output
 *               `{ status: 'error', error: { code: 'cancelled' } }`; the task
 *               ends as `error`.
 *
 * The states are flat on purpose: each transition of a nested state costs
 * XState more (its exit and entry sets, its ancestors), and this machine runs
 * once per download (docs/BENCHMARKS.md, Cold, side by side). The time limit
 * is therefore not an `after` on a parent state but one delayed event for the
 * whole download, and CANCEL and ABORT are handled at the root.
 *
 * Side effects are named actions and guards whose real versions come from src/
 * through `.provide()`: `reportStatus` (persist and publish the task status),
 * `reportFinished` (log the outcome), and the guard `isTransient` (the retry
 * table of src/errors.ts). The defaults here do nothing, so a test can run the
 * machine with a fake `fetchCover` and a simulated clock.
 */
import { and, assign, fromPromise, raise, setup } from 'xstate';
import type { DownloadInput, DownloadOutput, FailureInfo, FetchCoverInput, FetchCoverOutput, TaskStatus } from './types.js';

export interface DownloadContext extends DownloadInput {
  /** Tries started so far. */
  attempt: number;
  error: FailureInfo | undefined;
  /** Set on entry to a final state; the machine's output. */
  output: DownloadOutput | undefined;
}

/**
 * START (a worker slot is free), CANCEL (shutdown: resumed at the next start), ABORT (the administrator: the
 * task ends); TIME_LIMIT is the machine's own delayed event, raised on START.
 */
export type DownloadEvent = { type: 'START' } | { type: 'CANCEL' } | { type: 'ABORT' } | { type: 'TIME_LIMIT' };

/** Normalizes whatever `fetchCover` rejected with into `{ code, message }`. */
export function toFailure(error: unknown): FailureInfo {
  if (typeof error === 'object' && error !== null) {
    const { code, message, detail, retryAt } = error as { code?: unknown; message?: unknown; detail?: unknown; retryAt?: unknown };
    if (typeof code === 'string' && typeof message === 'string') {
      const failure: FailureInfo = typeof detail === 'number' ? { code, message, detail } : { code, message };
      if (typeof retryAt === 'number') failure.retryAt = retryAt;
      return failure;
    }
    if (typeof message === 'string') return { code: 'network', message };
  }
  return { code: 'network', message: String(error) };
}

/** Exponential backoff with full jitter in [base·2^(n-1)/2, base·2^(n-1)], capped at 30 s. */
export function backoffDelay(attempt: number, random: number, baseMs = 500): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

type FinalStatus = 'error' | 'tle' | 'cancelled' | 'aborted';

function failureOutput(url: string, error: FailureInfo): DownloadOutput {
  return { url, status: 'error', error };
}

/** The output of a download that ended with a cover. */
function okOutput(url: string, result: FetchCoverOutput | undefined): DownloadOutput {
  if (!result) return failureOutput(url, { code: 'network', message: 'fetchCover resolved without a cover' });
  return result.fetched !== undefined
    ? { url, status: 'ok', cover: result.cover, source: result.source, fetched: result.fetched }
    : { url, status: 'ok', cover: result.cover, source: result.source };
}

function outputFor(context: DownloadContext, status: FinalStatus): DownloadOutput {
  switch (status) {
    case 'tle':
      return failureOutput(context.url, { code: 'tle', message: `download took longer than ${context.timeLimitMs / 1000} s` });
    case 'cancelled':
      return failureOutput(context.url, { code: 'shutting_down', message: 'the service is shutting down' });
    case 'aborted':
      return failureOutput(context.url, { code: 'cancelled', message: 'the administrator cancelled this download' });
    case 'error':
      return failureOutput(context.url, context.error ?? { code: 'network', message: 'download failed' });
  }
}

export const downloadMachine = setup({
  types: {
    context: {} as DownloadContext,
    events: {} as DownloadEvent,
    input: {} as DownloadInput,
    output: {} as DownloadOutput,
  },
  actors: {
    /** One try at fetching and storing the cover. Provided from src/. */
    fetchCover: fromPromise<FetchCoverOutput, FetchCoverInput>(async () => {
      throw new Error('fetchCover is not provided');
    }),
  },
  actions: {
    /** Persist and publish a task status change. Provided from src/. */
    reportStatus: (_args, _params: { status: TaskStatus }) => {},
    /** Called once with the final output. Provided from src/ (the log line). */
    reportFinished: (_args, _params: { output: DownloadOutput }) => {},
    /** A try failed and another follows after the backoff. Provided from src/ (a debug line). */
    reportRetry: (_args, _params: { attempt: number; error: FailureInfo }) => {},
    recordError: assign({ error: (_, params: { error: unknown }) => toFailure(params.error) }),
    /** Sets the output for the final state entered. */
    setOutput: assign({ output: ({ context }, params: { status: FinalStatus }) => outputFor(context, params.status) }),
  },
  guards: {
    /** Whether the last failure (`context.error`) may succeed if tried again. Provided from src/. */
    isTransient: (_args) => false,
    hasTriesLeft: ({ context }) => context.attempt <= context.retries,
  },
  delays: {
    timeLimit: ({ context }) => context.timeLimitMs,
    retryDelay: ({ context }) => backoffDelay(context.attempt, context.random()),
  },
}).createMachine({
  id: 'download',
  context: ({ input }) => ({ ...input, attempt: 0, error: undefined, output: undefined }),
  initial: 'idle',
  on: {
    CANCEL: '.cancelled',
    ABORT: '.aborted',
    TIME_LIMIT: '.timedOut',
  },
  states: {
    idle: {
      description: 'Spawned for a free worker slot; the supervisor sends START at once.',
      on: {
        START: {
          target: 'running',
          // The time limit runs for the whole download, retries included; a final state cancels it.
          actions: [{ type: 'reportStatus', params: { status: 'downloading' } }, raise({ type: 'TIME_LIMIT' }, { delay: 'timeLimit', id: 'timeLimit' })],
        },
      },
    },
    running: {
      description: 'One try of fetchCover; its AbortSignal fires when this state is left.',
      entry: assign({ attempt: ({ context }) => context.attempt + 1 }),
      invoke: {
        src: 'fetchCover',
        input: ({ context }) => ({ url: context.url, attempt: context.attempt }),
        onDone: {
          target: 'done',
          actions: assign({ output: ({ context, event }) => okOutput(context.url, event.output) }),
        },
        onError: {
          target: 'failing',
          actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) },
        },
      },
    },
    failing: {
      description: 'A try failed: retry a transient failure while tries are left, else give up.',
      always: [
        {
          guard: and(['isTransient', 'hasTriesLeft']),
          target: 'backoff',
          actions: { type: 'reportRetry', params: ({ context }) => ({ attempt: context.attempt, error: context.error! }) },
        },
        { target: 'failed' },
      ],
    },
    backoff: {
      description: 'A transient failure; waits retryDelay before the next try.',
      after: { retryDelay: 'running' },
    },
    done: {
      type: 'final',
      description: 'Stored; every subscriber gets the cover.',
      entry: [
        { type: 'reportStatus', params: { status: 'ok' } },
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
    failed: {
      type: 'final',
      description: 'Gave up; every subscriber gets the last error.',
      entry: [
        { type: 'setOutput', params: { status: 'error' } },
        { type: 'reportStatus', params: { status: 'error' } },
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
    timedOut: {
      type: 'final',
      description: 'The time limit passed; leaving `running` aborted the fetch.',
      entry: [
        { type: 'setOutput', params: { status: 'tle' } },
        { type: 'reportStatus', params: { status: 'tle' } },
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
    aborted: {
      type: 'final',
      description: 'Cancelled by the administrator; leaving `running` aborted the fetch. The task ends as error `cancelled`.',
      entry: [
        { type: 'setOutput', params: { status: 'aborted' } },
        { type: 'reportStatus', params: { status: 'error' } },
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
    cancelled: {
      type: 'final',
      description: 'Cancelled before it finished (shutdown). The task row keeps its last status so the next start resumes it.',
      entry: [
        { type: 'setOutput', params: { status: 'cancelled' } },
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
  },
  output: ({ context }) => context.output ?? failureOutput(context.url, { code: 'network', message: 'download ended without an outcome' }),
});

export type DownloadMachine = typeof downloadMachine;
