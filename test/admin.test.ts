/**
 * The administrator's side: token, live stream, HTTP API, metrics. The real
 * process for most of it; the service in process where a test must look at a
 * server-side socket's buffer.
 */
import assert from 'node:assert/strict';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import WebSocket from 'ws';
import { readTable, waitUntil } from './helpers/db.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import { startInProcess } from './helpers/inProcess.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';
import type { StatsFrame, Summary, TaskDetail, TaskJson, TimelineEvent } from '../src/wire/adminStream.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'admin-secret-for-tests';
const exists = (file: string) => access(file).then(() => true, () => false);

async function api(service: Service, method: string, route: string, options: { token?: string | null; body?: Buffer; headers?: Record<string, string> } = {}) {
  const token = options.token === undefined ? TOKEN : options.token;
  const res = await fetch(`${service.url}${route}`, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...options.headers },
    ...(options.body ? { body: options.body } : {}),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const db = path.join(dir, 'data', 'coverhelper.sqlite');
  const args = ['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1', ...extra];
  const service = await startService(args);
  t.after(async () => void (await service.stop()));
  const ws = await connect(service.wsUrl);
  t.after(() => ws.close());
  return { origin, dir, db, args, service, ws };
}

/** An admin stream client that keeps every frame. */
async function adminStream(t: TestContext, service: Service, token = TOKEN) {
  const client = await connect(`${service.url.replace('http:', 'ws:')}/admin/ws?token=${encodeURIComponent(token)}`);
  t.after(() => client.close());
  return client;
}

/** The HTTP answer to a WebSocket upgrade that is refused: its status and body. */
function upgradeAnswer(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.once('upgrade', () => reject(new Error('upgraded')));
    req.once('response', (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', reject);
  });
}

describe('admin token', () => {
  it('refuses every admin route and the stream with a bare 401 without the right token', async (t) => {
    const { service } = await setup(t, ['--admin-token', TOKEN]);
    const routes: [string, string][] = [
      ['GET', '/admin/api/tasks'],
      ['PUT', '/admin/api/covers?url=https://a.hdslb.com/x.jpg'],
      ['DELETE', '/admin/api/covers?url=https://a.hdslb.com/x.jpg'],
      ['POST', '/admin/api/retry?url=https://a.hdslb.com/x.jpg'],
      ['POST', '/admin/api/pause'],
      ['POST', '/admin/api/resume'],
      ['POST', '/admin/api/fetch?url=https://a.hdslb.com/x.jpg'],
      ['POST', '/admin/api/clear-failed'],
    ];
    for (const [method, route] of routes) {
      for (const token of [null, 'wrong', `${TOKEN}x`, TOKEN.slice(0, -1)]) {
        const res = await api(service, method, route, { token });
        assert.equal(res.status, 401, `${method} ${route} with ${token}`);
        assert.equal(res.text, '', 'nothing else said');
      }
    }
    await assert.rejects(connect(`${service.url.replace('http:', 'ws:')}/admin/ws`), /HTTP 401/);
    await assert.rejects(connect(`${service.url.replace('http:', 'ws:')}/admin/ws?token=wrong`), /HTTP 401/);
    for (const query of ['', '?token=wrong']) {
      const refused = await upgradeAnswer(`${service.url}/admin/ws${query}`);
      assert.deepEqual([refused.status, refused.body], [401, ''], 'the stream says nothing else either');
    }
    const byHeader = await connect(`${service.url.replace('http:', 'ws:')}/admin/ws`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal((await byHeader.next()).type, 'snapshot');
    await byHeader.close();
    assert.equal((await api(service, 'POST', '/admin/api/pause')).status, 200);
  });

  it('is generated at first start into DATA_DIR/admin-token with mode 0600, never logged, and reused after', async (t) => {
    const dir = await tempDir(t);
    const args = ['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers')];
    const first = await startService(args);
    const file = path.join(dir, 'data', 'admin-token');
    const token = (await readFile(file, 'utf8')).trim();
    assert.ok(token.length >= 32);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.ok(first.logs.some((l) => l.file === file), 'the log names the file');
    await first.waitForLog((l) => l.message === `dashboard at ${first.url}/admin/ (its token is in ${file})`, 5000);
    assert.ok(!JSON.stringify(first.logs).includes(token), 'the log never holds the token');
    assert.equal((await api(first, 'GET', '/admin/api/tasks', { token })).status, 200);
    assert.equal(await first.stop(), 0);

    const second = await startService(args);
    t.after(async () => void (await second.stop()));
    assert.equal((await readFile(file, 'utf8')).trim(), token, 'the same token after a restart');
    assert.equal((await api(second, 'GET', '/admin/api/tasks', { token })).status, 200);
    assert.ok(!JSON.stringify(second.logs).includes(token));
  });
});

describe('admin stream', () => {
  it('after a restart while paused, says paused since the switch was turned on, and by which node', async (t) => {
    const { service, args } = await setup(t, ['--admin-token', TOKEN, '--node-id', 'pauser']);
    const before = Date.now();
    assert.equal((await api(service, 'POST', '/admin/api/pause')).status, 200);
    const pausedAt = Date.parse(String((await (await adminStream(t, service)).next((f) => f.type === 'snapshot')).since));
    assert.ok(pausedAt >= before - 1000 && pausedAt <= Date.now(), 'since: the pause');
    assert.equal(await service.stop(), 0);
    await new Promise((resolve) => setTimeout(resolve, 1100));

    const again = await startService(args);
    t.after(async () => void (await again.stop()));
    const snapshot = await (await adminStream(t, again)).next((f) => f.type === 'snapshot');
    assert.equal(snapshot.status, 'paused');
    // The time the switch was turned on (as stored, within the few ms the pause took), not this start's, a second later.
    const since = Date.parse(String(snapshot.since));
    assert.ok(Math.abs(since - pausedAt) < 200, `since ${String(snapshot.since)}, paused at ${new Date(pausedAt).toISOString()}`);
    assert.equal(snapshot.why, 'paused by the administrator on node pauser');
  });

  it('sends the snapshot first, then every task change as it happens, then stats every second', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--workers', '1', '--time-limit', '1', '--retries', '0']);
    const admin = await adminStream(t, service);
    const snapshot = await admin.next();
    assert.equal(snapshot.type, 'snapshot');
    assert.equal(snapshot.status, 'ready');
    assert.deepEqual(snapshot.tasks, []);
    assert.equal(typeof (snapshot.stats as Record<string, unknown>).checks, 'number');

    const slow = `${origin.url}/half/admin-stream.jpg`;
    const missing = `${origin.url}/status/404`;
    const hang = `${origin.url}/hang`;
    const answer = ws.check('stream', [slow, missing, hang], 30_000);
    const seen: Frame[] = [];
    const taskFrames = async (url: string, until: (f: Frame) => boolean) => {
      for (;;) {
        const frame = await admin.next((f) => f.type === 'task' && f.url === url);
        seen.push(frame);
        if (until(frame)) return;
      }
    };
    await taskFrames(slow, (f) => f.status === 'downloading' && (f.bytes as number) > 0);
    origin.release();
    await taskFrames(slow, (f) => f.status === 'ok');
    await taskFrames(missing, (f) => f.status === 'error');
    await taskFrames(hang, (f) => f.status === 'tle');
    await answer;

    const forSlow = seen.filter((f) => f.url === slow);
    assert.equal(forSlow[0]!.status, 'queued');
    const downloading = forSlow.filter((f) => f.status === 'downloading');
    assert.ok(downloading.length >= 2, 'downloading, then downloading with bytes');
    assert.ok((downloading.at(-1)!.bytes as number) > (downloading[0]!.bytes as number), 'bytes grow');
    assert.ok(typeof downloading.at(-1)!.total === 'number');
    const ok = forSlow.at(-1)!;
    assert.deepEqual([ok.status, ok.error], ['ok', null]);
    assert.ok(!Number.isNaN(Date.parse(ok.at as string)), 'at is an ISO time');
    const failed = seen.find((f) => f.url === missing && f.status === 'error')!;
    assert.deepEqual(failed.error, { code: 'http_status', message: 'HTTP 404' });
    assert.equal((seen.find((f) => f.url === hang && f.status === 'tle')!.error as { code: string }).code, 'tle');

    const stats = await admin.next((f) => f.type === 'stats' && (f as unknown as StatsFrame).downloads.tle === 1, 3000);
    for (const key of ['checks', 'hits', 'misses', 'coalesced', 'bytes', 'queued', 'downloading', 'connections']) assert.equal(typeof stats[key], 'number', key);
    assert.deepEqual(stats.downloads, { ok: 1, error: 1, tle: 1 });
    assert.equal(stats.status, 'ready');
    assert.equal(stats.connections, 2, 'one client socket and one admin socket');
    assert.deepEqual(stats.connectionsByKind, { client: 1, admin: 1, legacy: 0 }, 'the page itself counts as an admin stream, apart from clients');
  });

  it('gives a reader that stopped reading the latest state, not a backlog, and never slows downloads', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const { app, checks } = await startInProcess(t, ['--admin-token', TOKEN, '--workers', '16', '--resize', 'off']);
    // URLs of ~7,900 characters make each task frame ~8 KB: 500 downloads send ~16 MB of
    // changes, more than the loopback socket buffers hold, so a reader that stopped
    // really pushes back on the server.
    const urls = (set: string) => Array.from({ length: 500 }, (_, i) => `${origin.url}/img/${set}-${i}-${'x'.repeat(7900)}.jpg`);

    let start = performance.now();
    assert.ok((await checks.check(urls('alone'))).every((r) => r.status === 'ok'));
    const alone = performance.now() - start;

    const stalled = new WebSocket(`${app.url.replace('http:', 'ws:')}/admin/ws?token=${TOKEN}`, { perMessageDeflate: false });
    t.after(() => stalled.terminate());
    const first = await new Promise<string>((resolve) => stalled.once('message', (data: Buffer) => resolve(data.toString())));
    assert.equal((JSON.parse(first) as Frame).type, 'snapshot');
    const [serverSide] = [...app.adminSockets.keys()];
    assert.ok(serverSide);
    // Stop reading: nothing more is taken off the TCP socket.
    (stalled as unknown as { _socket: { pause(): void } })._socket.pause();

    let maxBuffered = 0;
    let maxPending = 0;
    const sampler = setInterval(() => {
      maxBuffered = Math.max(maxBuffered, serverSide.bufferedAmount);
      maxPending = Math.max(maxPending, app.adminSockets.get(serverSide)!.pending());
    }, 5);
    start = performance.now();
    const results = await checks.check(urls('stalled'));
    const withStalled = performance.now() - start;
    clearInterval(sampler);

    assert.ok(results.every((r) => r.status === 'ok'));
    assert.ok(maxPending > 0, 'the stalled reader did push back (changes had to wait)');
    assert.ok(maxPending <= 500, `at most one pending change per URL (saw ${maxPending})`);
    assert.ok(maxBuffered < 256 * 1024 + 64 * 1024, `the server's buffer stays bounded (max ${maxBuffered} bytes)`);
    assert.ok(withStalled < alone * 2 + 1000, `500 downloads took ${withStalled.toFixed(0)} ms with a stalled admin, ${alone.toFixed(0)} ms without`);
  });
});

describe('admin HTTP API: timeline, filters, fetch now, clear failed', () => {
  it("keeps a task's tries and errors in the database: the detail shows them after a restart", async (t) => {
    const { origin, service, args } = await setup(t, ['--admin-token', TOKEN, '--retries', '1']);
    const failing = `${origin.url}/status/500`;
    const ws = await connect(service.wsUrl);
    const checked = await ws.check('twice', [failing]);
    await ws.close();
    assert.equal(checked.done.failed, 1);
    assert.equal(origin.hits.get('/status/500'), 2, 'two tries against the origin');
    const before = await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(failing)}`);
    await service.stop();

    const again = await startService(args);
    t.after(async () => void (await again.stop()));
    const detail = await api(again, 'GET', `/admin/api/task?url=${encodeURIComponent(failing)}`);
    assert.equal(detail.status, 200);
    const timeline = detail.json!.timeline as TimelineEvent[];
    assert.deepEqual(timeline, before.json!.timeline, 'the same timeline as before the restart');
    const tries = timeline.filter((event) => event.error?.code === 'http_status').map((event) => [event.status, event.try, event.error!.message]);
    assert.equal(tries.length, 2, `both failed tries, with their errors: ${JSON.stringify(timeline)}`);
    assert.deepEqual(tries.map(([status, n]) => [status, n]), [['downloading', 1], ['error', 2]]);
    for (const [, , message] of tries) assert.match(message as string, /500/);
    // Queued, the download started (try 1), try 1 failed (and is tried again), the download failed (try 2).
    assert.deepEqual(timeline.map((event) => [event.status, event.try]), [['queued', null], ['downloading', 1], ['downloading', 1], ['error', 2]]);
    assert.ok(timeline.every((event) => typeof event.node === 'string' && !Number.isNaN(Date.parse(event.at))));
  });

  it('filters tasks by error code and host, sorts by changed time or tries, and refuses unknown values by name', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '1']);
    const ok = `${origin.url}/img/filter-ok.jpg`;
    const missing = `${origin.url}/status/404`;
    const notImage = `${origin.url}/fake.jpg`;
    const flaky = `${origin.url}/flaky/filter-twice.jpg?fails=1`;
    await ws.check('f', [ok, missing, notImage, flaky]);
    const tasks = async (query: string) => {
      const res = await api(service, 'GET', `/admin/api/tasks?${query}`);
      assert.equal(res.status, 200, `${query}: ${res.text}`);
      return res.json!.tasks as TaskJson[];
    };
    const list = async (query: string) => (await tasks(query)).map((task) => task.url);
    assert.deepEqual(await list('code=http_status'), [missing]);
    assert.deepEqual(await list('code=not_image'), [notImage]);
    assert.deepEqual(await list('code=tle'), []);
    assert.deepEqual((await list('host=127.0.0.1')).sort(), [flaky, missing, notImage, ok].sort());
    assert.deepEqual(await list('host=other.example'), []);
    assert.deepEqual(await list('host=127.0.0.1&code=http_status&status=error'), [missing]);
    // The flaky one took two tries: most tries first.
    const byTries = await tasks('sort=tries');
    assert.deepEqual([byTries[0]?.url, byTries[0]?.attempts], [flaky, 2]);
    assert.ok(byTries.slice(1).every((task) => task.attempts === 1));
    const byChange = (await tasks('sort=changed')).map((task) => Date.parse(task.updatedAt as string));
    assert.deepEqual(byChange, [...byChange].sort((a, b) => b - a), 'newest change first');
    assert.deepEqual(await list(''), await list('sort=changed'), 'the default');

    const refused: [string, RegExp][] = [
      ['code=bogus_code', /bogus_code/],
      ['code=%3Cscript%3E', /<script>/],
      ['host=a.example%2Fpath', /a\.example\/path/],
      ['host=a.example:8080', /a\.example:8080/],
      ['host=' + 'h'.repeat(300), /not a host name/],
      ['host=bad%20host', /bad host/],
      ['sort=size', /size/],
      ['sort=tries%20desc', /tries desc/],
    ];
    for (const [query, named] of refused) {
      const res = await api(service, 'GET', `/admin/api/tasks?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.json!.code, 'bad_request', query);
      assert.match(res.json!.message as string, named, query);
    }
  });

  it('fetches a URL typed in now: checked as /ws checks it, then queued, in flight, or answered from the store', async (t) => {
    const { origin, service } = await setup(t, ['--admin-token', TOKEN, '--retries', '0']);
    const bad: [string, RegExp][] = [
      ['/admin/api/fetch', /needs \?url=/],
      [`/admin/api/fetch?url=${encodeURIComponent('ftp://127.0.0.1/x.jpg')}`, /not an http\(s\) URL/],
      [`/admin/api/fetch?url=${encodeURIComponent('https://evil.example/x.jpg')}`, /evil\.example is not in --allow-hosts/],
      [`/admin/api/fetch?url=${encodeURIComponent('http://user:pw@127.0.0.1/x.jpg')}`, /user name or password/],
      [`/admin/api/fetch?url=not%20a%20url`, /not a URL/],
      [`/admin/api/fetch?url=${encodeURIComponent(`${origin.url}/img/${'a'.repeat(9000)}.jpg`)}`, /longer than 8192/],
    ];
    for (const [route, why] of bad) {
      const res = await api(service, 'POST', route);
      assert.equal(res.status, 400, route.slice(0, 80));
      assert.match(res.json!.message as string, why);
    }
    assert.equal(origin.total(), 0, 'nothing fetched for a refused URL');

    const url = `${origin.url}/img/fetch-now.jpg`;
    const started = await api(service, 'POST', `/admin/api/fetch?url=${encodeURIComponent(url)}`);
    assert.deepEqual([started.status, started.json], [202, { url, status: 'queued' }]);
    await waitUntil(async () => ((await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(url)}`)).json?.task as Frame | undefined)?.status === 'ok', 'downloaded');
    const stored = await api(service, 'POST', `/admin/api/fetch?url=${encodeURIComponent(url)}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.json!.status, 'ok');
    assert.match(stored.json!.coverUrl as string, /\/covers\//);
    assert.equal(origin.hits.get('/img/fetch-now.jpg'), 1, 'once');

    const slow = `${origin.url}/half/fetch-now-slow.jpg`;
    assert.equal((await api(service, 'POST', `/admin/api/fetch?url=${encodeURIComponent(slow)}`)).status, 202);
    await waitUntil(async () => ((await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(slow)}`)).json?.task as Frame | undefined)?.status === 'downloading', 'running');
    const inFlight = await api(service, 'POST', `/admin/api/fetch?url=${encodeURIComponent(slow)}`);
    assert.equal(inFlight.status, 202);
    assert.equal(inFlight.json!.status, 'in_flight');
    origin.release();
    await waitUntil(async () => ((await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(slow)}`)).json?.task as Frame | undefined)?.status === 'ok', 'finished');
  });

  it('clears failed tasks: their rows and timelines are forgotten, and the next ask downloads again', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0', '--fail-ttl', '300']);
    const flaky = `${origin.url}/flaky/clear-me.jpg?fails=1`;
    const ok = `${origin.url}/img/keep-me.jpg`;
    assert.equal((await ws.check('a', [flaky, ok, `${origin.url}/status/404`])).done.failed, 2);
    assert.equal((await ws.check('b', [flaky])).done.failed, 1, 'remembered');
    const cleared = await api(service, 'POST', '/admin/api/clear-failed');
    assert.deepEqual([cleared.status, cleared.json], [200, { removed: 2, more: false }]);
    assert.equal((await api(service, 'GET', '/admin/api/tasks?status=error')).json!.total, 0);
    assert.equal((await api(service, 'GET', '/admin/api/tasks')).json!.total, 1, 'the ok task stays');
    assert.equal((await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(flaky)}`)).status, 404, 'its timeline went with it');
    assert.deepEqual((await api(service, 'POST', '/admin/api/clear-failed')).json, { removed: 0, more: false });
    assert.equal((await ws.check('c', [flaky])).done.ok, 1, 'not remembered any more: downloaded again');
  });
});

describe('admin HTTP API: what the dashboard asks', () => {
  it('searches task URLs literally, shows one task with its cover and timeline, and sums tasks by status', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0']);
    const plain = `${origin.url}/img/search-me.jpg`;
    const wild = `${origin.url}/img/100%25_off.jpg`;
    await ws.check('s', [plain, wild, `${origin.url}/status/404`]);
    const found = await api(service, 'GET', `/admin/api/tasks?q=${encodeURIComponent('search-me')}`);
    assert.deepEqual((found.json!.tasks as TaskJson[]).map((task) => task.url), [plain]);
    const literal = await api(service, 'GET', `/admin/api/tasks?q=${encodeURIComponent('%25_')}`);
    assert.deepEqual((literal.json!.tasks as TaskJson[]).map((task) => task.url), [wild], '% and _ are not wildcards');
    assert.equal((await api(service, 'GET', `/admin/api/tasks?q=${encodeURIComponent('_')}`)).json!.total, 1);

    const detail = await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(plain)}`);
    assert.equal(detail.status, 200);
    const body = detail.json as unknown as TaskDetail;
    assert.equal(body.task!.status, 'ok');
    assert.equal(body.task!.attempts, 1);
    assert.equal(body.cover!.source, 'download');
    assert.match(body.cover!.coverUrl, /^http:\/\/127\.0\.0\.1:\d+\/covers\//);
    // A slow download adds progress events ('downloading' again, with bytes): the steps are these, in this order.
    const steps = body.timeline.map((event) => event.status).filter((status, i, all) => status !== all[i - 1]);
    assert.deepEqual(steps, ['queued', 'downloading', 'ok']);
    assert.deepEqual([detail.json!.variants, detail.json!.variantsTotal], [[], 0], 'no variant made yet');
    assert.equal((await api(service, 'GET', `/admin/api/task?url=${encodeURIComponent(`${origin.url}/never`)}`)).status, 404);

    const summary = await api(service, 'GET', '/admin/api/summary');
    assert.deepEqual(summary.json!.tasks, { waiting: 0, queued: 0, downloading: 0, ok: 2, error: 1, tle: 0 });
    assert.equal((summary.json as unknown as Summary).covers.count, 2);
  });

  it('retries every failed task at once', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0', '--fail-ttl', '300']);
    const urls = [`${origin.url}/flaky/all-1.jpg?fails=1`, `${origin.url}/flaky/all-2.jpg?fails=1`];
    assert.equal((await ws.check('f', urls)).done.failed, 2);
    assert.equal((await ws.check('f2', urls)).done.failed, 2, 'remembered');
    const retried = await api(service, 'POST', '/admin/api/retry-failed');
    assert.deepEqual([retried.status, retried.json], [202, { retried: 2 }]);
    await waitUntil(async () => (await ws.check(`f3-${Date.now()}`, urls)).done.ok === 2, 'both downloaded again');
  });

  it('cancels a running and a queued download: their askers and tasks get cancelled, and the next ask downloads again', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--workers', '1', '--fail-ttl', '300']);
    const running = `${origin.url}/half/cancel-running.jpg`;
    const queued = `${origin.url}/img/cancel-queued.jpg`;
    const asked = ws.check('c', [running, queued], 30_000);
    await waitUntil(async () => ((await api(service, 'GET', '/admin/api/tasks?status=downloading')).json!.total as number) === 1, 'one running, one queued');
    assert.equal((await api(service, 'POST', `/admin/api/cancel?url=${encodeURIComponent(queued)}`)).status, 202);
    assert.equal((await api(service, 'POST', `/admin/api/cancel?url=${encodeURIComponent(running)}`)).status, 202);
    const { done } = await asked;
    assert.deepEqual((done.results as Frame[]).map((r) => (r.error as { code: string }).code), ['cancelled', 'cancelled']);
    const tasks = (await api(service, 'GET', '/admin/api/tasks?status=error')).json!.tasks as TaskJson[];
    assert.deepEqual(tasks.map((task) => task.error!.code).sort(), ['cancelled', 'cancelled']);
    assert.equal((await api(service, 'POST', `/admin/api/cancel?url=${encodeURIComponent(queued)}`)).status, 404, 'nothing left to cancel');
    origin.release();
    assert.equal((await ws.check('again', [running, queued])).done.ok, 2, 'not remembered: downloaded when asked again');
  });
});

describe('admin HTTP API', () => {
  it('lists tasks newest first, filtered by status and paged', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0']);
    await ws.check('a', [`${origin.url}/img/list-1.jpg`]);
    await ws.check('b', [`${origin.url}/status/404`]);
    await ws.check('c', [`${origin.url}/img/list-2.jpg`]);
    await waitUntil(async () => ((await api(service, 'GET', '/admin/api/tasks')).json!.total as number) === 3 && ((await api(service, 'GET', '/admin/api/tasks?status=ok')).json!.total as number) === 2, 'three tasks written');
    const all = (await api(service, 'GET', '/admin/api/tasks')).json!;
    assert.deepEqual((all.tasks as TaskJson[]).map((task) => task.url), [`${origin.url}/img/list-2.jpg`, `${origin.url}/status/404`, `${origin.url}/img/list-1.jpg`]);
    const errors = (await api(service, 'GET', '/admin/api/tasks?status=error')).json!;
    assert.equal(errors.total, 1);
    assert.deepEqual((errors.tasks as TaskJson[])[0]!.error, { code: 'http_status', message: 'HTTP 404' });
    const page = (await api(service, 'GET', '/admin/api/tasks?limit=1&offset=1')).json!;
    assert.deepEqual([(page.tasks as TaskJson[]).length, (page.tasks as TaskJson[])[0]!.url, page.total], [1, `${origin.url}/status/404`, 3]);
    assert.equal((await api(service, 'GET', '/admin/api/tasks?status=nope')).status, 400);
    assert.equal((await api(service, 'GET', '/admin/api/tasks?limit=0')).status, 400);
  });

  it('stores an uploaded custom cover, answers it as custom, replaces it under a new path, and a bad upload changes nothing', async (t) => {
    const { service, ws, dir, db } = await setup(t, ['--admin-token', TOKEN, '--max-bytes', '200000']);
    const target = 'https://i0.hdslb.com/bfs/archive/custom.jpg';
    const route = `/admin/api/covers?url=${encodeURIComponent(target)}`;
    const first = await api(service, 'PUT', route, { body: await makeImage('custom-one', 'png', 800, 600), headers: { 'content-type': 'image/png' } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json!.source, 'custom');
    const firstPath = first.json!.path as string;
    const served = await fetch(first.json!.coverUrl as string);
    assert.equal(served.headers.get('content-type'), 'image/png');
    const meta = await sharp(Buffer.from(await served.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [320, 200], 'resized like downloads');
    const checked = await ws.check('custom', [target]);
    assert.deepEqual([(checked.done.results as Frame[])[0]!.source, (checked.done.results as Frame[])[0]!.path], ['custom', firstPath]);

    const second = await api(service, 'PUT', route, { body: await makeImage('custom-two', 'jpeg', 640, 400) });
    assert.equal(second.status, 200);
    const secondPath = second.json!.path as string;
    assert.notEqual(secondPath, firstPath, 'a new path for new content');
    await waitUntil(async () => !(await exists(path.join(dir, 'covers', firstPath))), 'the replaced file removed');
    assert.ok(await exists(path.join(dir, 'covers', secondPath)));

    const unchanged = async () => {
      const rows = readTable<{ path: string; source: string }>(db, 'SELECT path, source FROM covers WHERE url = ?', target);
      assert.deepEqual(rows, [{ path: secondPath, source: 'custom' }]);
      assert.ok(await exists(path.join(dir, 'covers', secondPath)));
      const temp = await readdir(path.join(dir, 'covers', '.tmp')).catch(() => []);
      assert.deepEqual(temp, [], 'no temp file left');
    };
    const notImage = await api(service, 'PUT', route, { body: Buffer.from('not an image, only words') });
    assert.deepEqual([notImage.status, notImage.json!.code], [422, 'not_image']);
    await unchanged();
    const tooBig = await api(service, 'PUT', route, { body: Buffer.alloc(200_001, 7) });
    assert.deepEqual([tooBig.status, tooBig.json!.code], [413, 'too_large']);
    await unchanged();
    // Announce 100,000 bytes, send 10,000 of a real image, then hang up.
    const { hostname, port } = new URL(service.url);
    await new Promise<void>((resolve) => {
      const req = http.request({ hostname, port, method: 'PUT', path: route, headers: { authorization: `Bearer ${TOKEN}`, 'content-length': '100000' } });
      req.on('error', () => resolve());
      void makeImage('cut-off', 'png', 1000, 1000).then((image) => {
        req.write(image.subarray(0, 10_000), () => setImmediate(() => req.destroy()));
      });
    });
    await service.waitForLog((l) => /cut off/.test(l.message));
    await unchanged();
  });

  it('deletes an entry through the deletion runner, so the next check downloads it again', async (t) => {
    const { origin, service, ws, dir, db } = await setup(t, ['--admin-token', TOKEN]);
    const url = `${origin.url}/img/deleted.jpg`;
    const stored = (await ws.check('d1', [url])).done.results as Frame[];
    const file = path.join(dir, 'covers', stored[0]!.path as string);
    assert.ok(await exists(file));
    const res = await api(service, 'DELETE', `/admin/api/covers?url=${encodeURIComponent(url)}`);
    assert.equal(res.status, 202);
    await waitUntil(async () => !(await exists(file)) && readTable(db, 'SELECT id FROM deletions').length === 0, 'the runner carried it out');
    assert.deepEqual(readTable(db, 'SELECT url FROM covers WHERE url = ?', url), []);
    const again = await ws.check('d2', [url]);
    assert.equal((again.done.results as Frame[])[0]!.source, 'download');
    assert.equal(origin.hits.get('/img/deleted.jpg'), 2);
    assert.equal((await api(service, 'DELETE', `/admin/api/covers?url=${encodeURIComponent('https://nothing.example/x.jpg')}`)).status, 404);
    assert.equal((await api(service, 'DELETE', '/admin/api/covers')).status, 400);
  });

  it('retries a remembered failure at once, and pauses and resumes downloads', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0', '--fail-ttl', '600']);
    const url = `${origin.url}/flaky/retry-me.jpg?fails=1`;
    assert.equal(((await ws.check('r1', [url])).done.results as Frame[])[0]!.status, 'error');
    assert.equal(((await ws.check('r2', [url])).done.results as Frame[])[0]!.status, 'error', 'remembered');
    assert.equal(origin.hits.get('/flaky/retry-me.jpg'), 1);
    assert.equal((await api(service, 'POST', `/admin/api/retry?url=${encodeURIComponent(url)}`)).status, 202);
    await waitUntil(() => origin.hits.get('/flaky/retry-me.jpg') === 2, 'tried again now');
    await waitUntil(async () => ((await ws.check(`r3-${Date.now()}`, [url])).done.results as Frame[])[0]!.source === 'cache', 'stored after the retry');

    assert.deepEqual((await api(service, 'POST', '/admin/api/pause')).json, { status: 'paused' });
    assert.equal(((await (await fetch(`${service.url}/healthz`)).json()) as Frame).status, 'paused');
    const paused = await fetch(`${service.url}/healthz?strict=1`);
    assert.equal(paused.status, 503, 'strict: not ready while paused');
    assert.equal(((await paused.json()) as Frame).status, 'paused', 'the same body');
    assert.equal((await fetch(`${service.url}/healthz`)).status, 200, 'not strict: 200 while paused');
    const held = ws.check('held', [`${origin.url}/img/paused.jpg`]);
    await waitUntil(async () => ((await api(service, 'GET', '/admin/api/tasks?status=waiting')).json!.total as number) === 1, 'held as waiting');
    assert.equal(origin.hits.get('/img/paused.jpg'), undefined);
    assert.deepEqual((await api(service, 'POST', '/admin/api/resume')).json, { status: 'ready' });
    assert.equal((await fetch(`${service.url}/healthz?strict=1`)).status, 200, 'strict: 200 once ready');
    assert.equal((await held).done.ok, 1);
  });
});

describe('metrics', () => {
  it('serves Prometheus text with counters, the duration histogram and gauges', async (t) => {
    const { origin, service, ws } = await setup(t, ['--admin-token', TOKEN, '--retries', '0']);
    await ws.check('m', [`${origin.url}/img/metric.jpg`, `${origin.url}/status/500`]);
    await ws.check('m2', [`${origin.url}/img/metric.jpg`]);
    const res = await fetch(`${service.url}/metrics`);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (name: string) => Number(new RegExp(`^${name.replace(/[{}"+]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('coverhelper_checks_total'), 2);
    assert.equal(value('coverhelper_cache_hits_total'), 1);
    assert.equal(value('coverhelper_cache_misses_total'), 2);
    assert.equal(value('coverhelper_downloads_total{outcome="ok",code=""}'), 1);
    assert.equal(value('coverhelper_downloads_total{outcome="error",code="http_status"}'), 1, 'error outcomes split by code');
    assert.match(text, /^coverhelper_build_info\{version="\d+\.\d+\.\d+[^"]*",nodejs_version="v\d+[^"]*"\} 1$/m);
    assert.equal(value('coverhelper_download_duration_seconds_count'), 2);
    assert.equal(value('coverhelper_download_duration_seconds_bucket{le="+Inf"}'), 2);
    assert.ok(value('coverhelper_downloaded_bytes_total') > 0);
    assert.equal(value('coverhelper_status{status="ready"}'), 1);
    assert.equal(value('coverhelper_connections{kind="client"}'), 1);
    assert.equal(value('coverhelper_connections{kind="admin"}'), 0);
    for (const name of ['coverhelper_queued', 'coverhelper_downloading', 'coverhelper_coalesced_askers_total', 'coverhelper_load5', 'coverhelper_disk_used_ratio', 'coverhelper_memory_used_ratio']) assert.ok(!Number.isNaN(value(name)), name);
    assert.ok(value('coverhelper_disk_used_ratio') >= 0 && value('coverhelper_disk_used_ratio') <= 1, 'a ratio, not a percent');
    assert.doesNotMatch(text, /_percent/);
    assert.equal(value('coverhelper_download_actors'), 0, 'finished actors are gone');
    // prom-client's standard process metrics
    assert.ok(value('process_resident_memory_bytes') > 0 && value('nodejs_heap_size_used_bytes') > 0);
    assert.ok(value('nodejs_heap_size_total_bytes') >= value('nodejs_heap_size_used_bytes') && value('nodejs_external_memory_bytes') > 0);
    assert.ok(value('process_cpu_seconds_total') > 0 && value('nodejs_eventloop_lag_seconds') >= 0);
    // prom-client's `_total` gauges are gone (promtool refuses them); their by-type gauges stay.
    assert.doesNotMatch(text, /^# TYPE nodejs_active_\w+_total gauge$/m);
    assert.match(text, /^# TYPE nodejs_active_handles gauge$/m);

    // HTTP requests by route pattern and status, and their time.
    const stored = await ws.check('m3', [`${origin.url}/img/metric.jpg`]);
    const coverPath = (stored.done.results as Frame[])[0]!.path as string;
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${service.url}/covers/${coverPath}`)).status, 200);
    assert.equal((await fetch(`${service.url}/covers/no/such.jpg`)).status, 404);
    assert.equal((await fetch(`${service.url}/no-such-route`)).status, 404);
    assert.equal((await fetch(`${service.url}/api/check`, { method: 'POST', body: '{' })).status, 400);
    const after = await (await fetch(`${service.url}/metrics`)).text();
    const valueIn = (body: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"+*/]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1]);
    assert.equal(valueIn(after, 'coverhelper_http_requests_total{route="/covers/*",status="200"}'), 3);
    assert.equal(valueIn(after, 'coverhelper_http_requests_total{route="/covers/*",status="404"}'), 1);
    assert.equal(valueIn(after, 'coverhelper_http_requests_total{route="none",status="404"}'), 1);
    assert.equal(valueIn(after, 'coverhelper_http_requests_total{route="/api/check",status="400"}'), 1);
    assert.equal(valueIn(after, 'coverhelper_http_request_duration_seconds_count{route="/covers/*"}'), 4);
    assert.equal(valueIn(after, 'coverhelper_http_request_duration_seconds_bucket{le="+Inf",route="/covers/*"}'), 4);

    const health = (await (await fetch(`${service.url}/healthz`)).json()) as Frame;
    assert.deepEqual(Object.keys(health).sort(), ['diskPercent', 'downloading', 'load5', 'memPercent', 'node', 'queued', 'status', 'version']);

    // A download held by the origin is one live actor, counted as such (not read off the downloading gauge).
    const held = ws.check('held', [`${origin.url}/half/metric-held.jpg`]);
    const gauge = async (name: string) => {
      const body = await (await fetch(`${service.url}/metrics`)).text();
      return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);
    };
    await waitUntil(async () => (await gauge('coverhelper_download_actors')) === 1, 'one live actor while the download runs');
    origin.release();
    await held;
    await waitUntil(async () => (await gauge('coverhelper_download_actors')) === 0, 'none after it ends');
  });
});
