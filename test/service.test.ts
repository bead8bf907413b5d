/**
 * End to end: the real service process, a real origin on 127.0.0.1, real
 * WebSocket clients, a real SQLite file in a fresh folder.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { waitUntil } from './helpers/db.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { version } from '../src/version.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';

const MAX_BYTES = 20_000;

function baseArgs(origin: Origin, dir: string): string[] {
  return [
    '--data-dir', `${dir}/data`,
    '--covers-dir', `${dir}/covers`,
    '--allow-private-network',
    '--allow-hosts', '127.0.0.1',
    '--bilibili-api', origin.url,
    '--max-bytes', String(MAX_BYTES),
    '--time-limit', '3',
    '--retries', '0',
  ];
}

/** GET with the path sent exactly as given (no client-side normalisation). */
function rawGet(base: string, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path, headers, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the service, end to end', () => {
  let origin: Origin;
  let service: Service;
  let dir: string;
  const clients: TestClient[] = [];
  const client = async () => {
    const c = await connect(service.wsUrl);
    clients.push(c);
    return c;
  };

  before(async () => {
    origin = await startOrigin();
    dir = await tempDir({ after });
    service = await startService(baseArgs(origin, dir));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    assert.equal(await service.stop(), 0, 'SIGTERM ends with exit code 0');
    await origin.close();
  });

  it('answers a check with result frames for URLs that waited, then done in input order', async () => {
    const ws = await client();
    const a = `${origin.url}/img/first.jpg`;
    const skipped = 'https://example.com/not-a-cover.jpg';
    const { results, done } = await ws.check('c1', [a, skipped, a]);

    assert.equal(done.type, 'done');
    assert.deepEqual([done.ok, done.skipped, done.failed], [2, 1, 0]);
    const list = done.results as Frame[];
    assert.deepEqual(list.map((r) => r.status), ['ok', 'skipped', 'ok']);
    assert.equal(list[1]!.url, skipped);
    assert.equal(list[0]!.source, 'download');
    assert.equal(list[0]!.coverUrl, list[2]!.coverUrl);
    assert.equal(results.length, 2, 'one result frame per waiting position, none for the skipped URL');
    assert.ok(results.every((r) => r.type === 'result' && r.id === 'c1' && r.url === a && r.status === 'ok'));
    assert.equal(origin.hits.get('/img/first.jpg'), 1, 'fetched once for both positions');

    const cover = await rawGet(service.url, new URL(list[0]!.coverUrl as string).pathname);
    assert.equal(cover.status, 200);
    assert.equal(cover.headers['content-type'], 'image/jpeg');
    const meta = await sharp(cover.body).metadata();
    assert.deepEqual([meta.width, meta.height], [320, 200], 'cropped to the default 320x200');
    assert.match(list[0]!.path as string, /^127\.0\.0\.1\/first-[0-9a-f]{12}-[0-9a-f]{12}\.jpg$/);

    const again = await ws.check('c2', [a]);
    assert.equal(again.results.length, 0, 'a cached URL does not wait, so it gets no result frame');
    assert.equal((again.done.results as Frame[])[0]!.source, 'cache');
    assert.equal(origin.hits.get('/img/first.jpg'), 1);
  });

  it('logs one line per finished download with url, outcome, bytes downloaded and milliseconds; a failure at warn', async () => {
    const line = await service.waitForLog((l) => l.message === 'download finished' && l.url === `${origin.url}/img/first.jpg`);
    assert.deepEqual([line.level, line.outcome], ['info', 'ok']);
    assert.equal(line.bytes, (await makeImage('first')).length, 'the bytes that came from the origin');
    assert.ok((line.stored as number) > 0 && (line.stored as number) < (line.bytes), 'the stored (resized) size apart');
    assert.equal(typeof line.ms, 'number');
    const ws = await client();
    await ws.check('fails', [`${origin.url}/status/410`]);
    const failed = await service.waitForLog((l) => l.message === 'download failed' && l.url === `${origin.url}/status/410`);
    assert.deepEqual([failed.level, failed.outcome, failed.error], ['warn', 'http_status', 'HTTP 410']);
  });

  it('answers the short form C with OK and the cover URL, or the input URL where not ok', async () => {
    const ws = await client();
    const a = `${origin.url}/img/short.jpg`;
    const other = 'https://example.com/x.png';
    ws.ws.send(`C ${a} ${other} ${origin.url}/status/404`);
    const text = await ws.nextText();
    const parts = text.split(' ');
    assert.equal(parts[0], 'OK');
    assert.match(parts[1]!, new RegExp(`^${service.url}/covers/127\\.0\\.0\\.1/short-`));
    assert.equal(parts[2], other);
    assert.equal(parts[3], `${origin.url}/status/404`);
  });

  it('keeps many checks in flight on one connection, each answered under its id', async () => {
    const ws = await client();
    const ids = ['m1', 'm2', 'm3', 'm4'];
    const answers = await Promise.all(ids.map((id) => ws.check(id, [`${origin.url}/img/multi-${id}.jpg?delay=100`, `${origin.url}/img/multi-shared.jpg?delay=100`])));
    answers.forEach(({ done }, i) => {
      assert.equal(done.id, ids[i]);
      assert.equal(done.ok, 2);
    });
  });

  it('answers every bad input with its code and keeps the connection usable', async () => {
    const ws = await client();
    const bystander = await client();
    const cases: [string, string, unknown][] = [
      ['{not json', 'bad_request', null],
      ['[1,2]', 'bad_request', null],
      [JSON.stringify({ type: 'fetch', id: 'x1', urls: [] }), 'bad_request', 'x1'],
      [JSON.stringify({ type: 'check', urls: ['a'] }), 'bad_request', null],
      [JSON.stringify({ type: 'check', id: 'x2' }), 'bad_request', 'x2'],
      [JSON.stringify({ type: 'check', id: 'x3', urls: [1] }), 'bad_request', 'x3'],
      [JSON.stringify({ type: 'check', id: 'x4', urls: Array.from({ length: 1001 }, (_, i) => `https://e.com/${i}`) }), 'too_many_urls', 'x4'],
      ['C a  b', 'bad_request', null],
      ['hello', 'bad_request', null],
    ];
    for (const [text, code, id] of cases) {
      ws.ws.send(text);
      const frame = await ws.next((f) => f.type === 'error');
      assert.equal(frame.code, code, text.slice(0, 40));
      assert.equal(frame.id, id, text.slice(0, 40));
      assert.equal(typeof frame.message, 'string');
    }
    ws.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await ws.next((f) => f.type === 'error')).code, 'bad_request');

    const { done } = await ws.check('after-errors', [`${origin.url}/img/first.jpg`]);
    assert.equal(done.ok, 1, 'the connection still works');
    assert.equal((await bystander.check('b', [`${origin.url}/img/first.jpg`])).done.ok, 1);
  });

  it('closes a connection that sends a frame over 1 MiB with 1009, and only that one', async () => {
    const big = await client();
    const bystander = await client();
    big.ws.send('C ' + 'x'.repeat(1024 * 1024 + 10));
    const { code } = await big.closed;
    assert.equal(code, 1009);
    assert.equal((await bystander.check('still', [`${origin.url}/img/first.jpg`])).done.ok, 1);
  });

  it('answers fetch failures with their codes', async () => {
    const ws = await client();
    const cases: [string, string][] = [
      ['/status/404', 'http_status'],
      ['/status/500', 'http_status'],
      ['/loop', 'http_status'],
      ['/fake.jpg', 'not_image'],
      [`/bytes/${MAX_BYTES + 1}`, 'too_large'],
      [`/bytes/${MAX_BYTES + 1}?chunked`, 'too_large'],
      ['/hang', 'tle'],
    ];
    const { done } = await ws.check('failures', cases.map(([path]) => origin.url + path));
    const results = done.results as Frame[];
    cases.forEach(([path, code], i) => {
      assert.equal(results[i]!.status, 'error', path);
      assert.equal((results[i]!.error as { code: string }).code, code, path);
    });
    assert.match((results[0]!.error as { message: string }).message, /404/);
    assert.match((results[1]!.error as { message: string }).message, /500/);
    // http_status carries the origin's last status as a number (a redirect's, after too many of them).
    assert.deepEqual([0, 1, 2].map((i) => (results[i]!.error as { status?: number }).status), [404, 500, 302]);
    // Asked again: the remembered failure keeps it.
    const again = (await ws.check('failures-again', [origin.url + '/status/404'])).done.results as Frame[];
    assert.deepEqual([again[0]!.remembered, (again[0]!.error as { status?: number }).status], [true, 404]);
    assert.equal(done.failed, cases.length);
    // The origin hears the socket close a moment after the service gave up on it.
    await waitUntil(() => origin.abortedSockets >= 1, 'the hanging download aborted at the time limit', 5000);
  });

  it('accepts a body of exactly --max-bytes', async () => {
    const ws = await client();
    const { done } = await ws.check('exact', [`${origin.url}/bytes/${MAX_BYTES}`]);
    assert.equal((done.results as Frame[])[0]!.status, 'ok', JSON.stringify(done.results));
  });

  it('resolves bilibili video pages through the view API, and reports its error codes', async () => {
    origin.videos.set('BV1xx411c7mD', { code: 0, message: '0', data: { pic: `${origin.url}/img/video-cover.jpg` } });
    origin.videos.set('av170001', { code: 0, message: '0', data: { pic: `${origin.url}/img/video-av.png` } });
    const ws = await client();
    const pages = [
      'https://www.bilibili.com/video/BV1xx411c7mD?p=1#reply',
      'https://www.bilibili.com/video/av170001/',
      'https://www.bilibili.com/video/BV1zz411c7zz',
    ];
    const { done } = await ws.check('bili', pages);
    const results = done.results as Frame[];
    assert.equal(results[0]!.status, 'ok');
    assert.match(results[0]!.path as string, /^www\.bilibili\.com\/bv1xx411c7md-/);
    assert.equal(results[1]!.status, 'ok');
    assert.match(results[1]!.path as string, /\.png$/);
    assert.equal(results[2]!.status, 'error');
    assert.equal((results[2]!.error as { code: string }).code, 'resolve_failed');
    assert.match((results[2]!.error as { message: string }).message, /-404/);
    assert.equal(origin.hits.get('/img/video-cover.jpg'), 1);
  });

  it('sends no Referer and a User-Agent naming coverhelper', () => {
    const seen = origin.requests.filter((r) => r.path.startsWith('/img/'));
    assert.ok(seen.length > 0);
    for (const request of seen) {
      assert.equal(request.headers.referer, undefined);
      assert.match(request.headers['user-agent'] ?? '', /^coverhelper\/\d+\.\d+\.\d+/);
    }
  });

  it('serves covers with type, ETag, 304, long caching, and 404 for anything outside', async () => {
    const ws = await client();
    const { done } = await ws.check('serve', [`${origin.url}/img/served.png`]);
    const path = new URL((done.results as Frame[])[0]!.coverUrl as string).pathname;
    const first = await rawGet(service.url, path);
    assert.equal(first.status, 200);
    assert.equal(first.headers['content-type'], 'image/png');
    assert.match(first.headers['cache-control'] ?? '', /max-age=31536000/);
    const etag = first.headers.etag;
    assert.ok(etag);
    const second = await rawGet(service.url, path, { 'if-none-match': etag });
    assert.equal(second.status, 304);
    assert.equal(second.body.length, 0);

    for (const attempt of [
      '/covers/../package.json',
      '/covers/%2e%2e/package.json',
      '/covers/%2e%2e%2fpackage.json',
      '/covers/127.0.0.1/..%2f..%2fpackage.json',
      '/covers//etc/passwd',
      '/covers/%2fetc%2fpasswd',
      '/covers/.tmp/x',
      '/covers/127.0.0.1/missing.jpg',
      '/covers/',
    ]) {
      const res = await rawGet(service.url, attempt);
      assert.equal(res.status, 404, attempt);
    }
  });

  it('greets every client socket with hello: its version and limits, before any other frame', async () => {
    const client = await connect(service.wsUrl);
    const hello = await client.hello;
    assert.deepEqual(hello, { type: 'hello', version, maxBatch: 1000, maxFrameBytes: 1024 * 1024 });
    assert.deepEqual(client.frames, [], 'nothing before it');
    await client.close();
  });

  it('reports health with status and counts', async () => {
    const res = await rawGet(service.url, '/healthz');
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body.toString()) as Record<string, unknown>;
    assert.equal(body.status, 'ready');
    assert.match(body.version as string, /^\d+\.\d+\.\d+/);
    for (const key of ['diskPercent', 'memPercent', 'load5', 'queued', 'downloading']) assert.equal(typeof body[key], 'number', key);
  });
});

describe('private networks', () => {
  it('refuses loopback origins unless --allow-private-network, without a request reaching them', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--allow-hosts', '127.0.0.1,localhost']);
    t.after(async () => void (await service.stop()));
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const { done } = await ws.check('p', [`${origin.url}/img/private.jpg`, `${origin.url.replace('127.0.0.1', 'localhost')}/img/private.jpg`]);
    const results = done.results as Frame[];
    assert.deepEqual(results.map((r) => (r.error as { code: string }).code), ['not_allowed', 'not_allowed']);
    assert.equal(origin.total(), 0);
  });
});

describe('the client token', () => {
  it('refuses the upgrade with 401 without it, and accepts a Bearer header or ?token=', async (t) => {
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--client-token', 's3cret-client-token']);
    t.after(async () => void (await service.stop()));
    await assert.rejects(connect(service.wsUrl), /HTTP 401/);
    await assert.rejects(connect(`${service.wsUrl}?token=wrong`), /HTTP 401/);
    await assert.rejects(connect(service.wsUrl, { headers: { authorization: 'Bearer s3cret-client-toke' } }), /HTTP 401/);
    const byHeader = await connect(service.wsUrl, { headers: { authorization: 'Bearer s3cret-client-token' } });
    const byQuery = await connect(`${service.wsUrl}?token=s3cret-client-token`);
    assert.equal((await byHeader.check('h', ['https://example.com/a'])).done.skipped, 1);
    assert.equal((await byQuery.check('q', ['https://example.com/a'])).done.skipped, 1);
    await Promise.all([byHeader.close(), byQuery.close()]);
  });
});

describe('restart', () => {
  it('answers every stored URL from cache after a restart, without asking the origin', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/img/restart-${i}.jpg`);
    const first = await startService(baseArgs(origin, dir));
    const ws1 = await connect(first.wsUrl);
    assert.equal((await ws1.check('r1', urls)).done.ok, 20);
    await ws1.close();
    assert.equal(await first.stop(), 0);
    const fetched = origin.total();
    assert.equal(fetched, 20);

    const second = await startService(baseArgs(origin, dir));
    t.after(async () => void (await second.stop()));
    const ws2 = await connect(second.wsUrl);
    t.after(() => ws2.close());
    const { done, results } = await ws2.check('r2', urls);
    assert.equal(done.ok, 20);
    assert.ok((done.results as Frame[]).every((r) => r.source === 'cache'));
    assert.equal(results.length, 0);
    assert.equal(origin.total(), fetched, 'zero requests to the origin after the restart');
  });
});
