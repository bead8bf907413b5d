/**
 * The bytes of the covers the proxy prefix answered lately, in memory, so a
 * stored cover asked for again costs no open, no path checks and no read.
 *
 * Keyed by the cover's stored path, which changes whenever its content does, so
 * an entry never goes stale in content. It is only read after the cover index
 * named that path for the URL asked (the index is kept in step with deletions
 * on every node), so a deleted cover is never answered from here either.
 *
 * Bounded: at most `maxBytes` in total (least recently answered dropped first),
 * and only files up to `maxEntryBytes` are kept; larger ones are streamed from
 * disk each time. Concurrent misses of one path read the file once.
 */
import { openStoredFile } from '../store/index.js';
import { contentTypeOf, etagOf } from './coverRoute.js';

/** Memory the proxy may hold in cover bytes: 64 MiB. */
export const COVER_BYTES_MAX = 64 * 1024 * 1024;
/** Largest file kept: 1 MiB (a blog cover is tens of KB). */
export const COVER_BYTES_MAX_ENTRY = 1024 * 1024;

export interface CachedCover {
  body: Buffer;
  contentType: string;
  etag: string;
}

export class CoverBytes {
  private readonly entries = new Map<string, CachedCover>();
  private readonly reading = new Map<string, Promise<CachedCover | 'large' | undefined>>();
  private held = 0;

  constructor(
    private readonly coversDir: string,
    private readonly maxBytes = COVER_BYTES_MAX,
    private readonly maxEntryBytes = COVER_BYTES_MAX_ENTRY,
  ) {}

  /** Bytes held now. */
  get size(): number {
    return this.held;
  }

  /** The cover at `path` if it is held now (most recently answered from now on): the hot path, with no promise. */
  peek(path: string): CachedCover | undefined {
    const hit = this.entries.get(path);
    if (hit !== undefined) {
      this.entries.delete(path);
      this.entries.set(path, hit);
    }
    return hit;
  }

  /** The cover at `path`; `large` when it is to be streamed; undefined when no such file is there. */
  async get(path: string): Promise<CachedCover | 'large' | undefined> {
    const hit = this.peek(path);
    if (hit !== undefined) return hit;
    let pending = this.reading.get(path);
    if (pending === undefined) {
      pending = this.read(path).finally(() => this.reading.delete(path));
      this.reading.set(path, pending);
    }
    return pending;
  }

  private async read(path: string): Promise<CachedCover | 'large' | undefined> {
    const found = await openStoredFile(this.coversDir, path);
    if (found === undefined) return undefined;
    try {
      if (found.size > this.maxEntryBytes) return 'large';
      const body = await found.handle.readFile();
      const cover = { body, contentType: contentTypeOf(found.file), etag: etagOf(found.size, found.mtimeMs) };
      this.keep(path, cover);
      return cover;
    } finally {
      await found.handle.close().catch(() => undefined);
    }
  }

  private keep(path: string, cover: CachedCover): void {
    this.entries.set(path, cover);
    this.held += cover.body.length;
    for (const [oldest, entry] of this.entries) {
      if (this.held <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.held -= entry.body.length;
    }
  }
}
