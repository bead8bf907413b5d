/**
 * The most recently asked-for cover rows, in memory: a hit costs one Map lookup.
 *
 * Least recently used goes first. A hit in the newer half is not moved (`seq`
 * says how new an entry is), so a hot URL costs one lookup; only rows that
 * drifted into the older half move back to the newest end. The order lives in a
 * queue of (url, seq) beside the Map, not in the Map's own insertion order:
 * taking a Map's first key after many deletions walks every hole they left (V8
 * compacts late), which made an insert at capacity 20,000 cost ~60 µs. A queue
 * entry whose seq is no longer its URL's is stale and skipped; the queue is
 * compacted as its head advances.
 *
 * Coherence is the cover index's job: it drops a URL before every write of it
 * (`forget`), refuses to fill memory from a read that overlapped a write
 * (`writes`/`writing`), and forgets URLs other nodes changed (their
 * notifications), or everything while it cannot hear them (`suspend`).
 *
 * States:
 *   on         rows are kept and answered
 *   suspended  nothing is kept nor answered (a shared database whose
 *              notifications cannot be heard); `resume` starts empty
 */

/**
 * A row in memory: how recently it was put at the newest end, and whether
 * memory has let it go (`gone`: forgotten,
 * written, evicted or replaced), so a holder of the entry can tell it is still
 * the URL's row without a lookup (`stillHeld`).
 */
export interface Remembered<Row extends { url: string }> {
  row: Row;
  seq: number;
  gone: boolean;
}

export class CoverMemory<Row extends { url: string }> {
  private readonly entries = new Map<string, Remembered<Row>>();
  /** URLs in the order they were put at the newest end, with the seq each was put with. */
  private urls: string[] = [];
  private seqs: number[] = [];
  private head = 0;
  private seq = 0;
  private suspended = false;
  /** Writes begun, and writes not yet ended: a read that overlapped any write does not fill the memory. */
  private writes = 0;
  private writing = 0;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The entry of `url`, kept in the newer half (a hit), or undefined. */
  get(url: string): Remembered<Row> | undefined {
    const entry = this.entries.get(url);
    if (entry !== undefined && entry.seq <= this.seq - this.capacity / 2) {
      entry.seq = ++this.seq;
      this.enqueue(url, entry.seq);
    }
    return entry;
  }

  /** Keeps `row` at the newest end, dropping the oldest past capacity; undefined when suspended. */
  put(row: Row): Remembered<Row> | undefined {
    if (this.suspended) return undefined;
    const entry: Remembered<Row> = { row, seq: ++this.seq, gone: false };
    this.drop(row.url);
    this.entries.set(row.url, entry);
    this.enqueue(row.url, entry.seq);
    if (this.entries.size > this.capacity) this.evictOldest();
    return entry;
  }

  private enqueue(url: string, seq: number): void {
    this.urls.push(url);
    this.seqs.push(seq);
    // Stale entries (moved or forgotten URLs) are bounded: past three times the capacity, keep only the live ones.
    if (this.urls.length - this.head > 3 * this.capacity + 1024) this.compact(true);
  }

  /** Drops the least recently used entry: the first queued one that is still its URL's. */
  private evictOldest(): void {
    while (this.head < this.urls.length) {
      const url = this.urls[this.head]!;
      const seq = this.seqs[this.head]!;
      this.head++;
      if (this.entries.get(url)?.seq === seq) {
        this.drop(url);
        break;
      }
    }
    if (this.head > 4096 && this.head * 2 > this.urls.length) this.compact(false);
  }

  /** Drops the queue's consumed head (and, with `stale`, its stale entries), keeping the order. */
  private compact(stale: boolean): void {
    const urls: string[] = [];
    const seqs: number[] = [];
    for (let i = this.head; i < this.urls.length; i++) {
      const url = this.urls[i]!;
      const seq = this.seqs[i]!;
      if (stale && this.entries.get(url)?.seq !== seq) continue;
      urls.push(url);
      seqs.push(seq);
    }
    this.urls = urls;
    this.seqs = seqs;
    this.head = 0;
  }

  forget(url: string): void {
    this.drop(url);
  }

  /** Lets `url`'s entry go: out of the map, and marked gone for whoever holds it. */
  private drop(url: string): void {
    const entry = this.entries.get(url);
    if (entry === undefined) return;
    entry.gone = true;
    this.entries.delete(url);
  }

  /**
   * Whether memory still holds every one of `entries` (none gone); if so each
   * counts as a hit, as `get` would count it (one in the older half moves to the
   * newest end). A check answered from these entries before is answered again
   * with no lookup per URL.
   */
  stillHeld(entries: readonly Remembered<Row>[]): boolean {
    for (let i = 0; i < entries.length; i++) if (entries[i]!.gone) return false;
    const older = this.seq - this.capacity / 2;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.seq <= older) {
        entry.seq = ++this.seq;
        this.enqueue(entry.row.url, entry.seq);
      }
    }
    return true;
  }

  /** A token to give `fresh`: reads that began before it and overlapped a write must not fill the memory. */
  readStarted(): { writes: number; quiet: boolean } {
    return { writes: this.writes, quiet: this.writing === 0 };
  }

  /** Whether a read begun at `started` saw no write begin or run meanwhile. */
  fresh(started: { writes: number; quiet: boolean }): boolean {
    return started.quiet && this.writing === 0 && this.writes === started.writes;
  }

  /** Runs a write of `url`: its row leaves memory first, and reads that overlap it fill nothing. */
  async write<T>(url: string | undefined, work: () => Promise<T>): Promise<T> {
    this.writes++;
    this.writing++;
    if (url !== undefined) this.drop(url);
    try {
      return await work();
    } finally {
      this.writing--;
    }
  }

  /** Empties memory and keeps nothing until `resume`. */
  suspend(): void {
    this.suspended = true;
    this.writes++;
    this.clear();
  }

  resume(): void {
    this.clear();
    this.suspended = false;
  }

  private clear(): void {
    for (const entry of this.entries.values()) entry.gone = true;
    this.entries.clear();
    this.urls = [];
    this.seqs = [];
    this.head = 0;
  }
}
