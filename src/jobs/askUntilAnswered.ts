/**
 * A job's URLs asked of the checks until each has its answer.
 *
 * A URL answered `upstream_limited` (its upstream host is cooling after a
 * refusal) is not the job's failure: its download is parked and fetched when
 * the host reopens anyway, so the job keeps it pending and asks again at its
 * `retryAt` (at least MIN_WAIT_MS after the answer). Asking again then joins
 * the download (queued again at the reopening) or finds the cover stored, so
 * nothing is downloaded twice. Waiting is bounded by `waitUntil` (the runner
 * gives half the job's `--job-ttl` from its creation): a URL whose host still
 * cools past it keeps its `upstream_limited` answer, listed in the README.
 *
 * Counts (`onProgress`): `ok` and `failed` count the answers that had to wait
 * for a download, as they come (an answer from the cover index at the first
 * ask is counted at the end, as before); `waiting` counts the URLs waiting for
 * a cooling host.
 */
import type { CheckResult } from '../checks/index.js';
import type { Clock, ClockTimer } from '../clock.js';

/** The least time between an `upstream_limited` answer and the next ask (a `retryAt` already past is not asked again at once). */
export const MIN_WAIT_MS = 1000;
/** When an `upstream_limited` answer carries no `retryAt`: ask again after this. */
const FALLBACK_WAIT_MS = 30_000;

export interface JobCounts {
  ok: number;
  failed: number;
  /** URLs waiting for a cooling host, asked again at its reopening. */
  waiting: number;
}

export interface AskOptions {
  urls: readonly string[];
  /** The checks, as a `/ws` check asks them (the runner binds its asker). */
  check: (urls: readonly string[], onWaited: (index: number, result: CheckResult) => void) => Promise<CheckResult[]>;
  clock: Clock;
  /** Epoch ms: a URL whose host reopens later than this is not waited for. */
  waitUntil: number;
  onProgress: (counts: JobCounts) => void;
}

/** When a URL answered `upstream_limited` may be asked again (epoch ms); undefined for any other answer. */
export function retryAtOf(result: CheckResult, now: number): number | undefined {
  if (result.status !== 'error' || result.error?.code !== 'upstream_limited') return undefined;
  const at = result.retryAt === undefined ? Number.NaN : Date.parse(result.retryAt);
  return Number.isFinite(at) ? at : now + FALLBACK_WAIT_MS;
}

const NOT_COUNTED = 0;
const WAITING = 1;
const OK = 2;
const FAILED = 3;
const KEYS = [undefined, 'waiting', 'ok', 'failed'] as const;

/** Asks until every URL has its answer (in input order). `stop()` ends the asking: `done` then never settles. */
export function askUntilAnswered(options: AskOptions): { done: Promise<CheckResult[]>; stop(): void } {
  const { urls, check, clock, waitUntil, onProgress } = options;
  const results: CheckResult[] = new Array<CheckResult>(urls.length);
  const state = new Uint8Array(urls.length);
  const counts: JobCounts = { ok: 0, failed: 0, waiting: 0 };
  let stopped = false;
  let timer: ClockTimer | undefined;

  const kindOf = (result: CheckResult, now: number): number => {
    const retryAt = retryAtOf(result, now);
    if (retryAt !== undefined && retryAt <= waitUntil) return WAITING;
    return result.status === 'ok' ? OK : FAILED;
  };
  /** Moves a position to its answer's count; says whether a count changed. */
  const count = (index: number, result: CheckResult, waited: boolean): boolean => {
    const next = kindOf(result, clock.now());
    const before = state[index]!;
    if (before === next) return false;
    // Answered at the first ask without a download: counted when the job is fetched, as before.
    if (before === NOT_COUNTED && !waited) return false;
    if (before !== NOT_COUNTED) counts[KEYS[before]!]--;
    counts[KEYS[next]!]++;
    state[index] = next;
    return true;
  };

  const done = new Promise<CheckResult[]>((resolve, reject) => {
    const round = (indexes: number[] | undefined) => {
      const asked = indexes === undefined ? urls : indexes.map((index) => urls[index]!);
      const at = (k: number) => (indexes === undefined ? k : indexes[k]!);
      check(asked, (k, result) => {
        if (!stopped && count(at(k), result, true)) onProgress({ ...counts });
      }).then((answers) => {
        if (stopped) return;
        const now = clock.now();
        const pending: number[] = [];
        let next = Infinity;
        let changed = false;
        for (let k = 0; k < answers.length; k++) {
          const index = at(k);
          const result = answers[k]!;
          results[index] = result;
          changed = count(index, result, false) || changed;
          if (state[index] === WAITING) {
            pending.push(index);
            next = Math.min(next, retryAtOf(result, now)!);
          }
        }
        if (pending.length === 0) {
          resolve(results);
          return;
        }
        if (changed) onProgress({ ...counts });
        // All the pending URLs at the first reopening: those of hosts that cool longer are answered again at once, and wait on.
        timer = clock.setTimeout(() => {
          timer = undefined;
          if (!stopped) round(pending);
        }, Math.max(MIN_WAIT_MS, next - now));
        timer.unref();
      }, reject);
    };
    round(undefined);
  });
  return {
    done,
    stop() {
      stopped = true;
      clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
