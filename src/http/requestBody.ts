/**
 * The one reader of request bodies read whole into memory (the JSON routes:
 * `POST /api/check`, `POST /api/jobs`), so bounded three ways:
 *
 *   size    past the route's limit: 413 (the rest is read and dropped)
 *   time    not whole within BODY_DEADLINE_MS of the request: 408, the
 *           connection closed (a body that trickles holds nothing for long)
 *   total   the bodies being read, all requests together, hold at most
 *           MAX_BODIES_BYTES, each counted for its Content-Length from the
 *           start (a chunked body as its bytes come): the request that would
 *           pass the total gets 503 `busy` with Retry-After before its body is
 *           read, and the connection is closed
 *
 * Every refusal answers `{"code","message"}`; what a refused body held is let go
 * at once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { sendError } from './respond.js';

/** The longest a request body may take to arrive. */
export const BODY_DEADLINE_MS = 30_000;
/** BODY_DEADLINE_MS, unless the environment of a test process sets COVERHELPER_TEST_BODY_DEADLINE_MS (unset in normal use). */
const deadline = ((value: number) => (Number.isSafeInteger(value) && value > 0 ? value : BODY_DEADLINE_MS))(Number(process.env.COVERHELPER_TEST_BODY_DEADLINE_MS));
/** The most bytes of request bodies being read at once, all requests together: 64 MiB. */
export const MAX_BODIES_BYTES = 64 * 1024 * 1024;

/** Bytes held by bodies being read, against a total. */
export class BodyBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` if they fit; false (nothing taken) if they would pass the total. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** The budget of the service's HTTP routes. */
export const requestBodies = new BodyBudget(MAX_BODIES_BYTES);

export interface BodyRefusal {
  status: 408 | 413 | 503 | 400;
  code: string;
  message: string;
}

export type BodyRead = { ok: true; text: string } | { ok: false; refusal: BodyRefusal };

export interface BodyOptions {
  deadlineMs?: number;
  budget?: BodyBudget;
  /** The one clock (default the system's): the body's deadline. */
  clock?: Clock;
}

const busy: BodyRefusal = { status: 503, code: 'busy', message: 'the service is reading too many request bodies at once; try again shortly' };

/** A request body as text, or why it was refused (answer with `refuseBody`). */
export function readBody(req: IncomingMessage, limit: number, options: BodyOptions = {}): Promise<BodyRead> {
  const budget = options.budget ?? requestBodies;
  const deadlineMs = options.deadlineMs ?? deadline;
  const clock = options.clock ?? systemClock;
  return new Promise((resolve) => {
    let chunks: Buffer[] = [];
    let size = 0;
    let taken = 0;
    let settled = false;
    const settle = (result: BodyRead) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      req.removeListener('data', onData);
      budget.give(taken);
      taken = 0;
      chunks = [];
      resolve(result);
    };
    const refuse = (refusal: BodyRefusal) => {
      settle({ ok: false, refusal });
      // The rest is read and dropped: nothing of it is kept.
      req.resume();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return refuse({ status: 413, code: 'bad_request', message: `the body is larger than ${limit} bytes` });
      // Counted from the start when announced; a chunked body as it comes.
      if (size > taken) {
        if (!budget.take(size - taken)) return refuse(busy);
        taken = size;
      }
      chunks.push(chunk);
    };
    const timer = clock.setTimeout(() => refuse({ status: 408, code: 'bad_request', message: `the body did not arrive whole within ${deadlineMs / 1000} s` }), deadlineMs);
    timer.unref();
    const declared = Number(req.headers['content-length']);
    if (Number.isSafeInteger(declared) && declared >= 0) {
      if (declared > limit) return refuse({ status: 413, code: 'bad_request', message: `the body is larger than ${limit} bytes` });
      if (!budget.take(declared)) return refuse(busy);
      taken = declared;
    }
    req.on('data', onData);
    req.once('end', () => settle({ ok: true, text: Buffer.concat(chunks).toString('utf8') }));
    // A client that goes away mid-body: nothing to answer, nothing kept.
    req.once('error', () => settle({ ok: false, refusal: { status: 400, code: 'bad_request', message: 'the body was cut off' } }));
    req.once('close', () => settle({ ok: false, refusal: { status: 400, code: 'bad_request', message: 'the body was cut off' } }));
  });
}

/** Answers a refused body; the connection is closed after the answer when the rest of the body was not read. */
export function refuseBody(res: ServerResponse, refusal: BodyRefusal): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = {};
  if (refusal.status !== 413) headers.connection = 'close';
  if (refusal.status === 503) headers['retry-after'] = '1';
  sendError(res, refusal.status, refusal.code, refusal.message, headers);
}

/**
 * A body that must be a JSON object, read with `readBody`; undefined once the
 * request was answered (refused, not JSON: 400 `bad_request` naming `example`,
 * the shape to send).
 */
export async function readJsonObject(req: IncomingMessage, res: ServerResponse, limit: number, example: string, options: BodyOptions = {}): Promise<Record<string, unknown> | undefined> {
  const body = await readBody(req, limit, options);
  if (!body.ok) return void refuseBody(res, body.refusal);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.text);
  } catch {
    return void sendError(res, 400, 'bad_request', `the body is not JSON (send ${example})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return void sendError(res, 400, 'bad_request', `the body is a JSON object: ${example}`);
  return parsed as Record<string, unknown>;
}
