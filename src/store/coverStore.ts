/**
 * The cover index: url → stored cover, in the `covers` table.
 *
 * Writes go through the serial writer. "Last asked for" times are collected in
 * memory and written every `touchIntervalMs` (30 s), a slice of URLs per
 * event-loop turn, so a cache hit costs no write on the hot path and the flush
 * never holds the loop for long. The most recently asked-for rows are also kept
 * in memory (`memoryRows`, least recently used dropped first), so a hit costs no
 * read either. Every write of this table goes through this class, which keeps
 * that memory in step; it is only valid while this process is the table's one
 * writer (true for SQLite).
 *
 * On SQLite the statements run for every download or check (`find`, `findMany`,
 * `save`, `saveUnlessCustom`, the touches) are prepared once on the
 * better-sqlite3 connection; the rest, and every other database, use TypeORM.
 */
import { In, LessThan } from 'typeorm';
import type { DataSource, Repository } from 'typeorm';
import { CoverEntity, DeletionEntity } from './entities.js';
import type { CoverRow } from './entities.js';
import type { SerialWriter } from './serialWriter.js';
import { sqliteStatements } from './sqlite.js';

/** SQLite allows 32,766 bound parameters; stay well under for both databases. */
const CHUNK = 500;
/** How long "last asked for" times wait in memory: expiry works in hours. */
const TOUCH_INTERVAL_MS = 30_000;
/** URLs whose "last asked for" time is written per event-loop turn. */
const TOUCH_SLICE = 200;

/** SQLite: the columns of a cover row, as better-sqlite3 returns them. */
interface SqliteCover {
  url: string;
  path: string;
  source: CoverRow['source'];
  bytes: number;
  content_type: string;
  width: number;
  height: number;
  sha256: string;
  created_at: number;
  last_asked_at: number;
}

const COVER_COLUMNS = ['url', 'path', 'source', 'bytes', 'content_type', 'width', 'height', 'sha256', 'created_at', 'last_asked_at'];
const SELECT_COVERS = `SELECT ${COVER_COLUMNS.join(', ')} FROM covers`;
const UPSERT_COVER =
  `INSERT INTO covers (${COVER_COLUMNS.join(', ')}) VALUES (${COVER_COLUMNS.map(() => '?').join(', ')}) ` +
  `ON CONFLICT(url) DO UPDATE SET ${COVER_COLUMNS.slice(1)
    .map((column) => `${column} = excluded.${column}`)
    .join(', ')}`;

const UPSERT_COVER_UNLESS_CUSTOM = `${UPSERT_COVER} WHERE covers.source <> 'custom'`;

/** A row as TypeORM hands it out (its `bigint` transformer makes numbers of the times and sizes). */
function coverFromSqlite(row: SqliteCover): CoverRow {
  return {
    url: row.url,
    path: row.path,
    source: row.source,
    bytes: Number(row.bytes),
    contentType: row.content_type,
    width: row.width,
    height: row.height,
    sha256: row.sha256,
    createdAt: Number(row.created_at),
    lastAskedAt: Number(row.last_asked_at),
  };
}

/** The upsert's parameters, in COVER_COLUMNS order. */
function coverToSqlite(row: CoverRow): unknown[] {
  return [row.url, row.path, row.source, row.bytes, row.contentType, row.width, row.height, row.sha256, row.createdAt, row.lastAskedAt];
}

/** A row in memory: how recently it was put at the newest end, and the touch round it was last queued in. */
interface Remembered {
  row: CoverRow;
  seq: number;
  touchedIn: number;
}

export class CoverStore {
  private readonly repo: Repository<CoverRow>;
  private touched = new Set<string>();
  private touchTimer: NodeJS.Timeout | undefined;
  /** The touch flush running, if any: the next one starts after it. */
  private flushingTouches: Promise<void> = Promise.resolve();
  /**
   * url → row, least recently used first (a Map keeps insertion order). A hit in
   * the newer half is not moved (`seq` says how new an entry is), so a hot URL
   * costs one lookup, not a delete and an insert; only rows that drifted into the
   * older half move back to the end. Eviction still takes the oldest first.
   */
  private readonly memory = new Map<string, Remembered>();
  private seq = 0;
  /** Which touch flush interval this is: a remembered row already touched in it is not queued again. */
  private touchRound = 1;
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

  private remember(row: CoverRow): Remembered {
    this.memory.delete(row.url);
    const entry: Remembered = { row, seq: ++this.seq, touchedIn: 0 };
    this.memory.set(row.url, entry);
    if (this.memory.size > this.memoryRows) this.memory.delete(this.memory.keys().next().value!);
    return entry;
  }

  /** A memory hit: keeps the entry in the newer half of the memory. */
  private hit(entry: Remembered): void {
    if (entry.seq > this.seq - this.memoryRows / 2) return;
    this.memory.delete(entry.row.url);
    entry.seq = ++this.seq;
    this.memory.set(entry.row.url, entry);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  async find(url: string): Promise<CoverRow | null> {
    const sqlite = sqliteStatements(this.dataSource);
    if (!sqlite) return this.repo.findOneBy({ url });
    const found = sqlite.get(`${SELECT_COVERS} WHERE url = ?`).get(url) as SqliteCover | undefined;
    return found ? coverFromSqlite(found) : null;
  }

  /**
   * The URL's cover from memory when it is there (memory is kept in step with
   * every write), else from the table like `find`.
   */
  async findRemembered(url: string): Promise<CoverRow | null> {
    return this.memory.get(url)?.row ?? this.find(url);
  }

  /**
   * The rows of `urls` that memory holds, aligned with `urls` (undefined where
   * it does not: ask `findMany`), without touching the database: the hot path of
   * a check, whose URLs are mostly remembered. With `touch`, the found URLs'
   * "last asked for" times are noted, as `findMany` does.
   */
  findInMemory(urls: readonly string[], options: { touch?: boolean } = {}): (CoverRow | undefined)[] {
    const touch = options.touch === true;
    const rows = new Array<CoverRow | undefined>(urls.length);
    let touched = false;
    for (let i = 0; i < urls.length; i++) {
      const entry = this.memory.get(urls[i]!);
      if (entry === undefined) continue;
      this.hit(entry);
      rows[i] = entry.row;
      if (touch && entry.touchedIn !== this.touchRound) {
        entry.touchedIn = this.touchRound;
        this.touched.add(entry.row.url);
        touched = true;
      }
    }
    if (touched) this.scheduleTouches();
    return rows;
  }

  /**
   * The stored covers of these URLs, by URL; absent URLs are not in the map.
   * With `touch`, the URLs found are also noted as asked for now (see `touch`).
   */
  async findMany(urls: readonly string[], options: { touch?: boolean } = {}): Promise<Map<string, CoverRow>> {
    const touch = options.touch === true;
    const found = new Map<string, CoverRow>();
    const missing: string[] = [];
    for (const url of urls) {
      const entry = this.memory.get(url);
      if (entry) {
        this.hit(entry);
        found.set(url, entry.row);
        if (touch && entry.touchedIn !== this.touchRound) {
          entry.touchedIn = this.touchRound;
          this.touched.add(url);
        }
      } else missing.push(url);
    }
    for (let i = 0; i < missing.length; i += CHUNK) {
      const writesBefore = this.writes;
      const quietBefore = this.writing === 0;
      const rows = await this.findChunk(missing.slice(i, i + CHUNK));
      const current = quietBefore && this.writing === 0 && this.writes === writesBefore;
      for (const row of rows) {
        found.set(row.url, row);
        if (current) this.remember(row).touchedIn = touch ? this.touchRound : 0;
        if (touch) this.touched.add(row.url);
      }
    }
    if (touch) this.scheduleTouches();
    return found;
  }

  private async findChunk(urls: string[]): Promise<CoverRow[]> {
    const sqlite = sqliteStatements(this.dataSource);
    if (!sqlite) return this.repo.findBy({ url: In(urls) });
    const rows = sqlite.get(`${SELECT_COVERS} WHERE url IN (SELECT value FROM json_each(?))`).all(JSON.stringify(urls)) as SqliteCover[];
    return rows.map(coverFromSqlite);
  }

  /** Inserts or replaces the URL's cover. */
  async save(row: CoverRow): Promise<void> {
    await this.write(row.url, async () => {
      const sqlite = sqliteStatements(this.dataSource);
      if (sqlite) sqlite.get(UPSERT_COVER).run(coverToSqlite(row));
      else await this.repo.upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
    });
  }

  /**
   * Saves a downloaded cover unless the URL has a custom one: an upload that
   * landed while the download ran wins. Resolves to null when `row` was saved,
   * or to the custom row that stayed (the caller's file is then unused).
   * One statement on SQLite (`ON CONFLICT … DO UPDATE … WHERE source <> 'custom'`).
   */
  async saveUnlessCustom(row: CoverRow): Promise<CoverRow | null> {
    return this.write(row.url, async () => {
      const sqlite = sqliteStatements(this.dataSource);
      if (sqlite) {
        if (sqlite.get(UPSERT_COVER_UNLESS_CUSTOM).run(coverToSqlite(row)).changes > 0) return null;
        const kept = sqlite.get(`${SELECT_COVERS} WHERE url = ?`).get(row.url) as SqliteCover | undefined;
        return kept ? coverFromSqlite(kept) : null;
      }
      // Elsewhere a read then a write, in one transaction and within the serial writer.
      return this.dataSource.transaction(async (manager) => {
        const repo = manager.getRepository(CoverEntity);
        const current = await repo.findOneBy({ url: row.url });
        if (current?.source === 'custom') return current;
        await repo.upsert(row, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
        return null;
      });
    });
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

  /** Notes that these URLs were asked for now; written within `touchIntervalMs` (default 30 s). */
  touch(urls: Iterable<string>): void {
    for (const url of urls) this.touched.add(url);
    this.scheduleTouches();
  }

  private scheduleTouches(): void {
    if (this.touchTimer === undefined && this.touched.size > 0) {
      this.touchTimer = setTimeout(() => void this.flushTouches(), this.options.touchIntervalMs ?? TOUCH_INTERVAL_MS);
      this.touchTimer.unref();
    }
  }

  /**
   * Writes the pending "last asked for" times: every URL touched before this
   * call is written when it resolves (a flush already running is waited for).
   * At most `TOUCH_SLICE` URLs are written per event-loop turn, each slice one
   * statement through the serial writer, so a large flush never holds up the
   * checks (or the other writes) arriving meanwhile.
   */
  flushTouches(): Promise<void> {
    clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    const flush = this.flushingTouches.then(() => this.writeTouches());
    this.flushingTouches = flush.catch(() => undefined);
    return flush;
  }

  private async writeTouches(): Promise<void> {
    if (this.touched.size === 0) return;
    const urls = [...this.touched];
    this.touched = new Set();
    // Remembered rows asked for from now on are queued again.
    this.touchRound++;
    const now = this.now();
    for (let i = 0; i < urls.length; i += TOUCH_SLICE) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const slice = urls.slice(i, i + TOUCH_SLICE);
      try {
        await this.writer.run(() => this.writeTouchSlice(slice, now));
      } catch (error) {
        // Not written: keep them for the next flush.
        for (const url of urls.slice(i)) this.touched.add(url);
        throw error;
      }
    }
  }

  /** One statement with the slice's URLs as one parameter. */
  private async writeTouchSlice(urls: string[], now: number): Promise<void> {
    const sqlite = sqliteStatements(this.dataSource);
    if (sqlite) {
      sqlite.get('UPDATE covers SET last_asked_at = ? WHERE url IN (SELECT value FROM json_each(?))').run(now, JSON.stringify(urls));
    } else if (this.dataSource.options.type === 'postgres') {
      await this.dataSource.query('UPDATE covers SET last_asked_at = $1 WHERE url = ANY($2::text[])', [now, urls]);
    } else {
      await this.repo.update({ url: In(urls) }, { lastAskedAt: now });
    }
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
