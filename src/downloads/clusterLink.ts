/**
 * This node among the others on its database, as supervisor events. Within one
 * process the supervisor's flights are the one record of what is in flight;
 * across nodes the database is, and this turns what it says into events:
 *
 *   heard outcomes  another node's final status of a URL settles this node's
 *                   flight for it (SETTLE: askers here are answered) and, for a
 *                   failure about the URL, is remembered here too (REMEMBER);
 *                   another node queueing, starting or removing a URL forgets
 *                   a failure remembered here (FORGET); a URL awaited here whose
 *                   row another node removed (it dropped the download: nobody
 *                   waited there any more) is claimed here (TAKEOVER)
 *   heartbeat       every lease/3: this node's row in `nodes`, and its claims
 *                   renewed in one statement: only those on tasks it works on
 *                   (`ownUrls`: its own flights, being claimed, waiting for a
 *                   slot or running)
 *   strays          a task this node holds a claim on but does not work on
 *                   (its final status never written, or a claim written after
 *                   the supervisor gave up on the URL) is not renewed; seen so
 *                   at two heartbeats in a row, it is settled: marked `ok` if
 *                   its cover is stored (which releases the claim and answers
 *                   askers on other nodes), else its claim is released so any
 *                   node takes it over at once
 *   takeover        every second (at most lease/5): unfinished tasks whose
 *                   claim ran out (their node died) or that nobody holds are
 *                   claimed here (TAKEOVER); one node wins each
 *   resync          when notifications could not be heard (the listener
 *                   dropped, or a change was too large to publish), what this
 *                   node awaits from others is read again from the tables; while
 *                   the listener is down, that reading is repeated every tick
 *                   (polling only as a fallback)
 *   gate            pause or resume on any node holds or releases this one
 *
 * On a database only this node uses, only the heartbeat does anything.
 */
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import { isRemembered } from '../errors.js';
import type { GateChange, NodeReport, Store, TaskChange, TaskRow } from '../store/index.js';
import type { DownloadOutput, SupervisorEvent, SupervisorRef, TaskStatus } from '../../machines/index.js';
import { storedCover } from './fetchCover.js';

export interface ClusterLinkDeps {
  store: Store;
  supervisor: Pick<SupervisorRef, 'send' | 'getSnapshot'>;
  /** What this node says of itself at every heartbeat. */
  report: () => NodeReport;
  /** The URLs this node works on: its own flights (being claimed, waiting for a slot, running), not those it awaits from another node. */
  ownUrls: () => Iterable<string>;
  failTtlMs: number;
  leaseMs: number;
  logger: Logger;
  /** The one clock (default the system's): heartbeats, takeovers, how old a heard failure is. */
  clock?: Clock;
}

/** Most orphaned tasks taken over per tick (the rest at the next ticks, or by other nodes). */
const TAKEOVER_BATCH = 500;

function failureOf(url: string, status: TaskStatus, code: string | null | undefined, message: string | null | undefined): DownloadOutput {
  return { url, status: 'error', error: { code: status === 'tle' ? 'tle' : (code ?? 'network'), message: message ?? 'failed on another node' } };
}

export class ClusterLink {
  private heartbeatTimer: ClockTimer | undefined;
  private takeoverTimer: ClockTimer | undefined;
  private listening = true;
  private running: Promise<unknown> = Promise.resolve();
  /** Tasks this node held a claim on without working on them, at the last heartbeat. */
  private strays = new Set<string>();

  private readonly clock: Clock;

  constructor(private readonly deps: ClusterLinkDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  private now(): number {
    return this.clock.now();
  }

  private send(event: SupervisorEvent): void {
    this.deps.supervisor.send(event);
  }

  private readonly onTask = (change: TaskChange): void => {
    if (!change.remote) return;
    const { url, patch } = change;
    const status = patch.status;
    if (change.removed || status === undefined) {
      this.send({ type: 'FORGET', url });
      if (this.deps.supervisor.getSnapshot().context.flights.get(url)?.state === 'elsewhere') this.send({ type: 'TAKEOVER', urls: [url] });
    } else if (status === 'ok') {
      this.send({ type: 'FORGET', url });
      void this.settleOk(url);
    } else if (status === 'error' || status === 'tle') {
      this.settleFailure(failureOf(url, status, patch.errorCode, patch.errorMessage), change.at);
    } else {
      // Another node queues or starts it again: whatever failure is remembered here is old.
      this.send({ type: 'FORGET', url });
    }
  };

  private readonly onGate = (change: GateChange): void => {
    if (change.remote) this.send({ type: change.paused ? 'PAUSE' : 'RESUME' });
  };

  private readonly onLost = (): void => {
    this.listening = false;
    this.deps.logger.warn('lost the database notifications: reading what other nodes do every second until they are back');
  };

  private readonly onResync = (): void => {
    if (!this.listening) this.deps.logger.info('database notifications heard again');
    this.listening = true;
    this.track(this.resync());
  };

  /** A failure another node ended with: answers askers here, and is remembered for what is left of the fail TTL. */
  private settleFailure(output: DownloadOutput, at: number): void {
    this.send({ type: 'SETTLE', url: output.url, output });
    const ttlMs = this.deps.failTtlMs - (this.now() - at);
    if (output.status === 'error' && isRemembered(output.error.code) && ttlMs > 0) this.send({ type: 'REMEMBER', url: output.url, output, ttlMs });
  }

  /** A URL another node stored: its row answers the askers waiting here (read from the table, not from memory). */
  private async settleOk(url: string): Promise<void> {
    const flight = this.deps.supervisor.getSnapshot().context.flights.get(url);
    if (flight === undefined || flight.state === 'running') return;
    try {
      const row = await this.deps.store.covers.find(url);
      if (row) this.send({ type: 'SETTLE', url, output: { url, status: 'ok', cover: storedCover(row), source: row.source === 'custom' ? 'custom' : 'download' } });
      // Stored and removed since: whoever claims it now downloads it again.
      else this.send({ type: 'TAKEOVER', urls: [url] });
    } catch (error) {
      this.deps.logger.warn('could not read a cover another node stored; trying again at the next tick', { url, error: (error as Error).message });
      this.listening = false;
    }
  }

  /** Reads again every flight this node awaits from another node (or the database), and settles or takes over what it must. */
  private async resync(): Promise<void> {
    const awaited = this.deps.supervisor.getSnapshot().context.flights.urls('elsewhere');
    if (awaited.length === 0) return;
    const rows = new Map<string, TaskRow>();
    for (let i = 0; i < awaited.length; i += 500) {
      for (const row of await this.deps.store.tasks.getMany(awaited.slice(i, i + 500))) rows.set(row.url, row);
    }
    const now = this.now();
    const takeOver: string[] = [];
    for (const url of awaited) {
      const row = rows.get(url);
      if (row === undefined) takeOver.push(url);
      else if (row.status === 'ok') await this.settleOk(url);
      else if (row.status === 'error' || row.status === 'tle') this.settleFailure(failureOf(url, row.status, row.errorCode, row.errorMessage), row.finishedAt ?? row.updatedAt);
      else if (row.claimedBy === null || (row.claimExpires ?? 0) < now) takeOver.push(url);
    }
    if (takeOver.length > 0) this.send({ type: 'TAKEOVER', urls: takeOver });
  }

  private async heartbeat(): Promise<void> {
    const { store } = this.deps;
    await store.cluster.heartbeat(this.deps.report());
    if (!store.claims.shared) return;
    // Read before what this node works on: a URL claimed meanwhile is in the registry already.
    const held = await store.claims.held();
    const own = new Set(this.deps.ownUrls());
    const strays = held.filter((url) => !own.has(url));
    await store.claims.renew(strays);
    await this.settleStrays(strays);
  }

  /**
   * Settles the tasks that were strays at the last heartbeat too: marked `ok`
   * when the cover is stored, else released. A download that has just ended
   * (its final status not yet written) is not one: what the ledger holds is
   * written first, and each row read again.
   */
  private async settleStrays(strays: readonly string[]): Promise<void> {
    const { store, logger } = this.deps;
    const before = this.strays;
    this.strays = new Set(strays);
    const due = strays.filter((url) => before.has(url));
    if (due.length === 0) return;
    await store.tasks.flush();
    const own = new Set(this.deps.ownUrls());
    const rows = await store.tasks.getMany(due);
    const left = rows.filter((row) => row.claimedBy === store.cluster.node && (row.status === 'queued' || row.status === 'waiting' || row.status === 'downloading') && !own.has(row.url)).map((row) => row.url);
    if (left.length === 0) return;
    const stored = await store.covers.findMany(left, { touch: false });
    const now = this.now();
    const settled = left.filter((url) => stored.has(url));
    const released = left.filter((url) => !stored.has(url));
    for (const url of settled) store.tasks.update(url, { status: 'ok', errorCode: null, errorMessage: null, finishedAt: now });
    await store.tasks.flush();
    await store.claims.release(released);
    for (const url of left) this.strays.delete(url);
    logger.warn('settled claims this node held on tasks it was not working on', { stored: settled.length, released: released.length });
  }

  private async takeoverTick(): Promise<void> {
    if (!this.listening) await this.resync();
    const orphaned = await this.deps.store.claims.orphaned(TAKEOVER_BATCH);
    if (orphaned.length === 0) return;
    this.deps.logger.info('taking over unfinished downloads that no live node holds', { count: orphaned.length });
    this.send({ type: 'TAKEOVER', urls: orphaned });
  }

  /** Runs `work` after what runs already, logging a failure (the next tick tries again). */
  private track(work: Promise<unknown>): void {
    this.running = Promise.all([this.running, work.catch((error: unknown) => this.deps.logger.warn('cluster upkeep failed; trying again at the next tick', { error: (error as Error).message }))]);
  }

  async start(): Promise<void> {
    const { store, leaseMs } = this.deps;
    store.events.on('task', this.onTask);
    store.events.on('gate', this.onGate);
    store.events.on('lost', this.onLost);
    store.events.on('resync', this.onResync);
    await this.heartbeat();
    this.heartbeatTimer = this.clock.setInterval(() => this.track(this.heartbeat()), Math.max(250, leaseMs / 3));
    this.heartbeatTimer.unref();
    if (store.claims.shared) {
      this.takeoverTimer = this.clock.setInterval(() => this.track(this.takeoverTick()), Math.max(100, Math.min(1000, leaseMs / 5)));
      this.takeoverTimer.unref();
    }
  }

  async stop(): Promise<void> {
    const { store } = this.deps;
    this.clock.clearInterval(this.heartbeatTimer);
    this.clock.clearInterval(this.takeoverTimer);
    store.events.off('task', this.onTask);
    store.events.off('gate', this.onGate);
    store.events.off('lost', this.onLost);
    store.events.off('resync', this.onResync);
    await this.running;
  }
}
