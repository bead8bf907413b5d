/**
 * Check frames answered from memory, kept by their bytes after the id: a page
 * rendered again asks for the same covers in the same words, and such a frame
 * is answered with the `done` frame kept for it (its id copied in) while memory
 * still holds every row the answer was made from (`CoverChecks.checkAgain`,
 * which also counts and touches them as a check from memory does): no JSON
 * parse, no lookup per URL, no frame built answer by answer.
 *
 * Only the plain form is kept: a frame that is byte for byte what the protocol
 * module's `checkFrame` writes, with an id of printable ASCII that needs no
 * escape. Then another frame whose bytes differ only in such an id says the
 * same check with that id, and is answered as parsing it would answer it.
 *
 * One memo serves a server's client sockets. It is bounded in entries and in
 * bytes (kept frames, kept answers, the rows they pin); when either is full it
 * starts empty. A frame it does not hold costs a hash of its bytes.
 */
import type { HeldCheck, KeptCheck } from '../checks/index.js';
import { checkFrame, doneHeadOfPlainId, doneTail, MAX_ID_LENGTH } from '@coverhelper/client/protocol';

/** A check frame in plain form starts with these bytes; its id follows. */
const CHECK_HEAD = Buffer.from('{"type":"check","id":"');

/** What the memo may hold, by default. */
export const FRAME_MEMO_LIMITS = {
  /** Kept frames. */
  maxEntries: 4096,
  /** Bytes of kept frames and answers, and about 1 KiB per row they pin. */
  maxBytes: 32 * 1024 * 1024,
  /** Larger frames are not kept (nor looked for). */
  maxFrameBytes: 256 * 1024,
  /**
   * Frames of fewer URLs are not kept: the ordinary path answers them about as
   * fast (a short parse, a few lookups), and each kept frame is objects that
   * outlive a young-generation collection. At 2,000 one-URL checks a second,
   * every one of them kept made each scavenge 5–14 ms instead of 1–2.6
   * (`BENCH_GC_TRACE=1 npm run bench:hot`).
   */
  minUrls: 8,
};

export type FrameMemoLimits = typeof FRAME_MEMO_LIMITS;

/** What the memo keeps per frame: its bytes from the id's closing quote, the answer's `done` tail, and what `checkAgain` needs. */
interface Kept {
  rest: Buffer;
  tail: Buffer;
  check: HeldCheck;
  bytes: number;
}

/**
 * Counted per row a kept answer pins: its memory entry, the row, the answer made
 * from it and that answer's JSON bytes, all shared with memory while it holds
 * them, but kept alive by the memo once it lets them go (until the frame is
 * asked again or the memo starts empty).
 */
const BYTES_PER_ROW = 1024;

/** `bytes` copied into memory of their own: a small buffer of Node's shared pool would keep its whole 8 KiB slab alive. */
function ownCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * Where the id of a check frame in plain form ends (the index of its closing
 * quote), or -1 when `frame` is not one: `{"type":"check","id":"` then up to
 * MAX_ID_LENGTH bytes of printable ASCII with no `"` nor `\`, then `"`.
 */
export function plainIdEnd(frame: Buffer): number {
  const start = CHECK_HEAD.length;
  if (frame.length <= start || frame.compare(CHECK_HEAD, 0, start, 0, start) !== 0) return -1;
  const last = Math.min(frame.length, start + MAX_ID_LENGTH + 1);
  for (let i = start; i < last; i++) {
    const byte = frame[i]!;
    if (byte === 0x22) return i;
    if (byte < 0x20 || byte > 0x7e || byte === 0x5c) return -1;
  }
  return -1;
}

/** FNV-1a over `frame` from `from`, four bytes a step: a key for the map, checked by comparing the bytes. */
function hashFrom(frame: Buffer, from: number): number {
  let hash = 0x811c9dc5 | 0;
  const end = frame.length;
  let i = from;
  for (; i + 4 <= end; i += 4) hash = Math.imul(hash ^ (frame[i]! | (frame[i + 1]! << 8) | (frame[i + 2]! << 16) | (frame[i + 3]! << 24)), 16777619);
  for (; i < end; i++) hash = Math.imul(hash ^ frame[i]!, 16777619);
  return hash >>> 0;
}

export class FrameMemo {
  private readonly kept = new Map<number, Kept>();
  private bytes = 0;

  constructor(private readonly limits: FrameMemoLimits = FRAME_MEMO_LIMITS) {}

  get size(): number {
    return this.kept.size;
  }

  /**
   * The `done` frame for `frame`, as its head (up to the id's end) and the kept
   * tail (never write to it: it is sent as it is, to every socket that asks),
   * when its bytes after the id are a kept frame's and `again` (the checks'
   * `checkAgain`) says its answer still holds; else undefined, and a kept answer
   * that no longer holds is let go.
   */
  answer(frame: Buffer, again: (check: HeldCheck) => boolean): { head: Buffer; tail: Buffer } | undefined {
    if (this.kept.size === 0 || frame.length > this.limits.maxFrameBytes) return undefined;
    const end = plainIdEnd(frame);
    if (end < 0) return undefined;
    const key = hashFrom(frame, end);
    const kept = this.kept.get(key);
    if (kept === undefined || kept.rest.length !== frame.length - end || frame.compare(kept.rest, 0, kept.rest.length, end) !== 0) return undefined;
    if (!again(kept.check)) {
      this.kept.delete(key);
      this.bytes -= kept.bytes;
      return undefined;
    }
    return { head: doneHeadOfPlainId(frame.subarray(CHECK_HEAD.length, end)), tail: kept.tail };
  }

  /** Whether a frame of `urls` URLs may be kept (`minUrls`): a smaller one is not worth the closure that would keep it. */
  keeps(urls: number): boolean {
    return urls >= this.limits.minUrls;
  }

  /**
   * Keeps `check`, the answer from memory to `frame` (whose text is `text`:
   * a check of `urls` with id `id`), when the frame is in plain form.
   */
  keep(frame: Buffer, text: string, id: string, urls: readonly string[], check: KeptCheck): void {
    if (frame.length > this.limits.maxFrameBytes || urls.length < this.limits.minUrls) return;
    const end = plainIdEnd(frame);
    // Exactly what checkFrame writes: the bytes after the id then say these URLs whatever the id.
    if (end < 0 || text !== checkFrame(id, urls)) return;
    const rest = ownCopy(frame.subarray(end));
    const tail = ownCopy(doneTail(check.results));
    const bytes = rest.length + tail.length + check.held.length * BYTES_PER_ROW;
    if (bytes > this.limits.maxBytes) return;
    const key = hashFrom(frame, end);
    const old = this.kept.get(key);
    if (old !== undefined) {
      this.kept.delete(key);
      this.bytes -= old.bytes;
    }
    if (this.kept.size >= this.limits.maxEntries || this.bytes + bytes > this.limits.maxBytes) this.clear();
    // The results are in the tail now: only what `again` needs is kept.
    this.kept.set(key, { rest, tail, check: { held: check.held, base: check.base, pages: check.pages }, bytes });
    this.bytes += bytes;
  }

  clear(): void {
    this.kept.clear();
    this.bytes = 0;
  }
}
