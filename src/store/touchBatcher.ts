/**
 * "Last asked for" times, batched: URLs asked for are collected in memory and
 * written every `intervalMs` (30 s: expiry works in hours), a slice of URLs per
 * event-loop turn, so a cache hit costs no write and a large flush never holds
 * the loop (nor the other writes) for long. The cover index notes a row only
 * once the time it has is older than its precision (coverIndex.ts): a hot URL
 * costs a subtraction per hit and one note per precision, not one per hit.
 * A flush that fails keeps what it did not write and sets the timer again.
 */

import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';

/** URLs written per event-loop turn. */
const SLICE = 200;
/** How long touches wait in memory. */
export const TOUCH_INTERVAL_MS = 30_000;

export class TouchBatcher {
  private touched = new Set<string>();
  private timer: ClockTimer | undefined;
  /** The flush running, if any: the next one starts after it. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    /** Writes one slice's times (one statement). */
    private readonly writeSlice: (urls: string[], now: number) => Promise<void>,
    private readonly options: { intervalMs?: number; clock?: Clock } = {},
  ) {}

  private get clock(): Clock {
    return this.options.clock ?? systemClock;
  }

  /** Notes one URL as asked for now (call `schedule` after a batch of these). */
  note(url: string): void {
    this.touched.add(url);
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
    const now = this.clock.now();
    for (let i = 0; i < urls.length; i += SLICE) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      try {
        await this.writeSlice(urls.slice(i, i + SLICE), now);
      } catch (error) {
        for (const url of urls.slice(i)) this.touched.add(url);
        this.schedule();
        throw error;
      }
    }
  }
}
