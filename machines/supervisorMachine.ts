/**
 * supervisorMachine — owns every download in flight.
 *
 * The registry (`context.registry`, url → download actor) is the only record of
 * what is in flight. A URL asked for while its actor exists gets that actor; a
 * new URL gets a new actor in `idle`. Sessions subscribe to the actor's
 * completion; the supervisor subscribes too, and on FINISHED drops the actor
 * from the registry, so memory follows what is in flight.
 *
 * Download actors are NOT children of this machine. XState copies a parent's
 * children map on every spawn and stop, so 10,000 children cost quadratic time
 * (DESIGN.md measured 20 s). They are standalone actors held in the registry,
 * sharing this actor's clock; the registry, the `waiting` queue and the
 * `running` set are mutable collections that only this machine's actions touch,
 * so asking for 10,000 URLs is linear.
 *
 * States — three parallel regions; downloads start only when all three allow:
 *
 *   admin       running | paused      PAUSE / RESUME (the administrator)
 *   resources   ok | tardy            TARDY / READY (the resource guard's samples)
 *   lifecycle   serving | stopping    SHUTDOWN: idle downloads are cancelled
 *                                     (answered `shutting_down`), running ones
 *                                     may finish, nothing new starts.
 *
 * Events:
 *   REQUEST {url, reply}  register an actor for url unless one exists, start it
 *                   if a worker slot is free and the gate is open, and call
 *                   `reply(ref)` with the actor so the asker can subscribe.
 *   FINISHED {url}  (from the actor's completion) free its slot and registry entry,
 *                   start the next waiting one.
 *   GATE_OPENED     raised on entry to running/ok; starts what the slots allow
 *                   and reports the rest `queued`.
 *   GATE_CLOSED     raised on entry to paused/tardy; reports the waiting URLs `waiting`.
 *   REMEMBER {url, output, ttlMs}  a failure to answer from memory (rebuilt from
 *                   the task table at start).
 *   FORGET {url}    the fail TTL passed (a delayed event this machine schedules,
 *                   so a simulated clock drives it), or the administrator retries.
 *
 * Failure memory: a download that ends in error or tle is remembered in
 * `context.failures`; REQUESTs for it are answered with that output, without a
 * download, until FORGET.
 */
import { and, assign, enqueueActions, raise, setup, stateIn } from 'xstate';
import type { ActorRefFrom } from 'xstate';
import { createActor } from 'xstate';
import type { DownloadMachine } from './downloadMachine.js';
import type { DownloadOutput } from './types.js';

export type DownloadRef = ActorRefFrom<DownloadMachine>;

/** The download logic as src/ provides it: the download machine with real I/O. */
export type DownloadLogic = DownloadMachine;

export interface SupervisorInput {
  /** Downloads running at once. */
  workers: number;
  /** The download machine with its I/O provided. */
  download: DownloadLogic;
  /** Time limit of each download, in ms. */
  timeLimitMs: number;
  /** Extra tries for transient failures. */
  retries: number;
  /** How long a failure is answered from memory before the URL is tried again (0 = not remembered). */
  failTtlMs: number;
}

/** What an asker gets: the URL's download actor, or a failure remembered within the fail TTL. */
export type Answer = { ref: DownloadRef } | { output: DownloadOutput };

export interface SupervisorContext extends SupervisorInput {
  /** url → its download actor, for every URL in flight (idle or active). */
  registry: Map<string, DownloadRef>;
  /** URLs whose actor is idle, in the order they were asked for. */
  waiting: Set<string>;
  /** URLs holding a worker slot. */
  running: Set<string>;
  /** Why the service is tardy (empty when it is not). */
  tardyReasons: string[];
  /** url → its last failure, answered without a download until FORGET arrives. */
  failures: Map<string, DownloadOutput>;
}

export type SupervisorEvent =
  | { type: 'REQUEST'; url: string; reply?: (answer: Answer) => void }
  | { type: 'FINISHED'; url: string; ref: DownloadRef }
  | { type: 'REMEMBER'; url: string; output: DownloadOutput; ttlMs: number }
  | { type: 'FORGET'; url: string }
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'TARDY'; reasons: string[] }
  | { type: 'READY' }
  | { type: 'SHUTDOWN' }
  | { type: 'GATE_OPENED' }
  | { type: 'GATE_CLOSED' };

/** The service status as `/healthz` and the admin stream name it. */
export type GateStatus = 'ready' | 'tardy' | 'paused';

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
  },
  actions: {
    /** Creates the URL's actor unless it is in flight already, queues it, and replies with it. */
    register: ({ context, event, self }) => {
      if (event.type !== 'REQUEST') return;
      const { url } = event;
      const failure = context.failures.get(url);
      if (failure !== undefined) {
        event.reply?.({ output: failure });
        return;
      }
      let ref = context.registry.get(url);
      if (ref === undefined) {
        const created = createActor(context.download, {
          input: { url, timeLimitMs: context.timeLimitMs, retries: context.retries },
          clock: self.system._clock,
        });
        ref = created;
        context.registry.set(url, created);
        context.waiting.add(url);
        created.subscribe({
          complete: () => self.send({ type: 'FINISHED', url, ref: created }),
          error: () => self.send({ type: 'FINISHED', url, ref: created }),
        });
        created.start();
      }
      event.reply?.({ ref });
    },
    /** Refuses a URL during shutdown: its actor is created and cancelled at once, never registered. */
    refuse: ({ context, event, self }) => {
      if (event.type !== 'REQUEST') return;
      const existing = context.registry.get(event.url);
      if (existing !== undefined) {
        event.reply?.({ ref: existing });
        return;
      }
      const ref = createActor(context.download, {
        input: { url: event.url, timeLimitMs: context.timeLimitMs, retries: context.retries },
        clock: self.system._clock,
      });
      ref.start();
      ref.send({ type: 'CANCEL' });
      event.reply?.({ ref });
    },
    /** Starts waiting downloads while worker slots are free. */
    startWaiting: ({ context }) => {
      for (const url of context.waiting) {
        if (context.running.size >= context.workers) break;
        context.waiting.delete(url);
        context.running.add(url);
        context.registry.get(url)?.send({ type: 'START' });
      }
    },
    /** Forgets a finished download. */
    release: ({ context, event }) => {
      if (event.type !== 'FINISHED' || context.registry.get(event.url) !== event.ref) return;
      context.registry.delete(event.url);
      context.waiting.delete(event.url);
      context.running.delete(event.url);
    },
    /** Cancels every download that has not started. */
    cancelWaiting: ({ context }) => {
      const refs = [...context.waiting].map((url) => context.registry.get(url));
      for (const ref of refs) ref?.send({ type: 'CANCEL' });
    },
    /** Remembers a finished download's failure for the fail TTL (not a cancellation). */
    rememberFailure: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'FINISHED' && event.type !== 'REMEMBER') return;
      const output = event.type === 'REMEMBER' ? event.output : event.ref.getSnapshot().output;
      const ttlMs = event.type === 'REMEMBER' ? event.ttlMs : context.failTtlMs;
      if (output?.status !== 'error' || output.error.code === 'shutting_down' || ttlMs <= 0) return;
      context.failures.set(event.url, output);
      enqueue.cancel(`forget:${event.url}`);
      enqueue.raise({ type: 'FORGET', url: event.url }, { delay: ttlMs, id: `forget:${event.url}` });
    }),
    forgetFailure: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'FORGET') return;
      context.failures.delete(event.url);
      enqueue.cancel(`forget:${event.url}`);
    }),
    /** Persists `waiting` (gate closed) or `queued` (gate open) for every URL waiting for a slot. Provided from src/. */
    reportWaiting: (_args, _params: { urls: string[]; status: 'waiting' | 'queued' }) => {},
    setTardyReasons: assign({ tardyReasons: ({ event }) => (event.type === 'TARDY' ? event.reasons : []) }),
  },
  guards: {
    isOpen: and([
      stateIn('#supervisor.admin.running'),
      stateIn('#supervisor.resources.ok'),
      stateIn('#supervisor.lifecycle.serving'),
    ]),
    isStopping: stateIn('#supervisor.lifecycle.stopping'),
  },
}).createMachine({
  id: 'supervisor',
  type: 'parallel',
  context: ({ input }) => ({ ...input, registry: new Map(), waiting: new Set(), running: new Set(), tardyReasons: [], failures: new Map() }),
  on: {
    REQUEST: [
      { guard: 'isStopping', actions: 'refuse' },
      { guard: 'isOpen', actions: ['register', 'startWaiting'] },
      {
        actions: [
          'register',
          {
            type: 'reportWaiting',
            params: ({ context, event }) => ({ urls: context.waiting.has(event.url) ? [event.url] : [], status: 'waiting' as const }),
          },
        ],
      },
    ],
    FINISHED: [
      { guard: 'isOpen', actions: ['release', 'rememberFailure', 'startWaiting'] },
      { actions: ['release', 'rememberFailure'] },
    ],
    REMEMBER: { actions: 'rememberFailure' },
    FORGET: { actions: 'forgetFailure' },
    GATE_OPENED: {
      guard: 'isOpen',
      actions: ['startWaiting', { type: 'reportWaiting', params: ({ context }) => ({ urls: [...context.waiting], status: 'queued' as const }) }],
    },
    GATE_CLOSED: {
      actions: { type: 'reportWaiting', params: ({ context }) => ({ urls: [...context.waiting], status: 'waiting' as const }) },
    },
  },
  states: {
    admin: {
      initial: 'running',
      states: {
        running: {
          description: 'Downloads may start (if resources and lifecycle allow).',
          entry: raise({ type: 'GATE_OPENED' }),
          on: { PAUSE: 'paused' },
        },
        paused: {
          description: 'Held by the administrator: new downloads wait.',
          entry: raise({ type: 'GATE_CLOSED' }),
          on: { RESUME: 'running' },
        },
      },
    },
    resources: {
      initial: 'ok',
      states: {
        ok: {
          description: 'Disk, memory and load are under their limits.',
          entry: raise({ type: 'GATE_OPENED' }),
          on: { TARDY: { target: 'tardy', actions: 'setTardyReasons' } },
        },
        tardy: {
          description: 'A resource is over its limit: new downloads wait until it drops.',
          entry: raise({ type: 'GATE_CLOSED' }),
          on: { TARDY: { actions: 'setTardyReasons' }, READY: { target: 'ok', actions: 'setTardyReasons' } },
        },
      },
    },
    lifecycle: {
      initial: 'serving',
      states: {
        serving: {
          description: 'Normal operation.',
          on: { SHUTDOWN: 'stopping' },
        },
        stopping: {
          description: 'Shutting down: nothing new starts; idle downloads are cancelled.',
          entry: 'cancelWaiting',
        },
      },
    },
  },
});

export type SupervisorMachine = typeof supervisorMachine;
export type SupervisorRef = ActorRefFrom<SupervisorMachine>;

/** The gate's status for a supervisor snapshot. */
export function gateStatus(snapshot: ReturnType<SupervisorRef['getSnapshot']>): GateStatus {
  if (snapshot.matches({ admin: 'paused' })) return 'paused';
  if (snapshot.matches({ resources: 'tardy' })) return 'tardy';
  return 'ready';
}
