/**
 * Answers one check request: every URL of a batch, in input order.
 *
 *   in the cover index   → `ok` from `cache` (or `custom`), at once
 *   not a cover URL      → `skipped`, at once, never fetched
 *   anything else        → asks the supervisor and waits for the download;
 *                          `onWaited` is called for each such position as soon
 *                          as its answer is known
 *
 * Duplicate URLs share one lookup and one download and are answered at every
 * position.
 */
import type { Config } from '../config.js';
import { classifyUrl } from '../fetch/index.js';
import type { Downloads } from '../downloads/index.js';
import type { Stats } from '../stats.js';
import type { CoverRow, CoverStore } from '../store/index.js';
import type { CoverSource, DownloadOutput, StoredCover } from '../../machines/types.js';

export type CheckStatus = 'ok' | 'skipped' | 'error';

export interface CheckResult {
  url: string;
  status: CheckStatus;
  coverUrl?: string;
  path?: string;
  source?: CoverSource;
  error?: { code: string; message: string };
}

export interface CheckDeps {
  config: Pick<Config, 'allowHosts'>;
  covers: CoverStore;
  downloads: Pick<Downloads, 'askMany' | 'inFlight'>;
  stats: Stats;
  /** Base of the cover URLs, ending in `/`. */
  publicUrl: () => string;
}

export function coverUrl(base: string, path: string): string {
  return base + path.split('/').map(encodeURIComponent).join('/');
}

export class CoverChecks {
  /** The answers of stored rows and finished downloads, made once and shared by every check that gives them. */
  private answers = new WeakMap<object, CheckResult>();
  /** The base the cached answers' cover URLs were made with. */
  private answersBase: string | undefined;

  constructor(private readonly deps: CheckDeps) {}

  /** Drops the cached answers if the public URL changed (it is known only once the server listens on port 0). */
  private checkBase(): void {
    const base = this.deps.publicUrl();
    if (base !== this.answersBase) {
      this.answers = new WeakMap();
      this.answersBase = base;
    }
  }

  private ok(url: string, cover: Pick<StoredCover, 'path'>, source: CoverSource): CheckResult {
    return { url, status: 'ok', coverUrl: coverUrl(this.deps.publicUrl(), cover.path), path: cover.path, source };
  }

  /** A stored row's answer (the row objects of the store's memory are stable, so this is made once per row). */
  private fromRow(row: CoverRow): CheckResult {
    let answer = this.answers.get(row);
    if (answer === undefined) {
      answer = this.ok(row.url, row, row.source === 'custom' ? 'custom' : 'cache');
      this.answers.set(row, answer);
    }
    return answer;
  }

  /** A download's answer, made once however many askers share the download. */
  private fromOutput(output: DownloadOutput): CheckResult {
    let answer = this.answers.get(output);
    if (answer === undefined) {
      answer =
        output.status === 'ok'
          ? this.ok(output.url, output.cover, output.source === 'cache' ? 'cache' : output.source)
          : { url: output.url, status: 'error', error: { code: output.error.code, message: output.error.message } };
      this.answers.set(output, answer);
    }
    return answer;
  }

  async check(urls: readonly string[], onWaited: (index: number, result: CheckResult) => void = () => {}): Promise<CheckResult[]> {
    const { stats, covers, downloads, config } = this.deps;
    stats.checks++;
    stats.urls += urls.length;
    this.checkBase();
    const results: CheckResult[] = new Array<CheckResult>(urls.length);
    // url → its index, or its indexes when the batch repeats it (an array only then).
    const positions = new Map<string, number | number[]>();
    for (let index = 0; index < urls.length; index++) {
      const url = urls[index]!;
      const seen = positions.get(url);
      if (seen === undefined) positions.set(url, index);
      else if (typeof seen === 'number') positions.set(url, [seen, index]);
      else seen.push(index);
    }
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
    let waiting = 0;
    let settle!: { resolve: () => void; reject: (error: unknown) => void };
    const allAnswered = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const answerWhenDone = (at: number | number[], done: Promise<DownloadOutput>, coalesced: boolean) => {
      const count = typeof at === 'number' ? 1 : at.length;
      stats.misses += count;
      if (coalesced) stats.coalesced++;
      waiting++;
      void done.then((output) => {
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
    const flying = downloads.inFlight();
    for (const [url, at] of positions) {
      const flight = flying.size > 0 ? flying.get(url) : undefined;
      if (flight !== undefined) {
        (joined ??= new Set()).add(url);
        answerWhenDone(at, flight.done, true);
      } else if (url.startsWith('http')) lookup.push(url);
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
      } else if (classifyUrl(url, config.allowHosts).kind === 'skip') {
        answer(at, { url, status: 'skipped' }, false);
      } else missed.push(url);
    }
    // The misses are handed over together: one supervisor event per check.
    if (missed.length > 0) {
      const asked = downloads.askMany(missed);
      for (let i = 0; i < missed.length; i++) answerWhenDone(positions.get(missed[i]!)!, asked[i]!.done, asked[i]!.coalesced);
    }
    if (waiting > 0) await allAnswered;
    return results;
  }
}
