/**
 * The client WebSocket protocol (SPEC §6): untrusted frames in, typed messages
 * or an error code out; and the frames the server sends.
 */
import type { CheckResult } from '../checks/index.js';

/** An id as the client sent it (a string; numbers are echoed back too). */
export type MessageId = string | number;

export type ClientMessage =
  | { type: 'check'; id: MessageId; urls: string[] }
  /** `C <url> <url> …`, answered `OK <r1> <r2> …`. */
  | { type: 'short'; urls: string[] };

/** Bad input (SPEC §6), and `internal_error` for a failure on our side (a database error). */
export type ProtocolErrorCode = 'bad_request' | 'too_many_urls' | 'internal_error';

export type ParseOutcome =
  | { ok: true; message: ClientMessage }
  | { ok: false; id: MessageId | null; code: ProtocolErrorCode; message: string };

export type ServerFrame =
  | ({ type: 'result'; id: MessageId } & CheckResult)
  | { type: 'done'; id: MessageId; ok: number; skipped: number; failed: number; results: CheckResult[] }
  | { type: 'error'; id: MessageId | null; code: ProtocolErrorCode; message: string };

const isId = (value: unknown): value is MessageId =>
  (typeof value === 'string' && value.length <= 256) || (typeof value === 'number' && Number.isFinite(value));

/** The longest URL accepted in a check. */
export const MAX_URL_LENGTH = 8192;

function checkUrls(urls: string[], maxBatch: number, id: MessageId | null): ParseOutcome | undefined {
  if (urls.length > maxBatch) {
    return { ok: false, id, code: 'too_many_urls', message: `${urls.length} URLs in one check; at most ${maxBatch} (--max-batch)` };
  }
  const long = urls.findIndex((url) => url.length > MAX_URL_LENGTH);
  if (long !== -1) return { ok: false, id, code: 'bad_request', message: `urls[${long}] is longer than ${MAX_URL_LENGTH} characters` };
  return undefined;
}

/** Turns one text frame into a message or an error with its code. */
export function parseClientFrame(text: string, maxBatch: number): ParseOutcome {
  if (text.startsWith('C ') || text === 'C') {
    const urls = text === 'C' ? [] : text.slice(2).split(' ');
    if (urls.some((url) => url === '')) {
      return { ok: false, id: null, code: 'bad_request', message: 'short form: URLs are separated by single spaces' };
    }
    return checkUrls(urls, maxBatch, null) ?? { ok: true, message: { type: 'short', urls } };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, id: null, code: 'bad_request', message: 'not JSON (send {"type":"check","id":…,"urls":[…]} or "C url url")' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, id: null, code: 'bad_request', message: 'a message is a JSON object' };
  }
  const { type, id, urls } = parsed as Record<string, unknown>;
  const echoId = isId(id) ? id : null;
  if (type !== 'check') {
    return { ok: false, id: echoId, code: 'bad_request', message: `unknown message type ${JSON.stringify(type ?? null)}; the only type is "check"` };
  }
  if (!isId(id)) return { ok: false, id: null, code: 'bad_request', message: 'check needs an "id" (a string)' };
  if (!Array.isArray(urls)) return { ok: false, id, code: 'bad_request', message: 'check needs "urls", an array of strings' };
  const bad = urls.findIndex((url) => typeof url !== 'string');
  if (bad !== -1) return { ok: false, id, code: 'bad_request', message: `urls[${bad}] is not a string` };
  return checkUrls(urls as string[], maxBatch, id) ?? { ok: true, message: { type: 'check', id, urls: urls as string[] } };
}

/**
 * Each answer's JSON, made once (a cached URL or a shared download is answered to
 * many checks) and kept on the answer object under a non-enumerable symbol, which
 * JSON, spreading and deep equality do not see: one property load per URL of a
 * `done` frame, where a WeakMap lookup cost several times more.
 */
const JSON_OF = Symbol('coverhelper.json');

/** `JSON.stringify(result)`, made once per answer object (answers are never changed once made). */
export function resultJson(result: CheckResult): string {
  const kept = (result as { [JSON_OF]?: string })[JSON_OF];
  if (kept !== undefined) return kept;
  const json = JSON.stringify(result);
  if (Object.isExtensible(result)) Object.defineProperty(result, JSON_OF, { value: json, enumerable: false });
  return json;
}

/** Where an answer keeps the UTF-8 bytes of its `result` frame after the id: `resultJson` without its `{`. */
const TAIL_OF = Symbol('coverhelper.resultTail');

/**
 * The two halves of a `result` frame's payload as bytes: the check's
 * `{"type":"result","id":…,` (made once per check, `resultHead`) and the
 * answer's fields (made once per answer however many checks wait on it).
 * `resultHead(id)` then `resultTail(result)` is the frame as
 * `JSON.stringify({ type: 'result', id, ...result })` writes it.
 */
export function resultHead(id: MessageId): Buffer {
  return Buffer.from('{"type":"result","id":' + JSON.stringify(id) + ',');
}

export function resultTail(result: CheckResult): Buffer {
  const kept = (result as { [TAIL_OF]?: Buffer })[TAIL_OF];
  if (kept !== undefined) return kept;
  const tail = Buffer.from(resultJson(result).slice(1));
  if (Object.isExtensible(result)) Object.defineProperty(result, TAIL_OF, { value: tail, enumerable: false });
  return tail;
}

/** The `done` frame for a finished check, as `JSON.stringify` writes its object, built from each answer's cached JSON. */
export function doneFrame(id: MessageId, results: readonly CheckResult[]): string {
  let ok = 0;
  let skipped = 0;
  let failed = 0;
  const parts = new Array<string>(results.length);
  for (let i = 0; i < results.length; i++) {
    const result = results[i]!;
    if (result.status === 'ok') ok++;
    else if (result.status === 'skipped') skipped++;
    else failed++;
    parts[i] = resultJson(result);
  }
  return `{"type":"done","id":${JSON.stringify(id)},"ok":${ok},"skipped":${skipped},"failed":${failed},"results":[${parts.join(',')}]}`;
}

/** The short form's answer: the cover URL where ok, else the input URL. */
export function shortAnswer(results: CheckResult[]): string {
  return ['OK', ...results.map((result) => (result.status === 'ok' && result.coverUrl ? result.coverUrl : result.url))].join(' ');
}
