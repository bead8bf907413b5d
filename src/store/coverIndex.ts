/**
 * The cover index (`CoverIndex`): url → stored cover, in the `covers` table, the
 * same class on every database (the statements that differ are the dialect's).
 *
 * Writes go through the serial writer and publish a `cover` change; a
 * download's row (`saveUnlessCustom`, `replaceUnlessCustom`) goes, on SQLite,
 * with the task ledger's batch of the turn, in its transaction, and the index's other writes
 * hand such rows waiting for it to the writer before their own. Reads are
 * answered from `CoverMemory` when it holds the row: every write of this node
 * drops the URL from memory first, a change heard from another node drops it
 * when heard, and while other nodes cannot be heard the memory is suspended.
 * "Last asked for" times go through `TouchBatcher` (every 30 s, in slices), a
 * row's only once the time it has is older than the precision
 * (`touchPrecisionMs`, default `TOUCH_PRECISION_MS`): decided by time alone.
 */
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { EventEmitter } from 'node:events';
import { IsNull, LessThan, MoreThan } from 'typeorm';
import type { Repository } from 'typeorm';
import { CoverMemory } from './coverMemory.js';
import type { CoverWrite, Dialect, Published } from './dialect.js';
import { CoverEntity } from './entities.js';
import type { CoverRow } from './entities.js';
import type { CoverIndex, HeldRow, StoreEventMap } from './ports.js';
import type { SerialWriter } from './serialWriter.js';
import { TouchBatcher } from './touchBatcher.js';

/** URLs per lookup statement. */
const CHUNK = 500;

/**
 * Where a download's row is written with the turn's task batch, in its
 * transaction (the task ledger): one commit for every download that finished in
 * the turn, not one more each. Only on a database one node uses: nothing is
 * published.
 */
export interface CoverBatch {
  /** Resolves once committed: null when written, else the custom row that kept its place. */
  writeCover(write: CoverWrite): Promise<CoverRow | null>;
  /** Hands the cover rows waiting for the batch to the serial writer now (a write of this index must not pass them). */
  flushCovers(): void;
}

export interface CoverIndexOptions {
  touchIntervalMs?: number;
  /** The one clock (default the system's): when covers were last asked for, and the touch flush timer. */
  clock?: Clock;
  /** Rows kept in memory (default 20,000). */
  memoryRows?: number;
  /** The batch downloads' rows are written in (`saveUnlessCustom`, `replaceUnlessCustom`); without it each is its own write. */
  batch?: CoverBatch;
  /** How stale a row's "last asked for" time may be before it is written again (default TOUCH_PRECISION_MS; `touchPrecisionFor`). */
  touchPrecisionMs?: number;
}

/**
 * A row's "last asked for" time is written again only once the one it has is
 * older than this: a cover asked for all day costs one write of its row every
 * ten minutes, not one every touch flush (30 s). Each flush had rewritten every
 * row asked for since the last, and SQLite then copied those pages back from
 * its WAL inside a commit on the event loop (15–45 ms, docs/BENCHMARKS.md).
 * Expiry (`--max-age-hours`) works in hours; `touchPrecisionFor` keeps the
 * precision within a twentieth of it.
 */
export const TOUCH_PRECISION_MS = 10 * 60_000;

/** The precision of "last asked for" times for `--max-age-hours` (0: covers are kept). */
export function touchPrecisionFor(maxAgeHours: number): number {
  return maxAgeHours > 0 ? Math.min(TOUCH_PRECISION_MS, (maxAgeHours * 3_600_000) / 20) : TOUCH_PRECISION_MS;
}

export class SqlCoverIndex implements CoverIndex {
  private readonly repo: Repository<CoverRow>;
  private readonly memory: CoverMemory<CoverRow>;
  private readonly touches: TouchBatcher;
  private readonly batch: CoverBatch | undefined;
  private readonly clock: Clock;
  readonly touchPrecisionMs: number;

  constructor(
    private readonly dialect: Dialect,
    private readonly writer: SerialWriter,
    private readonly events: EventEmitter<StoreEventMap>,
    private readonly node: string,
    options: CoverIndexOptions = {},
  ) {
    this.repo = dialect.dataSource.getRepository(CoverEntity);
    this.memory = new CoverMemory(options.memoryRows ?? 20_000);
    this.batch = options.batch;
    this.clock = options.clock ?? systemClock;
    this.touchPrecisionMs = options.touchPrecisionMs ?? TOUCH_PRECISION_MS;
    this.touches = new TouchBatcher((urls, now) => this.writer.run(() => this.dialect.touchCovers(urls, now)), {
      ...(options.touchIntervalMs !== undefined ? { intervalMs: options.touchIntervalMs } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    });
  }

  /** Another node changed this URL's row: memory must not answer the old one. */
  forgetRemote(url: string): void {
    this.memory.forget(url);
  }

  /** Other nodes cannot be heard: memory answers nothing until `resumeMemory`. */
  suspendMemory(): void {
    this.memory.suspend();
  }

  resumeMemory(): void {
    this.memory.resume();
  }

  /** A write of `url` that publishes `changes`, then tells this node's listeners. */
  private async write<T>(url: string, removed: boolean, work: (publish: Published[]) => Promise<T>): Promise<T> {
    const publish: Published[] = this.dialect.shared ? [{ kind: 'cover', url, removed }] : [];
    // The rows waiting for the batch were handed in first: they are written first, as they would be through the writer.
    this.batch?.flushCovers();
    const result = await this.memory.write(url, () => this.writer.run(() => work(publish)));
    if (this.events.listenerCount('cover') > 0) this.events.emit('cover', { url, node: this.node, removed, remote: false });
    return result;
  }

  /** A download's row: with the turn's batch when there is one, else a write of its own. */
  private async writeDownloaded(write: CoverWrite): Promise<CoverRow | null> {
    const { batch } = this;
    if (batch === undefined) return this.write(write.row.url, false, (publish) => this.dialect.upsertCover(write.row, write, publish));
    const { url } = write.row;
    const result = await this.memory.write(url, () => batch.writeCover(write));
    if (this.events.listenerCount('cover') > 0) this.events.emit('cover', { url, node: this.node, removed: false, remote: false });
    return result;
  }

  async find(url: string): Promise<CoverRow | null> {
    return this.dialect.findCover(url);
  }

  async findRemembered(url: string): Promise<CoverRow | null> {
    return this.memory.get(url)?.row ?? this.find(url);
  }

  findInMemory(urls: readonly string[], options: { touch?: boolean } = {}): (CoverRow | undefined)[] {
    const found = this.inMemory(urls, options.touch === true, false).entries;
    const rows = new Array<CoverRow | undefined>(found.length);
    for (let i = 0; i < found.length; i++) rows[i] = found[i]?.row;
    return rows;
  }

  allInMemory(urls: readonly string[], options: { touch?: boolean } = {}): HeldRow[] | undefined {
    const { entries, all } = this.inMemory(urls, options.touch === true, true);
    return all ? (entries as HeldRow[]) : undefined;
  }

  stillInMemory(held: readonly HeldRow[], options: { touch?: boolean } = {}): boolean {
    if (!this.memory.stillHeld(held)) return false;
    if (options.touch === true) this.touchHeld(held);
    return true;
  }

  /**
   * Memory's entries for `urls`, position by position (with `stopAtMiss`, up to
   * the first it does not hold). The URLs found were asked for, whatever the
   * rest: with `touch`, each is noted once per touch round.
   */
  private inMemory(urls: readonly string[], touch: boolean, stopAtMiss: boolean): { entries: (HeldRow | undefined)[]; all: boolean } {
    const entries = new Array<HeldRow | undefined>(urls.length);
    let all = true;
    let found = 0;
    for (let i = 0; i < urls.length; i++) {
      const entry = this.memory.get(urls[i]!);
      if (entry === undefined) {
        all = false;
        if (stopAtMiss) break;
        continue;
      }
      entries[i] = entry;
      found++;
    }
    if (touch && found > 0) this.touchHeld(entries);
    return { entries, all };
  }

  /** Notes the URLs of `held` as asked for now, those whose time is older than the precision. */
  private touchHeld(held: readonly (HeldRow | undefined)[]): void {
    let touched = false;
    const now = this.clock.now();
    for (let i = 0; i < held.length; i++) {
      const entry = held[i];
      if (entry !== undefined && this.noteAsked(entry.row, now)) touched = true;
    }
    if (touched) this.touches.schedule();
  }

  /**
   * Notes `row` (memory's, or one just read) as asked for at `now` when the
   * time it has is older than the precision: memory's row says `now` from here
   * on, the next flush writes it. Whether it was noted.
   */
  private noteAsked(row: CoverRow, now: number): boolean {
    if (now - row.lastAskedAt < this.touchPrecisionMs) return false;
    row.lastAskedAt = now;
    this.touches.note(row.url);
    return true;
  }

  async findMany(urls: readonly string[], options: { touch?: boolean } = {}): Promise<Map<string, CoverRow>> {
    const touch = options.touch === true;
    // The clock is read only when the rows' last-asked-for times are noted.
    const now = touch ? this.clock.now() : 0;
    const found = new Map<string, CoverRow>();
    const missing: string[] = [];
    for (const url of urls) {
      const entry = this.memory.get(url);
      if (entry) {
        found.set(url, entry.row);
        if (touch) this.noteAsked(entry.row, now);
      } else missing.push(url);
    }
    for (let i = 0; i < missing.length; i += CHUNK) {
      const started = this.memory.readStarted();
      const rows = await this.dialect.findCovers(missing.slice(i, i + CHUNK));
      const current = this.memory.fresh(started);
      for (const row of rows) {
        found.set(row.url, row);
        if (current) {
          this.memory.put(row);
        }
        if (touch) this.noteAsked(row, now);
      }
    }
    if (touch) this.touches.schedule();
    return found;
  }

  async save(row: CoverRow): Promise<void> {
    await this.write(row.url, false, (publish) => this.dialect.upsertCover(row, {}, publish));
  }

  async saveUnlessCustom(row: CoverRow): Promise<CoverRow | null> {
    return this.writeDownloaded({ row, unlessCustom: true });
  }

  async replace(row: CoverRow, replacedPath: string, reason: string): Promise<void> {
    const replaced = { url: row.url, path: replacedPath, kind: 'file' as const, reason, createdAt: row.createdAt };
    await this.write(row.url, false, (publish) => this.dialect.upsertCover(row, { replaced }, publish));
  }

  async replaceUnlessCustom(row: CoverRow, replacedPath: string, reason: string): Promise<CoverRow | null> {
    const replaced = { url: row.url, path: replacedPath, kind: 'file' as const, reason, createdAt: row.createdAt };
    return this.writeDownloaded({ row, unlessCustom: true, replaced });
  }

  touch(urls: Iterable<string>): void {
    const now = this.clock.now();
    for (const url of urls) {
      const entry = this.memory.get(url);
      if (entry === undefined) this.touches.note(url);
      else this.noteAsked(entry.row, now);
    }
    this.touches.schedule();
  }

  flushTouches(): Promise<void> {
    return this.touches.flush();
  }

  async count(): Promise<number> {
    return this.repo.count();
  }

  async removeIfPath(url: string, path: string): Promise<void> {
    await this.write(url, true, (publish) => this.dialect.deleteCoverIfPath(url, path, publish));
  }

  async markResolved(url: string, path: string, at: number, pic: string): Promise<boolean> {
    return this.write(url, false, (publish) => this.dialect.markResolved(url, path, at, pic, publish));
  }

  async setColor(url: string, path: string, color: string): Promise<boolean> {
    return this.write(url, false, (publish) => this.dialect.setCoverColor(url, path, color, publish));
  }

  async lackingColor(after: string, limit: number): Promise<CoverRow[]> {
    return this.repo.find({ where: { color: IsNull(), url: MoreThan(after) }, order: { url: 'ASC' }, take: limit });
  }

  async pathInUse(path: string): Promise<boolean> {
    // A download's row waiting for the turn's batch counts too: handed to the writer and written first.
    this.batch?.flushCovers();
    await this.writer.idle();
    return this.repo.exists({ where: { path } });
  }

  async downloadedNotAskedSince(before: number, limit: number): Promise<CoverRow[]> {
    return this.repo.find({ where: { source: 'download', lastAskedAt: LessThan(before) }, order: { lastAskedAt: 'ASC' }, take: limit });
  }

  async findByPath(path: string): Promise<CoverRow | null> {
    // A prepared statement, not the ORM's query builder: every variant request asks it.
    return this.dialect.findCoverByPath(path);
  }

  async setVariantBytes(path: string, bytes: number): Promise<void> {
    await this.dialect.setVariantBytes(path, bytes);
  }

  async downloadedBytes(): Promise<number> {
    // A cover's file, its original when that is a file of its own, and its variants (`diskBytes`).
    const rows = await this.dialect.dataSource.query<{ total: number | string | null }[]>(
      "SELECT SUM(bytes + CASE WHEN original_path IS NOT NULL AND original_path <> path THEN COALESCE(original_bytes, 0) ELSE 0 END + variant_bytes) AS total FROM covers WHERE source = 'download'",
    );
    return Number(rows[0]?.total ?? 0);
  }

  async leastRecentlyAsked(limit: number, offset: number): Promise<CoverRow[]> {
    // With the variants' bytes: the cache cap counts them (`diskBytes`).
    return this.repo
      .createQueryBuilder('cover')
      .addSelect('cover.variantBytes')
      .where('cover.source = :source', { source: 'download' })
      .orderBy('cover.lastAskedAt', 'ASC')
      .addOrderBy('cover.url', 'ASC')
      .take(limit)
      .skip(offset)
      .getMany();
  }
}
