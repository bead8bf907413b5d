/**
 * `CoverClient`: a blog server's connection to coverhelper's `/ws`.
 *
 * One WebSocket, opened on the first check (lazily) and again by itself after a
 * drop (backoff with jitter) while checks wait. Every URL asked is an entry in
 * one table, whatever call asked it:
 *
 *   waiting   asked, not yet admitted (more than `maxInFlight` URLs are outstanding)
 *   queued    admitted, to leave in the next frame (checks asked in one turn of the
 *             event loop leave together, split at `maxBatch`, `frameUrls` and the
 *             frame size)
 *   sent      in a `check` frame on the current connection, answer not yet come
 *   deferred  answered `shutting_down`: asked again on the next connection
 *
 * A URL already in the table is not asked again: the new call waits on the same
 * entry. When a connection drops, its sent entries go back to `queued` and leave
 * again on the next connection; an entry is answered once, and each call settles
 * once (answered, timed out, aborted, or the client closed).
 *
 * Frames are built and parsed with the protocol module the service uses
 * (`./protocol.ts`); this file holds no frame shapes of its own.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { checkFrame, MAX_FRAME_BYTES, MAX_URL_LENGTH, parseServerFrame } from './protocol.js';
import type { CheckResult, HelloFrame, ProtocolErrorCode } from './protocol.js';

/**
 * Why a call failed. The service's own codes (`bad_request`, `too_many_urls`,
 * `internal_error`, `unauthorized`), and the client's: `timeout` (the call's
 * `timeoutMs` passed), `aborted` (its `AbortSignal` fired), `closed` (`close()`
 * was called). A URL that fails to download is not an error of the call: its
 * result has `status: 'error'` and `error.code` (`http_status`, `tle`, …).
 */
export type CoverClientErrorCode = ProtocolErrorCode | 'unauthorized' | 'timeout' | 'aborted' | 'closed';

export class CoverClientError extends Error {
  readonly code: CoverClientErrorCode;

  constructor(code: CoverClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CoverClientError';
    this.code = code;
  }
}

export interface CoverClientOptions {
  /** The service's client token (`--client-token`), sent as `Authorization: Bearer`. */
  token?: string;
  /** Most URLs in one frame. Defaults to the service's (its `hello` frame); may only lower it. */
  maxBatch?: number;
  /**
   * For bulk callers: most URLs the client puts in one frame when merging, below
   * `maxBatch`, and URLs answered ok lately (likely cached) sent in frames apart
   * from new ones. Unset (the default), the checks of one turn leave as one frame,
   * split only at `maxBatch`. Set (256 is a good value), answers come back frame by
   * frame and the service works on the next frames while the client reads the first
   * (one frame of thousands of URLs leaves both idle in turn: measured 2–4× slower
   * in `npm run bench:client`), and a page of known covers does not wait for
   * another page's download.
   */
  frameUrls?: number;
  /** Most URLs outstanding at once; further URLs wait in the client. Default 10,000. */
  maxInFlight?: number;
  /** Default time a `check()` may take, in ms, before it fails with `timeout`; 0 = no limit. Default 60,000. */
  timeoutMs?: number;
  /** First delay before reconnecting, in ms (doubled at each failed attempt, with jitter). Default 100. */
  reconnectMinMs?: number;
  /** Longest delay between attempts, in ms. Default 10,000. */
  reconnectMaxMs?: number;
  /** Time to open the socket and receive `hello`, in ms. Default 10,000. */
  connectTimeoutMs?: number;
  /**
   * A connection on which nothing was heard (not even the service's ping, sent to
   * an idle connection every 30 s) for this long is taken as dead and replaced.
   * Default 75,000.
   */
  heartbeatMs?: number;
  /** The jitter's random source, in [0, 1). Default `Math.random`. */
  random?: () => number;
}

export interface CheckOptions {
  /** Aborts this call only (it fails with `aborted`); other calls are not disturbed. */
  signal?: AbortSignal;
  /** This call's time limit in ms (0 = none); default the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** `connect` event: the service's `hello`. */
export interface ConnectEvent {
  version: string;
  /** The service's `maxBatch`. */
  maxBatch: number;
  maxFrameBytes: number;
  /** How many connections this client had opened before (0 for the first). */
  reconnects: number;
}

/** `disconnect` event: a connection closed, or an attempt failed. */
export interface DisconnectEvent {
  /** The WebSocket close code (1006 when the connection was lost or never opened). */
  code: number;
  reason: string;
  /** What went wrong, when something did. */
  error?: Error;
  /** Whether it had been connected (had received `hello`). */
  wasConnected: boolean;
  /** Whether the client will try again by itself (checks are waiting). */
  willReconnect: boolean;
}

export interface CoverClientEvents {
  connect: [ConnectEvent];
  disconnect: [DisconnectEvent];
}

/** A snapshot of the client's counters. */
export interface CoverClientStats {
  connected: boolean;
  /** Distinct URLs admitted and not answered yet (≤ `maxInFlight`). */
  outstanding: number;
  /** Distinct URLs asked but held back by `maxInFlight`. */
  waiting: number;
  /** `check` frames sent since the client was made. */
  framesSent: number;
  /** URLs sent (a URL sent again after a reconnect counts again). */
  urlsSent: number;
  /** Connections that received `hello`. */
  connections: number;
}

interface Call {
  readonly urls: readonly string[];
  readonly results: CheckResult[];
  remaining: number;
  settled: boolean;
  resolve(results: CheckResult[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type EntryState = 'waiting' | 'queued' | 'sent' | 'deferred' | 'answered';

interface Entry {
  readonly url: string;
  state: EntryState;
  /** The frame that carries it, while `sent`. */
  frame: string | undefined;
  /** The first (call, position) waiting for this URL (most URLs have one)… */
  call: Call | undefined;
  index: number;
  /** …and the others. */
  more: { call: Call; index: number }[] | undefined;
}

/** The calls waiting on `entry`, each with its position. */
function forEachWaiter(entry: Entry, fn: (call: Call, index: number) => void): void {
  if (entry.call) fn(entry.call, entry.index);
  if (entry.more) for (const { call, index } of entry.more) fn(call, index);
}

function hasWaiters(entry: Entry): boolean {
  if (entry.call && !entry.call.settled) return true;
  return entry.more !== undefined && entry.more.some(({ call }) => !call.settled);
}

const DEFAULTS = {
  maxInFlight: 10_000,
  timeoutMs: 60_000,
  reconnectMinMs: 100,
  reconnectMaxMs: 10_000,
  connectTimeoutMs: 10_000,
  heartbeatMs: 75_000,
};

/** The bytes of `{"type":"check","id":"…","urls":[]}` with a long id, rounded up. */
const FRAME_OVERHEAD = 64;
/** URLs answered ok lately, kept to send them apart from unknown ones (see `flush`). */
const RECENT_OK_LIMIT = 20_000;

const positive = (name: string, value: number | undefined, fallback: number, allowZero = false): number => {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new RangeError(`CoverClient: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, not ${value}`);
  return value;
};

export class CoverClient extends EventEmitter<CoverClientEvents> {
  readonly url: string;
  private readonly options: Required<Omit<CoverClientOptions, 'token' | 'maxBatch' | 'frameUrls'>> & Pick<CoverClientOptions, 'token' | 'maxBatch' | 'frameUrls'>;
  private readonly entries = new Map<string, Entry>();
  private readonly waiting = new Set<Entry>();
  /** Entries to send, in order; one whose state is no longer `queued` (dropped) is skipped. */
  private queued: Entry[] = [];
  private readonly deferred = new Set<Entry>();
  private readonly frames = new Map<string, Entry[]>();
  private readonly recentOk = new Set<string>();
  private outstanding = 0;
  private ws: WebSocket | undefined;
  private hello: HelloFrame | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  private lastError: Error | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private flushing = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private frameSeq = 0;
  private framesSent = 0;
  private urlsSent = 0;
  private connections = 0;

  /**
   * @param url the service's WebSocket address, such as `ws://127.0.0.1:8080/ws`.
   *   Nothing is opened until the first check.
   */
  constructor(url: string, options: CoverClientOptions = {}) {
    super();
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`CoverClient: ${JSON.stringify(url)} is not a URL (give the service's ws://HOST:PORT/ws)`);
    }
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new TypeError(`CoverClient: ${JSON.stringify(url)} is not a ws:// or wss:// URL`);
    this.url = url;
    if (options.maxBatch !== undefined && !(Number.isInteger(options.maxBatch) && options.maxBatch > 0)) {
      throw new RangeError(`CoverClient: maxBatch must be a positive integer, not ${options.maxBatch}`);
    }
    if (options.frameUrls !== undefined && !(Number.isInteger(options.frameUrls) && options.frameUrls > 0)) {
      throw new RangeError(`CoverClient: frameUrls must be a positive integer, not ${options.frameUrls}`);
    }
    if (options.maxInFlight !== undefined && !(Number.isInteger(options.maxInFlight) && options.maxInFlight > 0)) {
      throw new RangeError(`CoverClient: maxInFlight must be a positive integer, not ${options.maxInFlight}`);
    }
    if (options.token !== undefined && typeof options.token !== 'string') throw new TypeError('CoverClient: token must be a string');
    this.options = {
      token: options.token,
      maxBatch: options.maxBatch,
      frameUrls: options.frameUrls,
      maxInFlight: options.maxInFlight ?? DEFAULTS.maxInFlight,
      timeoutMs: positive('timeoutMs', options.timeoutMs, DEFAULTS.timeoutMs, true),
      reconnectMinMs: positive('reconnectMinMs', options.reconnectMinMs, DEFAULTS.reconnectMinMs),
      reconnectMaxMs: positive('reconnectMaxMs', options.reconnectMaxMs, DEFAULTS.reconnectMaxMs),
      connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, DEFAULTS.connectTimeoutMs),
      heartbeatMs: positive('heartbeatMs', options.heartbeatMs, DEFAULTS.heartbeatMs),
      random: options.random ?? Math.random,
    };
  }

  /**
   * Checks `urls`: one result per URL, in input order (a URL given twice is
   * answered at both places). Rejects with a `CoverClientError` only for the call
   * as a whole (`timeout`, `aborted`, `closed`, or a code of the service's).
   */
  check(urls: readonly string[], options: CheckOptions = {}): Promise<CheckResult[]> {
    if (this.closed) return Promise.reject(new CoverClientError('closed', 'the CoverClient is closed'));
    if (!Array.isArray(urls)) return Promise.reject(new TypeError('CoverClient.check: urls must be an array of strings'));
    for (let i = 0; i < urls.length; i++) {
      const url: unknown = urls[i];
      if (typeof url !== 'string') return Promise.reject(new TypeError(`CoverClient.check: urls[${i}] is not a string`));
      // The service would refuse the whole frame, and so every call merged into it.
      if (url.length > MAX_URL_LENGTH) {
        return Promise.reject(new CoverClientError('bad_request', `urls[${i}] is longer than ${MAX_URL_LENGTH} characters`));
      }
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new CoverClientError('aborted', 'the check was aborted', { cause: signal.reason }));
    let timeoutMs: number;
    try {
      timeoutMs = positive('timeoutMs', options.timeoutMs, this.options.timeoutMs, true);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    if (urls.length === 0) return Promise.resolve([]);

    return new Promise<CheckResult[]>((resolve, reject) => {
      const call: Call = {
        urls: urls.slice(),
        results: new Array<CheckResult>(urls.length),
        remaining: urls.length,
        settled: false,
        resolve,
        reject,
        timer: undefined,
        signal,
        onAbort: undefined,
      };
      if (timeoutMs > 0) {
        call.timer = setTimeout(() => this.fail(call, new CoverClientError('timeout', `the check was not answered within ${timeoutMs} ms`)), timeoutMs);
      }
      if (signal) {
        call.onAbort = () => this.fail(call, new CoverClientError('aborted', 'the check was aborted', { cause: signal.reason }));
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      for (let index = 0; index < call.urls.length; index++) {
        const url = call.urls[index]!;
        const entry = this.entries.get(url);
        if (!entry) {
          const admitted = this.outstanding < this.options.maxInFlight && this.waiting.size === 0;
          const created: Entry = { url, state: admitted ? 'queued' : 'waiting', frame: undefined, call, index, more: undefined };
          this.entries.set(url, created);
          if (admitted) {
            this.outstanding++;
            this.queued.push(created);
          } else this.waiting.add(created);
        } else if (entry.call === undefined) {
          entry.call = call;
          entry.index = index;
        } else (entry.more ??= []).push({ call, index });
      }
      if (this.waiting.size > 0) this.admit();
      this.scheduleFlush();
    });
  }

  /** The cover URL of `url` when the service has one, else `url` itself (skipped, failed). */
  async coverUrl(url: string, options: CheckOptions = {}): Promise<string> {
    const [result] = await this.check([url], options);
    return result?.status === 'ok' && result.coverUrl ? result.coverUrl : url;
  }

  /** Whether a connection is open and greeted. */
  get connected(): boolean {
    return this.hello !== undefined;
  }

  /** The service's `hello` on the current connection. */
  get service(): Readonly<HelloFrame> | undefined {
    return this.hello;
  }

  get stats(): CoverClientStats {
    return {
      connected: this.connected,
      outstanding: this.outstanding,
      waiting: this.waiting.size,
      framesSent: this.framesSent,
      urlsSent: this.urlsSent,
      connections: this.connections,
    };
  }

  /**
   * Fails every call not yet answered with `closed`, closes the connection and
   * stops reconnecting; resolves when the socket is closed and no timer of the
   * client is left, so a process with nothing else to do exits.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const calls = new Set<Call>();
    for (const entry of this.entries.values()) forEachWaiter(entry, (call) => calls.add(call));
    this.entries.clear();
    this.waiting.clear();
    this.queued = [];
    this.deferred.clear();
    this.frames.clear();
    this.outstanding = 0;
    for (const call of calls) this.settle(call, new CoverClientError('closed', 'the CoverClient was closed before the check was answered'));
    const ws = this.ws;
    this.closing = new Promise<void>((resolve) => {
      if (!ws || ws.readyState === WebSocket.CLOSED) return resolve();
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.CONNECTING) {
        ws.terminate();
        return;
      }
      ws.close(1000, 'client closed');
      // A service that does not answer the close handshake is not waited for long.
      setTimeout(() => ws.terminate(), 1000).unref();
    });
    return this.closing;
  }

  // ---- calls ----

  /** Settles `call` with `error` and lets go of the URLs only it waited for. */
  private fail(call: Call, error: CoverClientError): void {
    if (call.settled) return;
    this.settle(call, error);
    const seen = new Set<string>();
    for (const url of call.urls) {
      if (seen.has(url)) continue;
      seen.add(url);
      const entry = this.entries.get(url);
      if (!entry) continue;
      if (entry.call === call) entry.call = undefined;
      if (entry.more) entry.more = entry.more.filter((waiter) => waiter.call !== call);
      if (hasWaiters(entry) || entry.state === 'sent') continue;
      // Nobody waits for it and it is not on the wire: forget it.
      this.entries.delete(url);
      if (entry.state === 'waiting') this.waiting.delete(entry);
      else {
        this.deferred.delete(entry);
        this.outstanding--;
      }
      entry.state = 'answered'; // skipped where it still sits in `queued`
    }
    if (this.outstanding + this.waiting.size === 0 && this.reconnectTimer) {
      // Nothing waits any more: no reason to reconnect (nor to keep the process alive).
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    this.admit();
    this.scheduleFlush();
  }

  private settle(call: Call, error?: Error): void {
    if (call.settled) return;
    call.settled = true;
    clearTimeout(call.timer);
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    if (error) call.reject(error);
    else call.resolve(call.results);
  }

  /** Moves waiting entries to the queue while fewer than `maxInFlight` are outstanding. */
  private admit(): void {
    for (const entry of this.waiting) {
      if (this.outstanding >= this.options.maxInFlight) return;
      this.waiting.delete(entry);
      entry.state = 'queued';
      this.queued.push(entry);
      this.outstanding++;
    }
  }

  /** An entry's answer: every call waiting for it gets it. */
  private answer(entry: Entry, result: CheckResult): void {
    if (result.status === 'error' && result.error?.code === 'shutting_down') {
      // The service is stopping: ask again on the next connection (its successor's).
      entry.state = 'deferred';
      entry.frame = undefined;
      this.deferred.add(entry);
      return;
    }
    if (this.entries.get(entry.url) === entry) this.entries.delete(entry.url);
    this.outstanding--;
    entry.state = 'answered';
    entry.frame = undefined;
    if (result.status === 'ok') this.rememberOk(entry.url);
    forEachWaiter(entry, (call, index) => {
      if (call.settled) return;
      call.results[index] = result;
      if (--call.remaining === 0) this.settle(call);
    });
    entry.call = undefined;
    entry.more = undefined;
  }

  private rememberOk(url: string): void {
    if (this.options.frameUrls === undefined || this.recentOk.has(url)) return;
    this.recentOk.add(url);
    if (this.recentOk.size > RECENT_OK_LIMIT) {
      for (const oldest of this.recentOk) {
        this.recentOk.delete(oldest);
        break;
      }
    }
  }

  // ---- frames ----

  private scheduleFlush(): void {
    if (this.flushing || this.queued.length === 0) return;
    this.flushing = true;
    // Everything asked in this turn of the event loop leaves in one frame.
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  /**
   * Sends the queued URLs: frames of at most `maxBatch` URLs and `maxFrameBytes`.
   * With `frameUrls` set, frames of at most that many, and URLs answered ok lately
   * (most likely in the service's cache) leave apart from the others: the service
   * answers a frame's cached URLs only in its `done` frame, after the frame's
   * slowest download, so a page of known covers is not held up behind another
   * page's new one.
   */
  private flush(): void {
    if (this.closed || this.queued.length === 0) return;
    const ws = this.ws;
    if (!ws || !this.hello || ws.readyState !== WebSocket.OPEN) {
      // Not connected: connect if something still waits to be sent (not only dropped entries).
      this.queued = this.queued.filter((entry) => entry.state === 'queued');
      if (this.queued.length > 0) this.connect();
      return;
    }
    const maxBatch = Math.max(1, Math.min(this.options.maxBatch ?? Infinity, this.hello.maxBatch, this.options.frameUrls ?? Infinity));
    const apart = this.options.frameUrls !== undefined;
    const maxBytes = Math.max(MAX_URL_LENGTH * 6 + FRAME_OVERHEAD * 2, Math.min(this.hello.maxFrameBytes, MAX_FRAME_BYTES)) - FRAME_OVERHEAD;
    const groups: Entry[][] = [[], []];
    const queued = this.queued;
    this.queued = [];
    for (const entry of queued) if (entry.state === 'queued') groups[apart && this.recentOk.has(entry.url) ? 0 : 1]!.push(entry);
    for (const group of groups) {
      let batch: Entry[] = [];
      let bytes = 0;
      for (const entry of group) {
        // At most 6 bytes a UTF-16 unit in JSON (`\u001f`; a BMP character is ≤ 3 bytes of UTF-8), and `"",`.
        const size = entry.url.length * 6 + 3;
        if (batch.length > 0 && (batch.length >= maxBatch || bytes + size > maxBytes)) {
          this.send(ws, batch);
          batch = [];
          bytes = 0;
        }
        batch.push(entry);
        bytes += size;
      }
      if (batch.length > 0) this.send(ws, batch);
    }
  }

  private send(ws: WebSocket, batch: Entry[]): void {
    const id = (this.frameSeq++).toString(36);
    const urls = new Array<string>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!;
      entry.state = 'sent';
      entry.frame = id;
      urls[i] = entry.url;
    }
    this.frames.set(id, batch);
    this.framesSent++;
    this.urlsSent += batch.length;
    ws.send(checkFrame(id, urls));
  }

  private onMessage(text: string): void {
    const frame = parseServerFrame(text);
    if (!frame) return; // not a frame of the protocol: nothing to answer with it
    switch (frame.type) {
      case 'hello':
        this.onHello(frame);
        return;
      case 'result': {
        const batch = this.frames.get(String(frame.id));
        if (!batch) return;
        const entry = this.entries.get(frame.url);
        if (entry && entry.state === 'sent' && entry.frame === String(frame.id)) {
          const { type: _type, id: _id, ...result } = frame;
          this.answer(entry, result);
          this.afterAnswers();
        }
        return;
      }
      case 'done': {
        if (frame.id === null) return;
        const id = String(frame.id);
        const batch = this.frames.get(id);
        if (!batch) return;
        this.frames.delete(id);
        for (let i = 0; i < batch.length; i++) {
          const entry = batch[i]!;
          if (entry.state !== 'sent' || entry.frame !== id) continue;
          const result = frame.results[i];
          if (result && result.url === entry.url) this.answer(entry, result);
          else {
            // A done frame that does not match what was sent: ask again.
            entry.state = 'queued';
            entry.frame = undefined;
            this.queued.push(entry);
          }
        }
        this.afterAnswers();
        return;
      }
      case 'error': {
        if (frame.id === null) return;
        const id = String(frame.id);
        const batch = this.frames.get(id);
        if (!batch) return;
        this.frames.delete(id);
        const error = new CoverClientError(frame.code, frame.message);
        for (const entry of batch) {
          if (entry.state !== 'sent' || entry.frame !== id) continue;
          if (this.entries.get(entry.url) === entry) this.entries.delete(entry.url);
          this.outstanding--;
          entry.state = 'answered';
          entry.frame = undefined;
          forEachWaiter(entry, (call) => this.fail(call, error));
          entry.call = undefined;
          entry.more = undefined;
        }
        this.afterAnswers();
        return;
      }
    }
  }

  private afterAnswers(): void {
    this.admit();
    this.scheduleFlush();
  }

  // ---- the connection ----

  private connect(): void {
    if (this.closed || this.ws || this.reconnectTimer) return;
    const headers: Record<string, string> = {};
    if (this.options.token !== undefined) headers.authorization = `Bearer ${this.options.token}`;
    const ws = new WebSocket(this.url, { headers, perMessageDeflate: false, handshakeTimeout: this.options.connectTimeoutMs });
    this.ws = ws;
    this.lastError = undefined;
    this.lastHeard = Date.now();
    this.helloTimer = setTimeout(() => {
      this.lastError = new Error(`no hello from the service within ${this.options.connectTimeoutMs} ms`);
      ws.terminate();
    }, this.options.connectTimeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.lastHeard = Date.now();
      if (!isBinary) this.onMessage(data.toString('utf8'));
    });
    ws.on('ping', () => (this.lastHeard = Date.now()));
    ws.on('pong', () => (this.lastHeard = Date.now()));
    ws.on('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      response.resume();
      this.lastError =
        status === 401
          ? new CoverClientError('unauthorized', 'the service refused the client token (HTTP 401): set the token option to its --client-token')
          : new Error(`the service answered the WebSocket upgrade with HTTP ${status}`);
      ws.terminate();
    });
    ws.on('error', (error) => {
      this.lastError ??= error;
    });
    ws.once('close', (code: number, reason: Buffer) => this.onClose(ws, code, reason.toString()));
  }

  private onHello(hello: HelloFrame): void {
    clearTimeout(this.helloTimer);
    const first = this.hello === undefined;
    this.hello = hello;
    if (!first) return;
    this.attempts = 0;
    const reconnects = this.connections++;
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > this.options.heartbeatMs) {
        this.lastError = new Error(`nothing heard from the service for ${this.options.heartbeatMs} ms`);
        this.ws?.terminate();
      }
    }, Math.max(1000, this.options.heartbeatMs / 3));
    this.heartbeat.unref();
    // Answers that said `shutting_down` are asked again of this connection.
    for (const entry of this.deferred) {
      entry.state = 'queued';
      this.queued.push(entry);
    }
    this.deferred.clear();
    this.emit('connect', { version: hello.version, maxBatch: hello.maxBatch, maxFrameBytes: hello.maxFrameBytes, reconnects });
    this.flush();
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    clearTimeout(this.helloTimer);
    clearInterval(this.heartbeat);
    this.ws = undefined;
    const wasConnected = this.hello !== undefined;
    this.hello = undefined;
    const error = this.lastError;
    // What was on the wire goes again on the next connection; what nobody waits for any more is dropped.
    for (const batch of this.frames.values()) {
      for (const entry of batch) {
        if (entry.state !== 'sent') continue;
        entry.frame = undefined;
        if (hasWaiters(entry)) {
          entry.state = 'queued';
          this.queued.push(entry);
        } else {
          if (this.entries.get(entry.url) === entry) this.entries.delete(entry.url);
          entry.state = 'answered';
          this.outstanding--;
        }
      }
    }
    this.frames.clear();
    this.admit();
    if (!this.closed && error instanceof CoverClientError && error.code === 'unauthorized') {
      // A refused token does not get better by retrying: every waiting call fails with it.
      const calls = new Set<Call>();
      for (const entry of this.entries.values()) forEachWaiter(entry, (call) => calls.add(call));
      for (const call of calls) this.fail(call, error);
    }
    const willReconnect = !this.closed && this.outstanding + this.waiting.size > 0;
    this.emit('disconnect', { code, reason, ...(error ? { error } : {}), wasConnected, willReconnect });
    if (willReconnect) {
      const attempt = this.attempts++;
      const ceiling = Math.min(this.options.reconnectMaxMs, this.options.reconnectMinMs * 2 ** Math.min(attempt, 30));
      // "Equal jitter": half the ceiling, plus a random part of the other half.
      const delay = ceiling / 2 + this.options.random() * (ceiling / 2);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        if (this.outstanding + this.waiting.size > 0) this.connect();
      }, delay);
    }
  }
}
