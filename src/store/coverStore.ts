/**
 * The cover index: url → stored cover, in the `covers` table.
 *
 * Writes go through the serial writer. "Last asked for" times are collected in
 * memory and written in one statement per chunk every `touchIntervalMs`, so a
 * cache hit costs no write on the hot path.
 */
import { In, LessThan } from 'typeorm';
import type { DataSource, Repository } from 'typeorm';
import { CoverEntity } from './entities.js';
import type { CoverRow } from './entities.js';
import type { SerialWriter } from './serialWriter.js';

/** SQLite allows 32,766 bound parameters; stay well under for both databases. */
const CHUNK = 500;

export class CoverStore {
  private readonly repo: Repository<CoverRow>;
  private touched = new Set<string>();
  private touchTimer: NodeJS.Timeout | undefined;

  constructor(
    dataSource: DataSource,
    private readonly writer: SerialWriter,
    private readonly options: { touchIntervalMs?: number; now?: () => number } = {},
  ) {
    this.repo = dataSource.getRepository(CoverEntity);
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
    for (let i = 0; i < urls.length; i += CHUNK) {
      const rows = await this.repo.findBy({ url: In(urls.slice(i, i + CHUNK)) });
      for (const row of rows) found.set(row.url, row);
    }
    return found;
  }

  /** Inserts or replaces the URL's cover. */
  async save(row: CoverRow): Promise<void> {
    await this.writer.run(() => this.repo.upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false }));
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
    await this.writer.run(() => this.repo.delete({ url, path }));
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
