/**
 * HostGates — every request to an upstream host passes its host's gate.
 *
 *   const release = await gates.acquire('i0.hdslb.com', () => 'bulk', signal);
 *   try { …one request… release('ok'); } catch { release('error' | refusal) }
 *
 * Per host (its limit is the first `--host-limits` entry that matches; its state
 * is its own, per actual host, named by `canonicalHost`: `I0.HDSLB.COM.` and
 * `i0.hdslb.com` are one host, one bucket, one cooling):
 *
 * - **Rate**: a token bucket of `burst` tokens refilled at `rate` per second.
 *   A request takes one token. So in any closed window of T seconds at most
 *   `burst + rate·T` requests start (the bucket holds at most `burst` at the
 *   window's start and gains `rate·T` during it), and over long runs `rate` per second.
 * - **Concurrency**: at most `concurrency` requests hold a slot at once; the
 *   slot is given back by `release` (when the body is read or the request failed).
 * - **Interactive before bulk**: waiters are served interactive first, in the
 *   order they came within a priority (a waiter's priority is read when it is
 *   served: a bulk download joined by an interactive asker moves up). While
 *   interactive work is present at a host (an interactive waiter, or an
 *   interactive request started within the last `HOLD_MS`), a bulk request
 *   also needs a token of the host's *bulk share*: a bucket of 1 token refilled
 *   at `rate / 2`, emptied when the presence begins. So bulk work starts at
 *   most `rate·T/2` requests in the first T seconds of the presence and at
 *   most `1 + rate·T/2` in any window of T seconds inside it: never more than
 *   half of the host's rate, and the rest is kept for the interactive work.
 * - **Cooling**: `refused` (HTTP 412/429/503, a bilibili risk-control code)
 *   puts the host in cooling until its Retry-After (at most `maxRetryAfterMs`)
 *   or a backoff (30 s, doubling with each cooling by the backoff to 30 min;
 *   a Retry-After cooling leaves it as it was; back to 30 s after a success).
 *   Each cooling begins an epoch: the outcome of a request let through before it
 *   (a late answer, refusal or success) is counted but changes nothing, and
 *   while the host is closed only its probe's outcome decides.
 *   While cooling, `acquire` rejects at once with `upstream_limited` and the
 *   reopening time (`retryAt`), and every waiter is rejected so; nothing is
 *   sent. When the time comes, ONE probe request is let through (the others
 *   wait behind it): a probe that is not refused reopens the host, a refused
 *   one cools it again with the backoff doubled. The log says once, at warn,
 *   when a host starts cooling (host, why, until) and once when it reopens
 *   (host, why it had cooled, after how long): that is when its probe is
 *   answered, at the first request after the cooling time; a refused probe does
 *   not end the cooling, so its new `until` is an info line, not another start.
 *   `status()` shows the host `open` from the end of the cooling time until a
 *   probe goes out (no request may come for a long while), `cooling` while it is out.
 *
 * Bounded: at most `maxWaiters` waiters per host (past it `acquire` rejects);
 * an aborted waiter leaves at once; idle open hosts are forgotten (past 1,000
 * hosts, those that did not cool within the hour); at most `maxHosts` host
 * states (10,000): past it the least recently used idle host is forgotten even
 * if it cooled within the hour, and when every host looked at is busy or
 * cooling a NEW host is refused `upstream_limited` (retry in 1 s) rather than
 * grow. Each new host looks at no more than 32 others.
 */
import type { Clock, ClockTimer } from '../clock.js';
import { CoverError } from '../errors.js';
import type { HostStatus, Priority } from './types.js';
import { UpstreamRefusal } from './types.js';
import type { HostLimit } from './hostLimits.js';
import { canonicalHost, limitFor } from './hostLimits.js';

/** How a request ended, for the host's state and counters: an answer, a failure (no answer, or an error status), an abort (counts nothing), or a refusal. */
export type Outcome = 'ok' | 'error' | 'aborted' | UpstreamRefusal;

/** Gives the slot back, with how the request ended. Calling it again does nothing. */
export type Release = (outcome: Outcome) => void;

/** Requests to one host by outcome. */
export interface HostCounts {
  ok: number;
  refused: number;
  error: number;
}

export interface GateLogger {
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info?(message: string, meta?: Record<string, unknown>): unknown;
}

export interface HostGatesOptions {
  limits: readonly HostLimit[];
  clock: Clock;
  logger?: GateLogger;
  /** Waiters one host may have (default 10,000). */
  maxWaiters?: number;
  /** First backoff without Retry-After (default 30 s). */
  baseBackoffMs?: number;
  /** Longest backoff (default 30 min). */
  maxBackoffMs?: number;
  /** Longest Retry-After believed (default 1 h); a shorter one than 1 s is taken as 1 s. */
  maxRetryAfterMs?: number;
  /** Host states kept at most (default 10,000); see `#host`. */
  maxHosts?: number;
}

/** How long an interactive request keeps bulk work at half the rate after it started. */
export const HOLD_MS = 1000;
const BASE_BACKOFF_MS = 30_000;
const MAX_BACKOFF_MS = 30 * 60_000;
const MAX_RETRY_AFTER_MS = 60 * 60_000;
const MIN_RETRY_AFTER_MS = 1000;
/** Hosts that cooled within this long are shown by `status()`. */
const SHOWN_MS = 60 * 60_000;
/** Above this many host states, idle open ones that did not cool within the hour are forgotten. */
const MAX_IDLE_HOSTS = 1000;
/** Host states kept at most: past it the least recently used idle one goes, or a new host is refused. */
const MAX_HOSTS = 10_000;
/** Host states looked at per new host when forgetting or evicting (so a new host costs O(1), not O(hosts)). */
const SCAN = 32;

interface Waiter {
  priority: () => Priority;
  resolve: (release: Release) => void;
  reject: (error: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type State = 'open' | 'cooling' | 'probing';

interface Host {
  name: string;
  limit: HostLimit;
  tokens: number;
  /** Monotonic time of the last refill. */
  refilledAt: number;
  /** Requests holding a slot. */
  active: number;
  waiters: Waiter[];
  state: State;
  /** Wall time the cooling ends (epoch ms), while cooling or probing. */
  retryAt: number | undefined;
  reason: string | undefined;
  /** Wall time it last started cooling. */
  cooledAt: number | undefined;
  /** Wall time the first cooling of the current run of refusals began (for "reopened after"). */
  closedSince: number | undefined;
  /** The next backoff without Retry-After. */
  backoffMs: number;
  /** A probe is out (state probing). */
  probing: boolean;
  /** Counts the coolings: a request's outcome changes the state only if no cooling began since it was let through. */
  epoch: number;
  /** Monotonic time an interactive request last started. */
  interactiveAt: number;
  /** Whether interactive work was present at the last look (the bulk share is emptied when it begins). */
  present: boolean;
  bulkTokens: number;
  bulkRefilledAt: number;
  counts: HostCounts;
  wake: ClockTimer | undefined;
  reopen: ClockTimer | undefined;
}

export class HostGates {
  readonly #limits: readonly HostLimit[];
  readonly #clock: Clock;
  readonly #logger: GateLogger | undefined;
  readonly #maxWaiters: number;
  readonly #baseBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #maxRetryAfterMs: number;
  readonly #maxHosts: number;
  /** Host states, least recently used first (a host is moved to the end when used). */
  readonly #hosts = new Map<string, Host>();
  readonly #listeners = new Set<(host: string) => void>();
  /** Refusals already given to a release (`refused` then changes nothing: the same refusal is not heard twice). */
  readonly #heard = new WeakSet<UpstreamRefusal>();
  /** Hosts cooling now. */
  #cooling = 0;

  constructor(options: HostGatesOptions) {
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#maxWaiters = options.maxWaiters ?? 10_000;
    this.#baseBackoffMs = options.baseBackoffMs ?? BASE_BACKOFF_MS;
    this.#maxBackoffMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? MAX_RETRY_AFTER_MS;
    this.#maxHosts = options.maxHosts ?? MAX_HOSTS;
  }

  /**
   * Waits for a token and a slot of `host`, then resolves with the function that
   * gives the slot back. Rejects at once with `upstream_limited` (and `retryAt`)
   * while the host cools, or with the signal's reason when it aborts.
   */
  acquire(host: string, priority: () => Priority, signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const state = this.#host(host);
    if (state === undefined) {
      return Promise.reject(new CoverError('upstream_limited', `${this.#maxHosts} upstream hosts are busy or cooling; a new one is not asked now; try again shortly`, { retryAt: this.#clock.now() + 1000 }));
    }
    if (state.state === 'cooling') return Promise.reject(this.#limited(state));
    if (state.waiters.length >= this.#maxWaiters) {
      return Promise.reject(new CoverError('upstream_limited', `${this.#maxWaiters} requests already wait for ${state.name}; try again shortly`, { retryAt: this.#clock.now() + 1000 }));
    }
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = { priority, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const index = state.waiters.indexOf(waiter);
          if (index !== -1) state.waiters.splice(index, 1);
          reject(signal.reason as Error);
          this.#pump(state);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      state.waiters.push(waiter);
      this.#pump(state);
    });
  }

  /**
   * A slot now, without waiting, when `acquire` would serve the request at once:
   * the host is known, open (or reopening with no probe out), nobody waits before
   * it, a slot is free and the tokens its priority needs are there. Then the
   * same as `acquire` resolving at once (the token and the slot are taken, the
   * release given); otherwise undefined and nothing changed but the token
   * refill and the interactive presence, as `acquire` would change them too (the
   * caller then waits through `acquire`, which says why it cannot).
   * For the downloads' waits (src/downloads/fetchCover.ts): a free slot costs
   * no abort controller, listener nor timer.
   */
  tryAcquire(host: string, priority: () => Priority): Release | undefined {
    const key = canonicalHost(host);
    const state = this.#hosts.get(key);
    if (state === undefined || state.waiters.length > 0 || state.state === 'cooling' || this.#slotTaken(state)) return undefined;
    this.#refill(state);
    const interactive = priority() === 'interactive';
    const present = this.#presence(state, interactive);
    if (this.#tokensShort(state, interactive, present) !== undefined) return undefined;
    // Most recently used, as `acquire` leaves it.
    this.#hosts.delete(key);
    this.#hosts.set(key, state);
    this.#clock.clearTimeout(state.wake);
    state.wake = undefined;
    return this.#take(state, interactive, present);
  }

  /**
   * A refusal heard outside a held slot (an answer read after its slot was given
   * back): an open host cools. While it is closed (cooling, or reopening: only
   * its probe decides) it changes nothing; a refusal a release was already given changes nothing either.
   */
  refused(refusal: UpstreamRefusal): void {
    if (this.#heard.has(refusal)) return;
    this.#heard.add(refusal);
    const state = this.#host(refusal.host);
    // A host with no state that cannot have one now (every state kept is busy or cooling) was not asked through the gates.
    if (state === undefined) return;
    state.counts.refused++;
    if (state.state === 'open') this.#cool(state, refusal);
  }

  /**
   * When the host reopens (epoch ms), while it cools; undefined when it is open
   * or its probe may go (requests then wait behind the probe instead of being refused).
   */
  coolingUntil(host: string): number | undefined {
    const state = this.#hosts.get(canonicalHost(host));
    return state?.state === 'cooling' ? state.retryAt : undefined;
  }

  /** Whether any host is cooling now (a quick test before looking a URL's host up). */
  get anyCooling(): boolean {
    return this.#cooling > 0;
  }

  /**
   * Hosts that cooled within the last hour, with their state now. A host whose
   * cooling has ended is shown `open` as soon as its probe may go, without
   * waiting for a request to come (it is `cooling` only while its probe is out).
   */
  status(): HostStatus[] {
    const now = this.#clock.now();
    const shown: HostStatus[] = [];
    for (const state of this.#hosts.values()) {
      const closed = HostGates.#closed(state);
      if (state.cooledAt === undefined || (!closed && now - state.cooledAt > SHOWN_MS)) continue;
      shown.push({
        host: state.name,
        state: closed ? 'cooling' : 'open',
        ...(closed && state.retryAt !== undefined ? { retryAt: state.retryAt } : {}),
        ...(state.reason === undefined ? {} : { reason: state.reason }),
        cooledAt: state.cooledAt,
      });
    }
    return shown;
  }

  /** Requests by outcome, per host seen (hosts forgotten while idle drop out). */
  counts(): Map<string, HostCounts> {
    return new Map([...this.#hosts.values()].map((state) => [state.name, { ...state.counts }]));
  }

  /** Called with the host's name when a host starts cooling, lets its probe through, or reopens. Returns the unsubscribe. */
  onChange(listener: (host: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Clears every timer (the service stopping); waiters are rejected. */
  close(): void {
    for (const state of this.#hosts.values()) {
      this.#clock.clearTimeout(state.wake);
      this.#clock.clearTimeout(state.reopen);
      state.wake = state.reopen = undefined;
      for (const waiter of state.waiters.splice(0)) this.#reject(waiter, new CoverError('shutting_down', 'the service is shutting down'));
    }
  }

  /**
   * The host's state, made when it is new; moved to the end of the map (the
   * most recently used). Bounded at `maxHosts`: past it the least recently used
   * idle host that is not cooling is forgotten, and when none is found among the
   * oldest `SCAN` (they move to the end, so the next new host looks at others)
   * undefined: the new host is not asked now (unless `--host-limits` names it exactly).
   */
  #host(name: string): Host | undefined {
    const key = canonicalHost(name);
    let state = this.#hosts.get(key);
    if (state !== undefined) {
      this.#hosts.delete(key);
      this.#hosts.set(key, state);
    } else {
      if (this.#hosts.size >= MAX_IDLE_HOSTS) this.#forgetIdle();
      const limit = limitFor(key, this.#limits);
      // A host named exactly in --host-limits (the API) is always given a state: at most 256 more, and many cooling strangers cannot shut it out.
      if (this.#hosts.size >= this.#maxHosts && !this.#evictOne() && limit.pattern !== key) return undefined;
      const now = this.#clock.monotonic();
      state = {
        name: key,
        limit,
        tokens: limit.burst,
        refilledAt: now,
        active: 0,
        waiters: [],
        state: 'open',
        retryAt: undefined,
        reason: undefined,
        cooledAt: undefined,
        closedSince: undefined,
        backoffMs: this.#baseBackoffMs,
        probing: false,
        epoch: 0,
        interactiveAt: -Infinity,
        present: false,
        bulkTokens: 0,
        bulkRefilledAt: now,
        counts: { ok: 0, refused: 0, error: 0 },
        wake: undefined,
        reopen: undefined,
      };
      this.#hosts.set(key, state);
    }
    return state;
  }

  /** Whether the host is closed to requests as the operator sees it: cooling, or its probe is out. */
  static #closed(state: Host): boolean {
    return state.state === 'cooling' || (state.state === 'probing' && state.probing);
  }

  /** Whether nothing is going on at the host: not cooling, no probe out, nothing held, nobody waiting. */
  static #idle(state: Host): boolean {
    return !HostGates.#closed(state) && state.active === 0 && state.waiters.length === 0;
  }

  /** The oldest `SCAN` host states (least recently used first). */
  #oldest(): [string, Host][] {
    const oldest: [string, Host][] = [];
    for (const entry of this.#hosts) {
      oldest.push(entry);
      if (oldest.length >= SCAN) break;
    }
    return oldest;
  }

  /** Moves a host state to the end of the map, so the next scan looks at others. */
  #skip(key: string, state: Host): void {
    this.#hosts.delete(key);
    this.#hosts.set(key, state);
  }

  #drop(key: string, state: Host): void {
    this.#clock.clearTimeout(state.wake);
    this.#clock.clearTimeout(state.reopen);
    state.wake = state.reopen = undefined;
    this.#hosts.delete(key);
  }

  /**
   * Of the oldest `SCAN` hosts, forgets those with nothing going on: idle, full
   * bucket, not cooled within the hour; the others move to the end. Called for
   * each new host past `MAX_IDLE_HOSTS`, so the map shrinks back by up to `SCAN`
   * for each one it grows.
   */
  #forgetIdle(): void {
    const now = this.#clock.now();
    for (const [key, state] of this.#oldest()) {
      this.#refill(state);
      const recent = state.cooledAt !== undefined && now - state.cooledAt <= SHOWN_MS;
      if (HostGates.#idle(state) && state.tokens >= state.limit.burst && !recent) this.#drop(key, state);
      else this.#skip(key, state);
    }
  }

  /** Forgets the least recently used idle host among the oldest `SCAN` (the others looked at move to the end); false when none is. */
  #evictOne(): boolean {
    for (const [key, state] of this.#oldest()) {
      if (HostGates.#idle(state)) {
        this.#drop(key, state);
        return true;
      }
      this.#skip(key, state);
    }
    return false;
  }

  #limited(state: Host): CoverError {
    const retryAt = state.retryAt ?? this.#clock.now();
    return new CoverError('upstream_limited', `${state.name} is cooling after ${state.reason ?? 'a refusal'}; nothing is sent to it until ${new Date(retryAt).toISOString()}`, { retryAt });
  }

  #refill(state: Host): void {
    const now = this.#clock.monotonic();
    const elapsed = now - state.refilledAt;
    if (elapsed > 0) {
      state.tokens = Math.min(state.limit.burst, state.tokens + (elapsed * state.limit.rate) / 1000);
      if (state.present) state.bulkTokens = Math.min(1, state.bulkTokens + (now - state.bulkRefilledAt) * state.limit.rate / 2000);
      state.refilledAt = now;
      state.bulkRefilledAt = now;
    }
  }

  /** Whether interactive work is present at the host now; when it begins, the bulk share starts empty. */
  #presence(state: Host, interactiveWaiting: boolean): boolean {
    const present = interactiveWaiting || this.#clock.monotonic() - state.interactiveAt < HOLD_MS;
    if (present && !state.present) {
      state.bulkTokens = 0;
      state.bulkRefilledAt = this.#clock.monotonic();
    }
    state.present = present;
    return present;
  }

  /** Serves waiters while a slot and a token (and for bulk under interactive presence, a bulk-share token) are free. */
  #pump(state: Host): void {
    this.#clock.clearTimeout(state.wake);
    state.wake = undefined;
    if (state.state === 'cooling') return;
    for (;;) {
      if (state.waiters.length === 0) break;
      if (this.#slotTaken(state)) break;
      this.#refill(state);
      // Interactive first (the first one that came), else the first bulk one.
      let index = state.waiters.findIndex((w) => w.priority() === 'interactive');
      const interactive = index !== -1;
      const present = this.#presence(state, interactive);
      if (!interactive) index = 0;
      const shortMs = this.#tokensShort(state, interactive, present);
      if (shortMs !== undefined) {
        this.#wakeIn(state, shortMs);
        break;
      }
      const [waiter] = state.waiters.splice(index, 1);
      if (waiter!.signal && waiter!.onAbort) waiter!.signal.removeEventListener('abort', waiter!.onAbort);
      waiter!.resolve(this.#take(state, interactive, present));
    }
  }

  /** No request may start now: the one probe of a reopening host is out, or every slot is held. */
  #slotTaken(state: Host): boolean {
    return (state.state === 'probing' && state.probing) || state.active >= state.limit.concurrency;
  }

  /** Undefined when the tokens a request of this priority needs are there; else how long (ms) until they are. */
  #tokensShort(state: Host, interactive: boolean, present: boolean): number | undefined {
    if (state.tokens < 1) return ((1 - state.tokens) * 1000) / state.limit.rate;
    if (!interactive && present && state.bulkTokens < 1) return ((1 - state.bulkTokens) * 2000) / state.limit.rate;
    return undefined;
  }

  /** Lets one request through now: its token and its slot taken (the probe, if the host is reopening); its release. */
  #take(state: Host, interactive: boolean, present: boolean): Release {
    state.tokens -= 1;
    if (interactive) state.interactiveAt = this.#clock.monotonic();
    else if (present) state.bulkTokens -= 1;
    state.active++;
    if (state.state === 'probing') state.probing = true;
    return this.#releaseFor(state);
  }

  #wakeIn(state: Host, ms: number): void {
    this.#clock.clearTimeout(state.wake);
    state.wake = this.#clock.setTimeout(() => {
      state.wake = undefined;
      this.#pump(state);
    }, Math.max(1, Math.ceil(ms)));
    state.wake.unref();
  }

  /**
   * The release of a request let through now. Its outcome is counted always, but
   * changes the host's state (cools it, reopens it, resets the backoff) only if
   * no cooling began since (the same epoch): a request sent before a cooling
   * tells nothing about the host after it, and while the host is closed only its
   * probe decides.
   */
  #releaseFor(state: Host): Release {
    let released = false;
    const wasProbe = state.state === 'probing';
    const epoch = state.epoch;
    return (outcome) => {
      if (released) return;
      released = true;
      state.active--;
      const current = epoch === state.epoch && (state.state === 'open' || (wasProbe && state.state === 'probing'));
      if (outcome instanceof UpstreamRefusal) {
        this.#heard.add(outcome);
        state.counts.refused++;
        if (current) this.#cool(state, outcome);
        else this.#pump(state);
        return;
      }
      if (outcome === 'ok') state.counts.ok++;
      else if (outcome === 'error') state.counts.error++;
      if (current) {
        if (outcome === 'ok') state.backoffMs = this.#baseBackoffMs;
        if (wasProbe && state.state === 'probing') {
          if (outcome === 'aborted') state.probing = false;
          else this.#open(state);
        }
      }
      this.#pump(state);
    };
  }

  #cool(state: Host, refusal: UpstreamRefusal): void {
    // Refusals of requests sent before the host started cooling change nothing more.
    if (state.state === 'cooling') return;
    const now = this.#clock.now();
    const retryAfter = refusal.retryAfterMs;
    const waitMs =
      retryAfter !== undefined && Number.isFinite(retryAfter)
        ? Math.min(this.#maxRetryAfterMs, Math.max(MIN_RETRY_AFTER_MS, retryAfter))
        : state.backoffMs;
    // Only a cooling by the backoff doubles it: a Retry-After is the host's own word and leaves it as it was.
    if (retryAfter === undefined || !Number.isFinite(retryAfter)) state.backoffMs = Math.min(this.#maxBackoffMs, state.backoffMs * 2);
    state.epoch++;
    // A refused probe: the host never reopened, so this is not a new start.
    const still = state.closedSince !== undefined;
    state.state = 'cooling';
    state.probing = false;
    state.retryAt = now + waitMs;
    state.reason = refusal.why;
    state.cooledAt = now;
    state.closedSince ??= now;
    this.#clock.clearTimeout(state.wake);
    state.wake = undefined;
    this.#clock.clearTimeout(state.reopen);
    this.#cooling++;
    state.reopen = this.#clock.setTimeout(() => {
      state.reopen = undefined;
      this.#cooling--;
      state.state = 'probing';
      state.probing = false;
      this.#emit(state);
      this.#pump(state);
    }, waitMs);
    state.reopen.unref();
    const meta = { host: state.name, why: refusal.why, until: new Date(state.retryAt).toISOString(), seconds: Math.round(waitMs / 1000) };
    if (still) this.#logger?.info?.('upstream host still cooling: its probe was refused', meta);
    else this.#logger?.warn('upstream host cooling: nothing is sent to it until then', meta);
    const error = this.#limited(state);
    for (const waiter of state.waiters.splice(0)) this.#reject(waiter, error);
    this.#emit(state);
  }

  #open(state: Host): void {
    const since = state.closedSince;
    state.state = 'open';
    state.probing = false;
    state.retryAt = undefined;
    state.closedSince = undefined;
    this.#logger?.warn('upstream host reopened', { host: state.name, why: state.reason, afterS: since === undefined ? 0 : Math.round((this.#clock.now() - since) / 1000) });
    this.#emit(state);
  }

  #reject(waiter: Waiter, error: Error): void {
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
    waiter.reject(error);
  }

  #emit(state: Host): void {
    for (const listener of this.#listeners) {
      try {
        listener(state.name);
      } catch {
        // A listener's fault is its own.
      }
    }
  }
}
