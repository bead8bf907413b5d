/**
 * The cover index: url → stored cover, in the `covers` table.
 *
 * Writes go through the serial writer. "Last asked for" times are collected in
 * memory and written in one statement per chunk every `touchIntervalMs`, so a
 * cache hit costs no write on the hot path. The most recently asked-for rows
 * are also kept in memory (`memoryRows`, least recently used dropped first), so
 * a hit costs no read either. Every write of this table goes through this class,
 * which keeps that memory in step; it is only valid while this process is the
 * table's one writer (true for SQLite).
 */
import { In, LessThan } from 'typeorm';
import type { DataSource, Repository } from 'typeorm';
import { CoverEntity, DeletionEntity } from './entities.js';
import type { CoverRow } from './entities.js';
import type { SerialWriter } from './serialWriter.js';

/** SQLite allows 32,766 bound parameters; stay well under for both databases. */
const CHUNK = 500;

export class CoverStore {
  private readonly repo: Repository<CoverRow>;
  private touched = new Set<string>();
  private touchTimer: NodeJS.Timeout | undefined;
  /** url → row, in least-recently-used order (a Map keeps insertion order). */
  private readonly memory = new Map<string, CoverRow>();
  private readonly memoryRows: number;
  /** Writes begun, and writes not yet ended: a read that overlapped any write does not fill the memory. */
  private writes = 0;
  private writing = 0;

  private async write<T>(url: string, work: () => Promise<T>): Promise<T> {
    this.writes++;
    this.writing++;
    this.memory.delete(url);
    try {
      return await this.writer.run(work);
    } finally {
      this.writing--;
    }
  }

  constructor(
    private readonly dataSource: DataSource,
    private readonly writer: SerialWriter,
    private readonly options: { touchIntervalMs?: number; now?: () => number; memoryRows?: number } = {},
  ) {
    this.repo = dataSource.getRepository(CoverEntity);
    this.memoryRows = options.memoryRows ?? 20_000;
  }

  private remember(row: CoverRow): void {
    this.memory.delete(row.url);
    this.memory.set(row.url, row);
    if (this.memory.size > this.memoryRows) this.memory.delete(this.memory.keys().next().value!);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  async find(url: string): Promise<CoverRow | null> {
    return this.repo.findOneBy({ url });
  }

  /** The stored covers of these URLs, by URL; absent URLs are not in the map. */
  async findMany(urls: readonly string[]): Promise<Map<string, CoverRow>> {
    const found = new Map<string, CoverRow>();
    const missing: string[] = [];
    for (const url of urls) {
      const row = this.memory.get(url);
      if (row) {
        this.remember(row);
        found.set(url, row);
      } else missing.push(url);
    }
    for (let i = 0; i < missing.length; i += CHUNK) {
      const writesBefore = this.writes;
      const quietBefore = this.writing === 0;
      const rows = await this.repo.findBy({ url: In(missing.slice(i, i + CHUNK)) });
      const current = quietBefore && this.writing === 0 && this.writes === writesBefore;
      for (const row of rows) {
        found.set(row.url, row);
        if (current) this.remember(row);
      }
    }
    return found;
  }

  /** Inserts or replaces the URL's cover. */
  async save(row: CoverRow): Promise<void> {
    await this.write(row.url, () => this.repo.upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false }));
  }

  /**
   * Replaces the URL's cover and, in the same transaction, records the deletion
   * of the file it replaces: no crash can leave that file with nothing to remove it.
   */
  async replace(row: CoverRow, replacedPath: string, reason: string): Promise<void> {
    await this.write(row.url, () =>
      this.dataSource.transaction(async (manager) => {
        await manager.getRepository(CoverEntity).upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
        await manager
          .createQueryBuilder()
          .insert()
          .into(DeletionEntity)
          .values({ url: row.url, path: replacedPath, kind: 'file', reason, createdAt: row.createdAt, claimedAt: null })
          .orIgnore()
          .execute();
      }),
    );
  }

  /** Notes that these URLs were asked for now; written within `touchIntervalMs`. */
  touch(urls: Iterable<string>): void {
    for (const url of urls) this.touched.add(url);
    if (this.touchTimer === undefined && this.touched.size > 0) {
      this.touchTimer = setTimeout(() => void this.flushTouches(), this.options.touchIntervalMs ?? 1000);
      this.touchTimer.unref();
    }
  }

  /** Writes the pending "last asked for" times. */
  async flushTouches(): Promise<void> {
    clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    if (this.touched.size === 0) return;
    const urls = [...this.touched];
    this.touched = new Set();
    const now = this.now();
    await this.writer.run(async () => {
      for (let i = 0; i < urls.length; i += CHUNK) {
        await this.repo.update({ url: In(urls.slice(i, i + CHUNK)) }, { lastAskedAt: now });
      }
    });
  }

  async count(): Promise<number> {
    return this.repo.count();
  }

  /** Deletes the URL's row if it still points at `path`. */
  async removeIfPath(url: string, path: string): Promise<void> {
    await this.write(url, () => this.repo.delete({ url, path }));
  }

  /** Whether any cover row points at this file. */
  async pathInUse(path: string): Promise<boolean> {
    return this.repo.exists({ where: { path } });
  }

  /** Downloaded covers not asked for since `before` (epoch ms), oldest first. */
  async downloadedNotAskedSince(before: number, limit: number): Promise<CoverRow[]> {
    return this.repo.find({ where: { source: 'download', lastAskedAt: LessThan(before) }, order: { lastAskedAt: 'ASC' }, take: limit });
  }

  /** Total bytes of downloaded (not custom) covers. */
  async downloadedBytes(): Promise<number> {
    const total = await this.repo.sum('bytes', { source: 'download' });
    return Number(total ?? 0);
  }

  /** Downloaded covers, least recently asked for first, one page at a time. */
  async leastRecentlyAsked(limit: number, offset: number): Promise<CoverRow[]> {
    return this.repo.find({ where: { source: 'download' }, order: { lastAskedAt: 'ASC', url: 'ASC' }, take: limit, skip: offset });
  }
}
