/**
 * The measuring clients. They are the same against the service and against
 * the baseline, and they do as little as they can per frame (no JSON parse on
 * the timed path): a frame is recognised by its first bytes, and its id sits
 * at a fixed place because every id is `h` + 8 digits.
 *
 * Functional checks (is every answer ok, from the cache?) are done before the
 * timed runs with test/helpers/wsClient.ts, which parses everything.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import * as protocol from '@coverhelper/client/protocol';
import { benchRoot } from './paths.js';
import { track } from './service.js';

/** The bytes before a frame's id, as the protocol module writes check and done frames. */
export const CHECK_PREFIX = protocol.checkFrame('@', []).split('@')[0]!;
export const DONE_PREFIX = protocol.doneFrame('@', []).split('@')[0]!;
export const ID_LENGTH = 9;

export const idFor = (seq: number) => `h${String(seq).padStart(8, '0')}`;

/** A check frame as bytes (the protocol module's). */
export function checkFrame(id: string, urls: readonly string[]): Buffer {
  return Buffer.from(protocol.checkFrame(id, urls));
}

/**
 * Opens a socket and waits for the server's `hello` (the service sends one on
 * connect, and so does the bare baseline), so no timed loop sees it.
 */
export async function openSocket(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    ws.once('message', (data: Buffer) => {
      if (protocol.parseServerFrame(data.toString())?.type === 'hello') resolve();
      else reject(new Error(`expected hello first, got ${data.toString().slice(0, 80)}`));
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  return ws;
}

export async function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.close();
  const timer = setTimeout(() => ws.terminate(), 2000);
  await closed;
  clearTimeout(timer);
}

const startsWith = (data: Buffer, prefix: Buffer) => data.length >= prefix.length && data.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;

export interface PipelinedResult {
  batches: number;
  elapsedMs: number;
  /** Frames that were not the expected `done`. */
  unexpected: number;
  firstUnexpected?: string;
}

/**
 * Sends `requests` round-robin on one socket, keeping `window` in flight, for
 * `durationMs` (or `maxBatches`), and counts the replies that start with
 * `expect` (a `done` frame's first bytes, up to its counts).
 */
export function pipelined(ws: WebSocket, requests: Buffer[], options: { window: number; durationMs: number; maxBatches: number; expect: Buffer }): Promise<PipelinedResult> {
  const { window, durationMs, maxBatches, expect } = options;
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    let unexpected = 0;
    let firstUnexpected: string | undefined;
    let stopSending = false;
    const start = performance.now();
    const stopAt = start + durationMs;
    const send = () => {
      ws.send(requests[sent % requests.length]!, { binary: false });
      sent++;
    };
    const finish = () => {
      ws.off('message', onMessage);
      clearTimeout(guard);
      resolve({ batches: done, elapsedMs: performance.now() - start, unexpected, ...(firstUnexpected ? { firstUnexpected } : {}) });
    };
    const onMessage = (data: Buffer) => {
      if (startsWith(data, expect)) done++;
      else {
        unexpected++;
        firstUnexpected ??= data.subarray(0, 300).toString();
        if (data.subarray(0, 15).toString() !== '{"type":"resul') done++; // an error frame ends its request too
      }
      if (!stopSending && (done >= maxBatches || performance.now() >= stopAt)) stopSending = true;
      if (!stopSending && sent < maxBatches) send();
      if (done >= sent) finish();
    };
    // A reply lost for good must not hang the run.
    const guard = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`pipelined: ${sent - done} replies missing ${durationMs + 30_000} ms after the start`));
    }, durationMs + 30_000);
    ws.on('message', onMessage);
    for (let i = 0; i < window; i++) send();
  });
}

export interface OpenLoopResult {
  /** Round trips of the replies received after the warm-up, ms. */
  rtts: Float64Array;
  sent: number;
  received: number;
  /** Checks per second actually sent in the measured part. */
  rate: number;
  unexpected: number;
  /**
   * The measuring client's own stalls in the measured part: gaps of more than
   * STALL_MS between two of its send ticks (it ticks every millisecond), when
   * its thread did not run; a reply that comes meanwhile is read late, and its
   * round trip counts the stall. How many, and their time in all.
   */
  stalls: { count: number; ms: number };
}

/** A gap between the open loop's send ticks longer than this is a stall of the client itself. */
export const STALL_MS = 2;

/**
 * Open loop: sends single-URL checks at `rate` per second for `warmupMs` +
 * `durationMs`, whatever the replies do (a slow server does not slow the
 * sender), and records each round trip from its send to its `done`.
 */
export function openLoop(ws: WebSocket, urls: readonly string[], options: { rate: number; warmupMs: number; durationMs: number; expect: Buffer }): Promise<OpenLoopResult> {
  const { rate, warmupMs, durationMs, expect } = options;
  const total = Math.ceil(((warmupMs + durationMs) / 1000) * rate);
  const warmupCount = Math.floor((warmupMs / 1000) * rate);
  const sentAt = new Float64Array(total);
  const rtt = new Float64Array(total).fill(NaN);
  const idStart = DONE_PREFIX.length;
  return new Promise((resolve, reject) => {
    let sent = 0;
    let received = 0;
    let unexpected = 0;
    const start = performance.now();
    let measuredStart = 0;
    let measuredEnd = 0;
    let lastTick = 0;
    const stalls = { count: 0, ms: 0 };
    const onMessage = (data: Buffer) => {
      const now = performance.now();
      if (!(data.length >= expect.length && data.compare(expect, 0, idStart, 0, idStart) === 0)) {
        unexpected++;
        return;
      }
      const seq = Number(data.toString('latin1', idStart + 1, idStart + ID_LENGTH));
      if (data.compare(expect, idStart + ID_LENGTH, expect.length, idStart + ID_LENGTH, expect.length) !== 0) unexpected++;
      rtt[seq] = now - sentAt[seq]!;
      received++;
      if (received === total) finish();
    };
    const finish = () => {
      ws.off('message', onMessage);
      clearTimeout(guard);
      const measured = rtt.subarray(warmupCount).filter((v) => !Number.isNaN(v));
      resolve({ rtts: measured, sent, received, rate: ((total - warmupCount) / (measuredEnd - measuredStart)) * 1000, unexpected, stalls });
    };
    const tick = () => {
      const now = performance.now();
      if (sent > warmupCount && now - lastTick > STALL_MS) {
        stalls.count++;
        stalls.ms += now - lastTick;
      }
      lastTick = now;
      const due = Math.min(total, Math.floor(((now - start) / 1000) * rate) + 1);
      while (sent < due) {
        if (sent === warmupCount) measuredStart = performance.now();
        sentAt[sent] = performance.now();
        ws.send(`${CHECK_PREFIX}${idFor(sent)}","urls":["${urls[sent % urls.length]!}"]}`);
        sent++;
      }
      if (sent < total) setTimeout(tick, 1);
      else measuredEnd = performance.now();
    };
    const guard = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`open loop: ${total - received} of ${total} replies missing`));
    }, warmupMs + durationMs + 30_000);
    ws.on('message', onMessage);
    tick();
  });
}

export interface BareServer {
  url: string;
  /** Its process, for its CPU (/proc). */
  pid: number;
  close(): Promise<void>;
}

/** Starts bench/lib/bareWsServer.ts in its own process with these replies. */
export async function startBareServer(dir: string, replies: Record<string, { reply: Buffer; idAt: number; idFrom: number; idLength: number; before?: Buffer[] }>): Promise<BareServer> {
  const file = path.join(dir, 'bare-replies.json');
  const json = Object.fromEntries(Object.entries(replies).map(([name, r]) => [name, { ...r, reply: r.reply.toString('base64'), before: (r.before ?? []).map((frame) => frame.toString('base64')) }]));
  await writeFile(file, JSON.stringify(json));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(benchRoot, 'lib/bareWsServer.ts'), file], { stdio: ['pipe', 'pipe', 'inherit'] });
  track(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('bare ws server did not start')), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`bare ws server exited with ${code}`)));
  });
  return {
    url: `ws://127.0.0.1:${port}/`,
    pid: child.pid!,
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin.end();
      await exited;
    },
  };
}
