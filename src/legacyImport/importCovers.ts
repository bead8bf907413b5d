/**
 * Imports the 2019 coverHelper's covers (`coverHub.db`, table
 * `url2Path(url text primary key, path text)`, files such as
 * `coverFiles/<host>/<name>` relative to the folder the Go service ran in) into
 * this service's store, as `npm run import-legacy -- DB DIR` does.
 *
 * Every row and every file is hostile until checked:
 *   url   a string of at most MAX_URL_LENGTH characters that parses as an
 *         http(s) URL (kept byte for byte: it is what the blog sends)
 *   path  a relative path of plain segments (no `..`, no `.`-segment, no empty
 *         or hidden segment, no backslash, no NUL); the file is opened without
 *         following a link in its last segment and without blocking on a FIFO,
 *         must be a regular file whose real path lies inside DIR, and is read
 *         only up to `--max-bytes`
 *   file  named by no other row: the Go service kept one file per host and
 *         base name, so two URLs that share both share a file, which holds the
 *         cover of whichever was downloaded last (both are left to be
 *         downloaded again when asked for)
 *   data  decoded and resized by the service's own `processImage` (format
 *         sniffed from the bytes, the 25-megapixel limit, the shared pixel
 *         budget), then written like a download, its original kept beside
 *         it (`writeCover`: temp file and rename, content-addressed path) and
 *         recorded with source `download`
 *
 * A URL that already has a cover (an earlier import, a download, an upload) is
 * left alone, so a second run imports nothing twice. Rows are imported a few at
 * once (decoding is CPU work; libvips spreads one decode over its threads).
 *
 * Each row ends as one outcome; every outcome but `imported` and `present` is
 * reported with its reason. A failure of this machine (the database, the
 * covers folder) is not the row's fault: the run stops taking rows, and the
 * next run resumes where this one stopped.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MAX_URL_LENGTH } from '@coverhelper/client/protocol';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { ResizeSpec } from '../config.js';
import { CoverError } from '../errors.js';
import { processImage } from '../images/index.js';
import { inspectFile, plainSegments, removeCoverFiles, writeCover } from '../store/index.js';
import type { CoverRow, Store } from '../store/index.js';

/** What became of one row. */
export type ImportOutcome = 'imported' | 'present' | 'missing' | 'notImage' | 'refused';

export type ImportCounts = Record<ImportOutcome, number> & { rows: number; failed: number };

/** One skipped row, for the report. */
export interface ImportReport {
  outcome: Exclude<ImportOutcome, 'imported' | 'present'>;
  url: string;
  path: string;
  reason: string;
}

/** The database could not be read as a 2019 coverHelper database: one line says why. */
export class LegacyDbError extends Error {
  override readonly name = 'LegacyDbError';
}

/** A row's failure that is this machine's (database, covers folder), not the row's. */
export class ImportStorageError extends Error {
  override readonly name = 'ImportStorageError';
}

/** The 2019 database, opened read-only and checked. */
export interface LegacyDb {
  /** Rows in url2Path. */
  count: number;
  /**
   * Paths that several rows name, with how many: the Go service kept one file per
   * host and base name, so URLs that share both share a file, which holds only
   * the cover of whichever was downloaded last.
   */
  shared: Map<string, number>;
  /** URLs that several rows name (a table made without its primary key): the first row of each is imported. */
  repeated: Set<string>;
  /** Its rows, as stored (values of any type: hostile). */
  rows(): IterableIterator<{ url: unknown; path: unknown }>;
  close(): void;
}

/**
 * Opens `file` read-only and checks it holds `url2Path(url, path)`. Throws
 * `LegacyDbError` with one line for a missing, unreadable, non-SQLite or
 * foreign database.
 */
export function openLegacyDb(file: string): LegacyDb {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new LegacyDbError(`cannot open ${file}: ${describe(error)}`);
  }
  try {
    db.pragma('query_only = ON');
    const table = db.prepare("SELECT type FROM sqlite_master WHERE name = 'url2Path' AND type = 'table'").get();
    if (table === undefined) throw new LegacyDbError(`${file} is not a 2019 coverHelper database: it has no url2Path table`);
    const columns = (db.prepare("SELECT name FROM pragma_table_info('url2Path')").all() as { name: string }[]).map((c) => c.name);
    for (const column of ['url', 'path']) {
      if (!columns.includes(column)) throw new LegacyDbError(`${file} is not a 2019 coverHelper database: its url2Path table has no ${column} column`);
    }
    const { n } = db.prepare('SELECT count(*) AS n FROM url2Path').get() as { n: number };
    const shared = db.prepare("SELECT path, count(*) AS n FROM url2Path WHERE typeof(path) = 'text' GROUP BY path HAVING count(*) > 1").all() as { path: string; n: number }[];
    const repeated = db.prepare("SELECT url FROM url2Path WHERE typeof(url) = 'text' GROUP BY url HAVING count(*) > 1").pluck().all() as string[];
    return {
      count: Number(n),
      shared: new Map(shared.map((row) => [row.path, Number(row.n)])),
      repeated: new Set(repeated),
      rows: () => db.prepare('SELECT url, path FROM url2Path').iterate() as IterableIterator<{ url: unknown; path: unknown }>,
      close: () => db.close(),
    };
  } catch (error) {
    db.close();
    if (error instanceof LegacyDbError) throw error;
    throw new LegacyDbError(`cannot read ${file} as a 2019 coverHelper database: ${describe(error)}`);
  }
}

function describe(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
}

export interface ImportOptions {
  db: LegacyDb;
  /** The folder the Go service ran in: row paths are relative to it. */
  dir: string;
  store: Pick<Store, 'covers' | 'tasks'>;
  config: { coversDir: string; maxBytes: number; resize: ResizeSpec | null; originalMax?: number };
  /** Rows imported at once. */
  concurrency: number;
  /** After each row. */
  onRow?: (counts: ImportCounts) => void;
  /** Each skipped row. */
  onReport?: (report: ImportReport) => void;
  /** Stops taking rows (those begun finish). */
  signal?: AbortSignal;
  /** The one clock (default the system's): the imported covers' times. */
  clock?: Clock;
}

export interface ImportResult {
  counts: ImportCounts;
  /** Why the run stopped before its last row, if it did. */
  stopped: string | undefined;
}

class Skip extends Error {
  constructor(
    readonly outcome: ImportReport['outcome'],
    reason: string,
  ) {
    super(reason);
  }
}

/** The row's URL, or a Skip. */
function checkUrl(url: unknown): string {
  if (typeof url !== 'string') throw new Skip('refused', `the url is not text (${url === null ? 'NULL' : typeof url})`);
  if (url.length > MAX_URL_LENGTH) throw new Skip('refused', `the url is longer than ${MAX_URL_LENGTH} characters`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Skip('refused', 'the url is not a URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Skip('refused', `the url is not http(s) but ${parsed.protocol}`);
  return url;
}

/** The row's file, read whole (at most `maxBytes`), or a Skip. */
async function readRowFile(dir: string, relPath: unknown, maxBytes: number): Promise<Buffer> {
  if (typeof relPath !== 'string' || relPath === '') throw new Skip('refused', 'the path is empty or not text');
  if (relPath.startsWith('/') || relPath.includes('\\') || relPath.includes('\0')) throw new Skip('refused', 'the path is absolute or holds a backslash or NUL');
  const segments = plainSegments(relPath);
  if (segments === undefined) throw new Skip('refused', 'the path leaves the folder or has an empty, "." , ".." or hidden segment');
  // The old folder is read through the path guard too: one rule for every file the service reads.
  const opened = await inspectFile(dir, segments);
  if ('refused' in opened) {
    switch (opened.refused) {
      case 'missing':
        throw new Skip('missing', 'no such file');
      case 'link':
        throw new Skip('refused', 'the file is a symbolic link');
      case 'folder_link':
      case 'outside':
        throw new Skip('refused', 'a link in its path leads out of the folder (folder links are not followed)');
      case 'not_file':
        throw new Skip('refused', 'not a regular file');
      default:
        throw new Skip('refused', `the file cannot be opened (${opened.code ?? 'error'})`);
    }
  }
  const { handle, size } = opened;
  try {
    if (size > maxBytes) throw new Skip('refused', `the file is ${size} bytes, over --max-bytes ${maxBytes}`);
    if (size === 0) throw new Skip('notImage', 'the file is empty');
    // Read at most one byte past the limit: a file that grows meanwhile is still caught.
    const buffer = Buffer.alloc(size + 1);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    if (read > maxBytes) throw new Skip('refused', `the file is over --max-bytes ${maxBytes}`);
    return buffer.subarray(0, read);
  } finally {
    await handle.close();
  }
}

/** The first line of a message (libvips repeats its complaint over several). */
function oneLine(text: string): string {
  return text.split(/\r?\n/, 1)[0]!;
}

const emptyCounts = (rows: number): ImportCounts => ({ rows, imported: 0, present: 0, missing: 0, notImage: 0, refused: 0, failed: 0 });

/** Storage work that failed: the machine's fault, not the row's. */
function storage(what: string, error: unknown): ImportStorageError {
  return new ImportStorageError(`${what}: ${describe(error)}`, { cause: error });
}

export async function importLegacy(options: ImportOptions): Promise<ImportResult> {
  const { db, store, config } = options;
  const clock = options.clock ?? systemClock;
  const dir = path.resolve(options.dir);
  // The folder must exist (and may be a link: it is the root every row's path is read under).
  await realpath(dir);
  const counts = emptyCounts(db.count);
  /** Repeated URLs whose first row was taken. */
  const seen = new Set<string>();
  let stopped: string | undefined;

  const importRow = async (row: { url: unknown; path: unknown }): Promise<ImportOutcome> => {
    const url = checkUrl(row.url);
    // A table without its primary key may repeat a URL: its first row is the one imported.
    if (db.repeated.has(url)) {
      if (seen.has(url)) throw new Skip('refused', 'the url repeats an earlier row');
      seen.add(url);
    }
    let existing: CoverRow | null;
    try {
      existing = await store.covers.find(url);
    } catch (error) {
      throw storage('reading the covers table', error);
    }
    if (existing) return 'present';
    const sharers = typeof row.path === 'string' ? db.shared.get(row.path) : undefined;
    if (sharers !== undefined) {
      throw new Skip('refused', `${sharers} URLs share this file (the 2019 service kept one file per host and name): it may be another URL's cover`);
    }
    const data = await readRowFile(dir, row.path, config.maxBytes);
    let image;
    try {
      image = await processImage(data, config.resize, undefined, config.originalMax);
    } catch (error) {
      if (error instanceof CoverError && error.code === 'not_image') throw new Skip('notImage', error.message);
      if (error instanceof CoverError) throw new Skip('refused', error.message);
      throw error;
    }
    const at = clock.now();
    let stored: CoverRow;
    try {
      stored = await writeCover(url, image, { coversDir: config.coversDir, source: 'download', now: at });
    } catch (error) {
      // A service starting meanwhile sweeps the temp folder: one more try.
      try {
        stored = await writeCover(url, image, { coversDir: config.coversDir, source: 'download', now: at });
      } catch {
        throw storage('writing the cover file', error);
      }
    }
    let custom: CoverRow | null;
    try {
      // An upload that landed meanwhile wins, as it does over a download.
      custom = await store.covers.saveUnlessCustom(stored);
    } catch (error) {
      throw storage('recording the cover', error);
    }
    if (custom) {
      if (custom.path !== stored.path) await removeCoverFiles(config.coversDir, stored.path);
      return 'present';
    }
    store.tasks.update(url, { status: 'ok', attempts: 1, errorCode: null, errorMessage: null, bytesDone: data.length, bytesTotal: data.length, startedAt: at, finishedAt: at });
    return 'imported';
  };

  const rows = db.rows();
  const worker = async () => {
    while (stopped === undefined && !options.signal?.aborted) {
      const next = rows.next();
      if (next.done) return;
      const row = next.value;
      try {
        counts[await importRow(row)]++;
      } catch (error) {
        if (error instanceof Skip) {
          counts[error.outcome]++;
          options.onReport?.({ outcome: error.outcome, url: String(row.url), path: String(row.path), reason: oneLine(error.message) });
        } else {
          counts.failed++;
          stopped ??= error instanceof ImportStorageError ? error.message : `unexpected error: ${describe(error)}`;
        }
      }
      options.onRow?.(counts);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  } finally {
    // Ends the statement's iteration (and its read transaction) if the run stopped early.
    rows.return?.();
  }
  if (stopped === undefined && options.signal?.aborted) stopped = 'interrupted';
  try {
    await store.tasks.flush();
  } catch (error) {
    stopped ??= `writing the task rows: ${describe(error)}`;
  }
  return { counts, stopped };
}

/** `imported N, already present N, missing N, not an image N, refused N (of N rows) in Xs`. */
export function summaryLine(counts: ImportCounts, seconds: number): string {
  const failed = counts.failed > 0 ? `, failed ${counts.failed}` : '';
  const done = counts.imported + counts.present + counts.missing + counts.notImage + counts.refused + counts.failed;
  const of = done === counts.rows ? `of ${counts.rows} rows` : `${done} of ${counts.rows} rows done`;
  return (
    `imported ${counts.imported}, already present ${counts.present}, missing ${counts.missing}, ` +
    `not an image ${counts.notImage}, refused ${counts.refused}${failed} (${of}) in ${seconds.toFixed(1)}s`
  );
}
