/**
 * Keeps the cache within `--max-age-hours` and `--max-cache-bytes`.
 *
 * Downloaded covers not asked for in `maxAgeHours` are scheduled for deletion
 * (a row's last-asked-for time may be older than its last ask by up to the
 * cover index's precision, `touchPrecisionMs`: a row is expired only once its
 * time is older than `maxAgeHours` and that precision, so none asked for within
 * `maxAgeHours` is);
 * then, while the downloaded covers hold more than `maxCacheBytes`, the least
 * recently asked-for ones are (a cover's bytes are its file's and its
 * original's). Custom covers are never touched. Everything goes
 * through deletion records and the deletion runner.
 */
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import { diskBytes } from '../store/index.js';
import type { CoverIndex, DeletionQueue } from '../store/index.js';
import type { DeletionRunner } from './deletionRunner.js';

export interface CacheLimitsDeps {
  covers: CoverIndex;
  deletions: DeletionQueue;
  runner: DeletionRunner;
  logger: Logger;
  maxAgeHours: number;
  maxCacheBytes: number;
  /** The one clock (default the system's): what is too old, and when passes run. */
  clock?: Clock;
}

const PAGE = 500;

export class CacheLimits {
  private timer: ClockTimer | undefined;
  private kickTimer: ClockTimer | undefined;
  private running: Promise<{ expired: number; overCap: number }> | undefined;

  private readonly clock: Clock;

  constructor(private readonly deps: CacheLimitsDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  get enabled(): boolean {
    return this.deps.maxAgeHours > 0 || this.deps.maxCacheBytes > 0;
  }

  /** One pass: schedules what is too old, then what is over the cap, and carries it out. */
  runOnce(): Promise<{ expired: number; overCap: number }> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<{ expired: number; overCap: number }> {
    const { covers, deletions, runner, logger, maxAgeHours, maxCacheBytes } = this.deps;
    const now = this.clock.now();
    await covers.flushTouches();
    let expired = 0;
    if (maxAgeHours > 0) {
      const before = now - maxAgeHours * 3_600_000 - covers.touchPrecisionMs;
      for (;;) {
        const rows = await covers.downloadedNotAskedSince(before, PAGE);
        if (rows.length === 0) break;
        await deletions.schedule(rows.map((row) => ({ url: row.url, path: row.path, kind: 'entry', reason: 'expired' })), now);
        expired += rows.length;
        await runner.runOnce();
        if (rows.length < PAGE) break;
      }
    }
    let overCap = 0;
    if (maxCacheBytes > 0) {
      let excess = (await covers.downloadedBytes()) - maxCacheBytes;
      for (let offset = 0; excess > 0; offset += PAGE) {
        const rows = await covers.leastRecentlyAsked(PAGE, offset);
        if (rows.length === 0) break;
        const chosen = [];
        for (const row of rows) {
          if (excess <= 0) break;
          chosen.push(row);
          excess -= diskBytes(row);
        }
        await deletions.schedule(chosen.map((row) => ({ url: row.url, path: row.path, kind: 'entry', reason: 'cache_cap' })), now);
        overCap += chosen.length;
      }
      if (overCap > 0) await runner.runOnce();
    }
    if (expired + overCap > 0) logger.info('cache limits applied', { expired, overCap });
    return { expired, overCap };
  }

  /** Runs a pass within `delayMs` (once, however often it is called meanwhile). */
  kick(delayMs = 1000): void {
    if (!this.enabled || this.kickTimer !== undefined) return;
    this.kickTimer = this.clock.setTimeout(() => {
      this.kickTimer = undefined;
      this.runOnce().catch((error: unknown) => this.deps.logger.error('cache limits failed', { error }));
    }, delayMs);
    this.kickTimer.unref();
  }

  start(intervalMs: number): void {
    if (!this.enabled) return;
    this.timer = this.clock.setInterval(() => {
      this.runOnce().catch((error: unknown) => this.deps.logger.error('cache limits failed', { error }));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.clock.clearInterval(this.timer);
    this.clock.clearTimeout(this.kickTimer);
    await this.running?.catch(() => undefined);
  }
}
