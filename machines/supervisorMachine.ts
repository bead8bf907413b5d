/**
 * supervisorMachine — owns every download in flight.
 *
 * Its record of what is in flight is `context.flights` (machines/flights.ts):
 * each URL's flight, its place in the queue, its download actor once it holds a
 * worker slot, `done` (the promise every asker of the URL awaits), and who waits
 * on it. This machine's actions are the only ones that change it; everything
 * else asks it. A URL asked for while its flight exists joins it; a new URL gets
 * a new flight. When a worker slot is free the supervisor takes the next flight
 * (askers take turns: one asker's long queue does not hold back another's new
 * URL), spawns its download actor (idle → running → done), subscribes to its
 * completion, and starts it; on completion (FINISHED) the flight leaves and
 * `done` settles with the actor's output, so every session waiting on the URL
 * hears the actor's completion at once, and memory follows what is in flight.
 *
 * Askers come and go: when one leaves (LEAVE: its socket closed, its request
 * gave up), a flight nobody waits on any more that has not started is dropped
 * (its task row is removed by the provided `reportDropped`); a running one
 * finishes and is stored. Work found without an asker (resumed at start, taken
 * over from a dead node) is held by an asker of its own for `orphanGraceMs`, so
 * a reconnecting client can join it, and then dropped unless someone did.
 *
 * Actors exist only for running downloads: at most `workers` at a time. A URL
 * waiting for a slot is a map entry and a promise (a few hundred bytes), not an
 * actor with its own system, mailbox and snapshot (8 KB each, measured in
 * docs/BENCHMARKS.md), so 100,000 URLs asked for at once fit in a few tens of MB.
 *
 * Download actors are NOT children of this machine. XState copies a parent's
 * children map on every spawn and stop, so 10,000 children cost quadratic time
 * (test/supervisorMachine.test.ts compares 2,500 and 10,000 URLs to hold this
 * linear; docs/DESIGN.md, Actors). They are standalone actors held by their flights,
 * sharing this actor's clock; the flights are a mutable structure that only
 * this machine's actions touch, so asking for 10,000 URLs is linear.
 *
 * States — three parallel regions; downloads start only when all three allow:
 *
 *   admin       running | paused      PAUSE / RESUME (the administrator)
 *   resources   ok | tardy            TARDY / READY (the resource guard's samples)
 *   lifecycle   serving | stopping    SHUTDOWN: waiting URLs are answered
 *                                     `shutting_down`, running downloads may
 *                                     finish, nothing new starts.
 *
 * Events:
 *   REQUEST {urls, asker, reply, leaveAfterMs?}  `asker` joins the flight of each
 *                   URL (made unless one exists), start what free worker slots
 *                   allow if the gate is open, and call `reply(answers)`, one
 *                   answer per URL in order: `{ flight }` so the asker can await
 *                   `flight.done` (or `{ output }` for a remembered failure). A
 *                   check's URLs come as one REQUEST: one transition for 1,000
 *                   URLs, not 1,000 (each transition of this parallel machine
 *                   allocates ~11 KB, measured in docs/BENCHMARKS.md, Memory).
 *                   With `leaveAfterMs` the asker leaves by itself after that long.
 *   LEAVE {asker}   the asker waits on nothing any more: its flights that have not
 *                   started and that nobody else waits on are dropped.
 *   FINISHED {finished: [{url, ref}, …]}  (from the actors' completion) free
 *                   their slots, settle their flights, start the next waiting
 *                   ones. The downloads that complete in one event-loop turn
 *                   come as one event when the input's `finishLater` gathers
 *                   them (src/ gives it the turn end's first step): one transition of this
 *                   parallel machine per turn, not one per download
 *                   (docs/BENCHMARKS.md, Cold, side by side). Without it, and for
 *                   an actor stopped or failed rather than done, each completion
 *                   is its own event at once.
 *   GATE_OPENED     raised on entry to running/ok; starts what the slots allow
 *                   and reports the rest `queued`.
 *   GATE_CLOSED     raised on entry to paused/tardy; reports the waiting URLs `waiting`.
 *   REMEMBER {url, output, ttlMs}  a failure to answer from memory (rebuilt from
 *                   the task table at start).
 *   FORGET {url}    the fail TTL passed (a delayed event this machine schedules,
 *                   so a simulated clock drives it), or the administrator retries.
 *
 * Several nodes (`shared`): a new URL is first `claiming` (its flight exists, so
 * askers join it, but it has no place in the queue): the provided action
 * `claimUrls` claims the task rows in the database, one statement per REQUEST,
 * and answers with CLAIMED. A URL this node now holds is queued; a URL another
 * live node holds stays a flight `elsewhere` with that node as its `owner`,
 * settled by SETTLE when that node's outcome is heard (src/ listens to the
 * database). TAKEOVER claims again URLs whose owner's lease ran out (or that
 * nobody holds).
 *
 *   CLAIMED {mine, elsewhere}   claims answered: mine queue, the rest wait on their owner
 *   CLAIM_FAILED {urls, error}  the claim could not be written: those askers get the error
 *   SETTLE {url, output}        an outcome heard from another node, for a flight not running here
 *   TAKEOVER {urls}             claim these again (held for `orphanGraceMs` if nobody here asked)
 *
 *   ABORT {url}     the administrator cancels the URL's download here: a running
 *                   actor gets ABORT (its task ends as error `cancelled`); a URL
 *                   waiting for a slot leaves the queue with the same answer
 *                   (`reportAborted` records it). A URL held by another node is
 *                   that node's to cancel.
 *
 * Cooling upstream hosts (`coolingUntil`, provided from src/): a download that
 * ends `upstream_limited` is not the URL's failure. Its askers are answered at
 * once (with the reopening time), nothing is remembered, and the URL stays in
 * flight `parked`, held by the supervisor's keeper asker (bulk: it is not
 * dropped for want of askers), holding no worker slot. A new ask for a URL
 * whose host cools is answered so at once and parked without a download.
 *   UNPARK          a host reopened (src/ sends it on the gates' changes; a delayed
 *                   UNPARK at the reopening time is raised too): the parked flights
 *                   whose host no longer cools are queued again, in the order parked.
 * At most `maxParked` flights are parked; past it a refused URL is answered the
 * same but not kept (its task row is removed, as for a dropped flight). FORGET (the
 * administrator deleted the URL's cover or stored a custom one) and ABORT drop a
 * parked flight; a shutdown answers parked flights like waiting ones (their task
 * rows stay queued, so the next start resumes them).
 *
 * Failure memory: a download that ends in error or tle is remembered in the
 * flights if the input's `isRemembered` says its code is about the URL (not a
 * local storage fault, not a shutdown); REQUESTs for it are answered with that
 * output, without a download, until FORGET.
 */
import { and, assign, enqueueActions, raise, setup, stateIn } from 'xstate';
import type { ActorRefFrom } from 'xstate';
import { createActor } from 'xstate';
import type { DownloadMachine } from './downloadMachine.js';
import { Flights } from './flights.js';
import type { Asker, Flight as FlightOf } from './flights.js';
import type { DownloadOutput, FailureInfo, MachineClock } from './types.js';

export type DownloadRef = ActorRefFrom<DownloadMachine>;

/** The download logic as src/ provides it: the download machine with real I/O. */
export type DownloadLogic = DownloadMachine;

/** How long work found without an asker (resumed at start, taken over) waits for one by default. */
export const ORPHAN_GRACE_MS = 30_000;

/**
 * Flights parked at once by default. Parked flights are held by the keeper, not by
 * their askers (who were answered at once), so leaving does not drop them: this
 * bounds what askers of cooling hosts can make the service hold.
 */
export const MAX_PARKED = 100_000;

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
  /**
   * Whether a failure with this code is the URL's answer for the fail TTL (src/
   * gives the table of src/errors.ts). A shutdown or `upstream_limited` is never remembered, whatever this says.
   */
  isRemembered: (code: string) => boolean;
  /** Several nodes share the database: a URL is claimed before it may start. */
  shared: boolean;
  /**
   * The clock this machine runs on (the one given to its own actor): the download actors
   * get it through XState's `clock` option, their retry jitter draws from it, and when a
   * remembered failure is tried again is told to askers by its `now`.
   */
  clock: MachineClock;
  /**
   * Runs `send` later in this turn's end (src/ gives `atTurnEndFirst`), so that the
   * downloads done meanwhile reach the supervisor as one FINISHED. Omitted (the
   * machine tests), each completion is sent at once.
   */
  finishLater?: (send: () => void) => void;
  /** How long work taken over from a dead node without an asker here waits for one (default ORPHAN_GRACE_MS). */
  orphanGraceMs?: number;
  /** When the URL's upstream host (its image host, the API host for a video page) reopens, while it cools; else undefined. */
  coolingUntil?: (url: string) => number | undefined;
  /**
   * Flights parked at once (default MAX_PARKED). Past it, a URL whose host cools is
   * answered `upstream_limited` all the same but not kept: no flight, its task row
   * removed (as for a dropped flight), fetched when it is asked again.
   */
  maxParked?: number;
}

/** One URL in flight. */
export type Flight = FlightOf<DownloadRef, DownloadOutput>;

export type { Asker };

/** What an asker gets: the URL's flight, or an output without a download (a remembered failure, or a refusal during shutdown). */
export type Answer = { flight: Flight } | { output: DownloadOutput };

export interface SupervisorContext extends SupervisorInput {
  /** Everything in flight, who waits on it, and remembered failures. */
  flights: Flights<DownloadRef, DownloadOutput>;
  /** Why the service is tardy (empty when it is not). */
  tardyReasons: string[];
  /** Downloads done and not yet reported to this machine (gathered by `finishLater`). */
  finishing: Finished[];
  /** What the event being handled did to the flights, for the actions after it to report. */
  made: Made;
  /** Holds the parked flights (their hosts cool): bulk, and it never leaves. */
  keeper: Asker;
}

/** URLs the event being handled queued, sent to be claimed, and dropped (their task rows are removed). */
export interface Made {
  waiting: string[];
  claiming: string[];
  dropped: string[];
}

function noneMade(): Made {
  return { waiting: [], claiming: [], dropped: [] };
}

/** A download actor that completed, and its URL. */
export interface Finished {
  url: string;
  ref: DownloadRef;
}

export type SupervisorEvent =
  | { type: 'REQUEST'; urls: readonly string[]; asker?: Asker; reply?: (answers: Answer[]) => void; leaveAfterMs?: number }
  | { type: 'LEAVE'; asker: Asker }
  | { type: 'FINISHED'; finished: readonly Finished[] }
  | { type: 'CLAIMED'; mine: readonly string[]; elsewhere: readonly (readonly [url: string, node: string])[] }
  | { type: 'CLAIM_FAILED'; urls: readonly string[]; error: FailureInfo }
  | { type: 'SETTLE'; url: string; output: DownloadOutput }
  | { type: 'TAKEOVER'; urls: readonly string[] }
  | { type: 'ABORT'; url: string }
  | { type: 'REMEMBER'; url: string; output: DownloadOutput; ttlMs: number }
  | { type: 'FORGET'; url: string }
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'TARDY'; reasons: string[] }
  | { type: 'READY' }
  | { type: 'SHUTDOWN' }
  | { type: 'GATE_OPENED' }
  | { type: 'GATE_CLOSED' }
  | { type: 'UNPARK' };

/** The service status as `/healthz` and the admin stream name it. */
export type GateStatus = 'ready' | 'tardy' | 'paused';

function shuttingDown(url: string): DownloadOutput {
  return { url, status: 'error', error: { code: 'shutting_down', message: 'the service is shutting down' } };
}

function abortedOutput(url: string): DownloadOutput {
  return { url, status: 'error', error: { code: 'cancelled', message: 'the administrator cancelled this download' } };
}

/** The answer of a URL whose upstream host cools until `retryAt`. */
function limitedOutput(url: string, retryAt: number): DownloadOutput {
  return {
    url,
    status: 'error',
    error: { code: 'upstream_limited', message: `the upstream host of this URL is cooling after refusing requests; it is fetched after ${new Date(retryAt).toISOString()}`, retryAt },
  };
}

/** The answer of a flight dropped because nobody waits on it (nobody reads it; kept for completeness). */
function droppedOutput(url: string): DownloadOutput {
  return { url, status: 'error', error: { code: 'cancelled', message: 'nobody waits for this download any more' } };
}

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
  },
  actions: {
    /** The asker joins each URL's flight (made unless one exists) and is replied to with them all; a timed asker leaves later. */
    register: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      const { flights } = context;
      const asker = event.asker ?? { kind: 'anonymous' };
      const initial = context.shared ? 'claiming' : 'waiting';
      const made = (context.made = noneMade());
      const answers: Answer[] = new Array<Answer>(event.urls.length);
      /** Reopening times an UNPARK is raised for by this event (one timer each). */
      let unparkAt: Set<number> | undefined;
      for (let i = 0; i < event.urls.length; i++) {
        const url = event.urls[i]!;
        // A URL whose host cools is answered at once and parked (not on a shared database: claimed first, it parks when its download is refused at once).
        const existing = flights.get(url);
        const until = context.coolingUntil !== undefined && (existing === undefined ? !context.shared && flights.remembered(url) === undefined : existing.state === 'parked') ? context.coolingUntil(url) : undefined;
        if (until !== undefined) {
          if (existing === undefined && flights.count('parked') < (context.maxParked ?? MAX_PARKED)) {
            flights.join(url, context.keeper, 'parked');
            // Its task row is written queued: it is fetched after the reopening (or resumed at the next start).
            made.waiting.push(url);
            if (!(unparkAt ??= new Set()).has(until)) {
              unparkAt.add(until);
              enqueue.cancel(`unpark:${until}`);
              enqueue.raise({ type: 'UNPARK' }, { delay: Math.max(0, until - context.clock.now()), id: `unpark:${until}` });
            }
          }
          answers[i] = { output: limitedOutput(url, until) };
          continue;
        }
        // Parked, and its host reopened before UNPARK came: queued again now.
        if (existing?.state === 'parked') {
          flights.queue(existing);
          made.waiting.push(url);
        }
        const joined = flights.join(url, asker, initial);
        if ('output' in joined) answers[i] = joined;
        else if ('gone' in joined) answers[i] = { output: droppedOutput(event.urls[i]!) };
        else {
          if (joined.created) made[initial].push(joined.flight.url);
          answers[i] = { flight: joined.flight };
        }
      }
      if (event.leaveAfterMs !== undefined) enqueue.raise({ type: 'LEAVE', asker }, { delay: event.leaveAfterMs });
      event.reply?.(answers);
    }),
    /** LEAVE: the asker's flights forget it; those left with nobody that have not started are dropped. */
    leave: ({ context, event }) => {
      if (event.type !== 'LEAVE') return;
      const gone = context.flights.leave(event.asker, droppedOutput);
      // A waiting flight's row is this node's to remove; a claiming one's when its claim is answered (acceptClaims).
      context.made = { ...noneMade(), dropped: gone.filter((flight) => flight.state === 'waiting').map((flight) => flight.url) };
    },
    /** TAKEOVER: URLs whose owner's claim ran out are claimed again (and held for the grace if nobody here asked for them). */
    takeOver: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'TAKEOVER') return;
      const { flights } = context;
      const made = (context.made = noneMade());
      let orphans: Asker | undefined;
      for (const url of event.urls) {
        if (flights.remembered(url) !== undefined) continue;
        const flight = flights.get(url);
        if (flight === undefined) {
          flights.join(url, (orphans ??= { kind: 'takeover', bulk: true }), 'claiming');
          made.claiming.push(url);
        } else if (flight.state === 'elsewhere') {
          flights.reclaim(flight);
          made.claiming.push(url);
        }
      }
      if (orphans !== undefined) enqueue.raise({ type: 'LEAVE', asker: orphans }, { delay: context.orphanGraceMs ?? ORPHAN_GRACE_MS });
    }),
    /** Claims answered: this node's URLs wait for a slot, the others wait on the node that holds them. */
    acceptClaims: ({ context, event }) => {
      if (event.type !== 'CLAIMED') return;
      const { flights } = context;
      const made = (context.made = noneMade());
      for (const url of event.mine) {
        const flight = flights.get(url);
        if (flight?.state === 'claiming') {
          flights.queue(flight);
          made.waiting.push(url);
          // Dropped while their claim was being written: the rows claimed for nobody are removed.
        } else if (flight === undefined) made.dropped.push(url);
      }
      for (const [url, node] of event.elsewhere) {
        const flight = flights.get(url);
        if (flight?.state === 'claiming') flights.heldBy(flight, node);
      }
    },
    /** The claims could not be written: their askers get the error (not remembered: it says nothing of the URL). */
    failClaims: ({ context, event }) => {
      if (event.type !== 'CLAIM_FAILED') return;
      for (const url of event.urls) {
        const flight = context.flights.get(url);
        if (flight?.state === 'claiming') context.flights.settle(flight, { url, status: 'error', error: event.error });
      }
    },
    /** An outcome heard from another node settles the URL's flight, unless this node is downloading it itself. */
    settleHeard: ({ context, event }) => {
      if (event.type !== 'SETTLE') return;
      const flight = context.flights.get(event.url);
      if (flight !== undefined && flight.state !== 'running') context.flights.settle(flight, event.output);
    },
    /** ABORT: stops the URL's download here and answers its askers `cancelled`. */
    abort: ({ context, event }) => {
      if (event.type !== 'ABORT') return;
      const flight = context.flights.get(event.url);
      if (flight === undefined || flight.state === 'elsewhere') return;
      if (flight.ref !== undefined) flight.ref.send({ type: 'ABORT' });
      else context.flights.settle(flight, abortedOutput(event.url));
    },
    /** Provided from src/: records downloads cancelled before they started. */
    reportAborted: (_args, _params: { outputs: DownloadOutput[] }) => {},
    /** Provided from src/: removes the task rows of flights dropped before they started (nobody waits on them). */
    reportDropped: (_args, _params: { urls: string[] }) => {},
    /** Provided from src/: claims these URLs' task rows, then sends CLAIMED (or CLAIM_FAILED). */
    claimUrls: (_args, _params: { urls: string[]; status: 'queued' | 'waiting' }) => {},
    /** During shutdown: joins a running download, or answers `shutting_down` without one. */
    refuse: ({ context, event }) => {
      if (event.type !== 'REQUEST') return;
      event.reply?.(
        event.urls.map((url) => {
          const existing = context.flights.get(url);
          return existing !== undefined ? { flight: existing } : { output: shuttingDown(url) };
        }),
      );
    },
    /** Spawns and starts the download actors of waiting URLs while worker slots are free, askers taking turns. */
    startWaiting: ({ context, self }) => {
      const { flights } = context;
      while (flights.count('running') < context.workers) {
        const flight = flights.next();
        if (flight === undefined) break;
        const { url } = flight;
        const ref = createActor(context.download, {
          input: { url, timeLimitMs: context.timeLimitMs, retries: context.retries, random: () => context.clock.random() },
          clock: context.clock,
        });
        flights.start(flight, ref);
        const finished = () => {
          const { finishLater, finishing } = context;
          // A stopped or failed actor is reported at once (a shutdown stops the supervisor next).
          if (finishLater === undefined || ref.getSnapshot().status !== 'done') {
            self.send({ type: 'FINISHED', finished: [{ url, ref }] });
            return;
          }
          finishing.push({ url, ref });
          if (finishing.length === 1) finishLater(() => self.send({ type: 'FINISHED', finished: finishing.splice(0) }));
        };
        ref.subscribe({ complete: finished, error: finished });
        ref.start();
        ref.send({ type: 'START' });
      }
    },
    /** Downloads that ended `upstream_limited` (answered by `release`) stay in flight, parked, until their host reopens. */
    parkLimited: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'FINISHED') return;
      const unparkAt = new Set<number>();
      const made = (context.made = noneMade());
      for (const { url, ref } of event.finished) {
        const output = ref.getSnapshot().output;
        if (output?.status !== 'error' || output.error.code !== 'upstream_limited' || context.flights.has(url)) continue;
        // Past the bound: answered all the same, not kept (its task row, written queued, is removed).
        if (context.flights.count('parked') >= (context.maxParked ?? MAX_PARKED)) {
          made.dropped.push(url);
          continue;
        }
        context.flights.join(url, context.keeper, 'parked');
        unparkAt.add(output.error.retryAt ?? context.clock.now());
      }
      for (const until of unparkAt) {
        enqueue.cancel(`unpark:${until}`);
        enqueue.raise({ type: 'UNPARK' }, { delay: Math.max(0, until - context.clock.now()), id: `unpark:${until}` });
      }
    }),
    /** UNPARK: parked flights whose host no longer cools wait for a slot again, in the order they were parked. */
    unpark: ({ context }) => {
      const { flights } = context;
      if (flights.count('parked') === 0) return;
      for (const flight of [...flights.values()]) {
        if (flight.state === 'parked' && context.coolingUntil?.(flight.url) === undefined) flights.queue(flight);
      }
    },
    /** Forgets a finished download and hands its output to everyone waiting on the URL. */
    release: ({ context, event }) => {
      if (event.type !== 'FINISHED') return;
      for (const { url, ref } of event.finished) {
        const flight = context.flights.get(url);
        if (flight === undefined || flight.ref !== ref) continue;
        // No output means the actor was stopped before it finished: the end of a shutdown.
        context.flights.settle(flight, ref.getSnapshot().output ?? shuttingDown(url));
      }
    },
    /**
     * Answers every URL not running here `shutting_down`: waiting for a slot, being
     * claimed, or held by another node (its task row stays, so it is resumed).
     */
    cancelWaiting: ({ context }) => {
      const { flights } = context;
      for (const flight of [...flights.values()]) if (flight.state !== 'running') flights.settle(flight, shuttingDown(flight.url));
    },
    /** Remembers a finished download's failure for the fail TTL, if it is about the URL (`isRemembered`). */
    rememberFailure: enqueueActions(({ context, event, enqueue }) => {
      const remember = (url: string, output: DownloadOutput | undefined, ttlMs: number) => {
        // A shutdown or a cooling host (the URL is parked) says nothing of the URL, whatever `isRemembered` says.
        if (output?.status !== 'error' || ttlMs <= 0 || output.error.code === 'shutting_down' || output.error.code === 'upstream_limited' || !context.isRemembered(output.error.code)) return;
        // Askers from now on are told it is remembered, and until when.
        context.flights.remember(url, { url: output.url, status: 'error', error: output.error, retryAt: context.clock.now() + ttlMs });
        enqueue.cancel(`forget:${url}`);
        enqueue.raise({ type: 'FORGET', url }, { delay: ttlMs, id: `forget:${url}` });
      };
      if (event.type === 'REMEMBER') remember(event.url, event.output, event.ttlMs);
      else if (event.type === 'FINISHED') for (const { url, ref } of event.finished) remember(url, ref.getSnapshot().output, context.failTtlMs);
    }),
    /** FORGET: the remembered failure goes, and so does a parked flight (nobody waits on it but the keeper; its task row is removed). */
    forgetFailure: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'FORGET') return;
      context.flights.forget(event.url);
      enqueue.cancel(`forget:${event.url}`);
      const flight = context.flights.get(event.url);
      context.made = noneMade();
      if (flight?.state === 'parked') {
        context.flights.settle(flight, droppedOutput(event.url));
        context.made.dropped.push(event.url);
      }
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
  context: ({ input }) => ({ ...input, flights: new Flights<DownloadRef, DownloadOutput>(), tardyReasons: [], finishing: [], made: noneMade(), keeper: { kind: 'parked', bulk: true } }),
  on: {
    REQUEST: [
      { guard: 'isStopping', actions: 'refuse' },
      {
        guard: 'isOpen',
        actions: [
          'register',
          // Reported before it may start, so a task's changes arrive in order: queued, downloading, …
          { type: 'reportWaiting', params: ({ context }) => ({ urls: context.made.waiting, status: 'queued' as const }) },
          { type: 'claimUrls', params: ({ context }) => ({ urls: context.made.claiming, status: 'queued' as const }) },
          'startWaiting',
        ],
      },
      {
        actions: [
          'register',
          { type: 'reportWaiting', params: ({ context }) => ({ urls: context.made.waiting, status: 'waiting' as const }) },
          { type: 'claimUrls', params: ({ context }) => ({ urls: context.made.claiming, status: 'waiting' as const }) },
        ],
      },
    ],
    LEAVE: { actions: ['leave', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }] },
    TAKEOVER: [
      { guard: 'isStopping' },
      {
        actions: ['takeOver', { type: 'claimUrls', params: ({ context }) => ({ urls: context.made.claiming, status: 'queued' as const }) }],
      },
    ],
    CLAIMED: [
      {
        guard: 'isOpen',
        actions: ['acceptClaims', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }, { type: 'reportWaiting', params: ({ context }) => ({ urls: context.made.waiting, status: 'queued' as const }) }, 'startWaiting'],
      },
      { actions: ['acceptClaims', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }, { type: 'reportWaiting', params: ({ context }) => ({ urls: context.made.waiting, status: 'waiting' as const }) }] },
    ],
    CLAIM_FAILED: { actions: 'failClaims' },
    ABORT: {
      actions: [
        // Reported before `abort` drops the flight: a URL here that is not running.
        {
          type: 'reportAborted',
          params: ({ context, event }) => {
            const flight = event.type === 'ABORT' ? context.flights.get(event.url) : undefined;
            return { outputs: flight !== undefined && (flight.state === 'waiting' || flight.state === 'claiming' || flight.state === 'parked') ? [abortedOutput(flight.url)] : [] };
          },
        },
        'abort',
      ],
    },
    SETTLE: { actions: 'settleHeard' },
    FINISHED: [
      // Stopping: nothing is parked any more (a refused URL keeps its queued task row for the next start).
      { guard: 'isStopping', actions: ['release', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }, 'rememberFailure'] },
      { guard: 'isOpen', actions: ['release', 'parkLimited', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }, 'rememberFailure', 'startWaiting'] },
      { actions: ['release', 'parkLimited', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }, 'rememberFailure'] },
    ],
    UNPARK: [{ guard: 'isStopping' }, { guard: 'isOpen', actions: ['unpark', 'startWaiting'] }, { actions: 'unpark' }],
    REMEMBER: { actions: 'rememberFailure' },
    FORGET: { actions: ['forgetFailure', { type: 'reportDropped', params: ({ context }) => ({ urls: context.made.dropped }) }] },
    GATE_OPENED: {
      guard: 'isOpen',
      actions: ['startWaiting', { type: 'reportWaiting', params: ({ context }) => ({ urls: context.flights.urls('waiting'), status: 'queued' as const }) }],
    },
    GATE_CLOSED: {
      actions: { type: 'reportWaiting', params: ({ context }) => ({ urls: context.flights.urls('waiting'), status: 'waiting' as const }) },
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
          description: 'Shutting down: nothing new starts; URLs waiting for a slot are answered shutting_down.',
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
