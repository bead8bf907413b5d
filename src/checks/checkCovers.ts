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
  downloads: Pick<Downloads, 'ask' | 'join'>;
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

  private cached(key: object, make: () => CheckResult): CheckResult {
    const base = this.deps.publicUrl();
    if (base !== this.answersBase) {
      this.answers = new WeakMap();
      this.answersBase = base;
    }
    let answer = this.answers.get(key);
    if (answer === undefined) {
      answer = make();
      this.answers.set(key, answer);
    }
    return answer;
  }

  private ok(url: string, cover: Pick<StoredCover, 'path'>, source: CoverSource): CheckResult {
    return { url, status: 'ok', coverUrl: coverUrl(this.deps.publicUrl(), cover.path), path: cover.path, source };
  }

  /** A stored row's answer (the row objects of the store's memory are stable, so this is made once per row). */
  private fromRow(row: CoverRow): CheckResult {
    return this.cached(row, () => this.ok(row.url, row, row.source === 'custom' ? 'custom' : 'cache'));
  }

  /** A download's answer, made once however many askers share the download. */
  private fromOutput(output: DownloadOutput): CheckResult {
    return this.cached(output, () =>
      output.status === 'ok'
        ? this.ok(output.url, output.cover, output.source === 'cache' ? 'cache' : output.source)
        : { url: output.url, status: 'error', error: { code: output.error.code, message: output.error.message } },
    );
  }

  async check(urls: readonly string[], onWaited: (index: number, result: CheckResult) => void = () => {}): Promise<CheckResult[]> {
    const { stats, covers, downloads, config } = this.deps;
    stats.checks++;
    stats.urls += urls.length;
    const results: CheckResult[] = new Array<CheckResult>(urls.length);
    const positions = new Map<string, number[]>();
    urls.forEach((url, index) => {
      const list = positions.get(url);
      if (list) list.push(index);
      else positions.set(url, [index]);
    });

    const waits: Promise<void>[] = [];
    const answerWhenDone = (indexes: number[], done: Promise<{ output: DownloadOutput; coalesced: boolean }>) => {
      stats.misses += indexes.length;
      waits.push(
        done.then(({ output, coalesced }) => {
          if (coalesced) stats.coalesced++;
          const answer = this.fromOutput(output);
          for (const index of indexes) {
            results[index] = answer;
            onWaited(index, answer);
          }
        }),
      );
    };

    // A URL being downloaded right now is not stored yet: join its download without
    // asking the index (a herd of checks for the same URLs then costs no lookups).
    const lookup: string[] = [];
    let joined: Set<string> | undefined;
    for (const [url, indexes] of positions) {
      const inFlight = downloads.join(url);
      if (inFlight !== undefined) {
        (joined ??= new Set()).add(url);
        answerWhenDone(indexes, inFlight.then((output) => ({ output, coalesced: true })));
      } else if (url.startsWith('http')) lookup.push(url);
    }
    // Any other URL may have a custom cover, so the index is asked about all of them.
    const stored = await covers.findMany(lookup);
    if (stored.size > 0) covers.touch(stored.keys());
    for (const [url, indexes] of positions) {
      if (joined?.has(url)) continue;
      const row = stored.get(url);
      let result: CheckResult | undefined;
      if (row) {
        stats.hits += indexes.length;
        result = this.fromRow(row);
      } else if (classifyUrl(url, config.allowHosts).kind === 'skip') {
        result = { url, status: 'skipped' };
      }
      if (result) {
        for (const index of indexes) results[index] = result;
        continue;
      }
      answerWhenDone(indexes, downloads.ask(url));
    }
    await Promise.all(waits);
    return results;
  }
}
