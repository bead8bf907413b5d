/**
 * The HTTP door (docs/PROTOCOL.md, The HTTP door), for blogs that cannot hold a WebSocket:
 *
 *   GET /c/<signature>/<base64url of the URL>   signed by `--url-key` (off without it: 404).
 *       The URL is checked like any (joining a download in flight, waiting for it
 *       up to `--time-limit`): 302 to its cover (`Cache-Control: public,
 *       max-age=3600`); 302 to the URL itself when it is not fetched (`skipped`);
 *       502 `{"code","message"}` with `no-store` when it failed (`Retry-After`
 *       while the failure is remembered). A wrong signature is 403.
 *   POST /api/check   `{"urls":[…]}` (the client token when one is set): 200 with
 *       the body of a `done` frame once every URL is answered; bad input 400 with
 *       the codes of `/ws`. The body is bounded in size, time and in total with
 *       the other bodies being read (requestBody.ts).
 *
 * Requests in progress are tracked so that a shutdown answers them before the
 * server closes its connections. Each request is its own asker: when it gives
 * up (the wait ran out) or its connection closes first, the downloads only it
 * waited for that have not started are dropped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CheckResult, CoverChecks } from '../checks/index.js';
import type { Asker } from '../../machines/flights.js';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import { doneFrame, MAX_FRAME_BYTES, MAX_URL_LENGTH, parseUrlList } from '@coverhelper/client/protocol';
import type { MessageId } from '@coverhelper/client/protocol';
import { verifyCoverTarget } from '@coverhelper/client/sign';
import { readJsonObject, retryAfterHeader, sendError, sendJson, sendJsonText } from '../http/index.js';
import type { ResultError } from '../wire/door.js';

export interface DoorDeps {
  checks: Pick<CoverChecks, 'check' | 'leave'>;
  logger: Logger;
  /** `--url-key`: the door is off without one. */
  urlKey: string | undefined;
  /** `--time-limit` in ms: the longest a door request waits for its answer. */
  waitMs: number;
  maxBatch: number;
  /** The one clock (default the system's): the wait, the body's deadline, `retry-after`. */
  clock?: Clock;
}


export class Door {
  private readonly inProgress = new Set<Promise<unknown>>();

  private readonly clock: Clock;

  constructor(private readonly deps: DoorDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /** Runs a request's work and keeps it until it ends. */
  private track<T>(work: Promise<T>): Promise<T> {
    const tracked = work.finally(() => this.inProgress.delete(tracked));
    this.inProgress.add(tracked);
    return tracked;
  }

  /** Resolves when every request in progress has been answered. */
  async drained(): Promise<void> {
    while (this.inProgress.size > 0) await Promise.allSettled(this.inProgress);
  }

  /** `GET /c/<signature>/<target>`: `target` is the path after `/c/`. */
  async cover(req: IncomingMessage, res: ServerResponse, target: string): Promise<void> {
    const { urlKey } = this.deps;
    if (urlKey === undefined) return sendError(res, 404, 'not_found', 'signed cover URLs are off: the service has no --url-key');
    const [signature, encoded, ...rest] = target.split('/');
    const url = rest.length === 0 && signature && encoded ? verifyCoverTarget(signature, encoded, urlKey) : undefined;
    if (url === undefined) return sendError(res, 403, 'forbidden', 'the signature does not match this URL (sign it with --url-key)');
    if (url.length > MAX_URL_LENGTH) return sendError(res, 400, 'bad_request', `the URL is longer than ${MAX_URL_LENGTH} characters`);
    const result = await this.answerWithin(url, this.askerFor(req, res));
    if (result === undefined) {
      return sendError(res, 502, 'tle', `no answer within --time-limit (${this.deps.waitMs / 1000} s); a download that started goes on: try again`, { 'retry-after': '5' });
    }
    if (result.status === 'ok' || result.status === 'skipped') {
      const location = result.status === 'ok' ? result.coverUrl! : result.url;
      res.writeHead(302, { location, 'cache-control': 'public, max-age=3600', 'content-length': '0' }).end();
      return;
    }
    const error: ResultError = result.error ?? { code: 'network', message: 'failed' };
    // Retry-After while the failure is remembered, or while the URL's upstream host cools.
    const headers = result.remembered || error.code === 'upstream_limited' ? retryAfterHeader(result.retryAt, this.clock.now()) : {};
    // The error as results carry it (`status` for http_status).
    return sendJson(res, 502, error, headers);
  }

  /**
   * A new asker for this request, which leaves when the connection closes
   * (answered or not). Requests from one address share their turns at the
   * workers (one client, however many requests it sends).
   */
  askerFor(req: IncomingMessage, res: ServerResponse, kind = 'door', party = `addr:${req.socket.remoteAddress ?? '?'}`): Asker {
    const asker: Asker = { kind, party, address: req.socket.remoteAddress ?? '?' };
    // A client already gone (while the index was asked) leaves at once: nothing is started for it.
    if (res.closed) this.deps.checks.leave(asker);
    else res.once('close', () => this.deps.checks.leave(asker));
    return asker;
  }

  /** The URL's answer, or undefined when it is not known within the wait (the asker then leaves: a queued download nobody else waits for is dropped). */
  answerWithin(url: string, asker: Asker): Promise<CheckResult | undefined> {
    return this.track(this.waitFor(url, asker));
  }

  private async waitFor(url: string, asker: Asker): Promise<CheckResult | undefined> {
    let timer: ClockTimer | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = this.clock.setTimeout(() => resolve(undefined), this.deps.waitMs)));
    try {
      const result = await Promise.race([this.deps.checks.check([url], undefined, asker).then((results) => results[0]), timeout]);
      if (result === undefined) this.deps.checks.leave(asker);
      return result;
    } finally {
      this.clock.clearTimeout(timer);
    }
  }

  /** `POST /api/check` (already authorised). */
  async serveApiCheck(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const value = await readJsonObject(req, res, MAX_FRAME_BYTES, '{"urls":[…]}', { clock: this.clock });
    if (value === undefined) return;
    const list = parseUrlList(value.urls, this.deps.maxBatch);
    if (!list.ok) return sendError(res, 400, list.code, list.message);
    const id: MessageId | null = typeof value.id === 'string' || typeof value.id === 'number' ? value.id : null;
    const results = await this.track(this.deps.checks.check(list.urls, undefined, this.askerFor(req, res)));
    sendJsonText(res, 200, doneFrame(id, results));
  }
}
