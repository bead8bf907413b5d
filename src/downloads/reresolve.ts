/**
 * Covers that change upstream: an uploader can change a video's cover.
 *
 * A video page's stored cover is answered at once, as any stored cover is;
 * when it was last resolved more than `--resolve-ttl` hours ago (a cover stored
 * before resolved times were kept counts as resolved when it was stored), its
 * page is re-resolved in the background: asked of the downloads like any URL,
 * by one bulk asker (`bulk: true`, so interactive work goes first at every host's gate), and
 * `fetchCover` sees through `wants(url)` that this fetch is a re-resolve, not
 * an answer from the store:
 *
 *   pic unchanged        → only the resolved time is recorded (no download)
 *   pic changed (or not  → the new image is downloaded and becomes the page's
 *   known: an old row)     cover; the old file is left to the deletion runner
 *
 * Bounded: at most `cap` re-resolves are asked and unfinished at once; a page
 * found due beyond that is not queued (it is found due again the next time it
 * is asked for). A failed re-resolve keeps the stored cover, and the page is
 * not re-resolved again before another TTL has passed (its failure is also
 * remembered for `--fail-ttl` like any other). A re-resolve answered
 * `upstream_limited` (its host cools) is considered again at the next ask
 * after the reopening.
 */
import type { Clock } from '../clock.js';
import { classifyUrl } from '../fetch/index.js';
import type { CoverRow } from '../store/index.js';
import type { Asker } from '../../machines/flights.js';
import type { DownloadOutput } from '../../machines/types.js';

/** Re-resolves asked and not finished at once, by default. */
export const RERESOLVE_CAP = 64;

/** Failed re-resolves remembered (so they wait a TTL before the next try). */
export const MAX_FAILED = 10_000;

export interface ReresolverDeps {
  /** `--resolve-ttl` in ms; 0 = never. */
  ttlMs: number;
  /** `--allow-hosts`, to tell a video page from an image URL. */
  allowHosts: readonly string[];
  /** Asks the downloads for these URLs (`Downloads.askMany`). */
  ask: (urls: readonly string[], asker: Asker) => { done: Promise<DownloadOutput> }[];
  clock: Clock;
  /** Re-resolves asked and unfinished at once (default RERESOLVE_CAP). */
  cap?: number;
  /** Called with each finished re-resolve's outcome (the log). */
  onDone?: (url: string, output: DownloadOutput) => void;
}

export class Reresolver {
  /** Every background re-resolve is asked by this one asker; it never leaves, so its work is never dropped. */
  readonly asker: Asker = { kind: 'reresolve', party: 'reresolve', bulk: true };
  /** Pages asked again and not finished: `fetchCover` re-resolves these instead of answering the stored row. */
  private readonly pending = new Set<string>();
  /** Found due in this turn, asked together at its end. */
  private batch: string[] = [];
  /** Stored rows found not to be video pages (row objects of the store's memory are stable: classified once). */
  private readonly notVideo = new WeakSet<CoverRow>();
  private readonly cap: number;
  /** When a page's last re-resolve failed (insertion order: oldest first), at most MAX_FAILED. */
  private readonly failedAt = new Map<string, number>();
  /** Re-resolves found due but not queued because `cap` were already pending. */
  dropped = 0;
  /** Re-resolves asked so far. */
  asked = 0;

  constructor(private readonly deps: ReresolverDeps) {
    this.cap = deps.cap ?? RERESOLVE_CAP;
  }

  /** The time due-ness is judged at (read once per check by the callers). */
  now(): number {
    return this.deps.clock.now();
  }

  /** Whether the fetch of `url` now is a background re-resolve. */
  wants(url: string): boolean {
    return this.pending.has(url);
  }

  /** How many re-resolves are asked and not finished. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Whether `row`, answered now, is due to be re-resolved: a downloaded video
   * page's cover last resolved (or, before resolved times were kept, stored)
   * at least the TTL ago.
   */
  isDue(row: CoverRow, now: number): boolean {
    const { ttlMs } = this.deps;
    if (ttlMs <= 0 || row.source !== 'download') return false;
    if (now - (row.resolvedAt ?? row.createdAt) < ttlMs) return false;
    // A re-resolve that failed is tried again a TTL later, not at every ask.
    const failed = this.failedAt.get(row.url);
    if (failed !== undefined && now - failed < ttlMs) return false;
    return this.isPage(row);
  }

  /**
   * Whether `row` can ever be due (`isDue`, whatever the time): a downloaded
   * video page's cover while re-resolving is on. A row never changes (a write
   * makes a new one), so a holder of rows asks once and considers only those.
   */
  mayBeDue(row: CoverRow): boolean {
    return this.deps.ttlMs > 0 && row.source === 'download' && this.isPage(row);
  }

  private isPage(row: CoverRow): boolean {
    if (row.resolvedPic !== null) return true;
    if (this.notVideo.has(row)) return false;
    if (classifyUrl(row.url, this.deps.allowHosts).kind === 'video') return true;
    this.notVideo.add(row);
    return false;
  }

  /**
   * `row` was just answered from the store: if it is due, its page is asked
   * again in the background (at the end of this turn, with the others found
   * due in it), unless it already is or `cap` are pending. Says whether it was queued.
   */
  consider(row: CoverRow, now = this.deps.clock.now()): boolean {
    if (!this.isDue(row, now) || this.pending.has(row.url)) return false;
    if (this.pending.size >= this.cap) {
      this.dropped++;
      return false;
    }
    this.pending.add(row.url);
    if (this.batch.length === 0) queueMicrotask(() => this.flush());
    this.batch.push(row.url);
    return true;
  }

  /**
   * Remembers when a re-resolve failed (a deleted video, a refused pic host, …),
   * so the page is not asked of the API again before another TTL has passed.
   * A cooling host (`upstream_limited`) or a shutdown is not the page's answer:
   * the next ask after it considers the page again.
   */
  private noteOutcome(url: string, output: DownloadOutput): void {
    this.failedAt.delete(url);
    if (output.status === 'ok' || output.error.code === 'upstream_limited' || output.error.code === 'shutting_down') return;
    this.failedAt.set(url, this.deps.clock.now());
    // Bounded: the oldest failures are forgotten first (they are only asked again a little early).
    if (this.failedAt.size > MAX_FAILED) this.failedAt.delete(this.failedAt.keys().next().value!);
  }

  private flush(): void {
    const urls = this.batch;
    this.batch = [];
    if (urls.length === 0) return;
    this.asked += urls.length;
    let asked: { done: Promise<DownloadOutput> }[];
    try {
      asked = this.deps.ask(urls, this.asker);
    } catch {
      // The downloads stopped (shutdown): nothing is pending any more.
      for (const url of urls) this.pending.delete(url);
      return;
    }
    for (let i = 0; i < urls.length; i++) {
      const url = urls[i]!;
      void asked[i]!.done.then((output) => {
        this.pending.delete(url);
        this.noteOutcome(url, output);
        this.deps.onDone?.(url, output);
      });
    }
  }
}
