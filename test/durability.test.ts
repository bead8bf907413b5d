/**
 * Durable downloads, end to end: the real process, a real origin, the real
 * SQLite file read directly while the service runs.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { TestClock } from '../src/clock.js';
import { backoffDelay } from '../machines/index.js';
import { sha256 } from '../src/store/index.js';
import { readTable, readTasks, waitUntil } from './helpers/db.js';
import { startInProcess } from './helpers/inProcess.js';
import { startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];

async function setup(t: TestContext) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const db = path.join(dir, 'data', 'coverhelper.sqlite');
  const args = (...extra: string[]) => [
    '--data-dir', path.join(dir, 'data'),
    '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1',
    ...extra,
  ];
  return { origin, dir, db, args };
}

async function coverFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string) => {
    for (const entry of await readdir(path.join(dir, 'covers', rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(child);
      else found.push(child);
    }
  };
  await walk('');
  return found.sort();
}

/** Every cover row has its file (and its original) with the recorded hash, every file has a row, and no temp file is left. */
async function assertConsistent(dir: string, db: string): Promise<void> {
  const rows = readTable<{ url: string; path: string; sha256: string; original_path: string | null }>(db, 'SELECT url, path, sha256, original_path FROM covers ORDER BY path');
  const files = await coverFiles(dir);
  assert.deepEqual(files.filter((f) => f.startsWith('.tmp/')), [], 'no temp file left');
  // Each row names its file and the original kept beside it.
  const named = rows.flatMap((r) => (r.original_path !== null && r.original_path !== r.path ? [r.path, r.original_path] : [r.path]));
  assert.deepEqual(files.filter((f) => !f.startsWith('.tmp/')), named.sort(), 'files and rows match one to one');
  for (const row of rows) {
    const data = await readFile(path.join(dir, 'covers', row.path));
    assert.equal(sha256(data), row.sha256, `${row.path} is the whole file`);
    await sharp(data, { failOn: 'error' }).raw().toBuffer();
  }
}

const halfUrls = (origin: Origin, prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${origin.url}/half/${prefix}-${i}.jpg`);

describe('durable downloads', () => {
  it('persists every task state as it happens, with attempts, errors, bytes and times', async (t) => {
    const { origin, db, args } = await setup(t);
    const service = await startService(args('--workers', '2', '--time-limit', '6', '--retries', '0'));
    t.after(async () => void (await service.stop()));
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());

    const [a, b, c, d] = halfUrls(origin, 'state', 4);
    const notFound = `${origin.url}/status/404`;
    const hang = `${origin.url}/hang`;
    const answer = ws.check('states', [a!, b!, c!, d!, notFound, hang], 30_000);

    const held = await waitUntil(() => {
      const rows = readTasks(db);
      const downloading = rows.filter((r) => r.status === 'downloading' && r.bytes_done > 0);
      return rows.length === 6 && downloading.length === 2 ? rows : undefined;
    }, 'two downloads mid-flight');
    const byUrl = new Map(held.map((r) => [r.url, r]));
    for (const url of [a!, b!]) {
      const row = byUrl.get(url)!;
      assert.equal(row.status, 'downloading');
      assert.equal(row.attempts, 1);
      assert.ok(row.bytes_total !== null && row.bytes_done < row.bytes_total, 'part of the body so far');
      assert.ok(row.started_at !== null && row.finished_at === null);
    }
    for (const url of [c!, d!, notFound, hang]) assert.equal(byUrl.get(url)!.status, 'queued', url);

    origin.release();
    const { done } = await answer;
    assert.deepEqual([done.ok, done.failed], [4, 2]);
    // The final status is written within moments of the answer (the task writer batches per turn).
    const final = await waitUntil(() => {
      const rows = readTasks(db);
      return rows.every((r) => ['ok', 'error', 'tle'].includes(r.status)) ? rows : undefined;
    }, 'final states written');
    const finished = new Map(final.map((r) => [r.url, r]));
    for (const url of [a!, b!, c!, d!]) {
      const row = finished.get(url)!;
      assert.equal(row.status, 'ok');
      assert.ok(row.finished_at! >= row.started_at!);
      assert.ok(row.bytes_done > 0);
      assert.equal(row.error_code, null);
    }
    assert.deepEqual([finished.get(notFound)!.status, finished.get(notFound)!.error_code, finished.get(notFound)!.error_message], ['error', 'http_status', 'HTTP 404']);
    assert.deepEqual([finished.get(hang)!.status, finished.get(hang)!.error_code], ['tle', 'tle']);
  });

  it('never has more than --workers requests open at the origin, and finishes them all', async (t) => {
    const { origin, args } = await setup(t);
    origin.delayMs = 100;
    const service = await startService(args('--workers', '3'));
    t.after(async () => void (await service.stop()));
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/img/worker-${i}.jpg`);
    const { done } = await ws.check('workers', urls, 30_000);
    assert.equal(done.ok, 30);
    assert.equal(origin.maxOpen(), 3, 'three at once, never more');
  });

  it('retries transient failures, not permanent ones, and remembers failures for the fail TTL, across a restart', async (t) => {
    const { origin, args } = await setup(t);
    const flags = args('--retries', '2', '--fail-ttl', '300');
    const service = await startService(flags);
    const ws = await connect(service.wsUrl);
    const urls = {
      flaky: `${origin.url}/flaky/twice.jpg?fails=2`,
      reset: `${origin.url}/reset/once.jpg?fails=1`,
      hopeless: `${origin.url}/flaky/always.jpg?fails=9`,
      missing: `${origin.url}/status/404`,
      notImage: `${origin.url}/fake.jpg`,
    };
    const { done } = await ws.check('retries', Object.values(urls), 30_000);
    const results = done.results as Frame[];
    assert.deepEqual(results.map((r) => r.status), ['ok', 'ok', 'error', 'error', 'error']);
    assert.equal(origin.hits.get('/flaky/twice.jpg'), 3, '500 twice, then ok');
    assert.equal(origin.hits.get('/reset/once.jpg'), 2, 'reset once, then ok');
    assert.equal(origin.hits.get('/flaky/always.jpg'), 3, '1 try + 2 retries');
    assert.equal(origin.hits.get('/status/404'), 1, 'a 404 is not retried');
    assert.equal(origin.hits.get('/fake.jpg'), 1, 'not_image is not retried');

    const again = await ws.check('remembered', [urls.missing, urls.notImage, urls.hopeless]);
    assert.deepEqual((again.done.results as Frame[]).map((r) => (r.error as { code: string }).code), ['http_status', 'not_image', 'http_status']);
    assert.equal(origin.hits.get('/status/404'), 1, 'answered from the recorded failure');
    await ws.close();
    assert.equal(await service.stop(), 0);

    const restarted = await startService(flags);
    t.after(async () => void (await restarted.stop()));
    const ws2 = await connect(restarted.wsUrl);
    t.after(() => ws2.close());
    const afterRestart = await ws2.check('after-restart', [urls.missing]);
    assert.equal((afterRestart.done.results as Frame[])[0]!.status, 'error');
    assert.equal(origin.hits.get('/status/404'), 1, 'still remembered after a restart');
  });

  it('on the test clock (in process): a retry waits its backoff, and a failure is answered from memory for exactly --fail-ttl', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const clock = new TestClock();
    const { checks } = await startInProcess(t, ['--retries', '2', '--fail-ttl', '300'], clock);
    const flaky = `${origin.url}/flaky/clocked.jpg?fails=2`;
    const missing = `${origin.url}/status/404?clocked`;
    const hits = (path: string) => origin.hits.get(path) ?? 0;

    // Backoff: no second try however long real time passes, until the clock reaches it (at most the backoff's ceiling).
    const flakyDone = checks.check([flaky]);
    await waitUntil(() => hits('/flaky/clocked.jpg') === 1, 'the first try');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(hits('/flaky/clocked.jpg'), 1, 'no retry before the clock moves');
    for (const attempt of [1, 2]) {
      const ceiling = backoffDelay(attempt, 0.999_999);
      await waitUntil(async () => {
        await clock.advance(ceiling / 10);
        return hits('/flaky/clocked.jpg') === attempt + 1;
      }, `try ${attempt + 1} after its backoff`);
    }
    assert.equal((await flakyDone)[0]!.status, 'ok', '500 twice, then ok');

    // Fail TTL: remembered until retryAt, tried again from then on.
    const first = (await checks.check([missing]))[0]!;
    assert.equal(first.error?.code, 'http_status');
    assert.equal(hits('/status/404'), 1);
    const remembered = (await checks.check([missing]))[0]!;
    assert.equal(remembered.remembered, true);
    const retryAt = Date.parse(remembered.retryAt!);
    assert.equal(retryAt, clock.now() + 300_000, 'remembered for --fail-ttl from when it failed (the clock has not moved since)');
    await clock.advance(retryAt - clock.now() - 1);
    assert.equal((await checks.check([missing]))[0]!.remembered, true, 'a millisecond before retryAt');
    assert.equal(hits('/status/404'), 1, 'not asked again');
    await clock.advance(1);
    const again = (await checks.check([missing]))[0]!;
    assert.equal(again.remembered, undefined, 'tried again at retryAt');
    assert.equal(hits('/status/404'), 2);
  });

  it('resumes downloads killed with SIGKILL, refetches nothing stored, and leaves no partial file', async (t) => {
    const { origin, dir, db, args } = await setup(t);
    const flags = args('--workers', '20', '--time-limit', '30');
    const first = await startService(flags);
    const ws = await connect(first.wsUrl);
    const stored = Array.from({ length: 5 }, (_, i) => `${origin.url}/img/stored-${i}.jpg`);
    assert.equal((await ws.check('stored', stored)).done.ok, 5);
    const inFlight = halfUrls(origin, 'crash', 20);
    void ws.check('in-flight', inFlight, 60_000).catch(() => undefined);
    await waitUntil(() => readTasks(db).filter((r) => r.status === 'downloading' && r.bytes_done > 0).length === 20, '20 downloads mid-flight');

    await first.kill();
    await ws.closed;
    assert.equal(readTasks(db).filter((r) => r.status === 'downloading').length, 20, 'the table says what was in flight');
    // A temp file as a crash during a write would leave it.
    await mkdir(path.join(dir, 'covers', '.tmp'), { recursive: true });
    await writeFile(path.join(dir, 'covers', '.tmp', 'torn.part'), 'half a cover');
    origin.release();

    const second = await startService(flags);
    t.after(async () => void (await second.stop()));
    await waitUntil(() => readTasks(db).filter((r) => r.status === 'ok').length === 25, 'all 25 tasks ok after the restart');
    for (let i = 0; i < 5; i++) assert.equal(origin.hits.get(`/img/stored-${i}.jpg`), 1, 'a stored URL is not fetched again');
    for (let i = 0; i < 20; i++) assert.equal(origin.hits.get(`/half/crash-${i}.jpg`), 2, 'each interrupted URL fetched once more');
    await assertConsistent(dir, db);

    const ws2 = await connect(second.wsUrl);
    t.after(() => ws2.close());
    const { done, results } = await ws2.check('reconnected', [...stored, ...inFlight]);
    assert.equal(done.ok, 25);
    assert.equal(results.length, 0, 'every answer is in the store already');
  });

  it('on SIGTERM answers waiting URLs shutting_down, lets running ones finish, keeps the rest queued, and exits 0', async (t) => {
    const { origin, db, args } = await setup(t);
    const flags = args('--workers', '2');
    const service = await startService(flags);
    const ws = await connect(service.wsUrl);
    const urls = halfUrls(origin, 'term', 6);
    const results: Frame[] = [];
    const donePromise = new Promise<Frame>((resolve) => {
      ws.ws.on('message', (data: Buffer) => {
        const frame = JSON.parse(data.toString()) as Frame;
        if (frame.type === 'result') results.push(frame);
        if (frame.type === 'done') resolve(frame);
      });
    });
    ws.ws.send(JSON.stringify({ type: 'check', id: 'term', urls }));
    await waitUntil(() => readTasks(db).filter((r) => r.status === 'downloading' && r.bytes_done > 0).length === 2, 'two running');

    const exit = service.stop();
    await waitUntil(() => results.filter((r) => (r.error as { code?: string } | undefined)?.code === 'shutting_down').length === 4, 'four shutting_down answers');
    origin.release();
    const done = await donePromise;
    assert.deepEqual([done.ok, done.failed], [2, 4]);
    assert.equal(await exit, 0);
    assert.ok(service.logs.some((l) => l.message === 'stopped'), 'the last log line was flushed');
    const rows = readTasks(db); // the process has exited: everything it wrote is there
    assert.equal(rows.filter((r) => r.status === 'ok').length, 2);
    assert.equal(rows.filter((r) => r.status === 'queued').length, 4, 'the rest stay queued for the next start');

    const next = await startService(flags);
    t.after(async () => void (await next.stop()));
    await waitUntil(() => readTasks(db).every((r) => r.status === 'ok'), 'the queued ones finish after the next start');
  });
});
