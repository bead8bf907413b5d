/**
 * "Last asked for" times, batched: URLs asked for are collected in memory and
 * written every `intervalMs` (30 s: expiry works in hours), a slice of URLs per
 * event-loop turn, so a cache hit costs no write and a large flush never holds
 * the loop (nor the other writes) for long. Where a slice's write holds the
 * loop (SQLite: its statement runs on this thread), the slices are sized by the
 * time the last one held it: about `SLICE_HOLD_MS` each, so a check that comes
 * in meanwhile waits no longer than that (200 URLs had held it 10–15 ms when
 * their rows were spread over the table).
 *
 * Rounds: each flush starts a new round. A caller that remembers in which round
 * it last noted a URL (`round`) need not note it again within the same round:
 * a hot URL costs one Set insert per 30 s, not one per hit.
 */

import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';

/** URLs written per event-loop turn, at most. */
const MAX_SLICE = 200;
/** ... and at least. */
const MIN_SLICE = 8;
/** How long a slice whose write holds the loop may hold it, about. */
export const SLICE_HOLD_MS = 1;
/** How long touches wait in memory. */
export const TOUCH_INTERVAL_MS = 30_000;

export class TouchBatcher {
  private touched = new Set<string>();
  private timer: ClockTimer | undefined;
  /** The flush running, if any: the next one starts after it. */
  private flushing: Promise<void> = Promise.resolve();
  /** Which flush interval this is. */
  round = 1;
  /** URLs in the next slice. */
  private slice = 32;

  constructor(
    /**
     * Writes one slice's times (one statement); resolves with how long the
     * write held the event loop, in ms, where it held it (a synchronous
     * database), or with undefined where it did not.
     */
    private readonly writeSlice: (urls: string[], now: number) => Promise<number | undefined>,
    private readonly options: { intervalMs?: number; clock?: Clock } = {},
  ) {}

  private get clock(): Clock {
    return this.options.clock ?? systemClock;
  }

  /** Notes one URL as asked for now (call `schedule` after a batch of these). */
  note(url: string): void {
    this.touched.add(url);
  }

  /** Notes URLs as asked for now and schedules the flush. */
  touch(urls: Iterable<string>): void {
    for (const url of urls) this.touched.add(url);
    this.schedule();
  }

  /** Starts the flush timer if touches wait and none runs. */
  schedule(): void {
    if (this.timer === undefined && this.touched.size > 0) {
      this.timer = this.clock.setTimeout(() => void this.flush().catch(() => undefined), this.options.intervalMs ?? TOUCH_INTERVAL_MS).unref();
    }
  }

  /**
   * Writes the pending times: every URL noted before this call is written when
   * it resolves (a flush already running is waited for). A slice that fails is
   * kept, with the rest, for the next flush.
   */
  flush(): Promise<void> {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const flush = this.flushing.then(() => this.writeAll());
    this.flushing = flush.catch(() => undefined);
    return flush;
  }

  private async writeAll(): Promise<void> {
    if (this.touched.size === 0) return;
    const urls = [...this.touched];
    this.touched = new Set();
    this.round++;
    const now = this.clock.now();
    for (let i = 0; i < urls.length; ) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const size = this.slice;
      let held: number | undefined;
      try {
        held = await this.writeSlice(urls.slice(i, i + size), now);
      } catch (error) {
        for (const url of urls.slice(i)) this.touched.add(url);
        throw error;
      }
      i += size;
      this.slice = nextSlice(size, held);
    }
  }
}

/** The next slice's size after one of `size` URLs held the loop `held` ms (undefined: not at all). */
export function nextSlice(size: number, held: number | undefined): number {
  if (held === undefined || held <= 0) return MAX_SLICE;
  return Math.max(MIN_SLICE, Math.min(MAX_SLICE, Math.floor((size * SLICE_HOLD_MS) / held)));
}
