/**
 * The store's conformance suite: every case runs unchanged against each
 * database this run can reach (SQLite always; PostgreSQL when
 * COVERHELPER_TEST_PG names a server, each test on a fresh database), through
 * the ports the service uses. Then the cases only a shared database has: two
 * nodes on one PostgreSQL database.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { createDataSource } from '../src/store/dataSource.js';
import { systemClock, TestClock } from '../src/clock.js';
import type { Clock } from '../src/clock.js';
import { CoverEntity, coverPath, migrations, openCoverFile, resolveInside, sweepTemp, writeCoverFile, TEMP_DIR } from '../src/store/index.js';
import { TOUCH_INTERVAL_MS } from '../src/store/touchBatcher.js';
import { TOUCH_PRECISION_MS, touchPrecisionFor } from '../src/store/index.js';
import { atTurnEndFirst } from '../src/turnEnd.js';
import { START_HOLD_MS } from '../src/store/taskLedger.js';
import type { StoreOptions } from '../src/store/index.js';
import type { CoverChange, CoverRow, GateChange, JobChange, JobRow, TaskChange } from '../src/store/index.js';
import { backends, freshDatabase, freshPgDatabase, openTestStore, rawSql, skipWithoutPg } from './helpers/stores.js';
import { waitUntil } from './helpers/db.js';
import { coverRow } from './helpers/coverRow.js';
import { tempDir } from './helpers/tempDir.js';

const row = (url: string, overrides: Partial<CoverRow> = {}): CoverRow =>
  coverRow(url, { path: `h/${url.length}.jpg`, bytes: 100, width: 320, height: 200, createdAt: 1, lastAskedAt: 2, ...overrides });

const newJob = (id: string, createdAt: number, overrides: Partial<Omit<JobRow, 'waiting'>> = {}): Omit<JobRow, 'updatedAt' | 'claimedBy' | 'claimExpires' | 'node' | 'waiting'> => ({
  id,
  name: `job ${id}`,
  status: 'queued',
  urls: JSON.stringify(['https://a/1.jpg', 'https://a/2.jpg']),
  total: 2,
  ok: 0,
  failed: 0,
  callbackUrl: null,
  callbackStarted: null,
  callbackFinished: null,
  archiveBytes: null,
  errorCode: null,
  errorMessage: null,
  createdAt,
  expiresAt: createdAt + 1000,
  finishedAt: null,
  ...overrides,
});

const lastAsked = async (db: string, url: string) => {
  const [found] = await rawSql<{ last_asked_at: number | string }>(db, 'SELECT last_asked_at FROM covers WHERE url = ?', url);
  return found === undefined ? undefined : Number(found.last_asked_at);
};

/** A TypeORM data source of its own on `db`, to compare the store's rows with TypeORM's. */
async function typeorm(t: Parameters<typeof tempDir>[0], db: string): Promise<DataSource> {
  const dataSource = createDataSource({ db });
  await dataSource.initialize();
  t.after(() => dataSource.destroy());
  return dataSource;
}

for (const backend of backends) {
  describe(`store on ${backend}`, () => {
    const open = (t: Parameters<typeof tempDir>[0], options: Partial<StoreOptions> = {}) => openTestStore(t, backend, options);

    it('runs every migration on a fresh database', async (t) => {
      const { db } = await open(t);
      const tables = backend === 'sqlite'
        ? await rawSql<{ name: string }>(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('covers', 'tasks', 'deletions', 'nodes', 'settings') ORDER BY name")
        : await rawSql<{ name: string }>(db, "SELECT table_name AS name FROM information_schema.tables WHERE table_name IN ('covers', 'tasks', 'deletions', 'nodes', 'settings') ORDER BY table_name");
      assert.deepEqual(tables.map((r) => r.name), ['covers', 'deletions', 'nodes', 'settings', 'tasks']);
      if (backend === 'sqlite') assert.equal((await rawSql<{ journal_mode: string }>(db, 'PRAGMA journal_mode'))[0]?.journal_mode, 'wal');
      const again = await open(t, { db });
      assert.deepEqual(again.store.migrated, [], 'nothing left to run the second time');
    });

    it('upserts covers and finds many at once, in chunks', async (t) => {
      const { store } = await open(t);
      const urls = Array.from({ length: 1200 }, (_, i) => `https://i0.hdslb.com/${i}.jpg`);
      for (const url of urls) await store.covers.save(row(url));
      await store.covers.save(row(urls[0]!, { path: 'h/replaced.jpg', bytes: 7 }));
      const found = await store.covers.findMany([...urls, 'https://i0.hdslb.com/missing.jpg']);
      assert.equal(found.size, 1200);
      assert.equal(found.get(urls[0]!)?.path, 'h/replaced.jpg');
      assert.equal(found.get(urls[0]!)?.bytes, 7);
      assert.equal(typeof found.get(urls[1]!)?.createdAt, 'number');
      assert.equal(await store.covers.count(), 1200);
    });

    it('finds and saves rows exactly as TypeORM reads and writes them', async (t) => {
      const { store, db } = await open(t);
      const repo = (await typeorm(t, db)).getRepository(CoverEntity);
      const big = row("https://i0.hdslb.com/a'b\"c.jpg", { bytes: 2 ** 40, createdAt: 1_763_780_000_123, lastAskedAt: 1_763_780_000_456, width: 0, height: 65_535, color: '#3366cc' });
      await store.covers.save(big);
      assert.deepEqual(await store.covers.find(big.url), big);
      assert.deepEqual(await store.covers.find(big.url), await repo.findOneBy({ url: big.url }));
      assert.deepEqual((await store.covers.findMany([big.url])).get(big.url), big);
      assert.equal(await store.covers.find('https://i0.hdslb.com/none.jpg'), null);
      const replaced = { ...big, path: 'h/new.jpg', source: 'custom' as const, bytes: 9, contentType: 'image/png', width: 10, height: 20, sha256: 'b'.repeat(64), createdAt: 5, lastAskedAt: 6, color: null };
      await store.covers.save(replaced);
      assert.deepEqual(await store.covers.find(big.url), replaced, 'a save replaces every column but the URL');
      // A copy: TypeORM writes the defaults it used (variantBytes) back into what it is given.
      await repo.upsert({ ...big }, { conflictPaths: ['url'], skipUpdateIfNoValuesChanged: false });
      assert.deepEqual(await store.covers.find(big.url), big, 'a row TypeORM wrote reads back the same');
    });

    it('setColor gives a row without a colour its colour, only while it points at that file; lackingColor pages through the rows without one', async (t) => {
      const { store } = await open(t);
      const covers = store.covers;
      const urls = ['https://a/1.jpg', 'https://a/2.jpg', 'https://a/3.jpg', 'https://a/4.jpg', 'https://a/5.jpg'];
      for (const url of urls) await covers.save(row(url, { path: `h/${url.slice(-5)}` }));
      await covers.save(row('https://a/0.jpg', { color: '#010203' }));
      assert.deepEqual((await covers.lackingColor('', 2)).map((r) => r.url), urls.slice(0, 2));
      assert.deepEqual((await covers.lackingColor(urls[1]!, 10)).map((r) => r.url), urls.slice(2), 'after a URL, in URL order');
      // Read into memory first: the write must not leave the old row answering.
      assert.equal((await covers.findMany([urls[0]!])).get(urls[0]!)?.color, null);
      assert.equal(await covers.setColor(urls[0]!, 'h/1.jpg', '#ff0000'), true);
      assert.equal((await covers.findMany([urls[0]!])).get(urls[0]!)?.color, '#ff0000', 'memory forgot the old row');
      assert.equal((await covers.find(urls[0]!))?.color, '#ff0000');
      assert.equal(await covers.setColor(urls[0]!, 'h/1.jpg', '#00ff00'), false, 'a colour already there is kept');
      assert.equal(await covers.setColor(urls[1]!, 'h/other.jpg', '#00ff00'), false, 'the row points at another file now');
      assert.equal((await covers.find(urls[1]!))?.color, null);
      assert.equal(await covers.setColor('https://a/none.jpg', 'h/x.jpg', '#00ff00'), false);
      assert.deepEqual((await covers.lackingColor('', 10)).map((r) => r.url), urls.slice(1));
    });

    it('a download never replaces a custom cover: saveUnlessCustom keeps and answers it', async (t) => {
      const { store } = await open(t);
      const covers = store.covers;
      assert.equal(await covers.saveUnlessCustom(row('new', { path: 'h/new.jpg' })), null, 'saved: no row before');
      assert.equal(await covers.saveUnlessCustom(row('new', { path: 'h/newer.jpg', bytes: 5 })), null, 'saved over a download');
      assert.deepEqual(await covers.find('new'), row('new', { path: 'h/newer.jpg', bytes: 5 }));
      const custom = row('mine', { path: 'h/custom.png', source: 'custom', contentType: 'image/png', createdAt: 10, lastAskedAt: 11 });
      await covers.save(custom);
      assert.equal((await covers.findMany(['mine'])).get('mine')?.source, 'custom', 'in memory');
      assert.deepEqual(await covers.saveUnlessCustom(row('mine', { path: 'h/download.jpg' })), custom, 'refused: the custom row answers');
      assert.deepEqual(await covers.find('mine'), custom, 'unchanged');
      assert.deepEqual(await covers.findRemembered('mine'), custom);
      assert.equal(await covers.findRemembered('none'), null);
    });

    it('a download\'s row is written with the turn\'s task batch, in its transaction: the task rows of the turn are there when the row is', async (t) => {
      const { store, db } = await open(t);
      const url = 'https://i0.hdslb.com/turn.jpg';
      store.tasks.update(url, { status: 'downloading' });
      assert.equal(await store.covers.saveUnlessCustom(row(url, { path: 'h/turn.jpg' })), null);
      const tasks = await rawSql<{ status: string }>(db, 'SELECT status FROM tasks WHERE url = ?', url);
      // On PostgreSQL a download's row is a write of its own (nodes' batches would lock rows in their own orders).
      if (backend === 'sqlite') assert.deepEqual(tasks.map((r) => r.status), ['downloading'], 'one commit: the task row came with the cover row');
      assert.equal((await store.covers.find(url))?.path, 'h/turn.jpg');
    });

    it('downloads finished in one turn each get their own outcome from the one batch: saved, refused by a custom row, replaced with its file recorded', async (t) => {
      const { store } = await open(t);
      const custom = row('https://a/custom.jpg', { path: 'h/upload.png', source: 'custom', contentType: 'image/png' });
      await store.covers.save(custom);
      await store.covers.save(row('https://a/page', { path: 'h/old.jpg' }));
      const [saved, refused, replaced] = await Promise.all([
        store.covers.saveUnlessCustom(row('https://a/new.jpg', { path: 'h/new.jpg' })),
        store.covers.saveUnlessCustom(row(custom.url, { path: 'h/download.jpg' })),
        store.covers.replaceUnlessCustom(row('https://a/page', { path: 'h/changed.jpg', createdAt: 60 }), 'h/old.jpg', 'cover_changed'),
      ]);
      assert.equal(saved, null);
      assert.deepEqual(refused, custom, 'the custom row answers');
      assert.equal(replaced, null);
      assert.equal((await store.covers.find('https://a/new.jpg'))?.path, 'h/new.jpg');
      assert.deepEqual(await store.covers.find(custom.url), custom);
      assert.equal((await store.covers.find('https://a/page'))?.path, 'h/changed.jpg');
      assert.deepEqual((await store.deletions.pending()).map(({ path, reason }) => ({ path, reason })), [{ path: 'h/old.jpg', reason: 'cover_changed' }]);
    });

    it('a path a download\'s row waiting for the batch names is in use: the deletion runner does not remove its file', async (t) => {
      const { store } = await open(t);
      const saved = store.covers.saveUnlessCustom(row('https://a/again.jpg', { path: 'h/again.jpg' }));
      assert.equal(await store.covers.pathInUse('h/again.jpg'), true, 'the waiting row is written first');
      assert.equal(await saved, null);
      assert.equal(await store.covers.pathInUse('h/other.jpg'), false);
    });

    it('a cover write after a download\'s row waiting for the batch does not pass it: the row saved and then removed is gone', async (t) => {
      const { store } = await open(t);
      const url = 'https://a/gone.jpg';
      const saved = store.covers.saveUnlessCustom(row(url, { path: 'h/gone.jpg' }));
      const removed = store.covers.removeIfPath(url, 'h/gone.jpg');
      assert.equal(await saved, null);
      await removed;
      assert.equal(await store.covers.find(url), null);
    });

    it('a download\'s row whose statement fails: that row\'s error alone, the rest commits (on SQLite in the turn\'s batch, on PostgreSQL each row its own write)', async (t) => {
      const failures: unknown[] = [];
      const { store, db } = await open(t, { onTaskWriteError: (error) => failures.push(error) });
      store.tasks.update('https://a/task.jpg', { status: 'downloading' });
      const [bad, good] = await Promise.allSettled([
        store.covers.saveUnlessCustom(row('https://a/bad.jpg', { path: null as unknown as string })),
        store.covers.saveUnlessCustom(row('https://a/good.jpg', { path: 'h/good.jpg' })),
      ]);
      assert.equal(bad.status, 'rejected');
      await store.tasks.flush();
      const tasks = await rawSql<{ url: string }>(db, 'SELECT url FROM tasks');
      assert.deepEqual(good, { status: 'fulfilled', value: null });
      assert.equal((await store.covers.find('https://a/good.jpg'))?.path, 'h/good.jpg');
      assert.deepEqual(tasks.map((r) => r.url), ['https://a/task.jpg']);
      assert.equal(failures.length, 0);
    });

    it('the task batch is written at the turn\'s end after the supervisor\'s step: a change that step hands in goes in the batch scheduled before it', async (t) => {
      const { store } = await open(t);
      // The changes of one batch are emitted together, after its commit.
      let batch = 0;
      let emitting = false;
      const seen: [string, string | undefined, number][] = [];
      store.events.on('task', (change) => {
        if (!emitting) {
          emitting = true;
          batch++;
          queueMicrotask(() => (emitting = false));
        }
        seen.push([change.url, change.patch.status, batch]);
      });
      store.tasks.update('https://a/done.jpg', { status: 'ok' });
      // As the supervisor's FINISHED starts the next download.
      atTurnEndFirst(() => store.tasks.update('https://a/next.jpg', { status: 'downloading' }));
      await new Promise<void>((resolve) => setImmediate(resolve));
      await store.tasks.flush();
      assert.deepEqual(seen, [['https://a/done.jpg', 'ok', 1], ['https://a/next.jpg', 'downloading', 1]]);
    });

    it('a download\'s start is written with its end when that comes within START_HOLD_MS (one row write; SQLite), else after it; a read writes it first', async (t) => {
      const clock = new TestClock(20_000);
      const { store, db } = await open(t, { clock });
      const status = async (url: string) => (await rawSql<{ status: string; started_at: number | string | null }>(db, 'SELECT status, started_at FROM tasks WHERE url = ?', url)).map((r) => [r.status, r.started_at === null ? null : Number(r.started_at)]);
      // The turn's end has run and its batch is written (SQLite writes synchronously).
      const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
      const start = (url: string) => store.tasks.update(url, { status: 'downloading', attempts: 1, startedAt: clock.now(), finishedAt: null });
      const [quick, slow, read] = ['https://a/quick.jpg', 'https://a/slow.jpg', 'https://a/read.jpg'];
      for (const url of [quick, slow, read]) store.tasks.update(url, { status: 'queued' });
      await store.tasks.flush();
      start(quick);
      start(slow);
      await turn();
      await clock.advance(START_HOLD_MS - 1);
      if (backend !== 'sqlite') {
        await store.tasks.flush();
        assert.deepEqual(await status(quick), [['downloading', 20_000]], 'a shared database holds nothing');
        return;
      }
      assert.deepEqual(await status(quick), [['queued', null]], 'held');
      start(read);
      store.tasks.update(quick, { status: 'ok', finishedAt: clock.now(), bytesDone: 5, bytesTotal: 5 });
      await turn();
      assert.deepEqual(await status(quick), [['ok', 20_000]], 'the start and the end in one row write');
      assert.deepEqual(await status(slow), [['queued', null]], 'still held');
      await clock.advance(1);
      await turn();
      assert.deepEqual(await status(slow), [['downloading', 20_000]], 'written once the hold is over');
      assert.deepEqual(await status(read), [['queued', null]], 'held: it started later');
      assert.equal((await store.tasks.get(read))?.status, 'downloading', 'a read writes the held start first');
      assert.deepEqual((await store.tasks.timeline(quick)).map((e) => e.status), ['queued', 'downloading', 'ok'], 'the timeline has every step');
    });

    it('replace records the replaced file for deletion in the same write', async (t) => {
      const { store } = await open(t);
      await store.covers.save(row('u', { path: 'h/old.jpg' }));
      await store.covers.replace(row('u', { path: 'h/new.jpg', source: 'custom', createdAt: 50 }), 'h/old.jpg', 'replaced');
      assert.equal((await store.covers.find('u'))?.path, 'h/new.jpg');
      const pending = await store.deletions.pending();
      assert.deepEqual(pending.map(({ url, path, kind, reason, createdAt }) => ({ url, path, kind, reason, createdAt })), [{ url: 'u', path: 'h/old.jpg', kind: 'file', reason: 'replaced', createdAt: 50 }]);
    });

    it('replaceUnlessCustom replaces a download and records its file, and never overwrites a custom cover (nor records its file)', async (t) => {
      const { store } = await open(t);
      await store.covers.save(row('page', { path: 'h/old.jpg' }));
      assert.equal(await store.covers.replaceUnlessCustom(row('page', { path: 'h/changed.jpg', createdAt: 60 }), 'h/old.jpg', 'cover_changed'), null, 'replaced');
      assert.equal((await store.covers.find('page'))?.path, 'h/changed.jpg');
      const custom = row('page', { path: 'h/upload.png', source: 'custom', contentType: 'image/png', createdAt: 70 });
      await store.covers.replace(custom, 'h/changed.jpg', 'replaced');
      // A re-resolve that found yet another pic while the upload was written: the upload wins.
      assert.deepEqual(await store.covers.replaceUnlessCustom(row('page', { path: 'h/later.jpg', createdAt: 80 }), 'h/changed.jpg', 'cover_changed'), custom, 'refused: the custom row answers');
      assert.deepEqual(await store.covers.find('page'), custom, 'unchanged');
      const pending = await store.deletions.pending();
      assert.deepEqual(
        pending.map(({ path, reason }) => ({ path, reason })).sort((a, b) => a.path.localeCompare(b.path)),
        [{ path: 'h/changed.jpg', reason: 'replaced' }, { path: 'h/old.jpg', reason: 'cover_changed' }],
        'only the written replacements recorded a deletion',
      );
    });

    it('keeps when a video page was resolved and its pic; markResolved updates them only while the row points at the same file', async (t) => {
      const { store, db } = await open(t);
      const page = 'https://www.bilibili.com/video/BV1xx411c7mD';
      const stored = row(page, { path: 'h/old.jpg', resolvedAt: 1_763_780_000_123, resolvedPic: 'https://i0.hdslb.com/bfs/archive/a.jpg' });
      await store.covers.save(stored);
      assert.deepEqual(await store.covers.find(page), stored);
      const repo = (await typeorm(t, db)).getRepository(CoverEntity);
      assert.deepEqual(await repo.findOneBy({ url: page }), stored, 'TypeORM reads the same columns');
      // Remembered in memory first: the mark must not leave the old row there.
      assert.equal((await store.covers.findMany([page])).get(page)?.resolvedAt, 1_763_780_000_123);
      assert.equal(await store.covers.markResolved(page, 'h/old.jpg', 2_000_000_000_000, 'https://i0.hdslb.com/bfs/archive/b.jpg'), true);
      assert.deepEqual(await store.covers.findRemembered(page), { ...stored, resolvedAt: 2_000_000_000_000, resolvedPic: 'https://i0.hdslb.com/bfs/archive/b.jpg' });
      assert.equal((await store.covers.findMany([page])).get(page)?.resolvedAt, 2_000_000_000_000, 'memory never answers the row before the mark');
      // The cover was replaced meanwhile (an upload): the mark changes nothing.
      const custom = row(page, { path: 'h/custom.png', source: 'custom' });
      await store.covers.save(custom);
      assert.equal(await store.covers.markResolved(page, 'h/old.jpg', 3, 'https://i0.hdslb.com/x.jpg'), false);
      assert.deepEqual(await store.covers.find(page), custom);
      assert.equal(await store.covers.markResolved('https://www.bilibili.com/video/BV1none', 'h/x.jpg', 3, 'p'), false, 'no row: nothing to mark');
    });

    it('a cover stored before resolved times were kept reads with none (null), and the columns take values afterwards', async (t) => {
      const { store, db } = await open(t);
      // A row as the earlier schema wrote it: only the columns it had.
      await rawSql(db, "INSERT INTO covers (url, path, source, bytes, content_type, width, height, sha256, created_at, last_asked_at) VALUES ('old', 'h/o.jpg', 'download', 1, 'image/jpeg', 1, 1, ?, 7, 8)", 'c'.repeat(64));
      const found = await store.covers.find('old');
      assert.equal(found?.resolvedAt, null);
      assert.equal(found?.resolvedPic, null);
      assert.equal(found?.createdAt, 7);
      assert.equal(await store.covers.markResolved('old', 'h/o.jpg', 9, 'https://i0.hdslb.com/o.jpg'), true);
      assert.deepEqual([(await store.covers.find('old'))?.resolvedAt, (await store.covers.find('old'))?.resolvedPic], [9, 'https://i0.hdslb.com/o.jpg']);
    });

    it('keeps the original’s path, size and bytes; counts an original of its own in downloadedBytes, not one that is the stored file', async (t) => {
      const { store, db } = await open(t);
      const repo = (await typeorm(t, db)).getRepository(CoverEntity);
      const kept = row('https://i0.hdslb.com/kept.jpg', { path: 'h/kept.jpg', bytes: 1000, originalPath: 'h/kept.orig.jpg', originalWidth: 1146, originalHeight: 717, originalBytes: 2 ** 33 });
      const same = row('https://i0.hdslb.com/same.jpg', { path: 'h/same.jpg', bytes: 300, originalPath: 'h/same.jpg', originalWidth: 64, originalHeight: 40, originalBytes: 300 });
      const before = row('https://i0.hdslb.com/before.jpg', { path: 'h/before.jpg', bytes: 40 });
      const custom = row('https://i0.hdslb.com/custom.jpg', { path: 'h/custom.jpg', source: 'custom', bytes: 5, originalPath: 'h/custom.orig.jpg', originalWidth: 1, originalHeight: 1, originalBytes: 7 });
      for (const r of [kept, same, before, custom]) await store.covers.save(r);
      assert.deepEqual(await store.covers.find(kept.url), kept);
      assert.deepEqual(await repo.findOneBy({ url: kept.url }), kept, 'TypeORM reads the same columns');
      assert.deepEqual((await store.covers.findMany([same.url])).get(same.url), same);
      const found = await store.covers.find(before.url);
      assert.deepEqual([found?.originalPath, found?.originalWidth, found?.originalHeight, found?.originalBytes], [null, null, null, null], 'a cover stored before originals were kept has none');
      assert.equal(await store.covers.downloadedBytes(), 1000 + 2 ** 33 + 300 + 40, 'custom covers do not count; an original that is the stored file counts once');
      assert.equal(await store.covers.replaceUnlessCustom({ ...kept, path: 'h/kept2.jpg', originalPath: 'h/kept2.orig.jpg', originalBytes: 9 }, kept.path, 'cover_changed'), null);
      assert.deepEqual([(await store.covers.find(kept.url))?.originalPath, (await store.covers.find(kept.url))?.originalBytes], ['h/kept2.orig.jpg', 9]);
    });

    it('finds a cover by its path; counts its variants\' bytes in downloadedBytes and the cache order, and drops them when the row\'s path changes', async (t) => {
      const { store } = await open(t);
      const a = row('https://i0.hdslb.com/va.jpg', { path: 'h/va.jpg', bytes: 100, lastAskedAt: 1 });
      const shared = row('https://i0.hdslb.com/vb.jpg', { path: 'h/vb.jpg', bytes: 10, lastAskedAt: 2 });
      const custom = row('https://i0.hdslb.com/vc.jpg', { path: 'h/vc.jpg', bytes: 5, source: 'custom' });
      for (const r of [a, shared, custom]) await store.covers.save(r);
      assert.equal((await store.covers.findByPath('h/va.jpg'))?.url, a.url);
      assert.equal(await store.covers.findByPath('h/none.jpg'), null);
      await store.covers.setVariantBytes('h/va.jpg', 2 ** 33);
      await store.covers.setVariantBytes('h/vc.jpg', 1000);
      assert.equal(await store.covers.downloadedBytes(), 100 + 2 ** 33 + 10, 'variants of downloads count, not those of custom covers');
      const order = await store.covers.leastRecentlyAsked(10, 0);
      assert.deepEqual(order.map((r) => [r.url, r.variantBytes]), [[a.url, 2 ** 33], [shared.url, 0]]);
      // A row read elsewhere is the same whatever its variants.
      assert.deepEqual(await store.covers.find(a.url), a);
      // The same file saved again keeps its variants; a new file has none yet.
      await store.covers.save({ ...a, lastAskedAt: 5 });
      assert.equal(await store.covers.downloadedBytes(), 100 + 2 ** 33 + 10);
      await store.covers.save({ ...a, path: 'h/va2.jpg' });
      assert.equal(await store.covers.downloadedBytes(), 100 + 10);
    });

    it('answers repeated lookups from memory and never serves a row that was replaced or removed', async (t) => {
      const { store, db } = await open(t, { covers: { memoryRows: 2 } });
      const covers = store.covers;
      await covers.save(row('u1', { path: 'h/one.jpg' }));
      await covers.save(row('u2'));
      await covers.save(row('u3'));
      assert.equal((await covers.findMany(['u1'])).get('u1')?.path, 'h/one.jpg');
      // Changed behind the store's back: a lookup answered from memory does not see it.
      await rawSql(db, "UPDATE covers SET path = 'h/behind.jpg' WHERE url = 'u1'");
      assert.equal((await covers.findMany(['u1'])).get('u1')?.path, 'h/one.jpg', 'served from memory');
      await covers.save(row('u1', { path: 'h/two.jpg' }));
      assert.equal((await covers.findMany(['u1'])).get('u1')?.path, 'h/two.jpg', 'a save replaces what memory holds');
      await Promise.all([covers.findMany(['u1', 'u2']), covers.removeIfPath('u1', 'h/two.jpg')]);
      assert.equal((await covers.findMany(['u1'])).has('u1'), false, 'a removed row is not served from memory');
      await covers.findMany(['u2', 'u3']);
      assert.equal((await covers.findMany(['u2', 'u3'])).size, 2, 'only the most recent rows are kept, but all are found');
    });

    it('keeps the most recently asked rows in memory and drops the least recently asked first', async (t) => {
      const { store, db } = await open(t, { covers: { memoryRows: 4 } });
      const urls = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/lru/${i}.jpg`);
      for (const url of urls) await store.covers.save(row(url));
      await store.covers.findMany(urls.slice(0, 4)); // memory: 0 1 2 3
      await store.covers.findMany([urls[0]!]); // 0 was in the older half: moved to the newest end
      await store.covers.findMany([urls[4]!, urls[5]!]); // 1 and 2 are dropped
      await rawSql(db, 'DELETE FROM covers');
      const left = await store.covers.findMany(urls);
      assert.deepEqual([...left.keys()].sort(), [urls[0]!, urls[3]!, urls[4]!, urls[5]!].sort(), 'memory answers what it holds, even gone behind its back');
    });

    it('writes the last-asked-for times a slice per event-loop turn, and only on a flush', async (t) => {
      const clock = new TestClock(5_000);
      const { store, db } = await open(t, { clock });
      const urls = Array.from({ length: 1000 }, (_, i) => `https://i0.hdslb.com/touch/${i}.jpg?q='"\\${i}`);
      for (const url of urls) await store.covers.save(row(url, { lastAskedAt: 1 }));
      store.covers.touch([...urls, 'https://i0.hdslb.com/never-stored.jpg']);
      await clock.advance(TOUCH_INTERVAL_MS - 1);
      assert.equal(await lastAsked(db, urls[0]!), 1, 'not written before the interval');
      const flushedAt = clock.now();
      let turns = 0;
      let counting = true;
      const count = () => {
        turns++;
        if (counting) setImmediate(count);
      };
      setImmediate(count);
      await store.covers.flushTouches();
      counting = false;
      assert.ok(turns >= 4, `the flush gave the loop ${turns} turns`);
      for (const url of [urls[0]!, urls[199]!, urls[200]!, urls[999]!]) assert.equal(await lastAsked(db, url), flushedAt, url);
      assert.equal(await lastAsked(db, 'https://i0.hdslb.com/never-stored.jpg'), undefined, 'no row made for a URL not stored');
      // A flush asked for while one runs resolves only when everything touched before it is written.
      await clock.advance(1_000);
      store.covers.touch(urls.slice(0, 500));
      const first = store.covers.flushTouches();
      store.covers.touch([urls[999]!]);
      await store.covers.flushTouches();
      assert.equal(await lastAsked(db, urls[499]!), flushedAt + 1_000);
      assert.equal(await lastAsked(db, urls[999]!), flushedAt + 1_000);
      await first;
    });

    it('findMany and findInMemory with touch note the URLs found, once per flush round', async (t) => {
      const clock = new TestClock(10_000);
      // Every time written however recent the last (the precision has a test of its own).
      const { store, db } = await open(t, { clock, covers: { memoryRows: 4, touchPrecisionMs: 0 } });
      const urls = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/ask/${i}.jpg`);
      for (const url of urls) await store.covers.save(row(url, { lastAskedAt: 1 }));
      await store.covers.findMany(urls.slice(0, 4));
      await store.covers.findMany(urls.slice(0, 2), { touch: true });
      await store.covers.findMany([urls[5]!, 'https://i0.hdslb.com/ask/none.jpg'], { touch: true });
      await store.covers.flushTouches();
      assert.deepEqual(await Promise.all(urls.map((url) => lastAsked(db, url))), [10_000, 10_000, 1, 1, 1, 10_000]);
      await clock.advance(10_000);
      const found = store.covers.findInMemory([urls[1]!, urls[4]!, 'none', urls[0]!, urls[1]!], { touch: true });
      assert.deepEqual(Array.from(found, (r) => r?.url), [urls[1], undefined, undefined, urls[0], urls[1]], 'memory only, aligned, a repeated URL at each position');
      store.covers.findInMemory([urls[2]!]);
      await store.covers.flushTouches();
      assert.deepEqual(await Promise.all(urls.slice(0, 3).map((url) => lastAsked(db, url))), [20_000, 20_000, 1], 'without touch nothing is noted');
      await clock.advance(10_000);
      assert.equal(store.covers.allInMemory([urls[0]!, 'none', urls[1]!], { touch: true }), undefined, 'not all in memory: nothing answered');
      assert.deepEqual(
        store.covers.allInMemory([urls[1]!, urls[0]!, urls[1]!])?.map((held) => held.row.url),
        [urls[1], urls[0], urls[1]],
        'all in memory: aligned',
      );
      await store.covers.flushTouches();
      assert.deepEqual(await Promise.all(urls.slice(0, 2).map((url) => lastAsked(db, url))), [30_000, 20_000], 'with touch, the URLs found before the one missing are noted');
    });

    it('stillInMemory: the rows allInMemory gave hold, and are touched, until a write, an eviction or a replacement lets one go', async (t) => {
      const clock = new TestClock(10_000);
      const { store, db } = await open(t, { clock, covers: { memoryRows: 4, touchPrecisionMs: 0 } });
      const urls = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/held/${i}.jpg`);
      for (const url of urls) await store.covers.save(row(url, { lastAskedAt: 1 }));
      await store.covers.findMany(urls.slice(0, 3));
      const held = store.covers.allInMemory([urls[0]!, urls[1]!, urls[0]!]);
      assert.ok(held, 'all three in memory');
      assert.equal(store.covers.stillInMemory(held), true, 'nothing changed: still held');
      await clock.advance(5_000);
      assert.equal(store.covers.stillInMemory(held, { touch: true }), true);
      await store.covers.flushTouches();
      assert.deepEqual(await Promise.all(urls.slice(0, 3).map((url) => lastAsked(db, url))), [15_000, 15_000, 1], 'held again with touch: noted as asked for now');

      // A write of one of them lets the whole set go.
      await store.covers.save(row(urls[1]!, { path: 'i0.hdslb.com/held/other.jpg' }));
      assert.equal(store.covers.stillInMemory(held), false, 'a row written since is not held');
      await store.covers.findMany([urls[1]!]);
      assert.equal(store.covers.allInMemory([urls[1]!])![0]!.row.path, 'i0.hdslb.com/held/other.jpg', 'memory holds the written row');

      // Evicted: memory holds 4 rows; asking 4 others pushes urls[2] out.
      const other = store.covers.allInMemory([urls[2]!]);
      assert.ok(other);
      await store.covers.findMany(urls.slice(3, 6));
      await store.covers.findMany([urls[1]!]);
      await store.covers.findMany([urls[0]!]);
      assert.equal(store.covers.allInMemory([urls[2]!]), undefined, 'evicted');
      assert.equal(store.covers.stillInMemory(other), false, 'an evicted row is not held');

      // Read again from the database: a new entry, the old one stays let go.
      await store.covers.findMany([urls[2]!]);
      assert.equal(store.covers.stillInMemory(other), false);
      assert.equal(store.covers.stillInMemory(store.covers.allInMemory([urls[2]!])!), true);
    });

    it('writes a row\'s last-asked-for time again only once the one it has is older than the precision', async (t) => {
      const start = 60 * 60_000;
      const clock = new TestClock(start);
      const { store, db } = await open(t, { clock });
      const [stale, fresh, elsewhere] = ['stale', 'fresh', 'elsewhere'].map((name) => `https://i0.hdslb.com/precision/${name}.jpg`) as [string, string, string];
      await store.covers.save(row(stale, { lastAskedAt: start - TOUCH_PRECISION_MS }));
      await store.covers.save(row(fresh, { lastAskedAt: start - TOUCH_PRECISION_MS + 1 }));
      await store.covers.save(row(elsewhere, { lastAskedAt: 1 }));
      await store.covers.findMany([stale, fresh], { touch: true });
      assert.equal(store.covers.allInMemory([stale])![0]!.row.lastAskedAt, start, 'memory says asked now at once');
      await store.covers.flushTouches();
      assert.deepEqual([await lastAsked(db, stale), await lastAsked(db, fresh)], [start, start - TOUCH_PRECISION_MS + 1], 'only the one older than the precision written');

      // Asked again within the precision (a new flush round): nothing to write.
      await clock.advance(TOUCH_PRECISION_MS - 1);
      assert.ok(store.covers.allInMemory([stale, fresh], { touch: true }));
      store.covers.touch([stale]);
      await store.covers.flushTouches();
      assert.deepEqual([await lastAsked(db, stale), await lastAsked(db, fresh)], [start, start + TOUCH_PRECISION_MS - 1], 'the fresh one is stale now; the other not yet');

      // Past it: written again; a URL memory does not hold is written whatever its time.
      await clock.advance(1);
      store.covers.touch([stale, elsewhere]);
      await store.covers.flushTouches();
      assert.deepEqual([await lastAsked(db, stale), await lastAsked(db, elsewhere)], [start + TOUCH_PRECISION_MS, start + TOUCH_PRECISION_MS]);
    });

    it('a cover asked for only from memory, with nothing else asked, has its time written again each time the precision passes', async (t) => {
      const start = 60 * 60_000;
      const clock = new TestClock(start);
      const { store, db } = await open(t, { clock });
      const url = 'https://i0.hdslb.com/precision/hot.jpg';
      await store.covers.save(row(url, { lastAskedAt: 1 }));
      await store.covers.findMany([url]);
      for (let step = 0; step < 4; step++) {
        // Asked every minute, from memory only (the hot path and the frame memo's), and the timer's flushes.
        for (let minute = 0; minute < 10; minute++) {
          const held = store.covers.allInMemory([url], { touch: true });
          assert.ok(held);
          assert.equal(store.covers.stillInMemory(held, { touch: true }), true);
          await clock.advance(60_000);
        }
        await store.covers.flushTouches();
        const stored = await lastAsked(db, url);
        assert.ok(stored !== undefined && clock.now() - stored <= TOUCH_PRECISION_MS, `step ${step}: stored ${stored}, now ${clock.now()}: no older than the precision`);
      }
    });

    it('flushes the touches by itself after the interval', async (t) => {
      const clock = new TestClock(7_000);
      const { store, db } = await open(t, { clock });
      await store.covers.save(row('https://i0.hdslb.com/timed.jpg', { lastAskedAt: 1 }));
      store.covers.touch(['https://i0.hdslb.com/timed.jpg']);
      await clock.advance(TOUCH_INTERVAL_MS - 1);
      assert.equal(await lastAsked(db, 'https://i0.hdslb.com/timed.jpg'), 1, 'nothing written a millisecond before the interval');
      await clock.advance(1);
      await waitUntil(async () => (await lastAsked(db, 'https://i0.hdslb.com/timed.jpg')) === 7_000 + TOUCH_INTERVAL_MS, 'written by the timer at the interval', 5_000);
    });

    it('publishes every cover write and removal to this node', async (t) => {
      const { store } = await open(t);
      const heard: CoverChange[] = [];
      store.events.on('cover', (change) => heard.push(change));
      await store.covers.save(row('c1', { path: 'h/c1.jpg' }));
      await store.covers.saveUnlessCustom(row('c2'));
      await store.covers.removeIfPath('c1', 'h/c1.jpg');
      assert.deepEqual(heard.map(({ url, removed, remote }) => [url, removed, remote]), [['c1', false, false], ['c2', false, false], ['c1', true, false]]);
    });
  });

  describe(`jobs on ${backend}`, () => {
    it('creates, reads, lists newest first without URLs, updates and publishes every write', async (t) => {
      const { store } = await openTestStore(t, backend);
      const heard: JobChange[] = [];
      store.events.on('job', (change) => heard.push(change));
      await store.jobs.create(newJob('j1', 1000));
      await store.jobs.create(newJob('j2', 2000, { callbackUrl: 'https://blog/hook' }));
      const full = await store.jobs.get('j1');
      assert.deepEqual(JSON.parse(full!.urls), ['https://a/1.jpg', 'https://a/2.jpg']);
      assert.equal(await store.jobs.get('nope'), null);
      const updated = await store.jobs.update('j1', { status: 'ready', ok: 2, archiveBytes: 5_000_000_000, finishedAt: 1500 });
      assert.deepEqual([updated?.status, updated?.ok, updated?.archiveBytes, 'urls' in (updated ?? {})], ['ready', 2, 5_000_000_000, false]);
      assert.equal(await store.jobs.update('nope', { status: 'ready' }), null);
      const { jobs, total } = await store.jobs.list({ limit: 10, offset: 0 });
      assert.equal(total, 2);
      assert.deepEqual(jobs.map((job) => [job.id, job.status, job.callbackUrl]), [['j2', 'queued', 'https://blog/hook'], ['j1', 'ready', null]]);
      assert.equal('urls' in jobs[0]!, false);
      assert.deepEqual((await store.jobs.list({ limit: 1, offset: 1 })).jobs.map((job) => job.id), ['j1']);
      assert.deepEqual(heard.map((c) => [c.job.id, c.job.status, c.node, c.remote]), [['j1', 'queued', 'test-node', false], ['j2', 'queued', 'test-node', false], ['j1', 'ready', 'test-node', false]]);
      assert.deepEqual(await store.jobs.countByStatus(), { queued: 1, fetching: 0, packing: 0, ready: 1, failed: 0, expired: 0 });
    });

    it('claims unfinished jobs, renews and releases them; finished jobs past their time are due to expire', async (t) => {
      const clock = new TestClock(10_000);
      const { store } = await openTestStore(t, backend, { leaseMs: 5000, clock });
      await store.jobs.create(newJob('a', 1000));
      await store.jobs.create(newJob('b', 2000, { status: 'ready', expiresAt: 9000 }));
      await store.jobs.create(newJob('c', 3000, { status: 'failed', expiresAt: 20_000 }));
      assert.deepEqual(await store.jobs.claimable(10), ['a']);
      assert.equal(await store.jobs.claim('a'), true);
      assert.equal(await store.jobs.claim('b'), false, 'a finished job is not claimed');
      const claimed = await store.jobs.get('a');
      assert.deepEqual([claimed?.claimedBy, claimed?.claimExpires, claimed?.node], ['test-node', 15_000, 'test-node']);
      await clock.advance(12_000 - clock.now());
      assert.equal(await store.jobs.renew(), 1);
      assert.equal((await store.jobs.get('a'))?.claimExpires, 17_000);
      await store.jobs.releaseAll();
      assert.equal((await store.jobs.get('a'))?.claimedBy, null);
      assert.deepEqual((await store.jobs.expiredBy(clock.now(), 10)).map((job) => job.id), ['b']);
      await clock.advance(20_000 - clock.now());
      assert.deepEqual((await store.jobs.expiredBy(clock.now(), 10)).map((job) => job.id), ['b', 'c']);
    });

    it('claims the finished jobs whose finished callback was not delivered nor given up', async (t) => {
      const clock = new TestClock(10_000);
      const { store } = await openTestStore(t, backend, { leaseMs: 5000, clock });
      const hook = { callbackUrl: 'https://blog/hook', expiresAt: 50_000 };
      await store.jobs.create(newJob('none', 1000, { ...hook, status: 'ready' }));
      await store.jobs.create(newJob('pending', 2000, { ...hook, status: 'failed', callbackFinished: JSON.stringify({ ok: false, attempts: 2, pending: true, at: 'x' }) }));
      await store.jobs.create(newJob('delivered', 3000, { ...hook, status: 'ready', callbackFinished: JSON.stringify({ ok: true, attempts: 1, at: 'x' }) }));
      await store.jobs.create(newJob('given-up', 4000, { ...hook, status: 'ready', callbackFinished: JSON.stringify({ ok: false, attempts: 5, at: 'x' }) }));
      await store.jobs.create(newJob('running', 5000, { ...hook, status: 'fetching' }));
      await store.jobs.create(newJob('no-hook', 6000, { status: 'ready', expiresAt: 50_000 }));
      await store.jobs.create(newJob('expired', 7000, { ...hook, status: 'ready', expiresAt: 9000 }));
      const claimed = await store.jobs.claimUndelivered(10);
      assert.deepEqual(claimed.map((job) => [job.id, job.claimedBy]), [['none', 'test-node'], ['pending', 'test-node']]);
    });
  });

  describe(`task ledger on ${backend}`, () => {
    const open = (t: Parameters<typeof tempDir>[0], options: Partial<StoreOptions> = {}) => openTestStore(t, backend, options);

    it('inserts on the first change and updates later ones without losing earlier fields', async (t) => {
      const clock = new TestClock(1000);
      const { store } = await open(t, { clock });
      const tasks = store.tasks;
      tasks.update('u1', { status: 'queued' });
      await tasks.flush();
      await clock.advance(2000 - clock.now());
      tasks.update('u1', { status: 'downloading', attempts: 1, startedAt: 2000 });
      tasks.update('u1', { bytesDone: 50, bytesTotal: 100 });
      await tasks.flush();
      const saved = await tasks.get('u1');
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
      const clock = new TestClock(1000);
      const { store } = await open(t, { clock });
      const tasks = store.tasks;
      const fresh = { status: 'queued', attempts: 0, errorCode: null, errorMessage: null, bytesDone: 0, bytesTotal: null, startedAt: null, finishedAt: null, claimedBy: null, claimExpires: null };
      tasks.update('u1', { status: 'queued' });
      tasks.update('u2', { status: 'downloading', attempts: 1, startedAt: 900, bytesTotal: 5000 });
      await tasks.flush();
      assert.deepEqual(await tasks.get('u1'), { url: 'u1', ...fresh, createdAt: 1000, updatedAt: 1000 });
      assert.deepEqual(await tasks.get('u2'), { url: 'u2', ...fresh, status: 'downloading', attempts: 1, startedAt: 900, bytesTotal: 5000, createdAt: 1000, updatedAt: 1000 });
      await clock.advance(2000 - clock.now());
      tasks.update('u1', { status: 'error', attempts: 3, errorCode: 'http_status', errorMessage: "HTTP 404 'quoted'", finishedAt: 1900 });
      tasks.update('u2', { bytesDone: 5000 });
      await tasks.flush();
      await clock.advance(3000 - clock.now());
      tasks.update('u1', { status: 'queued', errorCode: null, errorMessage: null });
      await tasks.flush();
      assert.deepEqual(await tasks.get('u1'), { url: 'u1', ...fresh, attempts: 3, finishedAt: 1900, createdAt: 1000, updatedAt: 3000 });
      assert.deepEqual(await tasks.get('u2'), { url: 'u2', ...fresh, status: 'downloading', attempts: 1, startedAt: 900, bytesDone: 5000, bytesTotal: 5000, createdAt: 1000, updatedAt: 2000 });
    });

    it('writes a batch in one transaction: a failing row leaves the whole batch unwritten', async (t) => {
      const errors: unknown[] = [];
      const { store } = await open(t, { onTaskWriteError: (e: unknown) => errors.push(e) });
      store.tasks.update('good', { status: 'queued' });
      store.tasks.update('bad', { status: null as unknown as 'queued' });
      await store.tasks.flush();
      assert.equal(errors.length, 1, 'reported');
      assert.equal(await store.tasks.get('good'), null, 'rolled back with the bad row');
      store.tasks.update('good', { status: 'ok' });
      await store.tasks.flush();
      assert.equal((await store.tasks.get('good'))?.status, 'ok', 'later batches are written');
    });

    it('writes 5,000 concurrent changes in order without interleaving', async (t) => {
      const { store, db } = await open(t);
      const tasks = store.tasks;
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
      const counts = await rawSql<{ status: string; n: number | string }>(db, 'SELECT status, COUNT(*) AS n FROM tasks GROUP BY status ORDER BY status');
      assert.deepEqual(counts.map(({ status, n }) => ({ status, n: Number(n) })), [
        { status: 'error', n: 2500 },
        { status: 'ok', n: 2500 },
      ]);
    });

    it('publishes each change once it is written, in the order made, and a removal with the status the row had', async (t) => {
      const { store, db } = await open(t);
      const heard: TaskChange[] = [];
      store.events.on('task', (change) => heard.push(change));
      store.tasks.update('p', { status: 'queued' });
      store.tasks.update('p', { status: 'downloading', attempts: 1 });
      assert.equal(heard.length, 0, 'not before it is written');
      await store.tasks.flush();
      const [row] = await rawSql<{ status: string }>(db, 'SELECT status FROM tasks WHERE url = ?', 'p');
      assert.equal(row?.status, 'downloading');
      store.tasks.update('p', { status: 'ok', bytesDone: 10, bytesTotal: 10 });
      await store.tasks.flush();
      await store.tasks.remove('p');
      await store.tasks.remove('never-there');
      assert.deepEqual(
        heard.map((c) => [c.url, c.patch.status, c.removed ?? false, c.node, c.remote]),
        [
          ['p', 'queued', false, 'test-node', false],
          ['p', 'downloading', false, 'test-node', false],
          ['p', 'ok', false, 'test-node', false],
          ['p', 'ok', true, 'test-node', false],
        ],
      );
    });

    it('removes the rows of downloads dropped before they started in one statement: only queued or waiting ones, not those wanted again', async (t) => {
      const { store, db } = await open(t);
      const heard: TaskChange[] = [];
      store.events.on('task', (change) => heard.push(change));
      store.tasks.update('q', { status: 'queued' });
      store.tasks.update('w', { status: 'waiting' });
      store.tasks.update('again', { status: 'queued' });
      store.tasks.update('started', { status: 'downloading' });
      store.tasks.update('done', { status: 'ok' });
      const removed = await store.tasks.removeUnstarted(['q', 'w', 'again', 'started', 'done', 'never-there'], (url) => url === 'again');
      assert.deepEqual(removed.sort(), ['q', 'w']);
      const rows = await rawSql<{ url: string; status: string }>(db, 'SELECT url, status FROM tasks ORDER BY url');
      assert.deepEqual(rows.map((r) => [r.url, r.status]), [['again', 'queued'], ['done', 'ok'], ['started', 'downloading']]);
      assert.deepEqual(heard.filter((c) => c.removed).map((c) => [c.url, c.patch.status]).sort(), [['q', 'queued'], ['w', 'waiting']]);
      assert.deepEqual(await store.tasks.removeUnstarted([], () => false), []);
    });

    it('keeps a timeline of status changes, tries and errors (not progress), bounded per URL, that outlives the store and goes with the row', async (t) => {
      const clock = new TestClock(1000);
      const { store, db } = await open(t, { clock });
      const tasks = store.tasks;
      tasks.update('t', { status: 'queued' });
      tasks.update('t', { status: 'downloading', attempts: 1, startedAt: 1000 });
      for (let i = 1; i <= 50; i++) tasks.update('t', { status: 'downloading', bytesDone: i * 10, bytesTotal: 500 });
      await tasks.flush();
      await clock.advance(100);
      tasks.noteTry('t', 1, { code: 'http_status', message: 'HTTP 500' });
      tasks.update('t', { status: 'downloading', attempts: 2, startedAt: 1100 });
      tasks.update('t', { status: 'error', attempts: 2, errorCode: 'http_status', errorMessage: `HTTP 500 ${'x'.repeat(3000)}`, finishedAt: 1100 });
      await tasks.flush();
      const timeline = await tasks.timeline('t');
      assert.deepEqual(
        timeline.map((e) => [e.status, e.attempt, e.errorCode, e.at, e.node]),
        [
          ['queued', null, null, 1000, 'test-node'],
          ['downloading', 1, null, 1000, 'test-node'],
          ['downloading', 1, 'http_status', 1100, 'test-node'],
          ['downloading', 2, null, 1100, 'test-node'],
          ['error', 2, 'http_status', 1100, 'test-node'],
        ],
        'one event per change of status or try, none per progress update',
      );
      assert.equal(timeline.at(-1)!.errorMessage!.length, 1000, 'a long message is cut');
      // Bounded: the newest 40 are kept.
      for (let i = 0; i < 30; i++) {
        tasks.update('t', { status: 'queued' });
        tasks.update('t', { status: 'error', attempts: 3 + i, errorCode: 'network', errorMessage: `try ${3 + i}` });
        await tasks.flush();
      }
      const kept = await tasks.timeline('t');
      assert.equal(kept.length, 40);
      assert.equal(kept.at(-1)!.errorMessage, 'try 32', 'the newest last');
      const [count] = await rawSql<{ n: number | string }>(db, 'SELECT COUNT(*) AS n FROM task_events WHERE url = ?', 't');
      assert.equal(Number(count?.n), 40, 'the table holds no more than that');
      // Read again by a store opened on the same database.
      await store.close();
      const again = await open(t, { db });
      assert.deepEqual((await again.store.tasks.timeline('t')).map((e) => e.errorMessage), kept.map((e) => e.errorMessage));
      // Removed with the row, whichever way it goes.
      await again.store.tasks.remove('t');
      again.store.tasks.update('u', { status: 'queued' });
      assert.deepEqual(await again.store.tasks.removeUnstarted(['u'], () => false), ['u']);
      assert.deepEqual(await again.store.tasks.timeline('t'), []);
      assert.deepEqual(await rawSql(db, 'SELECT url FROM task_events'), []);
    });

    it('keeps a task\'s first wait, not every turn of the gate between waiting and queued', async (t) => {
      const { store } = await open(t);
      const tasks = store.tasks;
      tasks.update('g', { status: 'queued' });
      // The gate closing and opening 50 times re-reports the URL each time.
      for (let i = 0; i < 50; i++) {
        tasks.update('g', { status: 'waiting' });
        await tasks.flush();
        tasks.update('g', { status: 'queued' });
        await tasks.flush();
      }
      tasks.update('g', { status: 'downloading', attempts: 1 });
      tasks.update('g', { status: 'error', attempts: 1, errorCode: 'network', errorMessage: 'reset' });
      // Retried: it waits again, which is news.
      tasks.update('g', { status: 'queued' });
      tasks.update('g', { status: 'waiting' });
      await tasks.flush();
      assert.deepEqual((await tasks.timeline('g')).map((e) => [e.status, e.errorCode]), [
        ['queued', null],
        ['downloading', null],
        ['error', 'network'],
        ['queued', null],
      ]);
    });

    it('lists tasks by error code and host, newest change or most tries first', async (t) => {
      const clock = new TestClock(1000);
      const { store } = await open(t, { clock });
      const tasks = store.tasks;
      const rows: [string, string, number, string | null][] = [
        ['https://a.example/1.jpg', 'error', 1, 'http_status'],
        ['https://A.example:8443/2.jpg', 'error', 3, 'network'],
        ['http://b.example/3.jpg?x=https://a.example/', 'tle', 2, 'tle'],
        ['https://b.example/4.jpg', 'ok', 5, null],
      ];
      for (const [url, status, attempts, errorCode] of rows) {
        tasks.update(url, { status: status as 'error', attempts, errorCode });
        await tasks.flush();
        await clock.advance(10);
      }
      const urls = async (options: Partial<Parameters<typeof tasks.list>[0]>) => (await tasks.list({ limit: 10, offset: 0, ...options })).tasks.map((r) => r.url);
      assert.deepEqual(await urls({}), rows.map((r) => r[0]).reverse(), 'newest change first by default');
      assert.deepEqual(await urls({ host: 'a.example' }), ['https://A.example:8443/2.jpg', 'https://a.example/1.jpg'], 'the host, any port, any case; not a host named in the query');
      assert.deepEqual(await urls({ errorCode: 'http_status' }), ['https://a.example/1.jpg']);
      assert.deepEqual(await urls({ sort: 'tries' }), ['https://b.example/4.jpg', 'https://A.example:8443/2.jpg', 'http://b.example/3.jpg?x=https://a.example/', 'https://a.example/1.jpg']);
      assert.deepEqual(await urls({ host: 'b.example', sort: 'tries', status: 'tle' }), ['http://b.example/3.jpg?x=https://a.example/']);
      assert.equal((await tasks.list({ host: 'b.example', limit: 1, offset: 0 })).total, 2);
    });

    it('removes failed tasks and their timelines, oldest first, at most the limit a call, and publishes each removal', async (t) => {
      const clock = new TestClock(1000);
      const { store, db } = await open(t, { clock });
      const heard: TaskChange[] = [];
      store.events.on('task', (change) => heard.push(change));
      const statuses = ['error', 'ok', 'tle', 'error', 'queued', 'downloading'] as const;
      for (const [i, status] of statuses.entries()) {
        store.tasks.update(`f${i}`, { status });
        await store.tasks.flush();
        await clock.advance(10);
      }
      assert.deepEqual(await store.tasks.removeFailed(2), ['f0', 'f2']);
      assert.deepEqual(await store.tasks.removeFailed(100), ['f3']);
      assert.deepEqual(await store.tasks.removeFailed(100), []);
      const left = await rawSql<{ url: string }>(db, 'SELECT url FROM tasks ORDER BY url');
      assert.deepEqual(left.map((r) => r.url), ['f1', 'f4', 'f5']);
      const events = await rawSql<{ url: string }>(db, 'SELECT DISTINCT url FROM task_events ORDER BY url');
      // f5's bare `downloading` (no try number) reads as progress: it has no event.
      assert.deepEqual(events.map((r) => r.url), ['f1', 'f4']);
      assert.deepEqual(heard.filter((c) => c.removed).map((c) => [c.url, c.patch.status]), [['f0', 'error'], ['f2', 'tle'], ['f3', 'error']]);
    });

    it('gives the task rows made before hosts were kept their hosts when it migrates', async (t) => {
      const db = await freshDatabase(t, backend);
      const options = createDataSource({ db }).options;
      const before = new DataSource({ ...options, migrations: migrations.slice(0, -1) });
      await before.initialize();
      try {
        await before.runMigrations();
        for (const [i, url] of ['https://Img.Example/a.jpg', 'http://[::1]:8080/b.png', 'not a url'].entries()) {
          await before.query(backend === 'postgres' ? 'INSERT INTO tasks (url, status, created_at, updated_at) VALUES ($1, $2, $3, $3)' : 'INSERT INTO tasks (url, status, created_at, updated_at) VALUES (?, ?, ?, ?)', backend === 'postgres' ? [url, 'ok', i] : [url, 'ok', i, i]);
        }
      } finally {
        await before.destroy();
      }
      const { store } = await open(t, { db });
      assert.deepEqual(store.migrated, ['AddTaskEvents1765000000000']);
      // SQLite: in the migration. PostgreSQL: after the start, in the background, outside the
      // migration's transaction ('' for a URL without a host, so it is looked at once).
      const want = JSON.stringify(['img.example', '[::1]', backend === 'postgres' ? '' : null]);
      await waitUntil(async () => JSON.stringify((await rawSql<{ host: string | null }>(db, 'SELECT host FROM tasks ORDER BY created_at')).map((r) => r.host)) === want, 'every row given its host');
      assert.deepEqual((await store.tasks.list({ host: '[::1]', limit: 5, offset: 0 })).tasks.map((r) => r.url), ['http://[::1]:8080/b.png']);
      if (backend === 'postgres') {
        const valid = () => rawSql<{ name: string }>(db, "SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indisvalid AND c.relname IN ('idx_tasks_attempts', 'idx_tasks_error_code', 'idx_tasks_host', 'idx_tasks_updated') AND c.relnamespace = current_schema()::regnamespace ORDER BY 1");
        await waitUntil(async () => (await valid()).length === 4, 'the admin list\'s indexes built');
        assert.deepEqual((await valid()).map((r) => r.name), ['idx_tasks_attempts', 'idx_tasks_error_code', 'idx_tasks_host', 'idx_tasks_updated']);
      }
    });

    it('on a database one node uses, every claim is this node’s and nothing is written', async (t) => {
      const { store, db } = await open(t);
      if (store.claims.shared) return t.skip('a shared database: see the two-node cases');
      assert.deepEqual(await store.claims.claim(['a', 'b'], 'queued'), { mine: ['a', 'b'], elsewhere: [] });
      assert.deepEqual(await rawSql(db, 'SELECT url FROM tasks'), []);
      assert.equal(await store.claims.renew(), 0);
      assert.deepEqual(await store.claims.orphaned(10), []);
    });

    it('keeps the pause switch and the nodes’ heartbeats', async (t) => {
      const clock = new TestClock(1000);
      const { store } = await open(t, { clock });
      const gates: GateChange[] = [];
      store.events.on('gate', (change) => gates.push(change));
      assert.equal(await store.cluster.paused(), false);
      assert.deepEqual(await store.cluster.pauseSwitch(), { paused: false, since: null, by: null });
      await store.cluster.setPaused(true);
      assert.equal(await store.cluster.paused(), true);
      // When and where it was turned on; pausing again keeps the first time.
      assert.deepEqual(await store.cluster.pauseSwitch(), { paused: true, since: 1000, by: 'test-node' });
      await clock.advance(500);
      await store.cluster.setPaused(true);
      assert.deepEqual(await store.cluster.pauseSwitch(), { paused: true, since: 1000, by: 'test-node' });
      assert.deepEqual(gates.map((g) => [g.paused, g.remote]), [[true, false], [true, false]]);
      await store.cluster.heartbeat({ queued: 3, downloading: 2, status: 'paused' });
      await clock.advance(1000);
      await store.cluster.heartbeat({ queued: 1, downloading: 0, status: 'ready' });
      assert.deepEqual(await store.cluster.nodes(), [{ id: 'test-node', startedAt: 1000, lastSeen: 2500, queued: 1, downloading: 0, status: 'ready' }]);
      await store.cluster.leave();
      assert.equal((await store.cluster.nodes())[0]?.status, 'stopped');
    });
  });
}

describe('two nodes on one PostgreSQL database', () => {
  const twoNodes = async (t: Parameters<typeof tempDir>[0], leaseMs = 30_000, clock: Clock = systemClock) => {
    const db = await freshPgDatabase(t);
    const a = await openTestStore(t, 'postgres', { db, node: 'node-a', leaseMs, clock });
    const b = await openTestStore(t, 'postgres', { db, node: 'node-b', leaseMs, clock });
    return { db, a: a.store, b: b.store };
  };

  it('a node removes the unstarted rows it or nobody holds, never another node’s claim', { skip: skipWithoutPg }, async (t) => {
    const { a, b, db } = await twoNodes(t);
    await a.claims.claim(['mine'], 'queued');
    await b.claims.claim(['theirs'], 'queued');
    a.tasks.update('free', { status: 'queued' });
    await a.tasks.flush();
    await rawSql(db, 'UPDATE tasks SET claimed_by = NULL WHERE url = ?', 'free');
    assert.deepEqual((await a.tasks.removeUnstarted(['mine', 'theirs', 'free'], () => false)).sort(), ['free', 'mine']);
    const rows = await rawSql<{ url: string; claimed_by: string }>(db, 'SELECT url, claimed_by FROM tasks ORDER BY url');
    assert.deepEqual(rows.map((r) => [r.url, r.claimed_by]), [['theirs', 'node-b']]);
  });

  it('one timeline per task across nodes; a claimed row gets its host; clear-failed leaves a failed row another live node holds', { skip: skipWithoutPg }, async (t) => {
    const { a, b, db } = await twoNodes(t);
    const url = 'https://Img.Example/shared.jpg';
    await a.claims.claim([url], 'queued');
    a.tasks.update(url, { status: 'downloading', attempts: 1 });
    a.tasks.update(url, { status: 'error', attempts: 1, errorCode: 'network', errorMessage: 'reset' });
    await a.tasks.flush();
    b.tasks.update(url, { status: 'downloading', attempts: 1 });
    b.tasks.update(url, { status: 'ok', attempts: 1, bytesDone: 7 });
    await b.tasks.flush();
    assert.deepEqual((await a.tasks.timeline(url)).map((e) => [e.node, e.status, e.errorCode, e.bytes]), [
      ['node-a', 'downloading', null, null],
      ['node-a', 'error', 'network', null],
      ['node-b', 'downloading', null, null],
      ['node-b', 'ok', null, 7],
    ]);
    const [row] = await rawSql<{ host: string }>(db, 'SELECT host FROM tasks WHERE url = ?', url);
    assert.equal(row?.host, 'img.example', 'the claim that made the row gave it its host');
    // A failed row node B has claimed again (a retry about to start) is not cleared by node A.
    b.tasks.update('held', { status: 'error', errorCode: 'network' });
    a.tasks.update('free', { status: 'error', errorCode: 'network' });
    await Promise.all([a.tasks.flush(), b.tasks.flush()]);
    await b.claims.claim(['held'], 'queued');
    assert.deepEqual(await a.tasks.removeFailed(100), ['free']);
    assert.equal((await b.tasks.get('held'))?.status, 'error');
  });

  /**
   * Makes PostgreSQL end `write` as a deadlock: another connection holds `second`, `write`
   * (which takes `first`, then `second`, in URL order) waits for it, then the other wants
   * `first`. The other's own check waits 10 s, the write's 1 s (the server's default), so
   * the write's transaction is the one ended; the other then commits. Resolves with the
   * write's outcome and whether PostgreSQL counted a deadlock. `statement` is how the write's
   * blocked statement begins.
   */
  async function deadlocked<T>(db: string, first: string, second: string, write: () => Promise<T>, statement = 'INSERT INTO tasks'): Promise<{ result: T; found: boolean }> {
    const deadlocks = async () => Number((await rawSql<{ n: string }>(db, 'SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()'))[0]!.n);
    const before = await deadlocks();
    const other = new pg.Client({ connectionString: db });
    // Ended below; if the test fails first, the database's drop ends its connection: not an uncaught error.
    other.on('error', () => undefined);
    await other.connect();
    const otherPid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await other.query("SET deadlock_timeout = '10s'");
    await other.query('BEGIN');
    await other.query('UPDATE tasks SET attempts = 7 WHERE url = $1', [second]);
    const written = write();
    written.catch(() => undefined);
    // The write's own statement blocked by the other (not, say, the schema's index build waiting on its transaction).
    const blocked = 'SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND starts_with(query, ?) AND ? = ANY(pg_blocking_pids(pid))';
    await waitUntil(async () => (await rawSql(db, blocked, statement, otherPid)).length > 0, `the write waiting for ${second}`, 5000);
    // Now the other wants `first`: a cycle, within the write's 1 s, so its check is the one that finds it.
    await other.query('UPDATE tasks SET attempts = 8 WHERE url = $1', [first]);
    await other.query('COMMIT');
    await other.end();
    const result = await written;
    return { result, found: (await deadlocks()) > before };
  }

  it('a task batch PostgreSQL ends as a deadlock is written again, not failed (rows taken in URL order)', { skip: skipWithoutPg }, async (t) => {
    const { a, db } = await twoNodes(t);
    a.tasks.update('dl-a', { status: 'queued' });
    a.tasks.update('dl-b', { status: 'queued' });
    await a.tasks.flush();
    const { found } = await deadlocked(db, 'dl-a', 'dl-b', () => {
      // Asked in the other order: the batch still takes dl-a first.
      a.tasks.update('dl-b', { status: 'downloading', attempts: 1 });
      a.tasks.update('dl-a', { status: 'downloading', attempts: 1 });
      return a.tasks.flush();
    });
    assert.ok(found, 'PostgreSQL found the deadlock');
    const rows = await rawSql<{ url: string; status: string; attempts: number }>(db, "SELECT url, status, attempts FROM tasks WHERE url LIKE 'dl-%' ORDER BY url");
    assert.deepEqual(rows.map((r) => [r.url, r.status, r.attempts]), [['dl-a', 'downloading', 1], ['dl-b', 'downloading', 1]], 'the batch written again after the other committed');
  });

  it('a claim PostgreSQL ends as a deadlock is made again, not failed (URLs claimed in URL order)', { skip: skipWithoutPg }, async (t) => {
    const { a, db } = await twoNodes(t);
    // Rows nobody holds (as after a node released them).
    a.tasks.update('cl-a', { status: 'queued' });
    a.tasks.update('cl-b', { status: 'queued' });
    await a.tasks.flush();
    const { result, found } = await deadlocked(db, 'cl-a', 'cl-b', () => a.claims.claim(['cl-b', 'cl-a'], 'queued'));
    assert.ok(found, 'PostgreSQL found the deadlock');
    assert.deepEqual(result.mine, ['cl-b', 'cl-a'], 'answered in the order asked (the supervisor queues them so), though taken in URL order');
    const rows = await rawSql<{ url: string; claimed_by: string }>(db, "SELECT url, claimed_by FROM tasks WHERE url LIKE 'cl-%' ORDER BY url");
    assert.deepEqual(rows.map((r) => [r.url, r.claimed_by]), [['cl-a', 'node-a'], ['cl-b', 'node-a']]);
  });

  it('a renewal of claims takes its rows in URL order, and one PostgreSQL ends as a deadlock is made again, not failed', { skip: skipWithoutPg }, async (t) => {
    const clock = new TestClock();
    const { a, db } = await twoNodes(t, 30_000, clock);
    // Made b first, so the rows lie b, a in the table (and in the claims index): a renewal in that order would
    // wait on b holding nothing, and there would be no deadlock to find.
    await a.claims.claim(['rn-b'], 'queued');
    await a.claims.claim(['rn-a'], 'queued');
    const expiry = async () => (await rawSql<{ claim_expires: string }>(db, "SELECT claim_expires FROM tasks WHERE url LIKE 'rn-%' ORDER BY url")).map((r) => Number(r.claim_expires));
    assert.deepEqual(await expiry(), [clock.now() + 30_000, clock.now() + 30_000]);
    await clock.advance(1000);
    const { result, found } = await deadlocked(db, 'rn-a', 'rn-b', () => a.claims.renew(), 'UPDATE tasks SET claim_expires');
    assert.ok(found, 'PostgreSQL found the deadlock');
    assert.equal(result, 2, 'both claims renewed');
    assert.deepEqual(await expiry(), [clock.now() + 30_000, clock.now() + 30_000], 'both leases run from the renewal');
  });

  it('a release of claims PostgreSQL ends as a deadlock is made again, not failed (rows taken in URL order)', { skip: skipWithoutPg }, async (t) => {
    const { a, db } = await twoNodes(t);
    await a.claims.claim(['rl-b'], 'queued');
    await a.claims.claim(['rl-a'], 'queued');
    const { found } = await deadlocked(db, 'rl-a', 'rl-b', () => a.claims.release(['rl-b', 'rl-a']), 'UPDATE tasks SET claimed_by = NULL');
    assert.ok(found, 'PostgreSQL found the deadlock');
    const rows = await rawSql<{ url: string; claimed_by: string | null }>(db, "SELECT url, claimed_by FROM tasks WHERE url LIKE 'rl-%' ORDER BY url");
    assert.deepEqual(rows.map((r) => [r.url, r.claimed_by]), [['rl-a', null], ['rl-b', null]], 'both released after the other committed');
  });

  it('a URL is claimed by one node; the other is told who holds it', { skip: skipWithoutPg }, async (t) => {
    const { a, b, db } = await twoNodes(t);
    const [first, second] = await Promise.all([a.claims.claim(['u1', 'u2'], 'queued'), b.claims.claim(['u2', 'u3'], 'queued')]);
    const owners = new Map<string, string>();
    for (const [node, outcome] of [['node-a', first], ['node-b', second]] as const) {
      for (const url of outcome.mine) {
        assert.equal(owners.has(url), false, `${url} claimed twice`);
        owners.set(url, node);
      }
    }
    assert.deepEqual([...owners.keys()].sort(), ['u1', 'u2', 'u3']);
    const loser = owners.get('u2') === 'node-a' ? second : first;
    assert.deepEqual(loser.elsewhere, [['u2', owners.get('u2')]]);
    const rows = await rawSql<{ url: string; claimed_by: string; status: string }>(db, 'SELECT url, claimed_by, status FROM tasks ORDER BY url');
    assert.deepEqual(rows.map((r) => [r.url, r.claimed_by, r.status]), [['u1', 'node-a', 'queued'], ['u2', owners.get('u2'), 'queued'], ['u3', 'node-b', 'queued']]);
  });

  it('claims are renewed in one statement, released by the final status, and taken over once they run out', { skip: skipWithoutPg }, async (t) => {
    const clock = new TestClock(1_000_000);
    const { a, b, db } = await twoNodes(t, 5000, clock);
    await a.claims.claim(['x', 'y', 'z'], 'queued');
    await clock.advance(4000);
    assert.equal(await a.claims.renew(), 3, 'one statement renews all three');
    a.tasks.update('z', { status: 'ok', finishedAt: clock.now() });
    await a.tasks.flush();
    const [z] = await rawSql<{ claimed_by: string | null }>(db, "SELECT claimed_by FROM tasks WHERE url = 'z'");
    assert.equal(z?.claimed_by, null, 'released when the download ends');
    assert.deepEqual(await b.claims.orphaned(10), [], 'a live claim is nobody’s to take');
    assert.deepEqual((await b.claims.claim(['x'], 'queued')).elsewhere, [['x', 'node-a']]);
    await clock.advance(5001); // node-a died: its lease runs out
    assert.deepEqual((await b.claims.orphaned(10)).sort(), ['x', 'y']);
    assert.deepEqual((await b.claims.claim(['x', 'y'], 'queued')).mine.sort(), ['x', 'y'], 'taken over');
    assert.deepEqual((await b.tasks.unfinished()).map((r) => r.url).sort(), ['x', 'y'], 'node-b resumes them');
    assert.deepEqual((await a.tasks.unfinished()).map((r) => r.url), [], 'node-a, back, does not steal them');
    await b.claims.releaseAll();
    assert.deepEqual((await a.claims.orphaned(10)).sort(), ['x', 'y'], 'released at a graceful stop: anyone may take them at once');
  });

  it('a node renews its claims but the strays it names, lists what it holds, and releases chosen claims for anyone to take', { skip: skipWithoutPg }, async (t) => {
    const clock = new TestClock(1_000_000);
    const { a, b, db } = await twoNodes(t, 5000, clock);
    await a.claims.claim(['x', 'y', 'z'], 'queued');
    a.tasks.update('z', { status: 'ok', finishedAt: clock.now() });
    await a.tasks.flush();
    assert.deepEqual((await a.claims.held()).sort(), ['x', 'y'], 'unfinished tasks it holds');
    assert.deepEqual(await b.claims.held(), []);
    await clock.advance(4000);
    assert.equal(await a.claims.renew(['y']), 1, 'x renewed, y (a stray) not');
    const rows = await rawSql<{ url: string; claim_expires: string }>(db, "SELECT url, claim_expires FROM tasks WHERE url IN ('x', 'y') ORDER BY url");
    assert.deepEqual(rows.map((r) => [r.url, Number(r.claim_expires)]), [['x', 1_009_000], ['y', 1_005_000]]);
    await a.claims.release(['y']);
    assert.deepEqual(await b.claims.orphaned(10), ['y'], 'released: any node may take it at once');
    assert.deepEqual(await a.claims.held(), ['x']);
  });

  it('every change one node writes is heard by the other: tasks, covers (memory forgotten), removals, the gate', { skip: skipWithoutPg }, async (t) => {
    const { a, b } = await twoNodes(t);
    const tasks: TaskChange[] = [];
    const covers: CoverChange[] = [];
    const gates: GateChange[] = [];
    b.events.on('task', (c) => tasks.push(c));
    b.events.on('cover', (c) => covers.push(c));
    b.events.on('gate', (c) => gates.push(c));
    await a.covers.save(row('k', { path: 'h/k1.jpg' }));
    assert.equal((await b.covers.findMany(['k'])).get('k')?.path, 'h/k1.jpg', 'in node-b’s memory now');
    a.tasks.update('k', { status: 'downloading', attempts: 1 });
    a.tasks.update('k', { status: 'ok', bytesDone: 9, bytesTotal: 9 });
    await a.tasks.flush();
    await a.covers.save(row('k', { path: 'h/k2.jpg' }));
    await waitUntil(() => covers.length === 2, 'two cover changes heard', 5000);
    assert.equal((await b.covers.findMany(['k'])).get('k')?.path, 'h/k2.jpg', 'node-b forgot the old row');
    await a.tasks.remove('k');
    await a.cluster.setPaused(true);
    await waitUntil(() => gates.length === 1 && tasks.length === 3, 'the removal and the gate heard', 5000);
    assert.deepEqual(tasks.map((c) => [c.url, c.patch.status, c.removed ?? false, c.node, c.remote]), [
      ['k', 'downloading', false, 'node-a', true],
      ['k', 'ok', false, 'node-a', true],
      ['k', 'ok', true, 'node-a', true],
    ]);
    assert.deepEqual(gates.map((g) => [g.paused, g.node, g.remote]), [[true, 'node-a', true]]);
    assert.equal(await b.cluster.paused(), true);
  });
});

describe('jobs on two nodes of one PostgreSQL database', () => {
  it('a job claimed by one node is not the other’s until its lease runs out; every change is heard by the other', { skip: skipWithoutPg }, async (t) => {
    const clock = new TestClock(1_000_000);
    const db = await freshPgDatabase(t);
    const a = (await openTestStore(t, 'postgres', { db, node: 'node-a', leaseMs: 5000, clock })).store;
    const b = (await openTestStore(t, 'postgres', { db, node: 'node-b', leaseMs: 5000, clock })).store;
    const heard: JobChange[] = [];
    b.events.on('job', (change) => heard.push(change));
    await a.jobs.create(newJob('shared', clock.now()));
    const [first, second] = await Promise.all([a.jobs.claim('shared'), b.jobs.claim('shared')]);
    assert.equal(Number(first) + Number(second), 1, 'one node holds it');
    const [holder, other] = first ? [a, b] : [b, a];
    assert.deepEqual(await other.jobs.claimable(10), []);
    await holder.jobs.update('shared', { status: 'fetching', ok: 1 });
    await waitUntil(() => heard.some((c) => c.job.status === 'fetching'), 'the change heard', 5000);
    await clock.advance(5001); // the holder died
    assert.deepEqual(await other.jobs.claimable(10), ['shared']);
    assert.equal(await other.jobs.claim('shared'), true, 'taken over');
    if (holder === a) {
      const change = heard.find((c) => c.job.status === 'fetching')!;
      assert.deepEqual([change.node, change.remote], ['node-a', true]);
    }
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
    const findCoverFile = async (root: string, urlPath: string) => {
      const found = await openCoverFile(root, urlPath);
      await found?.handle.close();
      return found;
    };
    await writeCoverFile(dir, 'h/a b.jpg', Buffer.from('img'));
    assert.equal((await findCoverFile(dir, 'h/a%20b.jpg'))?.size, 3);
    for (const attempt of ['../x', '%2e%2e/x', 'h/..%2f..%2fetc', '/etc/passwd', '%2fetc%2fpasswd', '.tmp/x', 'h/', '', 'h/%zz', 'h%2fa b.jpg', 'h\\..\\a']) {
      assert.equal(await findCoverFile(dir, attempt), undefined, attempt);
    }
  });
});

describe('the precision of last-asked-for times', () => {
  it('is ten minutes, or a twentieth of --max-age-hours when that is shorter', () => {
    assert.equal(touchPrecisionFor(0), TOUCH_PRECISION_MS);
    assert.equal(TOUCH_PRECISION_MS, 10 * 60_000);
    assert.equal(touchPrecisionFor(1), 3 * 60_000);
    assert.equal(touchPrecisionFor(24), TOUCH_PRECISION_MS);
    assert.equal(touchPrecisionFor(0.001), 180);
  });
});
