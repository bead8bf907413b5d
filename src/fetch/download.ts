/**
 * Downloads an image body, and reads small JSON answers, through the guarded client.
 *
 * `downloadImage` follows redirects by hand (at most 5), checking every hop's
 * scheme and host here and its address in the client's connector; it stops a body
 * as soon as it grows past `maxBytes`; and it stops everything when `signal`
 * aborts. Failures are `CoverError`s with the codes of docs/PROTOCOL.md, except an abort,
 * which is rethrown as it came (see `isAbort`) so the caller can tell its own
 * cancellation or time limit from a failure of the origin.
 */
import { systemClock } from '../clock.js';
import { request } from 'undici';
import type { Dispatcher } from 'undici';
import { CoverError } from '../errors.js';
import type { Release } from '../upstream/hostGates.js';
import { UpstreamRefusal } from '../upstream/types.js';
import type { HttpClient } from './httpClient.js';
import { hostAllowed } from './urlRules.js';

/**
 * The per-host gate each request passes (src/upstream/hostGates.ts), for one
 * download: `acquire` waits for the host's token and slot (or rejects at once
 * while it cools), with the download's priority already bound.
 */
export interface RequestGate {
  acquire(host: string, signal: AbortSignal): Promise<Release>;
  /** Wall time (epoch ms), to read a Retry-After that is an HTTP date. */
  now(): number;
}

/** HTTP statuses that say "too much" (rate, risk control): the host cools. */
const refusalStatuses = new Set([412, 429, 503]);

/** A `Retry-After` (seconds, or an HTTP date) in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  const text = value?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/** Passes the gate when there is one; without one (tools, tests of the client alone), a release that does nothing. */
async function pass(gate: RequestGate | undefined, url: URL, signal: AbortSignal): Promise<Release> {
  return gate === undefined ? () => {} : gate.acquire(url.hostname, signal);
}

/** How a request that threw ended, for the gate. */
function outcomeOf(error: unknown, signal: AbortSignal): 'aborted' | 'error' | UpstreamRefusal {
  if (error instanceof UpstreamRefusal) return error;
  return signal.aborted ? 'aborted' : 'error';
}

export interface DownloadOptions {
  client: HttpClient;
  /** `--allow-hosts` patterns every redirect target must match. */
  allowHosts: readonly string[];
  /** Largest body accepted; a body of exactly this many bytes is fine. */
  maxBytes: number;
  /** Aborting stops the request and the body stream. */
  signal: AbortSignal;
  /** Called as chunks arrive, with the bytes so far and the announced length. Not throttled. */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** The per-host gate every hop passes. */
  gate?: RequestGate;
}

export interface DownloadResult {
  body: Buffer;
  /** The URL the body came from, after redirects. */
  finalUrl: URL;
  /** The origin's `Content-Type`, as sent (the body is not checked here). */
  contentType: string | undefined;
}

export interface GetJsonOptions {
  client: HttpClient;
  signal: AbortSignal;
  /** Largest answer accepted. Default 1 MiB. */
  maxBytes?: number;
  /** The per-host gate the request passes. */
  gate?: RequestGate;
  /** Reads a refusal in a 2xx answer (a bilibili risk-control code): what it says, or undefined. */
  refusal?: (answer: unknown) => string | undefined;
  /** Extra request headers (the API identity: `user-agent` replaces the client's, `cookie`). */
  headers?: Record<string, string>;
}

type Body = Dispatcher.ResponseData['body'];
type Headers = Dispatcher.ResponseData['headers'];

const redirectStatuses = new Set([301, 302, 303, 307, 308]);
const maxRedirects = 5;
/** How much of an unwanted body (redirect, error page) is read to keep the connection. */
const drainLimit = 64 * 1024;
const imageAccept = 'image/avif,image/webp,image/*,*/*;q=0.8';
const defaultJsonMaxBytes = 1024 * 1024;

/**
 * Whether `error` is the end of a fetch cancelled through `signal`: the signal is
 * aborted and the error is its reason, an abort error, or caused by one.
 */
export function isAbort(error: unknown, signal: AbortSignal): boolean {
  if (!signal.aborted) return false;
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== null && current !== undefined; depth++) {
    if (current === signal.reason) return true;
    if (typeof current !== 'object') return false;
    const { name, code } = current as { name?: unknown; code?: unknown };
    if (name === 'AbortError' || code === 'ABORT_ERR' || code === 'UND_ERR_ABORTED' || code === 'UND_ERR_ABORT') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** A `CoverError` anywhere in the cause chain (or inside an AggregateError). */
function findCoverError(error: unknown, depth = 0): CoverError | undefined {
  if (depth > 8 || error === null || typeof error !== 'object') return undefined;
  if (error instanceof CoverError) return error;
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const found = findCoverError(inner, depth + 1);
      if (found) return found;
    }
  }
  return findCoverError((error as { cause?: unknown }).cause, depth + 1);
}

/** A one-line description of a network failure, naming its code. */
function describe(error: unknown): string {
  if (error instanceof AggregateError && error.message === '') {
    const inner = error.errors.map(describe).filter((m) => m !== '');
    if (inner.length > 0) return [...new Set(inner)].join('; ');
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const message = error.message;
    if (typeof code === 'string' && code !== '' && !message.includes(code)) return message === '' ? code : `${message} (${code})`;
    return message || error.name;
  }
  return String(error);
}

/**
 * What a fetch failure becomes: a `CoverError` found in the cause chain (such as
 * the connector's `not_allowed`) as it is, anything else `network`.
 */
export function toFetchError(error: unknown): CoverError {
  return findCoverError(error) ?? new CoverError('network', describe(error) || 'network failure', { cause: error });
}

/** Rethrows an abort as it came; turns everything else into a `CoverError`. */
function failure(error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted) return isAbort(error, signal) ? error : (signal.reason as unknown);
  if (error instanceof UpstreamRefusal) return error;
  return toFetchError(error);
}

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  if (Array.isArray(value)) return value[0];
  return value;
}

function contentLength(headers: Headers): number | undefined {
  const raw = header(headers, 'content-length')?.trim();
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Destroys a body we no longer want. undici's body then emits a `RequestAbortedError`
 * (asynchronously when nothing has read it yet), which nobody is left to hear.
 */
function abandon(body: Body): void {
  body.on('error', () => {});
  body.destroy();
}

/** Reads a little of an unwanted body so the connection can be reused; errors do not matter. */
async function discard(body: Body): Promise<void> {
  try {
    await body.dump({ limit: drainLimit });
  } catch {
    abandon(body);
  }
}

/**
 * Reads a whole body, destroying it as soon as it grows past `limit`. Listens to
 * the stream's `data` events (as undici's own `body.arrayBuffer()` does) rather
 * than iterating it: an async iterator costs a promise per chunk on the main
 * thread (docs/BENCHMARKS.md, Cold, side by side).
 */
function readBody(body: Body, limit: number, tooLarge: () => CoverError, onBytes?: (bytes: number) => void): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        finish();
        abandon(body);
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
      onBytes?.(bytes);
    };
    const onEnd = () => {
      finish();
      resolve(Buffer.concat(chunks, bytes));
    };
    const onError = (error: Error) => {
      finish();
      reject(error);
    };
    const onClose = () => {
      // Destroyed without an error (nothing else ends it early): not a whole body.
      finish();
      reject(new Error('the response body was closed before it ended'));
    };
    const finish = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
}

/**
 * Downloads `url` (README, Administration: which URLs are fetched): no Referer, our User-Agent, at most 5 redirects each
 * checked against the allow list (and, in the connector, the private-network rule),
 * at most `maxBytes`. Throws `CoverError` (`invalid_url`, `not_allowed`,
 * `http_status`, `too_large`, `network`), or the abort as it came.
 */
export async function downloadImage(url: URL, options: DownloadOptions): Promise<DownloadResult> {
  const { client, allowHosts, maxBytes, signal, onProgress, gate } = options;
  const tooLarge = () => new CoverError('too_large', `image larger than ${maxBytes} bytes`);
  let current = url;
  try {
    for (let redirects = 0; ; ) {
      // Each hop passes its own host's gate, and gives its slot back when its body is done.
      const release = await pass(gate, current, signal);
      try {
        const response = await request(current, {
          method: 'GET',
          dispatcher: client.dispatcher,
          signal,
          headers: { 'user-agent': client.userAgent, accept: imageAccept },
        });
        const { statusCode, headers, body } = response;

        const location = redirectStatuses.has(statusCode) ? header(headers, 'location') : undefined;
        if (location !== undefined) {
          await discard(body);
          release('ok');
          if (redirects >= maxRedirects) {
            throw new CoverError('http_status', `too many redirects (more than ${maxRedirects})`, { detail: statusCode });
          }
          current = checkRedirect(location, current, allowHosts);
          redirects++;
          continue;
        }

        if (statusCode < 200 || statusCode > 299) {
          await discard(body);
          if (refusalStatuses.has(statusCode)) {
            throw new UpstreamRefusal(current.hostname, `HTTP ${statusCode}`, parseRetryAfter(header(headers, 'retry-after'), gate?.now() ?? systemClock.now()));
          }
          throw new CoverError('http_status', `HTTP ${statusCode}`, { detail: statusCode });
        }

        const total = contentLength(headers);
        if (total !== undefined && total > maxBytes) {
          abandon(body);
          throw tooLarge();
        }
        const bytes = await readBody(body, maxBytes, tooLarge, onProgress && ((n) => onProgress(n, total)));
        release('ok');
        return { body: bytes, finalUrl: current, contentType: header(headers, 'content-type') };
      } catch (error) {
        release(outcomeOf(error, signal));
        throw error;
      }
    }
  } catch (error) {
    throw failure(error, signal);
  }
}

/** The next hop of a redirect, if it may be followed. */
function checkRedirect(location: string, from: URL, allowHosts: readonly string[]): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new CoverError('invalid_url', `redirect to an invalid URL: ${location}`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new CoverError('invalid_url', `redirect to a URL that is not http(s): ${next.protocol}`);
  }
  if (next.username !== '' || next.password !== '') {
    throw new CoverError('invalid_url', 'redirect to a URL carrying user:password');
  }
  if (!hostAllowed(next.hostname, allowHosts)) {
    throw new CoverError('not_allowed', `redirect to a host not in --allow-hosts: ${next.hostname}`);
  }
  return next;
}

/**
 * GETs a JSON document (the bilibili API). Non-2xx is `http_status`; a body that is
 * not JSON, or larger than `maxBytes`, is `resolve_failed`; redirects are not followed.
 */
export async function getJson(url: URL, options: GetJsonOptions): Promise<unknown> {
  const { client, signal, gate } = options;
  const maxBytes = options.maxBytes ?? defaultJsonMaxBytes;
  try {
    const release = await pass(gate, url, signal);
    try {
      const { statusCode, headers, body } = await request(url, {
        method: 'GET',
        dispatcher: client.dispatcher,
        signal,
        headers: { 'user-agent': client.userAgent, accept: 'application/json', ...options.headers },
      });
      if (statusCode < 200 || statusCode > 299) {
        await discard(body);
        if (refusalStatuses.has(statusCode)) {
          throw new UpstreamRefusal(url.hostname, `HTTP ${statusCode}`, parseRetryAfter(header(headers, 'retry-after'), gate?.now() ?? systemClock.now()));
        }
        throw new CoverError('http_status', `HTTP ${statusCode}`, { detail: statusCode });
      }
      const bytes = await readBody(body, maxBytes, () => new CoverError('resolve_failed', `bilibili API answer larger than ${maxBytes} bytes`));
      let value: unknown;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch (error) {
        throw new CoverError('resolve_failed', 'bilibili API answered with something other than JSON', { cause: error });
      }
      // A refusal in a 2xx answer (risk control) is read before the slot is given back, so a probe is judged by it.
      const why = options.refusal?.(value);
      if (why !== undefined) throw new UpstreamRefusal(url.hostname, why);
      release('ok');
      return value;
    } catch (error) {
      release(outcomeOf(error, signal));
      throw error;
    }
  } catch (error) {
    throw failure(error, signal);
  }
}
