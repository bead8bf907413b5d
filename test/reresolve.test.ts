/**
 * Covers that change upstream (`--resolve-ttl`): the re-resolve decision with
 * the test clock, then the service in process against a real API origin whose
 * answer changes, with real WebSocket clients and a real SQLite file.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { TestClock } from '../src/clock.js';
import { Reresolver } from '../src/downloads/reresolve.js';
import type { Asker } from '../machines/flights.js';
import type { DownloadOutput } from '../machines/types.js';
import { coverRow } from './helpers/coverRow.js';
import { waitUntil } from './helpers/db.js';
import { startInProcess } from './helpers/inProcess.js';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

const HOUR = 3_600_000;
const page = 'https://www.bilibili.com/video/BV1xx411c7mD';
const allowHosts = ['*.hdslb.com'];

const row = coverRow;

/** A Reresolver on the test clock whose asks are recorded and settled by the test. */
function reresolver(options: { ttlHours?: number; cap?: number } = {}) {
  const clock = new TestClock();
  const asks: { urls: readonly string[]; asker: Asker }[] = [];
  const settle = new Map<string, (output: DownloadOutput) => void>();
  const done: string[] = [];
  const r = new Reresolver({
    ttlMs: (options.ttlHours ?? 24) * HOUR,
    allowHosts,
    clock,
    ...(options.cap === undefined ? {} : { cap: options.cap }),
    ask: (urls, asker) => {
      asks.push({ urls, asker });
      return urls.map((url) => ({ done: new Promise<DownloadOutput>((resolve) => settle.set(url, resolve)) }));
    },
    onDone: (url) => done.push(url),
  });
  return { clock, r, asks, settle, done };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('the re-resolve decision (test clock)', () => {
  it('a video page is due once the TTL has passed since it was last resolved; a cover stored before resolved times were kept counts from when it was stored', async () => {
    const { clock, r } = reresolver();
    const resolved = row(page, { resolvedAt: clock.now(), resolvedPic: 'https://i0.hdslb.com/a.jpg' });
    const legacy = row(`${page}?p=1`, { createdAt: clock.now() });
    assert.equal(r.isDue(resolved, clock.now()), false);
    await clock.advance(24 * HOUR - 1);
    assert.equal(r.isDue(resolved, clock.now()), false, 'within the TTL');
    assert.equal(r.isDue(legacy, clock.now()), false, 'an old row: counted from created_at');
    await clock.advance(1);
    assert.equal(r.isDue(resolved, clock.now()), true, 'the TTL has passed');
    assert.equal(r.isDue(legacy, clock.now()), true);
  });

  it('never an image URL, a custom cover, or anything with --resolve-ttl 0', async () => {
    const { clock, r } = reresolver();
    await clock.advance(48 * HOUR);
    assert.equal(r.isDue(row('https://i0.hdslb.com/bfs/archive/x.jpg'), clock.now()), false);
    assert.equal(r.isDue(row(page, { source: 'custom' }), clock.now()), false);
    const never = reresolver({ ttlHours: 0 });
    await never.clock.advance(1e6 * HOUR);
    assert.equal(never.r.isDue(row(page), never.clock.now()), false);
  });

  it('asks the pages found due in one turn together, as one bulk asker; a pending page is not asked again; beyond the cap nothing is queued', async () => {
    const { clock, r, asks, settle, done } = reresolver({ cap: 3 });
    await clock.advance(25 * HOUR);
    const pages = ['BV1aa411c7aa', 'BV1bb411c7bb', 'BV1cc411c7cc', 'BV1dd411c7dd'].map((id) => row(`https://www.bilibili.com/video/${id}`));
    assert.deepEqual(pages.map((p) => r.consider(p)), [true, true, true, false], 'the fourth is over the cap');
    assert.equal(r.consider(pages[0]!), false, 'already pending');
    assert.equal(r.dropped, 1);
    assert.equal(asks.length, 0, 'asked at the end of the turn');
    await turn();
    assert.equal(asks.length, 1, 'one ask for the turn');
    assert.deepEqual(asks[0]!.urls, pages.slice(0, 3).map((p) => p.url));
    assert.deepEqual({ ...asks[0]!.asker }, { kind: 'reresolve', party: 'reresolve', bulk: true });
    assert.equal(r.wants(pages[0]!.url), true, 'fetchCover re-resolves a pending page');
    assert.equal(r.wants(pages[3]!.url), false);
    settle.get(pages[0]!.url)!({ url: pages[0]!.url, status: 'ok', source: 'cache', cover: { path: 'h/a.jpg', contentType: 'image/jpeg', bytes: 1, width: 1, height: 1, sha256: 'a' } });
    await turn();
    assert.deepEqual(done, [pages[0]!.url]);
    assert.equal(r.wants(pages[0]!.url), false, 'finished');
    assert.equal(r.size, 2);
    assert.equal(r.consider(pages[3]!), true, 'room again under the cap');
    await turn();
    assert.equal(asks.length, 2);
  });
});

describe('a failed re-resolve (test clock)', () => {
  it('waits another TTL before the page is asked again; a cooling host or a shutdown does not count as a failure', async () => {
    const { clock, r, asks, settle } = reresolver();
    await clock.advance(25 * HOUR);
    const gone = row(page);
    const limited = row(`${page}?p=2`);
    const fail = (url: string, code: string) =>
      settle.get(url)!({ url, status: 'error', error: { code, message: code } });
    assert.equal(r.consider(gone), true);
    assert.equal(r.consider(limited), true);
    await turn();
    fail(gone.url, 'resolve_failed');
    fail(limited.url, 'upstream_limited');
    await turn();
    assert.equal(r.consider(gone), false, 'failed just now: not asked again at the next ask');
    assert.equal(r.consider(limited), true, 'a cooling host is not the page\'s answer: considered again');
    await clock.advance(24 * HOUR - 1);
    assert.equal(r.consider(gone), false, 'still within a TTL of the failure');
    await clock.advance(1);
    assert.equal(r.consider(gone), true, 'a TTL after the failure');
    await turn();
    assert.equal(asks.length, 3);
  });
});

describe('covers that change upstream, in process against a real API origin', () => {
  it('within the TTL no API request; after it the stored cover is answered at once, the page re-resolved once in the background; an unchanged pic downloads nothing, a changed pic becomes the cover and the old file is deleted', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    origin.videos.set('BV1xx411c7mD', { code: 0, data: { pic: `${origin.url}/img/first.jpg` } });
    const { app, config } = await startInProcess(t, ['--bilibili-api', origin.url, '--retries', '0']);
    const ws = await connect(`${app.url.replace('http:', 'ws:')}/ws`);
    t.after(() => ws.close());
    const apiAsks = () => origin.hits.get('/x/web-interface/view') ?? 0;
    const ask = async (id: string) => ((await ws.check(id, [page])).done.results as Frame[])[0]!;

    const first = await ask('c1');
    assert.equal(first.status, 'ok');
    assert.equal(first.source, 'download');
    const stored = (await app.store.covers.find(page))!;
    assert.equal(stored.resolvedPic, `${origin.url}/img/first.jpg`, 'the pic it was resolved to is kept');
    assert.equal(typeof stored.resolvedAt, 'number');
    assert.deepEqual([apiAsks(), origin.hits.get('/img/first.jpg')], [1, 1]);

    // Within the TTL: answered from the store, nothing asked.
    const again = await ask('c2');
    assert.deepEqual([again.status, again.source, again.path], ['ok', 'cache', first.path]);
    assert.equal(app.downloads.inFlight(page), undefined, 'no background work');
    assert.equal(apiAsks(), 1);

    // Resolved more than 24 hours ago, pic unchanged: answered at once, re-resolved once, no image download.
    const longAgo = Date.now() - 25 * HOUR;
    assert.equal(await app.store.covers.markResolved(page, stored.path, longAgo, stored.resolvedPic), true);
    const stale = await ask('c3');
    assert.deepEqual([stale.status, stale.source, stale.path], ['ok', 'cache', first.path], 'the stored cover, at once');
    await waitUntil(async () => ((await app.store.covers.find(page))?.resolvedAt ?? 0) > longAgo, 'the resolved time recorded');
    await waitUntil(() => app.downloads.inFlight(page) === undefined, 'the re-resolve finished');
    assert.equal(apiAsks(), 2, 'the API asked once');
    assert.equal(origin.hits.get('/img/first.jpg'), 1, 'an unchanged pic is not downloaded');
    assert.equal((await app.store.covers.find(page))?.path, first.path);
    await ask('c4');
    assert.equal(apiAsks(), 2, 'resolved again just now: within the TTL');

    // The uploader changed the cover.
    origin.videos.set('BV1xx411c7mD', { code: 0, data: { pic: `${origin.url}/img/second.jpg` } });
    await app.store.covers.markResolved(page, stored.path, longAgo, stored.resolvedPic);
    const before = await ask('c5');
    assert.deepEqual([before.source, before.path], ['cache', first.path], 'answered from the store at once, as before');
    const changed = await waitUntil(async () => {
      const now = await app.store.covers.find(page);
      return now !== null && now.path !== first.path ? now : undefined;
    }, 'the new cover stored');
    assert.equal(changed.resolvedPic, `${origin.url}/img/second.jpg`);
    assert.deepEqual([apiAsks(), origin.hits.get('/img/second.jpg')], [3, 1]);
    const after = await ask('c6');
    assert.deepEqual([after.status, after.path], ['ok', changed.path], 'the next ask gets the new cover');
    assert.notEqual(after.coverUrl, first.coverUrl);
    const served = await fetch(after.coverUrl as string);
    assert.equal(served.status, 200);
    // The old file goes the way of any replaced cover: recorded for deletion with the new row, removed by the runner.
    const oldFile = path.join(config.coversDir, first.path as string);
    await waitUntil(() => access(oldFile).then(() => false, () => true), 'the old file removed');
    // The runner removes the file, then its record: wait for the record too (the file goes first).
    await waitUntil(async () => (await app.store.deletions.pending()).length === 0, 'its deletion record carried out');
    assert.equal((await fetch(after.coverUrl as string)).status, 200, 'the new file stays');
  });

  it('a deleted video is resolve_failed with its code and remembered; a risk-control code is upstream_limited and not remembered', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    origin.videos.set('BV1rr411c7rr', { code: -352, message: '风控校验失败' });
    const { app } = await startInProcess(t, ['--bilibili-api', origin.url, '--retries', '2']);
    const ws = await connect(`${app.url.replace('http:', 'ws:')}/ws`);
    t.after(() => ws.close());
    const ask = async (id: string, url: string) => ((await ws.check(id, [url])).done.results as Frame[])[0]!;

    const deleted = 'https://www.bilibili.com/video/BV1gg411c7gg';
    const gone = await ask('d1', deleted);
    assert.equal(gone.status, 'error');
    const error = gone.error as { code: string; message: string };
    assert.equal(error.code, 'resolve_failed');
    assert.match(error.message, /code -404 \(the video does not exist or was deleted\)/);
    const goneAgain = await ask('d2', deleted);
    assert.equal(goneAgain.remembered, true, 'remembered for --fail-ttl');
    assert.equal(origin.hits.get('/x/web-interface/view'), 1, 'asked once, and not retried');

    const refused = 'https://www.bilibili.com/video/BV1rr411c7rr';
    const limited = await ask('r1', refused);
    assert.equal(limited.status, 'error');
    assert.equal((limited.error as { code: string }).code, 'upstream_limited');
    assert.match((limited.error as { message: string }).message, /API code -352/);
    assert.equal(limited.remembered, undefined);
    assert.equal(app.downloads.wouldStart(refused), false, 'kept (parked) until the API host reopens, not remembered as failed');
    assert.equal((await app.store.tasks.get(refused))?.status, 'queued', 'the task keeps its place');
    assert.equal(origin.hits.get('/x/web-interface/view'), 2, 'not retried by the backoff: one request');
  });
});

describe('covers that change upstream, the real process', () => {
  it('with --resolve-ttl 0.001 (3.6 s): once it has passed, the stored cover is answered and the changed pic becomes the cover', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    origin.videos.set('BV1xx411c7mD', { code: 0, data: { pic: `${origin.url}/img/before.jpg` } });
    const dir = await tempDir(t);
    const service = await startService([
      '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--allow-private-network', '--allow-hosts', '127.0.0.1',
      '--bilibili-api', origin.url, '--retries', '0', '--resolve-ttl', '0.001',
    ]);
    t.after(() => service.kill());
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const ask = async (id: string) => ((await ws.check(id, [page])).done.results as Frame[])[0]!;

    const first = await ask('p1');
    assert.deepEqual([first.status, first.source], ['ok', 'download']);
    const storedAt = Date.now();
    origin.videos.set('BV1xx411c7mD', { code: 0, data: { pic: `${origin.url}/img/after.jpg` } });
    // The TTL (0.001 h = 3.6 s) is wall-clock time in a real process: wait until it has passed. It is long enough
    // that the ask after the new cover is written comes well within it on a loaded machine (one view request more).
    await waitUntil(() => Date.now() - storedAt > 3700, 'the TTL passed', 10_000);
    const stale = await ask('p2');
    assert.deepEqual([stale.source, stale.path], ['cache', first.path], 'answered from the store');
    await waitUntil(() => origin.hits.get('/img/after.jpg') === 1, 'the new pic downloaded');
    await service.waitForLog((line) => line.message.startsWith('video cover changed upstream'));
    const changed = await ask('p3');
    assert.equal(changed.status, 'ok');
    assert.notEqual(changed.path, first.path, 'the new cover');
    assert.equal(origin.hits.get('/x/web-interface/view'), 2, 'the new cover is fresh: not resolved again');
    assert.equal(await service.stop(), 0);
  });
});
