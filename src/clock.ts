/**
 * The one clock: every reading of time, every timer and every random draw of
 * the service goes through a `Clock` made once in `startApp` and passed down.
 *
 *   const clock = systemClock;                 // production: Date.now, node timers, Math.random
 *   const clock = new TestClock();             // tests: time moves only when told to
 *   await clock.advance(30_000);               // fires every timer due in 30 s, in order
 *
 * XState takes the same object through its public `clock` option
 * (`createActor(logic, { clock })`): `setTimeout`/`clearTimeout` are the shape
 * XState asks for, so delayed transitions (retry backoff, time limits) move
 * with the test clock too.
 *
 * Modelled on pg-boss's `src/clock.ts` (one injectable time source with a
 * test double that fires due timers in order), trimmed to what this service uses.
 *
 * Who gets it: `startApp(config, logger, clock)` hands it to the store (every
 * time written, leases, the touch flush), the supervisor and its download actors
 * (XState's `clock` option; the retry jitter draws `random` through the download
 * machine's input), the job runner and its job actors, the callbacks (deadline,
 * backoff, jitter), the cluster link, the cache limits, the deletion runner, the
 * resource guard, the HTTP server (keepalive, result rounds, body deadlines,
 * unsent-output bound, admin streams, close graces), the door, the proxy's rate
 * limit and the legacy port. The machines take it through their input as the
 * structural `MachineClock` of machines/types.ts (they import nothing from src/).
 *
 * What does not go through the clock:
 *   - the logger's 2 s flush on exit (logger.ts): it runs while the process
 *     ends, after everything holding a clock has stopped;
 *   - socket timeouts that are node's or undici's own: the legacy port's idle
 *     timeout (`socket.setTimeout`), undici's `headersTimeout`/`bodyTimeout`;
 *   - the DNS lookup deadline inside the guarded connector (fetch/httpClient.ts)
 *     and the PostgreSQL listener's reconnect backoff (store/postgresDialect.ts):
 *     both bound waits on real I/O inside a connection, no logic reads them,
 *     and no test can move a real DNS answer or a real server with a test clock;
 *   - `setImmediate` where it means "at the end of this turn" (the supervisor's
 *     `finishLater`, socket corking, touch slices): no time passes there;
 *   - `randomBytes`/`randomUUID` for ids, tokens and temp names: those are not
 *     draws a test wants to repeat, and must stay unpredictable;
 *   - files' own times (`mtime` read from disk) and `/healthz` resource samples.
 */
import { setImmediate as macrotask } from 'node:timers/promises';

/** A timer handle: what `setTimeout`/`setInterval` return and `clear…` take. */
export interface ClockTimer {
  /** Lets the process exit while the timer is pending (a no-op on the test clock). Returns the timer. */
  unref(): ClockTimer;
}

export interface Clock {
  /** Milliseconds since the Unix epoch (wall time: stored, sent, compared across nodes). */
  now(): number;
  /** Milliseconds from an arbitrary origin that never goes backwards (durations). */
  monotonic(): number;
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | undefined): void;
  setInterval(fn: () => void, ms: number): ClockTimer;
  clearInterval(timer: ClockTimer | undefined): void;
  /** Resolves after `ms`; rejects with the signal's reason as soon as it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** A number in [0, 1) (retry jitter). */
  random(): number;
}

function sleepOn(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The real clock: `Date.now`, `performance.now`, node's timers, `Math.random`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout | undefined),
  sleep: (ms, signal) => sleepOn(systemClock, ms, signal),
  random: () => Math.random(),
};

interface Scheduled {
  id: number;
  due: number;
  fn: () => void;
  /** Repeats every `every` ms (setInterval), else fires once. */
  every?: number;
  unref(): ClockTimer;
}

/**
 * A clock for tests: time stands still until `advance` moves it, and then every
 * timer that falls due fires in order of its due time (ties in the order they
 * were set), with `now()` reading that due time while it runs. Timers set while
 * advancing fire in the same call when they fall due within it. Between timers
 * the event loop is let run, so promise chains woken by one timer settle before
 * the next fires.
 *
 * `random()` is a fixed sequence (seeded), so jitter is the same on every run.
 */
export class TestClock implements Clock {
  #now: number;
  #monotonic = 0;
  #nextId = 1;
  #seed: number;
  readonly #timers = new Map<number, Scheduled>();

  /** `start` is the wall time to begin at (default 2026-01-01T00:00:00Z). */
  constructor(start = Date.UTC(2026, 0, 1), seed = 1) {
    this.#now = start;
    this.#seed = seed >>> 0 || 1;
  }

  now(): number {
    return this.#now;
  }

  monotonic(): number {
    return this.#monotonic;
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    return this.#schedule(fn, ms);
  }

  setInterval(fn: () => void, ms: number): ClockTimer {
    return this.#schedule(fn, ms, Math.max(1, ms));
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.#timers.delete((timer as Scheduled).id);
  }

  clearInterval(timer: ClockTimer | undefined): void {
    this.clearTimeout(timer);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** xorshift32: deterministic, good enough for jitter. */
  random(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed / 2 ** 32;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way,
   * in order, letting the event loop run after each. Ends with time at
   * `now() + ms` (as read before the call).
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`cannot move a clock back (${ms} ms)`);
    const end = this.#now + ms;
    await settle();
    for (;;) {
      const next = this.#nextDue(end);
      if (next === undefined) break;
      this.#moveTo(next.due);
      if (next.every === undefined) this.#timers.delete(next.id);
      else next.due += next.every;
      next.fn();
      await settle();
    }
    this.#moveTo(end);
    await settle();
  }

  /** Moves time to the next timer's due time and fires what is due then. Returns false when no timer is set. */
  async next(): Promise<boolean> {
    const next = this.#nextDue(Infinity);
    if (next === undefined) return false;
    await this.advance(next.due - this.#now);
    return true;
  }

  #moveTo(time: number): void {
    if (time <= this.#now) return;
    this.#monotonic += time - this.#now;
    this.#now = time;
  }

  #nextDue(limit: number): Scheduled | undefined {
    let best: Scheduled | undefined;
    for (const timer of this.#timers.values()) {
      if (timer.due > limit) continue;
      if (best === undefined || timer.due < best.due || (timer.due === best.due && timer.id < best.id)) best = timer;
    }
    return best;
  }

  #schedule(fn: () => void, ms: number, every?: number): Scheduled {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: Scheduled = {
      id: this.#nextId++,
      due: this.#now + delay,
      fn,
      ...(every === undefined ? {} : { every }),
      unref: () => timer,
    };
    this.#timers.set(timer.id, timer);
    return timer;
  }
}

/** Lets pending promise callbacks and I/O callbacks already queued run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await macrotask();
}
