/**
 * Answers one check request: every URL of a batch, in input order.
 *
 *   in the cover index   → `ok` from `cache` (or `custom`), at once (a video
 *                          page's cover due to be re-resolved is also handed
 *                          to `reresolve`, which asks it again in the background)
 *   not a cover URL      → `skipped`, at once, never fetched
 *   anything else        → asks the supervisor and waits for the download;
 *                          `onWaited` is called for each such position as soon
 *                          as its answer is known
 *
 * Each check is asked for an `Asker` (the connection, request or job it came
 * from): the downloads know who waits on them, and `leave(asker)` drops the
 * queued downloads that only that asker waited for.
 *
 * Duplicate URLs share one lookup and one download and are answered at every
 * position.
 */
import type { Config } from '../config.js';
import { resultError } from '../errors.js';
import { classifyUrl } from '../fetch/index.js';
import type { Downloads } from '../downloads/index.js';
import type { Stats } from '../stats.js';
import type { CoverIndex, CoverRow, HeldRow } from '../store/index.js';
import type { CoverSource, DownloadOutput } from '../../machines/types.js';
import type { Asker } from '../../machines/flights.js';
import type { CheckResult, CheckStatus } from '@coverhelper/client/protocol';

export type { CheckResult, CheckStatus };

export interface CheckDeps {
  config: Pick<Config, 'allowHosts'>;
  covers: CoverIndex;
  downloads: Pick<Downloads, 'askMany' | 'inFlight' | 'leave'>;
  stats: Stats;
  /** Base of the cover URLs, ending in `/`. */
  publicUrl: () => string;
  /** Stored video page covers due to be re-resolved are asked again in the background (`Reresolver`). */
  reresolve?: { consider(row: CoverRow, now?: number): boolean; mayBeDue(row: CoverRow): boolean; now(): number };
}

/**
 * A check answered from memory (`checkNowKept`): its results, the rows they were
 * made from, the base of their cover URLs, and the rows among them that
 * re-resolving may concern (`Reresolver.mayBeDue`: video pages; none for
 * image URLs).
 */
export interface KeptCheck extends HeldCheck {
  readonly results: CheckResult[];
}

/** What `checkAgain` needs of a kept check: its rows, their cover URLs' base, the rows re-resolving may concern. */
export interface HeldCheck {
  readonly held: readonly HeldRow[];
  readonly base: string;
  readonly pages: readonly CoverRow[];
}

/** Checks as a wrapper or a transport takes them: `check` always, the answers from memory where the checks give them. */
export type WrappedChecks = Pick<CoverChecks, 'check' | 'leave'> & Partial<Pick<CoverChecks, 'checkNow' | 'checkNowKept' | 'checkAgain'>>;

const NO_ROWS: readonly CoverRow[] = Object.freeze([]);

export function coverUrl(base: string, path: string): string {
  return base + path.split('/').map(encodeURIComponent).join('/');
}

/**
 * Where a stored row or a download's output keeps the answer made from it: a
 * non-enumerable symbol property, invisible to JSON, spreading and deep
 * equality. A hot check reads it once per URL; a WeakMap lookup in its place
 * cost several times more (docs/BENCHMARKS.md, hot path).
 */
const ANSWER = Symbol('coverhelper.answer');
/** On the answer itself: the base its cover URL was made with (one object fewer to reach per URL than a pair beside it). */
const BASE = Symbol('coverhelper.answerBase');

interface Answered {
  [ANSWER]?: CheckResult & { [BASE]?: string };
}

/** What an ok answer is made from: a stored row or a download's cover. */
interface OkFields {
  path: string;
  width: number;
  height: number;
  originalWidth?: number | null | undefined;
  originalHeight?: number | null | undefined;
  color?: string | null | undefined;
}

/**
 * An ok answer's `width`, `height` (the original's, or the stored file's when no
 * original is kept) and `color` (when known), from a row or a download's cover.
 */
export function answerFields(cover: Omit<OkFields, 'path'>): Pick<CheckResult, 'width' | 'height' | 'color'> {
  const fields: Pick<CheckResult, 'width' | 'height' | 'color'> = { width: cover.originalWidth ?? cover.width, height: cover.originalHeight ?? cover.height };
  if (typeof cover.color === 'string') fields.color = cover.color;
  return fields;
}

export class CoverChecks {
  /** The base the answers' cover URLs are made with (known only once the server listens on port 0). */
  private answersBase = '';

  constructor(private readonly deps: CheckDeps) {}

  /** Reads the public URL once per check; answers made with another base are made again. */
  private checkBase(): void {
    this.answersBase = this.deps.publicUrl();
  }

  /** The answer made from `source` (a stored row, a download's output), made once and shared by every check that gives it. */
  private answerFor<T extends object>(source: T, make: (source: T) => CheckResult): CheckResult {
    const kept = (source as Answered)[ANSWER];
    if (kept !== undefined && kept[BASE] === this.answersBase) return kept;
    const answer = make(source);
    // A frozen object cannot keep it: then the answer is made again next time.
    if (Object.isExtensible(source) && Object.isExtensible(answer)) {
      Object.defineProperty(answer, BASE, { value: this.answersBase, enumerable: false });
      Object.defineProperty(source, ANSWER, { value: answer, configurable: true, writable: true, enumerable: false });
    }
    return answer;
  }

  private ok(url: string, cover: OkFields, source: CoverSource): CheckResult {
    return { url, status: 'ok', coverUrl: coverUrl(this.deps.publicUrl(), cover.path), path: cover.path, source, ...answerFields(cover) };
  }

  /** A stored row's answer (the row objects of the store's memory are stable, so this is made once per row). */
  private fromRow(row: CoverRow): CheckResult {
    return this.answerFor(row, this.makeFromRow);
  }

  private readonly makeFromRow = (row: CoverRow): CheckResult => this.ok(row.url, row, row.source === 'custom' ? 'custom' : 'cache');

  /** A download's answer, made once however many askers share the download. */
  private fromOutput(output: DownloadOutput): CheckResult {
    return this.answerFor(output, this.makeFromOutput);
  }

  private readonly makeFromOutput = (output: DownloadOutput): CheckResult => {
    if (output.status === 'ok') return this.ok(output.url, output.cover, output.source === 'cache' ? 'cache' : output.source);
    const error = resultError(output.error);
    // A cooling upstream host: when it reopens (the URL is fetched then; nothing is remembered against it).
    if (output.error.code === 'upstream_limited' && output.error.retryAt !== undefined) return { url: output.url, status: 'error', error, retryAt: new Date(output.error.retryAt).toISOString() };
    // A failure answered from memory says so, and when the URL will be tried again.
    if (output.retryAt !== undefined) return { url: output.url, status: 'error', error, remembered: true, retryAt: new Date(output.retryAt).toISOString() };
    return { url: output.url, status: 'error', error };
  };

  /**
   * The checks waiting on each download's outcome (its flight's `done`), in the
   * order they asked. A download 500 checks wait on (a herd) gets one reaction,
   * which answers them all in that order, not 500 reactions and 500 derived
   * promises. The entry goes when the outcome is handed out; a flight's `done`
   * always settles (never rejects), so none is left behind.
   */
  private readonly waiting = new Map<Promise<DownloadOutput>, ((output: DownloadOutput) => void)[]>();

  private whenDone(done: Promise<DownloadOutput>, answer: (output: DownloadOutput) => void): void {
    const known = this.waiting.get(done);
    if (known !== undefined) {
      known.push(answer);
      return;
    }
    const answers = [answer];
    this.waiting.set(done, answers);
    void done.then((output) => {
      this.waiting.delete(done);
      for (const each of answers) {
        // Each answer catches its own errors (it fails its check only); should one throw
        // anyway, the checks after it on this download are still answered.
        try {
          each(output);
        } catch {
          // Nothing to add: its check is the only one it could have answered.
        }
      }
    });
  }

  /** `asker` waits on nothing any more (its connection closed, its request gave up): the downloads only it waited for and that have not started are dropped. */
  leave(asker: Asker): void {
    this.deps.downloads.leave(asker);
  }

  /**
   * Every URL of `urls` answered now, in input order, when memory holds each
   * one's row (the hot path: no promise, so a socket can answer within the turn
   * that read the check); undefined, with nothing counted, as soon as one is not
   * there: then ask `check`. (`known` is for wrappers: `SuffixChecks`.)
   */
  checkNow(urls: readonly string[], _known?: { noAt?: boolean }): CheckResult[] | undefined {
    return this.checkNowKept(urls)?.results;
  }

  /**
   * `checkNow`, with what it answered from: the same URLs asked again are
   * answered by `checkAgain` while memory holds every row it was made from. The
   * rows re-resolving may concern are picked out once (`mayBeDue`); only they
   * are handed to it, now and at each `checkAgain`.
   */
  checkNowKept(urls: readonly string[], _known?: { noAt?: boolean }): KeptCheck | undefined {
    const held = this.deps.covers.allInMemory(urls, { touch: true });
    if (held === undefined) return undefined;
    this.checkBase();
    const { reresolve } = this.deps;
    const results: CheckResult[] = new Array<CheckResult>(held.length);
    let pages: CoverRow[] | undefined;
    for (let index = 0; index < held.length; index++) {
      const { row } = held[index]!;
      results[index] = this.fromRow(row);
      if (reresolve?.mayBeDue(row)) (pages ??= []).push(row);
    }
    const kept: KeptCheck = { results, held, base: this.answersBase, pages: pages ?? NO_ROWS };
    this.counted(kept);
    return kept;
  }

  /**
   * Answers `kept`'s URLs again, as `checkNow` would answer them (the same
   * results, counted and touched the same), when memory still holds every row
   * they were made from and cover URLs have the same base; false, with nothing
   * counted, when not: then ask as always.
   */
  checkAgain(kept: HeldCheck): boolean {
    if (this.deps.publicUrl() !== kept.base || !this.deps.covers.stillInMemory(kept.held, { touch: true })) return false;
    this.counted(kept);
    return true;
  }

  /** A check answered from memory: counted, and its rows due to be re-resolved handed to `reresolve`. */
  private counted(kept: HeldCheck): void {
    const { stats, reresolve } = this.deps;
    stats.checks++;
    stats.urls += kept.held.length;
    stats.hits += kept.held.length;
    if (reresolve === undefined || kept.pages.length === 0) return;
    const now = reresolve.now();
    for (const row of kept.pages) reresolve.consider(row, now);
  }

  /**
   * Answers every URL of `urls` in input order, for `asker` (by default one of
   * its own, which never leaves: its downloads are never dropped).
   */
  async check(urls: readonly string[], onWaited: (index: number, result: CheckResult) => void = () => {}, asker: Asker = { kind: 'check' }): Promise<CheckResult[]> {
    const { stats, covers, downloads, config } = this.deps;
    stats.checks++;
    stats.urls += urls.length;
    this.checkBase();
    const results: CheckResult[] = new Array<CheckResult>(urls.length);
    // The hot path: the URLs the cover index holds in memory are answered here,
    // position by position, with no map of positions and no database.
    const remembered = covers.findInMemory(urls, { touch: true });
    const { reresolve } = this.deps;
    const now = reresolve?.now();
    // The rest: url → its index, or its indexes when the batch repeats it (an array only then).
    const positions = new Map<string, number | number[]>();
    let hits = 0;
    for (let index = 0; index < urls.length; index++) {
      const row = remembered[index];
      if (row !== undefined) {
        results[index] = this.fromRow(row);
        hits++;
        reresolve?.consider(row, now);
        continue;
      }
      const url = urls[index]!;
      const seen = positions.get(url);
      if (seen === undefined) positions.set(url, index);
      else if (typeof seen === 'number') positions.set(url, [seen, index]);
      else seen.push(index);
    }
    stats.hits += hits;
    if (positions.size === 0) return results;
    const answer = (at: number | number[], result: CheckResult, notify: boolean) => {
      if (typeof at === 'number') {
        results[at] = result;
        if (notify) onWaited(at, result);
      } else {
        for (const index of at) {
          results[index] = result;
          if (notify) onWaited(index, result);
        }
      }
    };

    // The URLs that wait for a download settle this one promise: one callback per
    // URL, not a promise per URL and Promise.all over them (100,000 URLs in flight
    // at once are held in memory while they wait).
    // `waiting` starts at one for the registering itself (released after the
    // lookup below): a joined download that finishes while the index is asked
    // cannot settle the check before the misses are counted.
    let waiting = 1;
    let settle!: { resolve: () => void; reject: (error: unknown) => void };
    const allAnswered = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    // Observed even when the lookup fails first and nothing awaits it.
    allAnswered.catch(() => undefined);
    const answerWhenDone = (at: number | number[], done: Promise<DownloadOutput>, coalesced: boolean) => {
      const count = typeof at === 'number' ? 1 : at.length;
      stats.misses += count;
      if (coalesced) stats.coalesced++;
      waiting++;
      this.whenDone(done, (output) => {
        try {
          answer(at, this.fromOutput(output), true);
          if (--waiting === 0) settle.resolve();
        } catch (error) {
          settle.reject(error);
        }
      });
    };

    // A URL being downloaded right now is not stored yet: join its download without
    // asking the index (a herd of checks for the same URLs then costs no lookups).
    const lookup: string[] = [];
    let joined: Set<string> | undefined;
    for (const url of positions.keys()) {
      if (downloads.inFlight(url) !== undefined) (joined ??= new Set()).add(url);
      else if (url.startsWith('http')) lookup.push(url);
    }
    if (joined !== undefined) {
      const urls = [...joined];
      const asked = downloads.askMany(urls, asker);
      for (let i = 0; i < urls.length; i++) answerWhenDone(positions.get(urls[i]!)!, asked[i]!.done, asked[i]!.coalesced);
    }
    // Any other URL may have a custom cover, so the index is asked about all of them.
    const stored = await covers.findMany(lookup, { touch: true });
    const missed: string[] = [];
    for (const [url, at] of positions) {
      if (joined?.has(url)) continue;
      const row = stored.get(url);
      if (row) {
        stats.hits += typeof at === 'number' ? 1 : at.length;
        answer(at, this.fromRow(row), false);
        reresolve?.consider(row, now);
      } else {
        const kind = classifyUrl(url, config.allowHosts);
        if (kind.kind === 'skip') answer(at, { url, status: 'skipped', reason: kind.reason }, false);
        else missed.push(url);
      }
    }
    // The misses are handed over together: one supervisor event per check.
    if (missed.length > 0) {
      const asked = downloads.askMany(missed, asker);
      for (let i = 0; i < missed.length; i++) answerWhenDone(positions.get(missed[i]!)!, asked[i]!.done, asked[i]!.coalesced);
    }
    if (--waiting > 0) await allAnswered;
    return results;
  }
}
