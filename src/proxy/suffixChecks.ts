/**
 * bilibili suffixes on `/ws` and the door (`POST /api/check`, `GET /c/…`): a
 * URL asked with a readable suffix (`…/abc.jpg@220w_280h.webp`, read by
 * `readBilibiliSuffix`) is checked as the URL without it, so every suffix of a
 * cover shares its one download and its stored cover, and its `ok` answer
 * names the variant the suffix asks for, rendered once by the render
 * supervisor: `coverUrl` is `…/covers/<variant path>` (variant files are
 * served as plain paths) and `path` that path. The answer's `url` is the URL
 * as asked.
 *
 * A variant that cannot be made (the original missing, a render failing) is
 * an `error` answer with the render's code. A URL without `@` costs one
 * `includes` per URL: a check without suffixes goes straight to the checks
 * it wraps.
 */
import type { CheckResult, HeldCheck, KeptCheck, WrappedChecks } from '../checks/index.js';
import { coverUrl } from '../checks/checkCovers.js';
import type { Clock } from '../clock.js';
import { CoverError } from '../errors.js';
import { originalOf } from '../images/variants.js';
import type { VariantSpec } from '../images/variants.js';
import type { Logger } from '../logger.js';
import type { CoverIndex } from '../store/index.js';
import type { Asker } from '../../machines/flights.js';
import { readBilibiliSuffix, suffixSpec } from './bilibiliSuffix.js';
import type { BilibiliSuffix } from './bilibiliSuffix.js';

/** The render supervisor, as suffixes use it (the service's `Renders`). */
export interface SuffixRenders {
  variant(coverPath: string, spec: VariantSpec, signal?: AbortSignal, known?: { source?: string | undefined; notOnDisk?: boolean }): Promise<{ path: string }>;
  wouldStart(coverPath: string, spec: VariantSpec): Promise<boolean> | boolean;
}

/** Starts per client address (`--proxy-rate`, shared with the proxy and `/covers`). */
export interface StartLimiter {
  take(address: string): { allowed: true } | { allowed: false; retryAfterSeconds: number };
}

export interface SuffixChecksDeps {
  /** The checks wrapped (the service's `CoverChecks`). */
  checks: WrappedChecks;
  covers: Pick<CoverIndex, 'findMany'>;
  renders: SuffixRenders;
  /** Base of the cover URLs, ending in `/` (as the wrapped checks make them). */
  publicUrl: () => string;
  logger: Logger;
  /** A render a suffix starts counts against its client address's `--proxy-rate` here. */
  limiter: StartLimiter;
  /** The one clock: `retryAt` of a refused render. */
  clock: Clock;
}

export class SuffixChecks {
  /** Per asker with suffix checks in progress (and how many): aborted when it leaves (its renders not started are dropped). */
  private readonly leaving = new Map<Asker, { controller: AbortController; checks: number }>();

  constructor(private readonly deps: SuffixChecksDeps) {}

  leave(asker: Asker): void {
    this.deps.checks.leave(asker);
    const entry = this.leaving.get(asker);
    if (entry !== undefined) {
      this.leaving.delete(asker);
      entry.controller.abort(new CoverError('cancelled', 'the asker left'));
    }
  }

  /**
   * The wrapped checks' `checkNow` for a check with no `@` in any URL (no suffix
   * to read); else undefined: ask `check`. `noAt`: the caller saw no `@` in the
   * whole frame the URLs came in (one search of the frame instead of one per URL).
   */
  checkNow(urls: readonly string[], known: { noAt?: boolean } = {}): CheckResult[] | undefined {
    return this.checkNowKept(urls, known)?.results;
  }

  /** `checkNow`, with what it answered from (the wrapped checks' `checkNowKept`), under the same rule. */
  checkNowKept(urls: readonly string[], known: { noAt?: boolean } = {}): KeptCheck | undefined {
    const { checkNowKept } = this.deps.checks;
    if (checkNowKept === undefined) return undefined;
    if (known.noAt !== true) for (let i = 0; i < urls.length; i++) if (urls[i]!.includes('@')) return undefined;
    return checkNowKept.call(this.deps.checks, urls);
  }

  /** The wrapped checks' `checkAgain` (a kept check's URLs hold no suffix: `checkNowKept` answered none that did). */
  checkAgain(kept: HeldCheck): boolean {
    return this.deps.checks.checkAgain?.(kept) ?? false;
  }

  async check(urls: readonly string[], onWaited: (index: number, result: CheckResult) => void = () => {}, asker?: Asker): Promise<CheckResult[]> {
    let suffixes: (BilibiliSuffix | undefined)[] | undefined;
    for (let i = 0; i < urls.length; i++) {
      if (!urls[i]!.includes('@')) continue;
      const suffix = readBilibiliSuffix(urls[i]!);
      if (suffix !== undefined) (suffixes ??= new Array<BilibiliSuffix | undefined>(urls.length))[i] = suffix;
    }
    if (suffixes === undefined) return this.deps.checks.check(urls, onWaited, asker);
    const found = suffixes;
    let entry: { controller: AbortController; checks: number } | undefined;
    if (asker !== undefined) {
      entry = this.leaving.get(asker) ?? { controller: new AbortController(), checks: 0 };
      entry.checks++;
      this.leaving.set(asker, entry);
    }
    const signal = entry?.controller.signal;
    try {
      return await this.checkWithSuffixes(urls, found, onWaited, asker, signal);
    } finally {
      // The entry lives while its asker has checks with suffixes in progress (an asker that never leaves holds none after).
      if (entry !== undefined && --entry.checks === 0 && this.leaving.get(asker!) === entry) this.leaving.delete(asker!);
    }
  }

  private async checkWithSuffixes(
    urls: readonly string[],
    found: (BilibiliSuffix | undefined)[],
    onWaited: (index: number, result: CheckResult) => void,
    asker: Asker | undefined,
    signal: AbortSignal | undefined,
  ): Promise<CheckResult[]> {
    const asked = urls.map((url, i) => found[i]?.base ?? url);
    // A position answered while the check runs is turned into its variant then; the others once it returns.
    const made = new Map<number, Promise<CheckResult>>();
    const variantAt = (index: number, result: CheckResult) => {
      let pending = made.get(index);
      if (pending === undefined) {
        pending = this.variantAnswer(urls[index]!, found[index]!, result, asker, signal);
        made.set(index, pending);
      }
      return pending;
    };
    const results = await this.deps.checks.check(
      asked,
      (index, result) => {
        if (found[index] === undefined) return onWaited(index, result);
        variantAt(index, result)
          .then((answer) => onWaited(index, answer))
          .catch((error: unknown) => this.deps.logger.error('a suffix answer could not be sent', { url: urls[index], error }));
      },
      asker,
    );
    return Promise.all(results.map((result, index) => (found[index] === undefined ? Promise.resolve(result) : variantAt(index, result))));
  }

  /** The answer for `url`, asked with `suffix`, from its base URL's answer. */
  private async variantAnswer(url: string, suffix: BilibiliSuffix, result: CheckResult, asker: Asker | undefined, signal: AbortSignal | undefined): Promise<CheckResult> {
    if (result.status !== 'ok' || result.path === undefined) return { ...result, url };
    try {
      const row = (await this.deps.covers.findMany([suffix.base], { touch: false })).get(suffix.base);
      if (row === undefined || row.path !== result.path) {
        return { url, status: 'error', error: { code: 'file_missing', message: 'the cover was replaced or removed while its variant was asked; ask again' } };
      }
      const spec = suffixSpec(suffix.request, originalOf(row));
      // A render this ask would start counts against the client's --proxy-rate, as through the proxy.
      const starts = await this.deps.renders.wouldStart(row.path, spec);
      if (starts) {
        const decision = this.deps.limiter.take(asker?.address ?? asker?.party ?? 'local');
        if (!decision.allowed) {
          const retryAt = new Date(this.deps.clock.now() + decision.retryAfterSeconds * 1000).toISOString();
          return { url, status: 'error', error: { code: 'too_many_requests', message: 'this address has started as many downloads and renders as --proxy-rate allows in 10 minutes; stored covers and variants made are not limited' }, retryAt };
        }
      }
      const variant = await this.deps.renders.variant(row.path, spec, signal, { source: row.originalPath ?? row.path, notOnDisk: starts });
      return { ...result, url, path: variant.path, coverUrl: coverUrl(this.deps.publicUrl(), variant.path) };
    } catch (error) {
      const failure = error instanceof CoverError ? { code: error.code, message: error.message } : { code: 'internal_error', message: 'the variant could not be made' };
      this.deps.logger.warn('suffix variant not made', { url, code: failure.code, message: failure.message });
      return { url, status: 'error', error: failure };
    }
  }
}
