import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createDataSource } from '../ormconfig.js';
import { DataSource } from 'typeorm';
import {
  CoverEntity,
  CoverStore,
  DeletionEntity,
  SerialWriter,
  TaskEntity,
  TaskStore,
  coverPath,
  findCoverFile,
  migrations,
  resolveInside,
  sweepTemp,
  writeCoverFile,
  TEMP_DIR,
} from '../src/store/index.js';
import type { CoverRow } from '../src/store/index.js';
import { tempDir } from './helpers/tempDir.js';

/**
 * A fresh database: a SQLite file, or with COVERHELPER_TEST_PG=postgresql://… a
 * fresh schema in that PostgreSQL database (TypeORM then needs the `pg` package).
 */
async function openDb(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const pg = process.env.COVERHELPER_TEST_PG;
  if (pg) {
    const at = new URL(pg);
    const server = {
      host: at.hostname,
      port: Number(at.port || 5432),
      database: decodeURIComponent(at.pathname.slice(1)),
      username: decodeURIComponent(at.username) || process.env.PGUSER || userInfo().username,
      password: decodeURIComponent(at.password),
    };
    const schema = `coverhelper_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
    const admin = new DataSource({ type: 'postgres', ...server });
    await admin.initialize();
    await admin.query(`CREATE SCHEMA "${schema}"`);
    const dataSource = new DataSource({
      type: 'postgres',
      ...server,
      schema,
      extra: { options: `-c search_path=${schema}` },
      entities: [CoverEntity, TaskEntity, DeletionEntity],
      migrations,
      synchronize: false,
      logging: false,
    });
    await dataSource.initialize();
    await dataSource.runMigrations();
    t.after(async () => {
      await dataSource.destroy();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.destroy();
    });
    return { dir, dataSource };
  }
  const dataSource = createDataSource({ db: path.join(dir, 'test.sqlite') });
  await dataSource.initialize();
  await dataSource.runMigrations();
  t.after(() => dataSource.destroy());
  return { dir, dataSource };
}

const onPostgres = Boolean(process.env.COVERHELPER_TEST_PG);

const row = (url: string, overrides: Partial<CoverRow> = {}): CoverRow => ({
  url,
  path: `h/${url.length}.jpg`,
  source: 'download',
  bytes: 100,
  contentType: 'image/jpeg',
  width: 320,
  height: 200,
  sha256: 'a'.repeat(64),
  createdAt: 1,
  lastAskedAt: 2,
  ...overrides,
});

describe('cover store', () => {
  it('runs the migrations on a fresh SQLite file with WAL on', { skip: onPostgres && 'SQLite only' }, async (t) => {
    const { dataSource } = await openDb(t);
    const [mode] = await dataSource.query<{ journal_mode: string }[]>('PRAGMA journal_mode');
    assert.equal(mode?.journal_mode, 'wal');
    assert.deepEqual(
      (await dataSource.query<{ name: string }[]>("SELECT name FROM sqlite_master WHERE type='table' AND name IN ('covers','tasks','deletions') ORDER BY name")).map((r) => r.name),
      ['covers', 'deletions', 'tasks'],
    );
    assert.equal(await dataSource.showMigrations(), false, 'no migration left to run');
  });

  it('upserts covers and finds many at once, in chunks', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter());
    const urls = Array.from({ length: 1200 }, (_, i) => `https://i0.hdslb.com/${i}.jpg`);
    for (const url of urls) await store.save(row(url));
    await store.save(row(urls[0]!, { path: 'h/replaced.jpg', bytes: 7 }));
    const found = await store.findMany([...urls, 'https://i0.hdslb.com/missing.jpg']);
    assert.equal(found.size, 1200);
    assert.equal(found.get(urls[0]!)?.path, 'h/replaced.jpg');
    assert.equal(found.get(urls[0]!)?.bytes, 7);
    assert.equal(typeof found.get(urls[1]!)?.createdAt, 'number');
    assert.equal(await store.count(), 1200);
  });
});

describe('cover store rows', () => {
  it('finds and saves rows exactly as TypeORM reads and writes them', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter());
    const repo = dataSource.getRepository(CoverEntity);
    const big = row("https://i0.hdslb.com/a'b\"c.jpg", { bytes: 2 ** 40, createdAt: 1_763_780_000_123, lastAskedAt: 1_763_780_000_456, width: 0, height: 65_535 });
    await store.save(big);
    assert.deepEqual(await store.find(big.url), big);
    assert.deepEqual(await store.find(big.url), await repo.findOneBy({ url: big.url }));
    assert.deepEqual((await store.findMany([big.url])).get(big.url), big);
    assert.equal(await store.find('https://i0.hdslb.com/none.jpg'), null);

    // A save replaces every column but the URL (created_at included, as TypeORM's upsert did).
    const replaced = { ...big, path: 'h/new.jpg', source: 'custom' as const, bytes: 9, contentType: 'image/png', width: 10, height: 20, sha256: 'b'.repeat(64), createdAt: 5, lastAskedAt: 6 };
    await store.save(replaced);
    assert.deepEqual(await store.find(big.url), replaced);
    await repo.upsert(big, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
    assert.deepEqual(await store.find(big.url), big, 'a row TypeORM wrote reads back the same');
    assert.equal(await store.count(), 1);
  });
});

describe('cover store: a download never replaces a custom cover', () => {
  it('saves over a downloaded cover or none, and keeps a custom one, answering it', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter());
    assert.equal(await store.saveUnlessCustom(row('new', { path: 'h/new.jpg' })), null, 'saved: no row before');
    assert.equal((await store.find('new'))?.path, 'h/new.jpg');
    assert.equal(await store.saveUnlessCustom(row('new', { path: 'h/newer.jpg', bytes: 5 })), null, 'saved over a download');
    assert.deepEqual(await store.find('new'), row('new', { path: 'h/newer.jpg', bytes: 5 }));

    const custom = row('mine', { path: 'h/custom.png', source: 'custom', contentType: 'image/png', createdAt: 10, lastAskedAt: 11 });
    await store.save(custom);
    assert.equal((await store.findMany(['mine'])).get('mine')?.source, 'custom', 'in memory');
    assert.deepEqual(await store.saveUnlessCustom(row('mine', { path: 'h/download.jpg' })), custom, 'refused: the custom row answers');
    assert.deepEqual(await store.find('mine'), custom, 'unchanged');
    assert.deepEqual(await store.findRemembered('mine'), custom);
    assert.equal(await store.findRemembered('none'), null);
  });
});

describe('cover store memory', () => {
  it('answers repeated lookups from memory and never serves a row that was replaced or removed', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter(), { memoryRows: 2 });
    await store.save(row('u1', { path: 'h/one.jpg' }));
    await store.save(row('u2'));
    await store.save(row('u3'));
    assert.equal((await store.findMany(['u1'])).get('u1')?.path, 'h/one.jpg');
    // Changed behind the store's back: a lookup answered from memory does not see it.
    await dataSource.query("UPDATE covers SET path = 'h/behind.jpg' WHERE url = 'u1'");
    assert.equal((await store.findMany(['u1'])).get('u1')?.path, 'h/one.jpg', 'served from memory');

    await store.save(row('u1', { path: 'h/two.jpg' }));
    assert.equal((await store.findMany(['u1'])).get('u1')?.path, 'h/two.jpg', 'a save replaces what memory holds');
    const lookup = store.findMany(['u1', 'u2']);
    const removal = store.removeIfPath('u1', 'h/two.jpg');
    await Promise.all([lookup, removal]);
    assert.equal((await store.findMany(['u1'])).has('u1'), false, 'a removed row is not served from memory');
    await store.findMany(['u2', 'u3']);
    assert.equal((await store.findMany(['u2', 'u3'])).size, 2, 'only the most recent rows are kept, but all are found');
  });
});

describe('cover store touches', () => {
  const lastAsked = async (dataSource: Awaited<ReturnType<typeof openDb>>['dataSource'], url: string) => {
    const [found] = await dataSource.query<{ last_asked_at: number | string }[]>(
      `SELECT last_asked_at FROM covers WHERE url = ${dataSource.options.type === 'postgres' ? '$1' : '?'}`,
      [url],
    );
    return found === undefined ? undefined : Number(found.last_asked_at);
  };

  it('writes the last-asked-for times a slice per event-loop turn, and only on a flush (30 s by default)', async (t) => {
    const { dataSource } = await openDb(t);
    let now = 5_000;
    const store = new CoverStore(dataSource, new SerialWriter(), { now: () => now });
    const urls = Array.from({ length: 1000 }, (_, i) => `https://i0.hdslb.com/touch/${i}.jpg?q='"\\${i}`);
    for (const url of urls) await store.save(row(url, { lastAskedAt: 1 }));
    store.touch([...urls, 'https://i0.hdslb.com/never-stored.jpg']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await lastAsked(dataSource, urls[0]!), 1, 'not written before the interval');

    let turns = 0;
    let counting = true;
    const count = () => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    await store.flushTouches();
    counting = false;
    assert.ok(turns >= 4, `the flush gave the loop ${turns} turns`);
    for (const url of [urls[0]!, urls[199]!, urls[200]!, urls[999]!]) assert.equal(await lastAsked(dataSource, url), 5_000, url);
    assert.equal(await lastAsked(dataSource, 'https://i0.hdslb.com/never-stored.jpg'), undefined, 'no row made for a URL not stored');

    // A flush asked for while one runs resolves only when everything touched before it is written.
    now = 6_000;
    store.touch(urls.slice(0, 500));
    const first = store.flushTouches();
    store.touch([urls[999]!]);
    await store.flushTouches();
    assert.equal(await lastAsked(dataSource, urls[499]!), 6_000);
    assert.equal(await lastAsked(dataSource, urls[999]!), 6_000);
    await first;
  });

  it('findMany with touch notes the URLs found, from memory or the table, once per flush round', async (t) => {
    const { dataSource } = await openDb(t);
    let now = 10_000;
    const store = new CoverStore(dataSource, new SerialWriter(), { now: () => now, memoryRows: 4 });
    const urls = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/ask/${i}.jpg`);
    for (const url of urls) await store.save(row(url, { lastAskedAt: 1 }));
    // 0–3 come from the table and fill the memory; asked again they are memory hits.
    await store.findMany(urls.slice(0, 4));
    await store.findMany(urls.slice(0, 2), { touch: true });
    await store.findMany([urls[5]!, 'https://i0.hdslb.com/ask/none.jpg'], { touch: true });
    await store.flushTouches();
    assert.deepEqual(
      await Promise.all(urls.map((url) => lastAsked(dataSource, url))),
      [10_000, 10_000, 1, 1, 1, 10_000],
      'memory hits and table rows found with touch are written; a lookup without touch is not',
    );
    // After a flush the same memory rows are noted again.
    now = 20_000;
    await store.findMany(urls.slice(0, 2), { touch: true });
    await store.flushTouches();
    assert.equal(await lastAsked(dataSource, urls[0]!), 20_000);
    assert.equal(await lastAsked(dataSource, urls[5]!), 10_000);
  });

  it('findInMemory answers from memory only, aligned with the URLs asked, and notes touches like findMany', async (t) => {
    const { dataSource } = await openDb(t);
    let now = 10_000;
    const store = new CoverStore(dataSource, new SerialWriter(), { now: () => now, memoryRows: 4 });
    const urls = Array.from({ length: 3 }, (_, i) => `https://i0.hdslb.com/mem/${i}.jpg`);
    for (const url of urls) await store.save(row(url, { lastAskedAt: 1 }));
    await store.findMany(urls.slice(0, 2)); // 0 and 1 in memory (as the table has them); 2 only in the table
    const none = 'https://i0.hdslb.com/mem/none.jpg';
    const found = store.findInMemory([urls[1]!, urls[2]!, none, urls[0]!, urls[1]!], { touch: true });
    assert.deepEqual(
      Array.from(found, (r) => r?.url),
      [urls[1], undefined, undefined, urls[0], urls[1]],
      'a row only in the table is not looked up; a repeated URL is found at each position',
    );
    await store.flushTouches();
    assert.deepEqual(await Promise.all(urls.map((url) => lastAsked(dataSource, url))), [10_000, 10_000, 1]);
    now = 20_000;
    store.findInMemory([urls[0]!]);
    await store.flushTouches();
    assert.equal(await lastAsked(dataSource, urls[0]!), 10_000, 'without touch nothing is noted');
  });

  it('keeps the most recently asked rows in memory and drops the least recently asked first', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter(), { memoryRows: 4 });
    const urls = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/lru/${i}.jpg`);
    for (const url of urls) await store.save(row(url));
    await store.findMany(urls.slice(0, 4)); // memory: 0 1 2 3
    await store.findMany([urls[0]!]); // 0 was in the older half: moved to the newest end
    await store.findMany([urls[4]!, urls[5]!]); // 1 and 2 are dropped
    // A row in memory is answered even after its table row is gone behind the store's back.
    await dataSource.query('DELETE FROM covers');
    const left = await store.findMany(urls);
    assert.deepEqual([...left.keys()].sort(), [urls[0]!, urls[3]!, urls[4]!, urls[5]!].sort());
  });

  it('flushes by itself after touchIntervalMs', async (t) => {
    const { dataSource } = await openDb(t);
    const store = new CoverStore(dataSource, new SerialWriter(), { now: () => 7_000, touchIntervalMs: 20 });
    await store.save(row('https://i0.hdslb.com/timed.jpg', { lastAskedAt: 1 }));
    store.touch(['https://i0.hdslb.com/timed.jpg']);
    const deadline = Date.now() + 5_000;
    while ((await lastAsked(dataSource, 'https://i0.hdslb.com/timed.jpg')) !== 7_000) {
      assert.ok(Date.now() < deadline, 'written by the timer');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
});

describe('task store', () => {
  it('inserts on the first change and updates later ones without losing earlier fields', async (t) => {
    const { dataSource } = await openDb(t);
    let time = 1000;
    const errors: unknown[] = [];
    const tasks = new TaskStore(dataSource, new SerialWriter(), (e) => errors.push(e), () => time);
    tasks.update('u1', { status: 'queued' });
    await tasks.flush();
    time = 2000;
    tasks.update('u1', { status: 'downloading', attempts: 1, startedAt: 2000 });
    tasks.update('u1', { bytesDone: 50, bytesTotal: 100 });
    await tasks.flush();
    const saved = await tasks.get('u1');
    assert.deepEqual(errors, []);
    assert.equal(saved?.status, 'downloading');
    assert.equal(saved?.createdAt, 1000);
    assert.equal(saved?.updatedAt, 2000);
    assert.equal(saved?.attempts, 1);
    assert.equal(saved?.bytesDone, 50);
    assert.deepEqual((await tasks.unfinished()).map((r) => r.url), ['u1']);
    tasks.update('u1', { status: 'ok', finishedAt: 3000 });
    assert.deepEqual(await tasks.unfinished(), []);
  });

  it('sets exactly the patched columns, nulls included, and gives a new row the defaults', async (t) => {
    const { dataSource } = await openDb(t);
    let time = 1000;
    const tasks = new TaskStore(dataSource, new SerialWriter(), (e) => assert.fail(String(e)), () => time);
    const fresh = { status: 'queued', attempts: 0, errorCode: null, errorMessage: null, bytesDone: 0, bytesTotal: null, startedAt: null, finishedAt: null };
    tasks.update('u1', { status: 'queued' });
    tasks.update('u2', { status: 'downloading', attempts: 1, startedAt: 900, bytesTotal: 5000 });
    await tasks.flush();
    assert.deepEqual(await tasks.get('u1'), { url: 'u1', ...fresh, createdAt: 1000, updatedAt: 1000 });
    assert.deepEqual(await tasks.get('u2'), { url: 'u2', ...fresh, status: 'downloading', attempts: 1, startedAt: 900, bytesTotal: 5000, createdAt: 1000, updatedAt: 1000 });

    time = 2000;
    tasks.update('u1', { status: 'error', attempts: 3, errorCode: 'http_status', errorMessage: "HTTP 404 'quoted'", finishedAt: 1900 });
    tasks.update('u2', { bytesDone: 5000 });
    await tasks.flush();
    time = 3000;
    tasks.update('u1', { status: 'queued', errorCode: null, errorMessage: null });
    await tasks.flush();
    assert.deepEqual(await tasks.get('u1'), { url: 'u1', ...fresh, attempts: 3, finishedAt: 1900, createdAt: 1000, updatedAt: 3000 });
    assert.deepEqual(await tasks.get('u2'), { url: 'u2', ...fresh, status: 'downloading', attempts: 1, startedAt: 900, bytesDone: 5000, bytesTotal: 5000, createdAt: 1000, updatedAt: 2000 });
  });

  it('writes a batch in one transaction: a failing row leaves the whole batch unwritten', async (t) => {
    const { dataSource } = await openDb(t);
    const errors: unknown[] = [];
    const tasks = new TaskStore(dataSource, new SerialWriter(), (e) => errors.push(e));
    tasks.update('good', { status: 'queued' });
    tasks.update('bad', { status: null as unknown as 'queued' });
    await tasks.flush();
    assert.equal(errors.length, 1, 'reported');
    assert.equal(await tasks.get('good'), null, 'rolled back with the bad row');
    tasks.update('good', { status: 'ok' });
    await tasks.flush();
    assert.equal((await tasks.get('good'))?.status, 'ok', 'later batches are written');
  });

  it('writes 5,000 concurrent changes in order without interleaving', async (t) => {
    const { dataSource } = await openDb(t);
    const tasks = new TaskStore(dataSource, new SerialWriter(), (e) => assert.fail(String(e)));
    await Promise.all(
      Array.from({ length: 5000 }, async (_, i) => {
        tasks.update(`u${i}`, { status: 'queued' });
        await new Promise((r) => setImmediate(r));
        tasks.update(`u${i}`, { status: 'downloading' });
        await tasks.flush();
        tasks.update(`u${i}`, { status: i % 2 ? 'ok' : 'error', errorCode: i % 2 ? null : 'not_image' });
      }),
    );
    await tasks.flush();
    const counts = await dataSource.query<{ status: string; n: number | string }[]>('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status ORDER BY status');
    assert.deepEqual(counts.map(({ status, n }) => ({ status, n: Number(n) })), [
      { status: 'error', n: 2500 },
      { status: 'ok', n: 2500 },
    ]);
  });
});

describe('cover files', () => {
  it('derives readable, unique, content-dependent paths that stay inside the folder', () => {
    const a = coverPath('https://i0.hdslb.com/bfs/archive/abc123.jpg', 'f'.repeat(64), 'jpg');
    assert.match(a, /^i0\.hdslb\.com\/abc123-[0-9a-f]{12}-ffffffffffff\.jpg$/);
    assert.notEqual(a, coverPath('https://i0.hdslb.com/bfs/other/abc123.jpg', 'f'.repeat(64), 'jpg'), 'unique per URL');
    assert.notEqual(a, coverPath('https://i0.hdslb.com/bfs/archive/abc123.jpg', 'e'.repeat(64), 'jpg'), 'changes with content');
    const evil = coverPath('https://..%2f..%2fetc/%2e%2e%2f%2e%2e%2fpasswd', '0'.repeat(64), '../sh');
    assert.ok(resolveInside('/covers', evil), `${evil} stays inside`);
    assert.doesNotMatch(evil, /\.\./);
  });

  it('writes through a temp file and publishes only complete files', async (t) => {
    const dir = await tempDir(t);
    await writeCoverFile(dir, 'h/a.jpg', Buffer.from('hello'));
    assert.equal(await readFile(path.join(dir, 'h/a.jpg'), 'utf8'), 'hello');
    assert.deepEqual(await readdir(path.join(dir, TEMP_DIR)), [], 'no temp file left');

    const controller = new AbortController();
    controller.abort();
    await assert.rejects(writeCoverFile(dir, 'h/b.jpg', Buffer.from('x'), controller.signal));
    await assert.rejects(readFile(path.join(dir, 'h/b.jpg')), /ENOENT/);
    assert.deepEqual(await readdir(path.join(dir, TEMP_DIR)), []);
    await assert.rejects(writeCoverFile(dir, '../escape.jpg', Buffer.from('x')), /outside/);
  });

  it('sweeps temp leftovers at start', async (t) => {
    const dir = await tempDir(t);
    await mkdir(path.join(dir, TEMP_DIR), { recursive: true });
    await writeFile(path.join(dir, TEMP_DIR, 'x.part'), 'half');
    await writeFile(path.join(dir, TEMP_DIR, 'y.part'), 'half');
    assert.equal(await sweepTemp(dir), 2);
    assert.deepEqual(await readdir(path.join(dir, TEMP_DIR)), []);
    assert.equal(await sweepTemp(path.join(dir, 'none')), 0);
  });

  it('finds files only inside the folder, whatever the encoding', async (t) => {
    const dir = await tempDir(t);
    await writeCoverFile(dir, 'h/a b.jpg', Buffer.from('img'));
    assert.equal((await findCoverFile(dir, 'h/a%20b.jpg'))?.size, 3);
    for (const attempt of ['../x', '%2e%2e/x', 'h/..%2f..%2fetc', '/etc/passwd', '%2fetc%2fpasswd', '.tmp/x', 'h/', '', 'h/%zz', 'h%2fa b.jpg', 'h\\..\\a']) {
      assert.equal(await findCoverFile(dir, attempt), undefined, attempt);
    }
  });
});
