/**
 * One client's checks, whatever carries them (a WebSocket, the 2019 TCP port).
 * It parses nothing and frames nothing: an adapter hands it the URLs of each
 * check with a tag of its own, and a `CheckSink` that frames the answers. The
 * session asks the checks, hands over each waited-for answer as soon as it is
 * known and then every answer in input order, keeps flow control, and knows when
 * everything it took is answered.
 *
 * States:
 *   reading   the adapter reads; every check it hands over starts at once
 *   held      the checks in progress hold `maxUrlsInProgress` URLs: the sink is
 *             told to `hold` (the adapter reads no further, so TCP pushes back
 *             on the sender) until they are down to half (`release`). Nothing is
 *             dropped or refused: a check already read still starts.
 *   closed    the transport went away (`close`): nothing more reaches the sink;
 *             the session's asker leaves, so the downloads only it waited for
 *             that have not started are dropped (running ones finish and are
 *             stored). With `keepOnClose` (the 2019 port, whose clients hang up
 *             by design) they all go on and are stored.
 */
import type { CheckResult, KeptCheck, WrappedChecks } from '../checks/index.js';
import type { Asker } from '../../machines/flights.js';
import type { Logger } from '../logger.js';
import type { SharedChecks } from './sharedChecks.js';

/** Where a session's answers go: the adapter's framing. */
export interface CheckSink<Tag> {
  /** A URL that had to wait (a download) has its answer; only for checks asked with `results`. */
  result(tag: Tag, index: number, result: CheckResult): void;
  /** Every URL of the check is answered, in input order. */
  done(tag: Tag, results: CheckResult[]): void;
  /** The check failed inside coverhelper (a database error); logged already. */
  failed(tag: Tag, error: unknown): void;
  /** Stop reading this client: its checks in progress hold too many URLs. */
  hold(): void;
  /** Read again. */
  release(): void;
}

/**
 * Flow control's limit: while a session's checks in progress hold this many
 * URLs, its client is read no further; reading resumes once they are down to
 * half. The service then holds at most about this many of one client's URLs in
 * flight, so its memory stays bounded (docs/BENCHMARKS.md, Memory).
 */
export const MAX_URLS_IN_PROGRESS = 10_000;

/** Sessions made so far: each session's party is its own. */
let sessions = 0;

export class CheckSession<Tag> {
  private urls = 0;
  private held = false;
  private closed = false;
  /** Checks taken and not yet answered. */
  private readonly inProgress = new Set<Promise<void>>();
  private readonly limit: number;
  /** Who this session's checks are asked for: one asker per session, whatever its checks. */
  private readonly asker: Asker;
  private readonly keepOnClose: boolean;
  private readonly answerNow: boolean;
  /** How this session's shared checks in progress end when it closes. */
  private readonly leaves = new Set<() => void>();

  /**
   * `answerNow`: a check whose every URL memory holds is answered within the
   * call (the checks' `checkNow`), so the adapter can send it before it reads
   * the next frame; the others as always.
   */
  constructor(
    private readonly checks: WrappedChecks,
    private readonly sink: CheckSink<Tag>,
    private readonly logger: Logger,
    options: { maxUrlsInProgress?: number; kind?: string; keepOnClose?: boolean; address?: string | undefined; answerNow?: boolean } = {},
  ) {
    this.answerNow = options.answerNow === true && checks.checkNow !== undefined;
    this.limit = options.maxUrlsInProgress ?? MAX_URLS_IN_PROGRESS;
    // A party of its own: the shared checks it starts take this session's turn too (SharedChecks).
    const kind = options.kind ?? 'session';
    const party = `${kind}#${++sessions}`;
    this.asker = options.address === undefined ? { kind, party } : { kind, party, address: options.address };
    this.keepOnClose = options.keepOnClose ?? false;
  }

  /** URLs of the checks in progress. */
  get urlsInProgress(): number {
    return this.urls;
  }

  /**
   * Starts a check. With `results`, each URL that waits for a download is handed
   * to `sink.result` as soon as its answer is known; `sink.done` gets them all.
   * `noAt`: no URL holds an `@` (the adapter saw none in the frame). `keep`:
   * a check answered now is handed to it first, to be answered again
   * (`CoverChecks.checkAgain`) when the same check comes back. `shared`: a
   * check not answered now joins the one in progress asked in the same words
   * (its key), or starts it for this session's party (`SharedChecks`).
   */
  check(urls: readonly string[], tag: Tag, options: { results?: boolean; noAt?: boolean; keep?: (kept: KeptCheck) => void; shared?: { checks: SharedChecks; key: string } } = {}): void {
    if (this.answerNow && !this.closed && this.tryNow(urls, tag, options.noAt === true, options.keep)) return;
    const count = urls.length;
    this.urls += count;
    if (this.urls >= this.limit && !this.held && !this.closed) {
      this.held = true;
      this.sink.hold();
    }
    const onWaited = options.results
      ? (index: number, result: CheckResult) => {
          if (!this.closed) this.sink.result(tag, index, result);
        }
      : undefined;
    const answered = (options.shared === undefined ? this.checks.check(urls, onWaited, this.asker) : this.askShared(urls, onWaited, options.shared))
      .then(
        (results) => {
          if (!this.closed) this.sink.done(tag, results);
        },
        (error: unknown) => {
          this.logger.error('check failed', { error });
          if (!this.closed) this.sink.failed(tag, error);
        },
      )
      // A sink that throws fails this check only, never the process.
      .catch((error: unknown) => void this.logger.error('check answer failed', { error }))
      .finally(() => {
        this.urls -= count;
        this.inProgress.delete(answered);
        if (this.held && this.urls <= this.limit / 2) {
          this.held = false;
          if (!this.closed) this.sink.release();
        }
      });
    this.inProgress.add(answered);
  }

  /** Answers the check now when memory holds every URL; false when it must be asked as always. */
  private tryNow(urls: readonly string[], tag: Tag, noAt: boolean, keep: ((kept: KeptCheck) => void) | undefined): boolean {
    let results: CheckResult[] | undefined;
    try {
      if (keep !== undefined && this.checks.checkNowKept !== undefined) {
        const kept = this.checks.checkNowKept(urls, { noAt });
        if (kept !== undefined) this.keepAnswer(keep, kept);
        results = kept?.results;
      } else results = this.checks.checkNow!(urls, { noAt });
    } catch (error) {
      // Asked again the usual way, which fails it as any failed check when the fault is real.
      this.logger.error('check from memory failed', { error });
      return false;
    }
    if (results === undefined) return false;
    try {
      this.sink.done(tag, results);
    } catch (error) {
      // A sink that throws fails this check only, never the process.
      this.logger.error('check answer failed', { error });
    }
    return true;
  }

  /** A check shared with the sessions that ask it in the same words: its answers come through `shared`, and it leaves when this session closes. */
  private askShared(urls: readonly string[], onWaited: ((index: number, result: CheckResult) => void) | undefined, shared: { checks: SharedChecks; key: string }): Promise<CheckResult[]> {
    return new Promise<CheckResult[]>((resolve, reject) => {
      const leave = shared.checks.ask(shared.key, urls, this.asker, {
        result: onWaited ?? (() => {}),
        done: (results) => {
          this.leaves.delete(quit);
          resolve(results);
        },
        failed: (error) => {
          this.leaves.delete(quit);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      });
      // Closed: the group goes on without this session, whose check ends with nothing to send.
      const quit = () => {
        leave();
        resolve([]);
      };
      this.leaves.add(quit);
    });
  }

  /** Hands a check answered now to `keep`; one that throws loses the keeping only, not the answer. */
  private keepAnswer(keep: (kept: KeptCheck) => void, kept: KeptCheck): void {
    try {
      keep(kept);
    } catch (error) {
      this.logger.warn('a check answered now could not be kept', { error });
    }
  }

  /** Resolves when every check taken so far has been answered. */
  async drained(): Promise<void> {
    while (this.inProgress.size > 0) await Promise.all(this.inProgress);
  }

  /** The transport went away: answers are dropped from now on, and so is the work only this session waited for (unless `keepOnClose`). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.keepOnClose) return;
    this.checks.leave(this.asker);
    for (const leave of this.leaves) leave();
    this.leaves.clear();
  }
}
