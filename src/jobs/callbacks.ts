/**
 * Job callbacks (docs/JOBS.md): the job POSTed as JSON when fetching starts
 * (`"event":"started"`) and when it ends (`"event":"finished"`), signed:
 *
 *   X-Coverhelper-Timestamp: <unix seconds>
 *   X-Coverhelper-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>", keyed by --callback-secret>
 *
 * A try that does not answer 2xx (or does not answer) is retried with
 * exponential backoff and jitter; each try's outcome is written on the job.
 * A try has one whole deadline (`timeoutMs`, 10 s) for the connection, the
 * headers and the body together: a receiver that answers and then trickles its
 * body (which undici's `bodyTimeout`, a limit on the gap between chunks, lets
 * run forever) is cut at the deadline, and that try counts as failed.
 *
 * Not an SSRF tool: a callback URL is checked when the job is created (http or
 * https, no credentials, and not on a private address unless
 * `--allow-private-network` is on or its host is in `--callback-hosts`: literal
 * addresses and `localhost` at once, names by looking them up), and checked
 * again when it is called, by the same guarded undici connector the downloads
 * use (it looks the name up itself, checks every address and connects to a
 * checked one, so a DNS answer that changed meanwhile cannot reach a private
 * address). Redirects are not followed: a 3xx is a failed try.
 */
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Agent, request } from 'undici';
import { backoffDelay } from '../../machines/index.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { createGuardedConnector, hostAllowed, isPrivateAddress, isPrivateHost } from '../fetch/index.js';
import type { Logger } from '../logger.js';
import type { CallbackBody, CallbackEvent, CallbackJob, CallbackOutcome } from '../wire/jobs.js';

/** Which callback, and a callback's outcome as the job shows it: declared by the wire contract. */
export type { CallbackEvent, CallbackOutcome };

export interface JobCallbackOptions {
  secret: string;
  allowPrivateNetwork: boolean;
  /** `--callback-hosts`: hosts callbacks may reach on private addresses. */
  callbackHosts: readonly string[];
  userAgent: string;
  logger: Logger;
  /** The one clock (default the system's): signed timestamps, each try's deadline, the backoff and its jitter. */
  clock?: Clock;
  /** Tries in all (default 5). */
  tries?: number;
  /** Backoff base (default 1000 ms: about 1, 2, 4, 8 s between tries). */
  baseDelayMs?: number;
  /** The whole deadline of one try: connection, headers and body (default 10 s). */
  timeoutMs?: number;
}

const MAX_CALLBACK_URL = 2048;

/** The signature header's value for a body sent at `timestamp` (unix seconds). */
export function signCallback(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class JobCallbacks {
  /** Every connection checked: no private address (unless --allow-private-network). */
  private readonly guarded: Agent;
  /** For hosts in --callback-hosts only: may reach private addresses. */
  private readonly trusted: Agent;
  private readonly controller = new AbortController();
  private readonly inProgress = new Set<Promise<void>>();

  constructor(private readonly options: JobCallbackOptions) {
    const timeout = options.timeoutMs ?? 10_000;
    this.guarded = new Agent({ connect: createGuardedConnector({ allowPrivateNetwork: options.allowPrivateNetwork, connectTimeoutMs: timeout }) });
    this.trusted = new Agent({ connect: { timeout } });
  }

  private hostTrusted(hostname: string): boolean {
    return this.options.allowPrivateNetwork || hostAllowed(hostname, this.options.callbackHosts);
  }

  /** Why `value` cannot be a callback URL, or undefined when it can. */
  async refuse(value: unknown): Promise<string | undefined> {
    if (typeof value !== 'string') return '"callback" is a URL string';
    if (value.length > MAX_CALLBACK_URL) return `"callback" is longer than ${MAX_CALLBACK_URL} characters`;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return '"callback" is not a URL';
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return '"callback" must be an http or https URL';
    if (url.username !== '' || url.password !== '') return '"callback" must not carry credentials';
    if (this.hostTrusted(url.hostname)) return undefined;
    const private_ = `"callback" is on a private address (${url.hostname}): allowed only for hosts in --callback-hosts`;
    if (isPrivateHost(url.hostname)) return private_;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) return undefined;
    try {
      const addresses = await lookup(host, { all: true, verbatim: true });
      if (addresses.length === 0) return `"callback" host ${host} has no address`;
      if (addresses.some((a) => isPrivateAddress(a.address))) return private_;
    } catch {
      return `"callback" host ${host} could not be looked up`;
    }
    return undefined;
  }

  /**
   * Sends `body` (the job with its event) to `url`, retrying with backoff;
   * `record` is called with the outcome after every try.
   */
  send(url: string, event: CallbackEvent, job: CallbackJob, record: (outcome: CallbackOutcome) => Promise<unknown>): Promise<void> {
    const work = this.run(url, event, job, record).catch((error: unknown) => {
      this.options.logger.error('job callback failed', { error });
    });
    this.inProgress.add(work);
    void work.finally(() => this.inProgress.delete(work));
    return work;
  }

  private async run(url: string, event: CallbackEvent, job: CallbackJob, record: (outcome: CallbackOutcome) => Promise<unknown>): Promise<void> {
    const { logger } = this.options;
    const tries = this.options.tries ?? 5;
    const body = JSON.stringify({ event, ...job } satisfies CallbackBody);
    const dispatcher = this.hostTrusted(new URL(url).hostname) ? this.trusted : this.guarded;
    const signal = this.controller.signal;
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const clock = this.options.clock ?? systemClock;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (signal.aborted) return;
      const timestamp = Math.floor(clock.now() / 1000);
      let status: number | undefined;
      let error: string | undefined;
      // The try's whole deadline, and the service stopping: either ends it.
      const tryController = new AbortController();
      const trySignal = tryController.signal;
      let late = false;
      const deadline = clock.setTimeout(() => {
        late = true;
        tryController.abort();
      }, timeoutMs);
      const onStop = () => tryController.abort();
      signal.addEventListener('abort', onStop, { once: true });
      try {
        const response = await request(url, {
          method: 'POST',
          dispatcher,
          body,
          headers: {
            'content-type': 'application/json',
            'user-agent': this.options.userAgent,
            'x-coverhelper-timestamp': String(timestamp),
            'x-coverhelper-signature': signCallback(this.options.secret, timestamp, body),
          },
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          signal: trySignal,
        });
        status = response.statusCode;
        // At most 128 KiB of the body is read (more is not waited for), and only until the deadline.
        await response.body.dump({ limit: 128 * 1024, signal: trySignal });
        if (status < 200 || status > 299) error = `the receiver answered ${status}`;
      } catch (caught) {
        if (signal.aborted) return;
        error = late ? `no whole answer (headers and body) within ${timeoutMs} ms` : (caught as Error).message || String(caught);
      } finally {
        clock.clearTimeout(deadline);
        signal.removeEventListener('abort', onStop);
      }
      const ok = error === undefined;
      const more = !ok && attempt < tries;
      // A try that cannot be recorded (the database is away) is logged; the tries go on.
      await record({ ok, attempts: attempt, ...(status !== undefined ? { status } : {}), ...(error !== undefined ? { error } : {}), ...(more ? { pending: true as const } : {}), at: new Date(clock.now()).toISOString() }).catch(
        (recordError: unknown) => logger.warn('could not record a job callback try', { id: job.id, event, attempt, error: (recordError as Error).message }),
      );
      if (ok) {
        logger.debug('job callback sent', { id: job.id, event, attempts: attempt });
        return;
      }
      logger.warn('job callback try failed', { id: job.id, event, attempt, status, error, retry: more });
      if (!more) return;
      const delay = backoffDelay(attempt, clock.random(), this.options.baseDelayMs ?? 1000);
      await clock.sleep(delay, signal).catch(() => undefined);
    }
  }

  /** Stops retrying, waits for the tries in progress, closes the connections. */
  async close(): Promise<void> {
    this.controller.abort();
    await Promise.allSettled([...this.inProgress]);
    await Promise.all([this.guarded.close(), this.trusted.close()]);
  }
}
