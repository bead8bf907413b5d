/**
 * The supervisor's wiring: the pure machines of machines/ given their real I/O.
 *
 * `askMany(urls, asker)` hands the URLs to the supervisor in one event, for
 * `asker` (a connection, a request, a job); it replies with each URL's flight
 * (new, or the one already in flight), and the caller awaits `flight.done`,
 * which the supervisor settles when the URL's download actor completes.
 * `leave(asker)` says the asker waits on nothing any more: what it alone waited
 * for and has not started is dropped. Nothing here keeps its own record of
 * what is in flight: the supervisor's flights are the only one.
 *
 * On a database several nodes share, the supervisor claims a URL's task row
 * before it may start (the provided `claimUrls`), and `ClusterLink` turns what
 * other nodes do into its events (outcomes, takeovers, the shared pause).
 */
import { createActor, fromPromise, waitFor } from 'xstate';
import type { AnyActorRef } from 'xstate';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Config } from '../config.js';
import { isRemembered, isRetryable } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { classifyUrl } from '../fetch/index.js';
import type { HttpClient } from '../fetch/index.js';
import type { HostGates } from '../upstream/hostGates.js';
import type { Logger } from '../logger.js';
import type { Stats } from '../stats.js';
import type { PauseSwitch, Store, TaskPatch, TaskRow } from '../store/index.js';
import { downloadMachine, gateStatus, ORPHAN_GRACE_MS, supervisorMachine } from '../../machines/index.js';
import type { Answer, Asker, DownloadOutput, FetchCoverInput, FetchCoverOutput, Flight, GateStatus, SupervisorEvent, SupervisorInput, SupervisorRef, TaskStatus } from '../../machines/index.js';
import { ClusterLink } from './clusterLink.js';
import { fetchCover } from './fetchCover.js';
import { atTurnEndFirst } from '../turnEnd.js';
import type { FetchCoverDeps } from './fetchCover.js';

export interface DownloadsDeps {
  config: Pick<Config, 'workers' | 'timeLimit' | 'retries' | 'failTtl' | 'allowHosts' | 'bilibiliApi' | 'maxBytes' | 'resize' | 'originalMax' | 'coversDir' | 'lease'>;
  store: Store;
  client: HttpClient;
  logger: Logger;
  stats: Stats;
  /** Called after a cover was downloaded and stored. */
  onStored?: () => void;
  /** How long work resumed at start or taken over without an asker waits for one (default ORPHAN_GRACE_MS). */
  orphanGraceMs?: number;
  /** The per-host gates every outbound request passes (made once in startApp). */
  gates?: HostGates;
  /** The one clock (default the system's): the supervisor, the download actors and the progress timers run on it. */
  clock?: Clock;
  /** The API identity and the background re-resolves, handed to `fetchCover`. */
  fetch?: Pick<FetchCoverDeps, 'identity' | 'reresolve'>;
}

/** A task starting over: no error, no bytes yet. */
const FRESH: TaskPatch = { errorCode: null, errorMessage: null, bytesDone: 0, bytesTotal: null };

/** How often a running download's byte count is persisted and published. */
const PROGRESS_INTERVAL_MS = 250;

/** What an asker gets: the outcome's promise, and whether it joined a download already in flight. */
export interface Asked {
  done: Promise<DownloadOutput>;
  coalesced: boolean;
}

export interface Downloads {
  /**
   * Each URL's download outcome, in order, for `asker`: `done` settles with it
   * (it never rejects); `coalesced` when the asker joined a download already in
   * flight. The URLs reach the supervisor as one event.
   */
  askMany(urls: readonly string[], asker: Asker): Asked[];
  /** The asker waits on nothing any more: downloads only it waited for are dropped unless they started. */
  leave(asker: Asker): void;
  /** The URL's flight, if it is in flight now (read-only). */
  inFlight(url: string): Pick<Flight, 'url' | 'state' | 'done'> | undefined;
  /** Whether asking for the URL now would start a download: it is neither in flight nor a remembered failure. */
  wouldStart(url: string): boolean;
  status(): GateStatus;
  tardyReasons(): string[];
  /**
   * The gate's status with since when (ms, when this node's gate last changed
   * to it) and why: for `tardy` the limits passed (the resource guard's
   * reasons), for `paused` who paused; null when `ready`.
   */
  statusDetail(): { status: GateStatus; since: number; why: string | null };
  /**
   * URLs waiting for a worker, downloads running, both together, and download
   * actors alive (started and not yet ended: one per running download, unless one leaked).
   */
  counts(): { queued: number; downloading: number; inFlight: number; actors: number; elsewhere: number };
  /**
   * At start: re-asks every unfinished task and remembers failures still within
   * the fail TTL. Nobody waits on the resumed tasks yet: they are held for
   * `orphanGraceMs`, so a client that reconnects (or a job that resumes) can
   * ask again and join them, and then dropped unless someone did.
   * Returns how many downloads were resumed.
   */
  restore(unfinished: readonly TaskRow[], failures: readonly TaskRow[], now?: number): number;
  /** Forgets a remembered failure, so the next ask downloads again. */
  forget(url: string): void;
  /** Forgets these URLs' failures and downloads them again now for the administrator (never dropped), in one event. */
  retry(urls: readonly string[]): void;
  /**
   * Cancels the URL's download on this node (running or queued): its askers and
   * its task get error `cancelled`. Says what it found: cancelled here, held by
   * another node (which must cancel it), or not in flight.
   */
  cancel(url: string): { cancelled: true } | { elsewhere: string } | { none: true };
  /** The resource guard's verdict: tardy for these reasons, or ready when none. */
  setTardy(reasons: string[]): void;
  /** Holds new downloads, on every node of a shared database (the switch is stored). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * At start, before `restore`: takes the stored pause switch and starts the
   * heartbeat (and, on a shared database, hearing other nodes and taking over
   * the work of nodes that died).
   */
  join(): Promise<void>;
  /**
   * Stops starting downloads, answers waiting ones `shutting_down`, lets running
   * ones finish for up to `graceMs`, then stops the rest (their rows stay
   * unfinished, so the next start resumes them).
   */
  shutdown(graceMs: number): Promise<void>;
}

/** A task change: written by the ledger, which publishes it (admin streams, other nodes). */
type Report = (url: string, status: TaskStatus, patch: TaskPatch) => void;

/**
 * Byte counts of a running download, reported at most every PROGRESS_INTERVAL_MS
 * and only once a download has run that long: a small body that arrives at once
 * costs no progress writes (its final status carries its size), while a slow or
 * stalled one shows where it stands.
 */
function progressReporter(url: string, clock: Clock, report: Report) {
  let timer: ClockTimer | undefined;
  let bytesDone = 0;
  let bytesTotal: number | null = null;
  let stopped = false;
  const flush = () => {
    timer = undefined;
    if (!stopped) report(url, 'downloading', { bytesDone, bytesTotal });
  };
  return {
    onProgress: (bytes: number, total: number | undefined) => {
      bytesDone = bytes;
      bytesTotal = total ?? null;
      if (timer === undefined && !stopped) {
        timer = clock.setTimeout(flush, PROGRESS_INTERVAL_MS).unref();
      }
    },
    stop: () => {
      stopped = true;
      clock.clearTimeout(timer);
    },
  };
}

/** What the download actors' provided actions and actor use. */
interface DownloadWiring {
  logger: Logger;
  stats: Stats;
  clock: Clock;
  report: Report;
  fetchDeps: FetchCoverDeps;
  /** Whether an interactive asker waits on a URL (its flight's priority at the upstream). */
  flights: () => { isInteractive(url: string): boolean };
  onStored: (() => void) | undefined;
  tasks: Store['tasks'];
}

/** The download machine with its I/O: the fetch, and the task rows, stats and log lines of each change. */
function downloadLogic(
  { logger, stats, clock, report, fetchDeps, flights, onStored, tasks }: DownloadWiring,
  { startedAt, liveActors }: { startedAt: WeakMap<AnyActorRef, number>; liveActors: Set<AnyActorRef> },
) {
  return downloadMachine.provide({
    actors: {
      fetchCover: fromPromise<FetchCoverOutput, FetchCoverInput>(async ({ input, signal }) => {
        logger.debug('download try', { url: input.url, attempt: input.attempt });
        const progress = progressReporter(input.url, clock, report);
        try {
          // Interactive while an interactive asker waits on the URL (read at each request: a bulk download joined later moves up).
          return await fetchCover(input.url, fetchDeps, signal, progress.onProgress, () => (flights().isInteractive(input.url) ? 'interactive' : 'bulk'));
        } finally {
          progress.stop();
        }
      }),
    },
    actions: {
      reportStatus: ({ context, self }, { status }) => {
        const now = clock.now();
        if (status === 'queued' || status === 'waiting') report(context.url, status, FRESH);
        else if (status === 'downloading') {
          startedAt.set(self, now);
          liveActors.add(self);
          report(context.url, status, { ...FRESH, attempts: context.attempt + 1, startedAt: now, finishedAt: null });
        } else if (context.output?.status === 'error' && context.output.error.code === 'upstream_limited') {
          // Not the URL's failure: its task stays queued, fetched when the host reopens.
          report(context.url, 'queued', FRESH);
        } else {
          const output = context.output;
          const error = output?.status === 'error' ? output.error : undefined;
          // What came from the origin (not the stored, resized file's size): where the progress ended.
          const bytes = output?.status === 'ok' ? (output.fetched ?? 0) : 0;
          report(context.url, status, {
            attempts: context.attempt,
            finishedAt: now,
            errorCode: error?.code ?? null,
            errorMessage: error?.message ?? null,
            ...(bytes ? { bytesDone: bytes, bytesTotal: bytes } : {}),
          });
        }
      },
      reportFinished: ({ context, self }, { output }) => {
        liveActors.delete(self);
        const started = startedAt.get(self);
        const ms = started === undefined ? 0 : clock.now() - started;
        // Downloads that did work: not answers from the store, not cancellations.
        const worked = output.status === 'ok' ? output.source === 'download' : output.error.code !== 'shutting_down';
        if (started !== undefined && worked) stats.observeDuration(ms);
        if (output.status === 'ok') {
          stats.downloadsOk++;
          stats.bytes += output.fetched ?? 0;
          if (output.source === 'download') onStored?.();
          // `bytes` is what came from the origin; `stored` what the cover file holds (resized).
          logger.info('download finished', { url: context.url, outcome: 'ok', source: output.source, bytes: output.fetched ?? 0, stored: output.cover.bytes, ms, attempts: context.attempt });
        } else if (output.error.code === 'shutting_down') {
          logger.debug('download cancelled', { url: context.url, outcome: 'shutting_down' });
        } else if (output.error.code === 'upstream_limited') {
          // The host's cooling is logged once by the gates; the URL waits for the reopening.
          logger.debug('download parked: its host is cooling', { url: context.url, retryAt: output.error.retryAt });
        } else {
          stats.failed(output.error.code);
          logger.warn('download failed', { url: context.url, outcome: output.error.code, error: output.error.message, bytes: 0, ms, attempts: context.attempt });
        }
      },
      reportRetry: ({ context }, { attempt, error }) => {
        logger.debug('download try failed; trying again after a backoff', { url: context.url, attempt, code: error.code, error: error.message });
        // Kept in the task's timeline: the row shows the download running, the timeline each try's error.
        tasks.noteTry(context.url, attempt, error);
      },
    },
    guards: {
      isTransient: ({ context }) =>
        context.error !== undefined && isRetryable({ code: context.error.code as ErrorCode, detail: context.error.detail }),
    },
  });
}

/** When a URL's first host (its image host, or the API host for a video page) stops cooling; undefined when it does not cool. */
function coolingLookup(config: DownloadsDeps['config'], gates: HostGates | undefined): (url: string) => number | undefined {
  const apiHost = (() => {
    try {
      return new URL(config.bilibiliApi).hostname;
    } catch {
      return undefined;
    }
  })();
  return (url) => {
    if (gates === undefined || !gates.anyCooling) return undefined;
    const kind = classifyUrl(url, config.allowHosts);
    const host = kind.kind === 'image' ? kind.url.hostname : kind.kind === 'video' ? apiHost : undefined;
    return host === undefined ? undefined : gates.coolingUntil(host);
  };
}

/** The supervisor's provided actions: task rows of waiting, dropped and aborted URLs, and claims in the database. */
function supervisorActions({ report, stats, logger, clock, store, flights, send }: {
  report: Report;
  stats: Stats;
  logger: Logger;
  clock: Clock;
  store: Store;
  flights: () => { has(url: string): boolean };
  send: (event: SupervisorEvent) => void;
}) {
  const { tasks } = store;
  return {
  reportWaiting: (_, { urls, status }) => {
    for (const url of urls) report(url, status, FRESH);
  },
  reportDropped: (_, { urls }) => {
    if (urls.length === 0) return;
    stats.dropped += urls.length;
    logger.debug('dropped downloads nobody waits for', { count: urls.length });
    // One statement for them all; a URL asked for again by the time it runs keeps its row.
    tasks.removeUnstarted(urls, (url) => flights().has(url)).catch((error: unknown) => logger.warn('could not remove the task rows of dropped downloads', { count: urls.length, error: (error as Error).message }));
  },
  reportAborted: (_, { outputs }) => {
    for (const output of outputs) {
      if (output.status === 'error') report(output.url, 'error', { finishedAt: clock.now(), errorCode: output.error.code, errorMessage: output.error.message });
    }
  },
  claimUrls: (_, { urls, status }) => {
    if (urls.length === 0) return;
    store.claims.claim(urls, status).then(
      ({ mine, elsewhere }) => send({ type: 'CLAIMED', mine, elsewhere }),
      (error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        logger.error('could not claim downloads in the database', { count: urls.length, error: message });
        send({ type: 'CLAIM_FAILED', urls, error: { code: 'disk_full', message: `could not record the download in the database: ${message}` } });
      },
    );
  },
  } satisfies Parameters<typeof supervisorMachine.provide>[0]['actions'];
}

const outputOf = (given: Answer) => ('output' in given ? Promise.resolve(given.output) : given.flight.done);

/**
 * Asks the supervisor for `urls` in one event: each URL's answer (remembered,
 * stored, or its flight's `done`), and whether it joined a download in flight.
 */
function askVia(supervisor: SupervisorRef, urls: readonly string[], asker: Asker, leaveAfterMs?: number): Asked[] {
  const asked: Asked[] = new Array<Asked>(urls.length);
  if (urls.length === 0) return asked;
  // Which URLs join a download in flight is known before the event (for the coalesced count).
  const all = supervisor.getSnapshot().context.flights;
  for (let i = 0; i < urls.length; i++) {
    const url = urls[i]!;
    asked[i] = { done: undefined as unknown as Promise<DownloadOutput>, coalesced: all.remembered(url) === undefined && all.has(url) };
  }
  // The URLs go to the supervisor as one event.
  let answers: Answer[] | undefined;
  let deferred: ((answers: Answer[]) => void) | undefined;
  supervisor.send({
    type: 'REQUEST',
    urls,
    asker,
    ...(leaveAfterMs === undefined ? {} : { leaveAfterMs }),
    reply: (given) => {
      if (deferred) deferred(given);
      else answers = given;
    },
  });
  // The supervisor replies at once unless it is busy with another event (then it
  // replies when it gets to this one).
  const later = answers === undefined ? new Promise<Answer[]>((resolve) => (deferred = resolve)) : undefined;
  for (let k = 0; k < urls.length; k++) {
    asked[k]!.done = answers !== undefined ? outputOf(answers[k]!) : later!.then((given) => outputOf(given[k]!));
  }
  return asked;
}

/**
 * What the gate's status is shown with: since when (the time of each change of
 * it, or the stored switch's time for a pause found at start) and why (the
 * resource guard's reasons; who paused).
 */
class GateShown {
  private shown: { status: GateStatus; since: number };
  /** Who paused (the node the administrator used). */
  private pausedBy: string | undefined;
  private readonly watch: { unsubscribe(): void };
  private readonly onGate = (change: { paused: boolean; node: string }) => {
    this.pausedBy = change.paused ? change.node : undefined;
  };

  constructor(
    private readonly supervisor: SupervisorRef,
    private readonly store: Store,
    private readonly clock: Clock,
  ) {
    this.shown = { status: gateStatus(supervisor.getSnapshot()), since: clock.now() };
    this.watch = supervisor.subscribe((snapshot) => {
      const status = gateStatus(snapshot);
      if (status !== this.shown.status) this.shown = { status, since: clock.now() };
    });
    store.events.on('gate', this.onGate);
  }

  /** Paused before this start: since when, and by whom, as the switch recorded it. */
  pausedBefore(stored: PauseSwitch): void {
    this.pausedBy = stored.by ?? undefined;
    if (stored.since !== null && this.shown.status === 'paused') this.shown = { status: 'paused', since: stored.since };
  }

  detail(): { status: GateStatus; since: number; why: string | null } {
    const snapshot = this.supervisor.getSnapshot();
    const status = gateStatus(snapshot);
    const since = status === this.shown.status ? this.shown.since : this.clock.now();
    if (status === 'tardy') {
      const reasons = snapshot.context.tardyReasons;
      return { status, since, why: reasons.length > 0 ? `over a resource limit: ${reasons.join('; ')}` : 'over a resource limit' };
    }
    if (status === 'paused') return { status, since, why: `paused by the administrator${this.pausedBy ? ` on node ${this.pausedBy}` : ' (the stored pause switch)'}` };
    return { status, since, why: null };
  }

  close(): void {
    this.watch.unsubscribe();
    this.store.events.off('gate', this.onGate);
  }
}

/** Failures still within the fail TTL (`failTtlMs` after they finished), remembered again at start. */
function rememberFailures(supervisor: SupervisorRef, failures: readonly TaskRow[], failTtlMs: number, now: number): void {
  for (const task of failures) {
    const ttlMs = (task.finishedAt ?? task.updatedAt) + failTtlMs - now;
    if (ttlMs <= 0 || (task.status !== 'error' && task.status !== 'tle')) continue;
    const error = { code: task.status === 'tle' ? 'tle' : (task.errorCode ?? 'network'), message: task.errorMessage ?? 'failed' };
    if (!isRemembered(error.code)) continue;
    supervisor.send({ type: 'REMEMBER', url: task.url, output: { url: task.url, status: 'error', error }, ttlMs });
  }
}

/**
 * SHUTDOWN, then running downloads may finish within `graceMs` (on the clock:
 * `waitFor`'s own timeout would be node's timer); the rest are stopped, and the
 * supervisor stops once the downloads that ended in this turn are heard.
 */
async function stopSupervisor(supervisor: SupervisorRef, graceMs: number, { clock, logger, liveActors }: { clock: Clock; logger: Logger; liveActors: Set<AnyActorRef> }): Promise<void> {
  supervisor.send({ type: 'SHUTDOWN' });
  const graceOver = new AbortController();
  const grace = clock.setTimeout(() => graceOver.abort(), graceMs);
  try {
    await waitFor(supervisor, (snapshot) => snapshot.context.flights.size === 0, { timeout: Infinity, signal: graceOver.signal });
  } catch {
    const left = [...supervisor.getSnapshot().context.flights.values()].flatMap((flight) => (flight.ref ? [flight.ref] : []));
    logger.warn('stopping downloads still running after the grace period; the next start resumes them', { count: left.length });
    for (const ref of left) {
      ref.stop();
      liveActors.delete(ref);
    }
  } finally {
    clock.clearTimeout(grace);
  }
  // Downloads that ended in this turn, gathered for the supervisor: their askers hear of them before it stops.
  const { finishing } = supervisor.getSnapshot().context;
  if (finishing.length > 0) supervisor.send({ type: 'FINISHED', finished: finishing.splice(0) });
  supervisor.stop();
}

/** The supervisor of this node's downloads, with its provided actions, started. */
function startSupervisor(
  actions: ReturnType<typeof supervisorActions>,
  { config, download, shared, clock, orphanGraceMs, coolingUntil }: {
    config: DownloadsDeps['config'];
    download: SupervisorInput['download'];
    shared: boolean;
    clock: Clock;
    orphanGraceMs: number;
    coolingUntil: (url: string) => number | undefined;
  },
): SupervisorRef {
  const supervisor = createActor(supervisorMachine.provide({ actions }), {
    input: {
      workers: config.workers,
      download,
      timeLimitMs: config.timeLimit * 1000,
      retries: config.retries,
      failTtlMs: config.failTtl * 1000,
      isRemembered,
      shared,
      clock,
      // The downloads done in one turn reach the supervisor as one FINISHED, before the task batch is written.
      finishLater: atTurnEndFirst,
      orphanGraceMs,
      coolingUntil,
    },
    clock,
  });
  supervisor.start();
  return supervisor;
}

export function createDownloads(deps: DownloadsDeps): Downloads {
  const { config, store, logger, stats } = deps;
  const clock = deps.clock ?? systemClock;
  const { tasks } = store;
  const { gates } = deps;
  // A turn at a host's gate is waited for at most half the time limit: the rest is the download's own.
  const fetchDeps: FetchCoverDeps = { config, covers: store.covers, client: deps.client, ...deps.fetch, ...(gates ? { gates } : {}), clock, gateWaitMs: (config.timeLimit * 1000) / 2 };
  const coolingUntil = coolingLookup(config, gates);
  /** When each running download started, for the finished-download log line. */
  const startedAt = new WeakMap<AnyActorRef, number>();
  /** Download actors that started and have not reached a final state (or been stopped). */
  const liveActors = new Set<AnyActorRef>();

  /** A task change: written by the ledger, which publishes it (admin streams, other nodes). */
  const report = (url: string, status: TaskStatus, patch: TaskPatch) => tasks.update(url, { status, ...patch });

  const download = downloadLogic({ logger, stats, clock, report, fetchDeps, flights: () => flights(), onStored: deps.onStored, tasks }, { startedAt, liveActors });

  /** How long work found without an asker (resumed at start, taken over) waits for one. */
  const graceMs = deps.orphanGraceMs ?? ORPHAN_GRACE_MS;
  const actions = supervisorActions({ report, stats, logger, clock, store, flights: () => flights(), send: (event) => supervisor.send(event) });
  const supervisor = startSupervisor(actions, { config, download, shared: store.claims.shared, clock, orphanGraceMs: graceMs, coolingUntil });
  const gate = new GateShown(supervisor, store, clock);
  // A host that reopens (or lets its probe through) queues the URLs parked for it.
  const unsubscribe = gates?.onChange(() => {
    if (supervisor.getSnapshot().status === 'active') supervisor.send({ type: 'UNPARK' });
  });

  const flights = () => supervisor.getSnapshot().context.flights;
  const counts = () => {
    const all = flights();
    const queued = all.count('waiting') + all.count('claiming') + all.count('parked');
    return { queued, downloading: all.count('running'), inFlight: all.size, actors: liveActors.size, elsewhere: all.count('elsewhere') };
  };
  const cluster = new ClusterLink({
    store,
    supervisor,
    report: () => {
      const { queued, downloading } = counts();
      return { queued, downloading, status: gateStatus(supervisor.getSnapshot()) };
    },
    // Its own flights: every one but those another node holds.
    ownUrls: () => [...flights().values()].flatMap((flight) => (flight.state === 'elsewhere' ? [] : [flight.url])),
    failTtlMs: config.failTtl * 1000,
    leaseMs: config.lease * 1000,
    logger,
    clock,
  });

  /** The administrator's retries: never dropped (nobody leaves on its behalf). */
  const adminRetry: Asker = { kind: 'admin', bulk: true };

  const askMany = (urls: readonly string[], asker: Asker, leaveAfterMs?: number) => askVia(supervisor, urls, asker, leaveAfterMs);

  return {
    askMany: (urls, asker) => askMany(urls, asker),
    leave: (asker) => {
      // After a shutdown (sockets close last) there is nothing left to drop.
      if (supervisor.getSnapshot().status === 'active') supervisor.send({ type: 'LEAVE', asker });
    },
    inFlight: (url) => flights().get(url),
    wouldStart: (url) => {
      const all = flights();
      return !all.has(url) && all.remembered(url) === undefined;
    },
    status: () => gateStatus(supervisor.getSnapshot()),
    tardyReasons: () => supervisor.getSnapshot().context.tardyReasons,
    statusDetail: () => gate.detail(),
    counts,
    restore(unfinished, failures, now = clock.now()) {
      rememberFailures(supervisor, failures, config.failTtl * 1000, now);
      // Held for the grace, so that askers coming back (reconnecting clients, resumed jobs) join them.
      if (unfinished.length > 0) askMany(unfinished.map((task) => task.url), { kind: 'resumed', bulk: true }, graceMs);
      return unfinished.length;
    },
    forget: (url) => supervisor.send({ type: 'FORGET', url }),
    retry(urls) {
      for (const url of urls) supervisor.send({ type: 'FORGET', url });
      if (urls.length > 0) supervisor.send({ type: 'REQUEST', urls, asker: adminRetry });
    },
    cancel(url) {
      const flight = flights().get(url);
      if (flight === undefined) return { none: true };
      if (flight.state === 'elsewhere' && flight.owner !== undefined) return { elsewhere: flight.owner };
      supervisor.send({ type: 'ABORT', url });
      return { cancelled: true };
    },
    setTardy: (reasons) => supervisor.send(reasons.length > 0 ? { type: 'TARDY', reasons } : { type: 'READY' }),
    async pause() {
      await store.cluster.setPaused(true);
      supervisor.send({ type: 'PAUSE' });
    },
    async resume() {
      await store.cluster.setPaused(false);
      supervisor.send({ type: 'RESUME' });
    },
    async join() {
      const stored = await store.cluster.pauseSwitch();
      if (stored.paused) {
        supervisor.send({ type: 'PAUSE' });
        gate.pausedBefore(stored);
      }
      await cluster.start();
    },
    async shutdown(graceMs: number) {
      unsubscribe?.();
      gate.close();
      await stopSupervisor(supervisor, graceMs, { clock, logger, liveActors });
      await cluster.stop();
      await tasks.flush();
      // Whatever is left unfinished is for the next start, or at once for another node.
      await store.claims.releaseAll();
      await store.cluster.leave();
    },
  };
}
