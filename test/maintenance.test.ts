/**
 * The background side: the resource guard, the deletion runner and the cache
 * limits, over a real SQLite file and real files.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { TestClock } from '../src/clock.js';
import { closeLogger, createLogger } from '../src/logger.js';
import { CacheLimits, DeletionRunner, overLimits } from '../src/maintenance/index.js';
import { originalPathOf, TOUCH_PRECISION_MS, writeCoverFile } from '../src/store/index.js';
import type { CoverRow, StoreOptions } from '../src/store/index.js';
import { readTasks, waitUntil } from './helpers/db.js';
import { coverRow } from './helpers/coverRow.js';
import { startOrigin } from './helpers/origin.js';
import { startInProcess } from './helpers/inProcess.js';
import { openTestStore } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];
const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });
const exists = (file: string) => access(file).then(() => true, () => false);

async function openStores(t: TestContext, options: Partial<StoreOptions> = {}) {
  const dir = await tempDir(t);
  const { store, db } = await openTestStore(t, 'sqlite', { db: path.join(dir, 'db.sqlite'), ...options });
  const { covers, tasks, deletions } = store;
  const coversDir = path.join(dir, 'covers');
  /** Stores a cover row and its file. */
  const addCover = async (url: string, overrides: Partial<CoverRow> = {}) => {
    const row = coverRow(url, { path: `h/${encodeURIComponent(url).replace(/%/g, '_')}.jpg`, bytes: 100, ...overrides });
    await writeCoverFile(coversDir, row.path, Buffer.alloc(row.bytes, 1));
    if (row.originalPath !== null && row.originalPath !== row.path) await writeCoverFile(coversDir, row.originalPath, Buffer.alloc(row.originalBytes ?? 0, 2));
    await covers.save(row);
    tasks.update(url, { status: 'ok' });
    return row;
  };
  return { dir, db, store, covers, tasks, deletions, coversDir, addCover };
}

describe('resource guard', () => {
  it('names every figure over its limit', () => {
    assert.deepEqual(overLimits({ diskPercent: 50, memPercent: 50, load5: 1 }, { diskLimit: 80, memLimit: 80, loadLimit: 5 }), []);
    assert.deepEqual(overLimits({ diskPercent: 91.5, memPercent: 85, load5: 7 }, { diskLimit: 80, memLimit: 80, loadLimit: 5 }), [
      'disk 91.5% used > --disk-limit 80%',
      'memory 85% used > --mem-limit 80%',
      'load5 7 > --load-limit 5',
    ]);
  });

  it('holds new downloads as waiting while over a limit, still answers hits, and resumes when the limit is lifted', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const { app, checks } = await startInProcess(t);
    const cached = `${origin.url}/img/guard-cached.jpg`;
    assert.equal((await checks.check([cached]))[0]!.status, 'ok');

    // A limit this machine is already above: any disk in use is more than 0%.
    app.guard.setLimits({ diskLimit: 0 });
    await app.guard.sample();
    assert.equal(app.downloads.status(), 'tardy');
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { status: string; reasons: string[] };
    assert.equal(health.status, 'tardy');
    assert.match(health.reasons[0]!, /^disk [\d.]+% used > --disk-limit 0%$/);

    const held = `${origin.url}/img/guard-held.jpg`;
    const waiting = checks.check([cached, held]);
    await waitUntil(async () => (await app.store.tasks.get(held))?.status === 'waiting', 'the held URL recorded as waiting');
    const hit = await checks.check([cached]);
    assert.equal(hit[0]!.source, 'cache', 'hits are answered while tardy');
    assert.equal(origin.hits.get('/img/guard-held.jpg'), undefined, 'nothing new is fetched while tardy');

    app.guard.setLimits({ diskLimit: 100 });
    await app.guard.sample();
    assert.equal(app.downloads.status(), 'ready');
    const results = await waiting;
    assert.deepEqual(results.map((r) => r.status), ['ok', 'ok']);
    assert.equal(origin.hits.get('/img/guard-held.jpg'), 1);
  });
});

describe('deletion runner', () => {
  it('removes rows, then the file, then the record, and is idempotent', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    const row = await addCover('https://a.hdslb.com/1.jpg');
    await deletions.schedule([{ url: row.url, path: row.path, kind: 'entry', reason: 'admin' }]);
    await deletions.schedule([{ url: row.url, path: row.path, kind: 'entry', reason: 'admin' }]);
    assert.equal((await deletions.pending()).length, 1, 'the same target is recorded once');

    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    assert.equal(await runner.runOnce(), 1);
    assert.equal(await covers.find(row.url), null);
    assert.equal(await tasks.get(row.url), null);
    assert.equal(await exists(path.join(coversDir, row.path)), false);
    assert.deepEqual(await deletions.pending(), []);
    assert.equal(await runner.runOnce(), 0, 'nothing left to do');
  });

  it('keeps a file that a cover row points at again, and a newer cover of the same URL', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    const old = await addCover('https://a.hdslb.com/2.jpg', { path: 'h/old.jpg' });
    await deletions.schedule([{ url: old.url, path: old.path, kind: 'entry', reason: 'admin' }]);
    // Re-downloaded under a new path before the runner got to the record.
    await addCover(old.url, { path: 'h/new.jpg' });
    const shared = await addCover('https://a.hdslb.com/3.jpg', { path: 'h/shared.jpg' });
    await deletions.schedule([{ url: 'https://a.hdslb.com/replaced.jpg', path: shared.path, kind: 'file', reason: 'replaced' }]);

    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    assert.equal(await runner.runOnce(), 2);
    assert.equal((await covers.find(old.url))?.path, 'h/new.jpg', 'the newer cover stays');
    assert.equal(await exists(path.join(coversDir, 'h/new.jpg')), true);
    assert.equal(await exists(path.join(coversDir, 'h/old.jpg')), false, 'the old file, which no row points at any more, goes');
    assert.equal(await exists(path.join(coversDir, 'h/shared.jpg')), true, 'a file a row points at is never removed');
  });

  it('never carries out one record twice, even with two runners at once', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => addCover(`https://a.hdslb.com/many-${i}.jpg`)));
    await deletions.schedule(rows.map((r) => ({ url: r.url, path: r.path, kind: 'entry' as const, reason: 'admin' })));
    const carriedOut: string[] = [];
    const logStream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        // The lines of one turn come as one write, at its end.
        for (const text of chunk.toString().split('\n')) {
          if (text.trim() === '') continue;
          const line = JSON.parse(text) as { message: string; url: string };
          if (line.message === 'deleted') carriedOut.push(line.url);
        }
        callback();
      },
    });
    const logger = createLogger({ logLevel: 'info', logFormat: 'json' }, logStream);
    const a = new DeletionRunner({ deletions, covers, tasks, coversDir, logger });
    const b = new DeletionRunner({ deletions, covers, tasks, coversDir, logger });
    const [doneA, doneB] = await Promise.all([a.runOnce(), b.runOnce(), a.runOnce()]);
    await closeLogger(logger);
    assert.equal(doneA + doneB, 40);
    assert.equal(new Set(carriedOut).size, 40);
    assert.equal(carriedOut.length, 40, 'each record carried out once');
    assert.equal(await covers.count(), 0);
  });
});

describe('cache limits', () => {
  it('removes downloaded covers not asked for within --max-age-hours, never custom ones', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    const hour = 3_600_000;
    const now = 100 * hour;
    const clock = new TestClock(now);
    const stale = await addCover('https://a.hdslb.com/stale.jpg', { lastAskedAt: now - 3 * hour });
    const fresh = await addCover('https://a.hdslb.com/fresh.jpg', { lastAskedAt: now - hour / 2 });
    const custom = await addCover('https://a.hdslb.com/custom.jpg', { source: 'custom', lastAskedAt: 0 });
    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    const limits = new CacheLimits({ covers, deletions, runner, logger: quiet, maxAgeHours: 2, maxCacheBytes: 0, clock });
    assert.deepEqual(await limits.runOnce(), { expired: 1, overCap: 0 });
    assert.equal(await covers.find(stale.url), null);
    assert.equal(await exists(path.join(coversDir, stale.path)), false);
    assert.ok(await covers.find(fresh.url));
    assert.ok(await covers.find(custom.url), 'custom covers never expire');
    assert.equal(await readFile(path.join(coversDir, custom.path)).then((b) => b.length), 100);
  });

  it('a cover whose stored last-asked-for time is within the store\'s precision of --max-age-hours is kept: it may have been asked for since', async (t) => {
    const hour = 3_600_000;
    const now = 10 * hour;
    const clock = new TestClock(now);
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t, { clock });
    assert.equal(covers.touchPrecisionMs, TOUCH_PRECISION_MS, 'the store\'s default (the service gives it touchPrecisionFor(--max-age-hours))');
    const edge = await addCover('https://a.hdslb.com/edge.jpg', { lastAskedAt: now - 2 * hour - covers.touchPrecisionMs + 1 });
    const past = await addCover('https://a.hdslb.com/past.jpg', { lastAskedAt: now - 2 * hour - covers.touchPrecisionMs - 1 });
    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    const limits = new CacheLimits({ covers, deletions, runner, logger: quiet, maxAgeHours: 2, maxCacheBytes: 0, clock });
    assert.deepEqual(await limits.runOnce(), { expired: 1, overCap: 0 });
    assert.ok(await covers.find(edge.url));
    assert.equal(await covers.find(past.url), null);
  });

  it('asking for a cover keeps it from expiring', async (t) => {
    const clock = new TestClock(10 * 3_600_000);
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t, { clock });
    const row = await addCover('https://a.hdslb.com/asked.jpg', { lastAskedAt: 0 });
    covers.touch([row.url]);
    await covers.flushTouches();
    await clock.advance(3_600_000);
    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    const limits = new CacheLimits({ covers, deletions, runner, logger: quiet, maxAgeHours: 2, maxCacheBytes: 0, clock });
    assert.deepEqual(await limits.runOnce(), { expired: 0, overCap: 0 });
  });

  it('removes the least recently asked-for downloaded covers until under --max-cache-bytes', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    for (let i = 0; i < 10; i++) await addCover(`https://a.hdslb.com/lru-${i}.jpg`, { bytes: 100, lastAskedAt: 1000 + i });
    await addCover('https://a.hdslb.com/custom-big.jpg', { source: 'custom', bytes: 5000, lastAskedAt: 0 });
    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    const limits = new CacheLimits({ covers, deletions, runner, logger: quiet, maxAgeHours: 0, maxCacheBytes: 650, clock: new TestClock(2000) });
    assert.deepEqual(await limits.runOnce(), { expired: 0, overCap: 4 });
    assert.equal(await covers.downloadedBytes(), 600);
    for (let i = 0; i < 4; i++) assert.equal(await covers.find(`https://a.hdslb.com/lru-${i}.jpg`), null, `lru-${i} went first`);
    for (let i = 4; i < 10; i++) assert.ok(await covers.find(`https://a.hdslb.com/lru-${i}.jpg`));
    assert.ok(await covers.find('https://a.hdslb.com/custom-big.jpg'), 'custom covers do not count and are never removed');
  });
});

describe('originals in the cache limits and the deletion runner', () => {
  it('counts each original in --max-cache-bytes and removes it with its cover; a replaced file takes its original too, unless a row points at it again', async (t) => {
    const { covers, tasks, deletions, coversDir, addCover } = await openStores(t);
    const withOriginal = (i: number) => {
      const file = `h/orig-${i}.jpg`;
      return { path: file, bytes: 100, originalPath: originalPathOf(file), originalWidth: 10, originalHeight: 10, originalBytes: 200, lastAskedAt: 1000 + i };
    };
    const rows = [];
    for (let i = 0; i < 4; i++) rows.push(await addCover(`https://a.hdslb.com/orig-${i}.jpg`, withOriginal(i)));
    const runner = new DeletionRunner({ deletions, covers, tasks, coversDir, logger: quiet });
    // 1,200 bytes stored; the variants alone (400) are under 650, with their originals two covers must go.
    const limits = new CacheLimits({ covers, deletions, runner, logger: quiet, maxAgeHours: 0, maxCacheBytes: 650, clock: new TestClock(2000) });
    assert.deepEqual(await limits.runOnce(), { expired: 0, overCap: 2 });
    assert.equal(await covers.downloadedBytes(), 600);
    for (const [i, row] of rows.entries()) {
      const kept = i >= 2;
      assert.equal(await exists(path.join(coversDir, row.path)), kept, row.path);
      assert.equal(await exists(path.join(coversDir, row.originalPath!)), kept, row.originalPath!);
    }

    // A replaced file (kind `file`) goes with its original...
    await deletions.schedule([{ url: rows[2]!.url, path: rows[2]!.path, kind: 'file', reason: 'replaced' }]);
    await covers.save({ ...rows[2]!, path: 'h/new.jpg', originalPath: null, originalBytes: null });
    await runner.runOnce();
    assert.equal(await exists(path.join(coversDir, rows[2]!.path)), false);
    assert.equal(await exists(path.join(coversDir, rows[2]!.originalPath!)), false);
    // ...unless a row points at the file again: both stay.
    await deletions.schedule([{ url: 'https://a.hdslb.com/other.jpg', path: rows[3]!.path, kind: 'file', reason: 'replaced' }]);
    await runner.runOnce();
    assert.equal(await exists(path.join(coversDir, rows[3]!.path)), true);
    assert.equal(await exists(path.join(coversDir, rows[3]!.originalPath!)), true);
  });
});

describe('cache limits in the running service', () => {
  it('keeps the stored downloads under a tiny --max-cache-bytes as downloads arrive', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const { dir, app, checks } = await startInProcess(t, ['--max-cache-bytes', '3000', '--resize', 'off']);
    for (let i = 0; i < 6; i++) await checks.check([`${origin.url}/img/cap-${i}.jpg`]);
    // A pass may have begun before the last cover was stored: the next one sees it.
    await waitUntil(async () => {
      await app.cacheLimits.runOnce();
      return (await app.store.covers.downloadedBytes()) <= 3000;
    }, 'the stored downloads under the cap');
    assert.ok((await app.store.covers.count()) < 6);
    await waitUntil(async () => (await app.store.deletions.pending()).length === 0, 'deletions carried out');
    assert.ok(readTasks(path.join(dir, 'data', 'coverhelper.sqlite')).length < 6, 'task rows of removed covers go too');
  });
});
