/**
 * The most recently asked-for cover rows, in memory: a hit costs one Map lookup.
 *
 * Least recently used first (a Map keeps insertion order). A hit in the newer
 * half is not moved (`seq` says how new an entry is), so a hot URL costs one
 * lookup, not a delete and an insert; only rows that drifted into the older half
 * move back to the end. Eviction takes the oldest first.
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

/** A row in memory: how recently it was put at the newest end, and the touch round it was last noted in. */
export interface Remembered<Row extends { url: string }> {
  row: Row;
  seq: number;
  touchedIn: number;
}

export class CoverMemory<Row extends { url: string }> {
  private readonly entries = new Map<string, Remembered<Row>>();
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
      this.entries.delete(url);
      entry.seq = ++this.seq;
      this.entries.set(url, entry);
    }
    return entry;
  }

  /** Keeps `row` at the newest end, dropping the oldest past capacity; undefined when suspended. */
  put(row: Row): Remembered<Row> | undefined {
    if (this.suspended) return undefined;
    this.entries.delete(row.url);
    const entry: Remembered<Row> = { row, seq: ++this.seq, touchedIn: 0 };
    this.entries.set(row.url, entry);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return entry;
  }

  forget(url: string): void {
    this.entries.delete(url);
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
    if (url !== undefined) this.entries.delete(url);
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
    this.entries.clear();
  }

  resume(): void {
    this.entries.clear();
    this.suspended = false;
  }
}
