/**
 * The coverhelper WebSocket protocol: every frame type, the parsers of untrusted
 * frames (the server's of what clients send, the client's of what the server
 * sends) and the frame builders. It imports nothing: the service, this client
 * package, the tests and the benchmarks all use this one module, so none keeps
 * its own copy of the frame shapes.
 *
 * Client → server:  {"type":"check","id":…,"urls":[…]}   or the short form `C <url> <url> …`
 * Server → client:  {"type":"hello","version","maxBatch","maxFrameBytes"} on connect,
 *                   {"type":"result","id",…answer} for each URL that had to wait,
 *                   {"type":"done","id","ok","skipped","failed","results":[…]} once,
 *                   {"type":"error","id","code","message"} for bad input,
 *                   `OK <r1> <r2> …` answering the short form.
 */

/** A check's id as the client sent it (a string; a number is echoed back too). */
export type MessageId = string | number;

export type CheckStatus = 'ok' | 'skipped' | 'error';

/** Where a cover came from: stored before (`cache`), fetched for this check (`download`), uploaded (`custom`). */
export type CoverSource = 'cache' | 'download' | 'custom';

/** The error codes of results. */
export const RESULT_ERROR_CODES = [
  'invalid_url',
  'not_allowed',
  'http_status',
  'too_large',
  'not_image',
  'tle',
  'network',
  'resolve_failed',
  'disk_full',
  'shutting_down',
  'cancelled',
  'upstream_limited',
  'too_many_requests',
  'file_missing',
] as const;

export type ResultErrorCode = (typeof RESULT_ERROR_CODES)[number];

/** The answer for one URL, as `result` frames and `done` frames carry it. */
export interface CheckResult {
  url: string;
  status: CheckStatus;
  /** When ok: the public URL of the stored cover. */
  coverUrl?: string;
  /** When ok: its path under the covers folder. */
  path?: string;
  /** When ok. */
  source?: CoverSource;
  /**
   * When ok: the size in pixels of the original image the service keeps (scaled
   * down once past `--original-max`), the largest it can serve. Its aspect is
   * the one to reserve on the page (`coverUrl` itself may be cropped to
   * `--resize`).
   */
  width?: number;
  height?: number;
  /** When ok: the cover's dominant colour, `#rrggbb`, to paint its box while it loads. Absent for a cover stored before colours were kept, until the service has read it. */
  color?: string;
  /** When skipped: why the URL is not fetched, in words an operator can act on. */
  reason?: string;
  /** When error; for `http_status` also the origin's last `status` as a number. */
  error?: { code: string; message: string; status?: number };
  /** When error: answered from a failure remembered for `--fail-ttl`. */
  remembered?: true;
  /** With `remembered`: when the URL will be tried again; with `upstream_limited`: when its host reopens (ISO time). */
  retryAt?: string;
}

export type ClientFrame =
  | { type: 'check'; id: MessageId; urls: string[] }
  /** `C <url> <url> …`, answered `OK <r1> <r2> …`. */
  | { type: 'short'; urls: string[] };

/** Bad input, and `internal_error` for a failure inside the service (a database error). */
export type ProtocolErrorCode = 'bad_request' | 'too_many_urls' | 'internal_error';

export interface HelloFrame {
  type: 'hello';
  /** The service's version. */
  version: string;
  /** Most URLs one check may hold (`--max-batch`). */
  maxBatch: number;
  /** Largest frame the service reads; a larger one closes the connection with 1009. */
  maxFrameBytes: number;
}

export type ServerFrame =
  | HelloFrame
  | ({ type: 'result'; id: MessageId } & CheckResult)
  /** `id` null: the body of `POST /api/check`, which names no check. */
  | { type: 'done'; id: MessageId | null; ok: number; skipped: number; failed: number; results: CheckResult[] }
  | { type: 'error'; id: MessageId | null; code: ProtocolErrorCode; message: string };

export type ParseOutcome =
  | { ok: true; message: ClientFrame }
  | { ok: false; id: MessageId | null; code: ProtocolErrorCode; message: string };

/** The longest URL accepted in a check. */
export const MAX_URL_LENGTH = 8192;
/** The largest frame the service reads. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** An id longer than this is not echoed back. */
export const MAX_ID_LENGTH = 256;

const isId = (value: unknown): value is MessageId =>
  (typeof value === 'string' && value.length <= MAX_ID_LENGTH) || (typeof value === 'number' && Number.isFinite(value));

/** A list of URLs as `parseUrlList` found it. */
export type UrlListOutcome = { ok: true; urls: string[] } | { ok: false; code: 'bad_request' | 'too_many_urls'; message: string };

/**
 * An untrusted `urls` value (of a check frame, `POST /api/check`, `POST /api/jobs`)
 * into a list of URLs, or the error to answer with the codes of `/ws`: not an array
 * of strings, or a URL over MAX_URL_LENGTH, `bad_request`; more than `maxBatch`,
 * `too_many_urls`. `batch` names what holds them and its limit, for the message.
 */
export function parseUrlList(value: unknown, maxBatch: number, batch: { noun: string; limit: string } = { noun: 'check', limit: '--max-batch' }): UrlListOutcome {
  if (!Array.isArray(value)) return { ok: false, code: 'bad_request', message: 'needs "urls", an array of strings' };
  const bad = value.findIndex((url) => typeof url !== 'string');
  if (bad !== -1) return { ok: false, code: 'bad_request', message: `urls[${bad}] is not a string` };
  const urls = value as string[];
  if (urls.length > maxBatch) {
    return { ok: false, code: 'too_many_urls', message: `${urls.length} URLs in one ${batch.noun}; at most ${maxBatch} (${batch.limit})` };
  }
  const long = urls.findIndex((url) => url.length > MAX_URL_LENGTH);
  if (long !== -1) return { ok: false, code: 'bad_request', message: `urls[${long}] is longer than ${MAX_URL_LENGTH} characters` };
  return { ok: true, urls };
}

/** The service's parser: one untrusted text frame into a check, or an error with its code. */
export function parseClientFrame(text: string, maxBatch: number): ParseOutcome {
  if (text.startsWith('C ') || text === 'C') {
    const urls = text === 'C' ? [] : text.slice(2).split(' ');
    if (urls.some((url) => url === '')) {
      return { ok: false, id: null, code: 'bad_request', message: 'short form: URLs are separated by single spaces' };
    }
    const list = parseUrlList(urls, maxBatch);
    return list.ok ? { ok: true, message: { type: 'short', urls: list.urls } } : { ok: false, id: null, code: list.code, message: list.message };
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
  const list = parseUrlList(urls, maxBatch);
  return list.ok ? { ok: true, message: { type: 'check', id, urls: list.urls } } : { ok: false, id, code: list.code, message: list.message };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const isDimension = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 1_000_000;

/** A colour as answers carry it. */
const COLOR = /^#[0-9a-f]{6}$/;

/** A result as the client may trust it: the fields of `CheckResult`, checked. */
function checkResult(value: unknown): CheckResult | undefined {
  if (!isRecord(value) || typeof value.url !== 'string') return undefined;
  const { url, status } = value;
  if (status !== 'ok' && status !== 'skipped' && status !== 'error') return undefined;
  const result: CheckResult = { url, status };
  if (status === 'ok') {
    if (typeof value.coverUrl !== 'string' || typeof value.path !== 'string') return undefined;
    result.coverUrl = value.coverUrl;
    result.path = value.path;
    if (value.source === 'cache' || value.source === 'download' || value.source === 'custom') result.source = value.source;
    if (isDimension(value.width) && isDimension(value.height)) {
      result.width = value.width;
      result.height = value.height;
    }
    if (typeof value.color === 'string' && COLOR.test(value.color)) result.color = value.color;
  }
  if (status === 'error') {
    const error = value.error;
    if (!isRecord(error) || typeof error.code !== 'string' || typeof error.message !== 'string') return undefined;
    result.error = { code: error.code, message: error.message };
    if (typeof error.status === 'number' && Number.isInteger(error.status)) result.error.status = error.status;
    if (value.remembered === true) result.remembered = true;
    if (typeof value.retryAt === 'string') result.retryAt = value.retryAt;
  }
  if (status === 'skipped' && typeof value.reason === 'string') result.reason = value.reason;
  return result;
}

/**
 * The client's parser: one untrusted text frame from the server into a typed
 * frame, or undefined when it is not one (the short form's `OK …` answer is text:
 * see `parseShortAnswer`).
 */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  switch (value.type) {
    case 'hello': {
      const { version, maxBatch, maxFrameBytes } = value;
      if (typeof version !== 'string' || !Number.isInteger(maxBatch) || !Number.isInteger(maxFrameBytes)) return undefined;
      return { type: 'hello', version, maxBatch: maxBatch as number, maxFrameBytes: maxFrameBytes as number };
    }
    case 'result': {
      if (!isId(value.id)) return undefined;
      const result = checkResult(value);
      return result ? { type: 'result', id: value.id, ...result } : undefined;
    }
    case 'done': {
      if (!(value.id === null || isId(value.id)) || !Array.isArray(value.results)) return undefined;
      const results: CheckResult[] = new Array<CheckResult>(value.results.length);
      let ok = 0;
      let skipped = 0;
      for (let i = 0; i < results.length; i++) {
        const result = checkResult(value.results[i]);
        if (!result) return undefined;
        results[i] = result;
        if (result.status === 'ok') ok++;
        else if (result.status === 'skipped') skipped++;
      }
      return { type: 'done', id: value.id, ok, skipped, failed: results.length - ok - skipped, results };
    }
    case 'error': {
      const { id, code, message } = value;
      if (!(id === null || isId(id)) || typeof message !== 'string') return undefined;
      if (code !== 'bad_request' && code !== 'too_many_urls' && code !== 'internal_error') return undefined;
      return { type: 'error', id, code, message };
    }
    default:
      return undefined;
  }
}

/** The short form's answer `OK r1 r2 …` into its parts, or undefined. */
export function parseShortAnswer(text: string): string[] | undefined {
  if (text === 'OK') return [];
  return text.startsWith('OK ') ? text.slice(3).split(' ') : undefined;
}

/** A `check` frame. */
export function checkFrame(id: MessageId, urls: readonly string[]): string {
  return JSON.stringify({ type: 'check', id, urls });
}

/** The short form of a check. */
export function shortFrame(urls: readonly string[]): string {
  return `C ${urls.join(' ')}`;
}

export function helloFrame(hello: Omit<HelloFrame, 'type'>): string {
  return JSON.stringify({ type: 'hello', version: hello.version, maxBatch: hello.maxBatch, maxFrameBytes: hello.maxFrameBytes });
}

export function errorFrame(id: MessageId | null, code: ProtocolErrorCode, message: string): string {
  return JSON.stringify({ type: 'error', id, code, message });
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

/** Where an answer keeps its JSON as UTF-8 bytes (`resultJson` encoded once), and that without its `{`. */
const BYTES_OF = Symbol('coverhelper.resultBytes');
const TAIL_OF = Symbol('coverhelper.resultTail');

/**
 * `resultJson(result)` as UTF-8 bytes, made once per answer object: a `done`
 * frame of answers already made is these copied one after the other, with no
 * JSON and no string encoding per URL.
 */
export function resultBytes(result: CheckResult): Buffer {
  const kept = (result as { [BYTES_OF]?: Buffer })[BYTES_OF];
  if (kept !== undefined) return kept;
  const bytes = Buffer.from(resultJson(result));
  if (Object.isExtensible(result)) Object.defineProperty(result, BYTES_OF, { value: bytes, enumerable: false });
  return bytes;
}

/**
 * The two halves of a `result` frame's payload as bytes: the check's
 * `{"type":"result","id":…,` (made once per check, `resultHead`) and the
 * answer's fields (made once per answer however many checks wait on it; the
 * same memory as `resultBytes`, past its `{`).
 * `resultHead(id)` then `resultTail(result)` is the frame as
 * `JSON.stringify({ type: 'result', id, ...result })` writes it.
 */
export function resultHead(id: MessageId): Buffer {
  return Buffer.from('{"type":"result","id":' + JSON.stringify(id) + ',');
}

export function resultTail(result: CheckResult): Buffer {
  const kept = (result as { [TAIL_OF]?: Buffer })[TAIL_OF];
  if (kept !== undefined) return kept;
  const tail = resultBytes(result).subarray(1);
  if (Object.isExtensible(result)) Object.defineProperty(result, TAIL_OF, { value: tail, enumerable: false });
  return tail;
}

/**
 * The `done` frame for a finished check, as `JSON.stringify` writes its object,
 * built from each answer's cached JSON (`id` null for a check that had none:
 * the HTTP door's `POST /api/check`).
 */
export function doneFrame(id: MessageId | null, results: readonly CheckResult[]): string {
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

/**
 * Frames of POOL_MIN to POOL_MAX bytes (a `done` frame of about 60 to 120 cached
 * URLs) are cut from shared slabs of SLAB_BYTES, as `Buffer.allocUnsafe` pools
 * buffers under 4 KiB: an ArrayBuffer made for each 26 KB frame cost a twentieth
 * of the hot path. A slab lives while any frame cut from it does, so a frame left
 * unsent (a client that does not read) holds at most SLAB_BYTES / POOL_MIN = 8
 * times its own size; other frames get a buffer of their own, and so does any
 * frame its caller asks not to pool (`doneFrameBytes`'s `pooled`: the server
 * pools only while a socket has little unsent, so what unsent frames hold stays
 * near what its unsent bound counts).
 */
const SLAB_BYTES = 128 * 1024;
const POOL_MIN = 16 * 1024;
const POOL_MAX = 32 * 1024;
let slab: Buffer | undefined;
let slabUsed = 0;

/** A buffer of `size` bytes to write a frame into: a slab's slice, or its own. */
function frameBuffer(size: number, pooled: boolean): Buffer {
  if (!pooled || size < POOL_MIN || size > POOL_MAX) return Buffer.allocUnsafe(size);
  if (slab === undefined || slabUsed + size > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  // The next frame starts 8-byte aligned.
  slabUsed = (slabUsed + size + 7) & ~7;
  return out;
}

/**
 * `doneFrame(id, results)` as UTF-8 bytes, the same bytes, copied once into one
 * buffer from each answer's cached bytes (`resultBytes`): what the WebSocket
 * sends, with no string of the whole frame made and encoded. The buffer may be
 * a slice of a shared slab (unless `pooled` is false): never write to it. The
 * frame is remembered for `sameDoneTail`.
 */
export function doneFrameBytes(id: MessageId | null, results: readonly CheckResult[], pooled = true): Buffer {
  const out = doneFrameMade(id, results, pooled);
  lastDone = out.length <= LAST_DONE_MAX ? { results, count: results.length, frame: out, tailAt: DONE_ID_AT + Buffer.byteLength(JSON.stringify(id)) } : undefined;
  return out;
}

/**
 * When the last `done` frame made was of these very answers (the members of a
 * shared check, one after another): its bytes after the id. With `doneHead` of
 * another id it is that id's frame, sent as two parts with no copy of the tail.
 * Never write to it.
 */
export function sameDoneTail(results: readonly CheckResult[]): Buffer | undefined {
  const last = lastDone;
  return last !== undefined && last.results === results && last.count === results.length ? last.frame.subarray(last.tailAt) : undefined;
}

/** A `done` frame's bytes up to its id's end: `{"type":"done","id":…`. */
export function doneHead(id: MessageId | null): Buffer {
  return Buffer.from('{"type":"done","id":' + JSON.stringify(id));
}

/**
 * The last `done` frame made answer by answer, to copy its tail for the next
 * frame of the very same answers: the array itself, so an array of answers
 * handed to `doneFrameBytes` must never be changed after (a check's are not:
 * it has them all). One frame, up to LAST_DONE_MAX bytes, is held.
 */
let lastDone: { results: readonly CheckResult[]; count: number; frame: Buffer; tailAt: number } | undefined;
const LAST_DONE_MAX = 1024 * 1024;

function doneFrameMade(id: MessageId | null, results: readonly CheckResult[], pooled: boolean): Buffer {
  let ok = 0;
  let skipped = 0;
  let failed = 0;
  const count = results.length;
  const parts = new Array<Buffer>(count);
  // The commas between answers, and `]}`.
  let length = (count > 0 ? count - 1 : 0) + 2;
  for (let i = 0; i < count; i++) {
    const result = results[i]!;
    if (result.status === 'ok') ok++;
    else if (result.status === 'skipped') skipped++;
    else failed++;
    const bytes = resultBytes(result);
    parts[i] = bytes;
    length += bytes.length;
  }
  const head = `{"type":"done","id":${JSON.stringify(id)},"ok":${ok},"skipped":${skipped},"failed":${failed},"results":[`;
  const headLength = Buffer.byteLength(head);
  const out = frameBuffer(headLength + length, pooled);
  let at = out.write(head, 0, 'utf8');
  for (let i = 0; i < count; i++) {
    if (i > 0) out[at++] = 0x2c; // ,
    const bytes = parts[i]!;
    out.set(bytes, at);
    at += bytes.length;
  }
  out[at++] = 0x5d; // ]
  out[at] = 0x7d; // }
  return out;
}

/** Where a `done` frame's id starts: after `{"type":"done","id":`. */
const DONE_ID_AT = '{"type":"done","id":'.length;
/** `{"type":"done","id":"` as bytes, made at first use (importing this module makes no Buffer). */
let doneHeadQuoted: Buffer | undefined;

/**
 * A `done` frame's bytes after its id (`,"ok":…,"results":[…]}`), made once to
 * give the same answers to other checks (after `doneHead` or `doneHeadOfPlainId`). Never one of this
 * module's slabs (a small one may sit in Node's own buffer pool: copy it to keep
 * it long).
 */
export function doneTail(results: readonly CheckResult[]): Buffer {
  // The frame of the empty id `""`: its tail starts after the two quotes.
  return doneFrameBytes('', results, false).subarray(DONE_ID_AT + 2);
}

/**
 * A `done` frame's bytes up to its id's end, `{"type":"done","id":"…"`, for an
 * id given as the bytes of a JSON string's content that need no escape
 * (printable ASCII, no `"` nor `\`): with the answers' `doneTail` after it, the
 * bytes `doneFrameBytes(id, results)` makes.
 */
export function doneHeadOfPlainId(idBytes: Uint8Array): Buffer {
  const head = (doneHeadQuoted ??= Buffer.from('{"type":"done","id":"'));
  const out = Buffer.allocUnsafe(head.length + idBytes.length + 1);
  head.copy(out, 0);
  out.set(idBytes, head.length);
  out[out.length - 1] = 0x22; // "
  return out;
}

/** The short form's answer: the cover URL where ok, else the input URL. */
export function shortAnswer(results: readonly CheckResult[]): string {
  return ['OK', ...results.map((result) => (result.status === 'ok' && result.coverUrl ? result.coverUrl : result.url))].join(' ');
}
