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
import type { CoverStore } from '../store/index.js';
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
  downloads: Pick<Downloads, 'ask'>;
  stats: Stats;
  /** Base of the cover URLs, ending in `/`. */
  publicUrl: () => string;
}

export function coverUrl(base: string, path: string): string {
  return base + path.split('/').map(encodeURIComponent).join('/');
}

export class CoverChecks {
  constructor(private readonly deps: CheckDeps) {}

  private ok(url: string, cover: Pick<StoredCover, 'path'>, source: CoverSource): CheckResult {
    return { url, status: 'ok', coverUrl: coverUrl(this.deps.publicUrl(), cover.path), path: cover.path, source };
  }

  private fromOutput(url: string, output: DownloadOutput): CheckResult {
    if (output.status === 'ok') return this.ok(url, output.cover, output.source === 'cache' ? 'cache' : output.source);
    return { url, status: 'error', error: { code: output.error.code, message: output.error.message } };
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

    // Any URL may have a custom cover, so the index is asked about all of them.
    const stored = await covers.findMany([...positions.keys()].filter((url) => url.startsWith('http')));
    if (stored.size > 0) covers.touch(stored.keys());
    const waits: Promise<void>[] = [];
    for (const [url, indexes] of positions) {
      const row = stored.get(url);
      let result: CheckResult | undefined;
      if (row) {
        stats.hits += indexes.length;
        result = this.ok(url, row, row.source === 'custom' ? 'custom' : 'cache');
      } else if (classifyUrl(url, config.allowHosts).kind === 'skip') {
        result = { url, status: 'skipped' };
      }
      if (result) {
        for (const index of indexes) results[index] = result;
        continue;
      }
      stats.misses += indexes.length;
      waits.push(
        downloads.ask(url).then(({ output, coalesced }) => {
          if (coalesced) stats.coalesced++;
          const answer = this.fromOutput(url, output);
          for (const index of indexes) {
            results[index] = answer;
            onWaited(index, answer);
          }
        }),
      );
    }
    await Promise.all(waits);
    return results;
  }
}
