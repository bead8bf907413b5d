/**
 * renderMachine — the life of one variant's render (a size and format of a
 * cover, made once however many ask for it at once).
 *
 * States (and what moves between them):
 *
 *   queued      Spawned when a missing variant is first asked for; waits for a
 *               slot of the render pool. START (a slot is free) → rendering.
 *               DROP (every asker left before it started) → dropped.
 *   rendering   Invokes `render` (the real work, provided from src/: read the
 *               original, decode, resize, encode, write temp + rename). START
 *               also raises the time limit, a delayed TIME_LIMIT event
 *               (`timeLimit`) that ends the render as timedOut. Leaving this
 *               state aborts the work through its AbortSignal (nothing is
 *               published after that). Resolved → done. Rejected → failed.
 *   done        Final. Output `{ status: 'ok', variant, ms }`.
 *   failed      Final. Output `{ status: 'error', error }`.
 *   timedOut    Final. Output `{ status: 'error', error: { code: 'tle' } }`.
 *   dropped     Final. Nobody waits for it any more: never started.
 *   cancelled   Final (CANCEL, shutdown; from any state). Output
 *               `{ status: 'error', error: { code: 'shutting_down' } }`.
 *
 * Time: delays run on the actor's clock (XState's `clock` option); the start
 * and end of the render are read from the `clock` in the input (the one clock
 * of the service, as `MachineClock`). Like the download machine, it imports
 * nothing but `xstate` and runs in a test with a fake `render` and a test clock.
 */
import { assign, fromPromise, raise, setup } from 'xstate';
import type { FailureInfo, MachineClock } from './types.js';
import { toFailure } from './downloadMachine.js';

/** What one render makes: a variant's stored file. */
export interface RenderedVariant {
  /** The variant's stored path (relative to the covers folder). */
  path: string;
  contentType: string;
  bytes: number;
  width: number;
  height: number;
  /** Just made: its bytes and the file's time as written, so the first askers are answered without reading it back. */
  made?: { data: Buffer; mtimeMs: number };
}

export interface RenderInput {
  /** The variant's stored path: the actor's identity. */
  path: string;
  /** Wall-clock limit for the render, from START. */
  timeLimitMs: number;
  clock: MachineClock;
}

/** What a finished render hands to every asker. */
export type RenderOutput =
  | { path: string; status: 'ok'; variant: RenderedVariant; ms: number }
  | { path: string; status: 'error'; error: FailureInfo }
  | { path: string; status: 'dropped' };

export interface RenderContext extends RenderInput {
  startedAt: number | undefined;
  output: RenderOutput | undefined;
}

/** START (a pool slot is free), DROP (nobody waits, not started), CANCEL (shutdown); TIME_LIMIT is the machine's own. */
export type RenderEvent = { type: 'START' } | { type: 'DROP' } | { type: 'CANCEL' } | { type: 'TIME_LIMIT' };

const fail = (path: string, error: FailureInfo): RenderOutput => ({ path, status: 'error', error });

export const renderMachine = setup({
  types: {
    context: {} as RenderContext,
    events: {} as RenderEvent,
    input: {} as RenderInput,
    output: {} as RenderOutput,
  },
  actors: {
    /** The render itself, aborted through its signal when `rendering` is left. Provided from src/. */
    render: fromPromise<RenderedVariant, { path: string }>(async () => {
      throw new Error('render is not provided');
    }),
  },
  actions: {
    /** Called once with the final output (the log line, the counters). Provided from src/. */
    reportFinished: (_args, _params: { output: RenderOutput }) => {},
  },
  delays: {
    timeLimit: ({ context }) => context.timeLimitMs,
  },
}).createMachine({
  id: 'render',
  context: ({ input }) => ({ ...input, startedAt: undefined, output: undefined }),
  initial: 'queued',
  on: { CANCEL: '.cancelled' },
  states: {
    queued: {
      description: 'Waits for a slot of the render pool; dropped if every asker leaves first.',
      on: {
        START: {
          target: 'rendering',
          actions: [assign({ startedAt: ({ context }) => context.clock.now() }), raise({ type: 'TIME_LIMIT' }, { delay: 'timeLimit', id: 'timeLimit' })],
        },
        DROP: 'dropped',
      },
    },
    rendering: {
      description: 'The render runs; its AbortSignal fires when this state is left.',
      on: { TIME_LIMIT: 'timedOut' },
      invoke: {
        src: 'render',
        input: ({ context }) => ({ path: context.path }),
        onDone: {
          target: 'done',
          actions: assign({
            output: ({ context, event }) => ({ path: context.path, status: 'ok' as const, variant: event.output, ms: context.clock.now() - (context.startedAt ?? context.clock.now()) }),
          }),
        },
        onError: {
          target: 'failed',
          actions: assign({ output: ({ context, event }) => fail(context.path, toFailure(event.error)) }),
        },
      },
    },
    done: {
      type: 'final',
      entry: { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
    },
    failed: {
      type: 'final',
      entry: { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
    },
    timedOut: {
      type: 'final',
      entry: [
        assign({ output: ({ context }) => fail(context.path, { code: 'tle', message: `rendering took longer than ${context.timeLimitMs / 1000} s` }) }),
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
    dropped: {
      type: 'final',
      entry: [assign({ output: ({ context }) => ({ path: context.path, status: 'dropped' as const }) }), { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) }],
    },
    cancelled: {
      type: 'final',
      entry: [
        assign({ output: ({ context }) => fail(context.path, { code: 'shutting_down', message: 'the service is shutting down' }) }),
        { type: 'reportFinished', params: ({ context }) => ({ output: context.output! }) },
      ],
    },
  },
  output: ({ context }) => context.output ?? fail(context.path, { code: 'network', message: 'render ended without an outcome' }),
});

export type RenderMachine = typeof renderMachine;
