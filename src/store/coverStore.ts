/**
 * The cover index: url → stored cover, in the `covers` table.
 * Single-statement reads and upserts only (SQLite shares one connection).
 */
import { In } from 'typeorm';
import type { DataSource, Repository } from 'typeorm';
import { CoverEntity } from './entities.js';
import type { CoverRow } from './entities.js';

/** SQLite allows 32,766 bound parameters; stay well under for both databases. */
const CHUNK = 500;

export class CoverStore {
  private readonly repo: Repository<CoverRow>;

  constructor(dataSource: DataSource) {
    this.repo = dataSource.getRepository(CoverEntity);
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
    await this.repo.upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
  }

  async count(): Promise<number> {
    return this.repo.count();
  }
}
