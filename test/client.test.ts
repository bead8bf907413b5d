/**
 * The client package (client/src/client.ts) against the real service process
 * and a real origin: frames merged and counted by the service itself
 * (`coverhelper_checks_total` on /metrics, one per check frame), a SIGKILL and a
 * restart while 300 checks wait, a service that is down when the client starts,
 * abort and timeout beside calls that succeed, `maxInFlight` counted at the
 * origin, the service's error codes, `close()`, the backoff, and (with a bare
 * `ws` server standing in for a peer that goes silent) the heartbeat and the
 * hello timeout.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { CoverClient, CoverClientError } from '@coverhelper/client';
import { helloFrame, MAX_FRAME_BYTES } from '@coverhelper/client/protocol';
import type { CheckResult, DisconnectEvent } from '@coverhelper/client';
import { waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];

const serviceArgs = (dir: string) => [
  '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
  '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0',
];

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Check frames the service has answered or started (`coverhelper_checks_total`). */
export async function checksTotal(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = Number(/^coverhelper_checks_total (\S+)$/m.exec(text)?.[1]);
  assert.ok(Number.isFinite(value), 'coverhelper_checks_total on /metrics');
  return value;
}

async function setup(t: TestContext, extra: string[] = []): Promise<{ origin: Origin; service: Service; dir: string }> {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const service = await startService([...serviceArgs(dir), ...extra]);
  t.after(async () => void (await service.stop()));
  return { origin, service, dir };
}

function client(t: TestContext, url: string, options: ConstructorParameters<typeof CoverClient>[1] = {}): CoverClient {
  const covers = new CoverClient(url, options);
  t.after(() => covers.close());
  return covers;
}

const isCover = (result: CheckResult | undefined, url: string) =>
  result?.url === url && result.status === 'ok' && typeof result.coverUrl === 'string' && result.coverUrl.includes('/covers/');

/** The paths under `prefix` the origin was asked for. */
const hitsUnder = (origin: Origin, prefix: string) => [...origin.hits.keys()].filter((p) => p.startsWith(prefix)).length;

/** The rejection of `promise` (it must reject). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a rejection');
}

describe('CoverClient: merging and one ask per URL', () => {
  it('merges the checks of one tick into one frame and asks each URL once, whatever call asked it', async (t) => {
    const { origin, service } = await setup(t);
    const covers = client(t, service.wsUrl);
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/img/merge-${i}.jpg`);
    // 50 calls of 6 URLs each, overlapping, with a duplicate inside some calls.
    const asked = Array.from({ length: 50 }, (_, c) => [0, 1, 2, 3, 4].map((k) => urls[(c * 3 + k * 7) % 20]!).concat(urls[c % 20]!));
    const before = await checksTotal(service.url);
    const answers = await Promise.all(asked.map((list) => covers.check(list)));
    for (const [c, list] of asked.entries()) {
      assert.equal(answers[c]!.length, list.length);
      list.forEach((url, i) => assert.ok(isCover(answers[c]![i], url), `call ${c} position ${i}: ${JSON.stringify(answers[c]![i])}`));
    }
    assert.equal((await checksTotal(service.url)) - before, 1, 'the service received one check frame');
    assert.deepEqual(covers.stats, { connected: true, outstanding: 0, waiting: 0, framesSent: 1, urlsSent: 20, connections: 1 });
    for (const url of urls) assert.equal(origin.hits.get(new URL(url).pathname), 1, `${url} fetched once`);

    // The same URLs again, now cached: the same covers, from the cache, in one more frame.
    const again = await Promise.all(asked.slice(0, 10).map((list) => covers.check(list)));
    assert.equal(again[3]![0]!.source, 'cache');
    assert.equal(again[3]![0]!.coverUrl, answers[3]![0]!.coverUrl);
    assert.equal((await checksTotal(service.url)) - before, 2);

    // 600 URLs asked in one tick by two calls: one frame, split only at the service's maxBatch (1,000).
    // Hosts outside --allow-hosts are answered `skipped` at once: no download needed to count frames.
    const many = Array.from({ length: 600 }, (_, i) => `https://outside.example/many-${i}.jpg`);
    const beforeMany = await checksTotal(service.url);
    const manyAnswers = await Promise.all([covers.check(many.slice(0, 300)), covers.check(many.slice(300))]);
    assert.deepEqual(new Set(manyAnswers.flat().map((r) => r.status)), new Set(['skipped']));
    assert.equal((await checksTotal(service.url)) - beforeMany, 1, '600 URLs of one tick in one frame');
  });

  it('splits at maxBatch, which may only lower the service\'s (hello) limit', async (t) => {
    const { origin, service } = await setup(t, ['--max-batch', '10']);
    const urls = Array.from({ length: 25 }, (_, i) => `${origin.url}/img/batch-${i}.jpg`);
    const big = client(t, service.wsUrl, { maxBatch: 5000 });
    let before = await checksTotal(service.url);
    const results = await Promise.all(urls.map((url) => big.check([url])));
    results.forEach(([result], i) => assert.ok(isCover(result, urls[i]!)));
    assert.equal(big.service?.maxBatch, 10);
    assert.equal((await checksTotal(service.url)) - before, 3, '25 URLs at the service\'s 10: three frames, none refused');

    const small = client(t, service.wsUrl, { maxBatch: 4 });
    before = await checksTotal(service.url);
    const all = await small.check(urls);
    assert.equal(all.filter((r) => r.status === 'ok').length, 25);
    assert.equal((await checksTotal(service.url)) - before, 7, '25 URLs at 4: seven frames');
    assert.equal(small.stats.framesSent, 7);

    // frameUrls: a softer limit under maxBatch, so answers stream back frame by frame.
    const target = client(t, service.wsUrl, { frameUrls: 8 });
    before = await checksTotal(service.url);
    assert.equal((await target.check(urls)).length, 25);
    assert.equal((await checksTotal(service.url)) - before, 4, '25 URLs at 8: four frames');
  });
});

describe('CoverClient: connection', () => {
  it('answers each of 300 waiting checks once across a SIGKILL and a restart of the service', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const port = await freePort();
    const args = [...serviceArgs(dir), '--port', String(port), '--workers', '30'];
    let service = await startService(args);
    t.after(async () => void (await service.stop()));
    const covers = client(t, service.wsUrl, { reconnectMinMs: 50, reconnectMaxMs: 500, frameUrls: 256 });
    const events: string[] = [];
    covers.on('connect', (e) => events.push(`connect ${e.reconnects}`));
    covers.on('disconnect', (e) => events.push(`disconnect ${e.wasConnected} ${e.willReconnect}`));

    // 300 calls on 60 held URLs (the origin sends half of each image and waits), and 3 calls with cached ones.
    const held = Array.from({ length: 60 }, (_, i) => `${origin.url}/half/kill-${i}.jpg`);
    const cached = `${origin.url}/img/kill-cached.jpg`;
    assert.ok(isCover((await covers.check([cached]))[0], cached));
    let settled = 0;
    const calls = Array.from({ length: 300 }, (_, i) => {
      const urls = i % 100 === 0 ? [held[i % 60]!, cached] : [held[i % 60]!];
      return covers.check(urls, { timeoutMs: 120_000 }).finally(() => settled++);
    });
    await waitUntil(() => hitsUnder(origin, '/half/') >= 30, 'the service fetching the held URLs', 30_000);
    assert.equal(settled, 0);
    // The cached URL left in a frame of its own and is answered; the 60 held ones are not.
    await waitUntil(() => covers.stats.outstanding === 60, 'the cached URL answered, the held ones outstanding');

    await service.kill();
    origin.release();
    await waitUntil(() => events.includes('disconnect true true'), 'the client seeing the drop');
    service = await startService(args);
    const answers = await Promise.all(calls);
    assert.equal(settled, 300);
    answers.forEach((results, i) => {
      assert.ok(isCover(results[0], held[i % 60]!), `call ${i}: ${JSON.stringify(results[0])}`);
      if (i % 100 === 0) assert.ok(isCover(results[1], cached));
    });
    assert.equal(covers.stats.outstanding, 0);
    assert.equal(covers.stats.connections, 2);
    assert.equal(events[0], 'connect 0');
    assert.equal(events.at(-1), 'connect 1');
    // The first connection sent the 60 held URLs once (the cached one apart); the second sent them again, once.
    assert.equal(covers.stats.urlsSent, 1 + 61 + 60);
    assert.equal(covers.stats.framesSent, 1 + 2 + 1, "the known cached URL left apart from the new ones");
  });

  it('asks again, of the restarted service, the URLs a stopping service answered shutting_down', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const port = await freePort();
    const args = [...serviceArgs(dir), '--port', String(port), '--workers', '1'];
    let service = await startService(args);
    t.after(async () => void (await service.stop()));
    const covers = client(t, service.wsUrl, { reconnectMinMs: 50, reconnectMaxMs: 200 });
    // One worker: the first URL is downloading (held by the origin), the other two wait for it.
    const urls = [0, 1, 2].map((i) => `${origin.url}/half/stop-${i}.jpg`);
    const answers = covers.check(urls, { timeoutMs: 60_000 });
    await waitUntil(() => hitsUnder(origin, '/half/') === 1, 'the first download');
    const stopped = service.stop();
    origin.release();
    await stopped;
    service = await startService(args);
    const results = await answers;
    results.forEach((result, i) => assert.ok(isCover(result, urls[i]!), `${i}: ${JSON.stringify(result)}`));
    assert.equal(covers.stats.connections, 2);
  });

  it('waits for a service that is down when the client starts, and connects when it comes', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const port = await freePort();
    const covers = client(t, `ws://127.0.0.1:${port}/ws`, { reconnectMinMs: 50, reconnectMaxMs: 200, random: () => 0.5 });
    const drops: DisconnectEvent[] = [];
    covers.on('disconnect', (e) => drops.push(e));
    const url = `${origin.url}/img/late.jpg`;
    const answer = covers.check([url], { timeoutMs: 60_000 });
    await waitUntil(() => drops.length >= 3, 'three failed attempts');
    assert.ok(drops.every((e) => !e.wasConnected && e.willReconnect && e.code === 1006 && e.error instanceof Error), JSON.stringify(drops));
    const service = await startService([...serviceArgs(dir), '--port', String(port)]);
    t.after(async () => void (await service.stop()));
    const [result] = await answer;
    assert.ok(isCover(result, url));
    assert.equal(covers.stats.connections, 1);
  });

  it('waits longer after each failed attempt, up to reconnectMaxMs, with the given jitter', async (t) => {
    const port = await freePort(); // nothing listens there: every attempt is refused at once
    let draws = 0;
    const covers = client(t, `ws://127.0.0.1:${port}/ws`, { reconnectMinMs: 100, reconnectMaxMs: 400, random: () => (draws++, 0) });
    const at: number[] = [];
    covers.on('disconnect', () => at.push(performance.now()));
    const waiting = rejection(covers.check(['https://example.com/a.jpg'], { timeoutMs: 1500 }));
    assert.equal(((await waiting) as CoverClientError).code, 'timeout');
    // With no random part the delays are half the ceiling: 50, 100, 200, then 200 (the ceiling is 400).
    const gaps = at.slice(1).map((time, i) => time - at[i]!);
    const floors = [50, 100, 200, 200, 200, 200, 200, 200];
    gaps.forEach((gap, i) => assert.ok(gap >= floors[i]! - 5, `attempt ${i + 2} came ${gap.toFixed(0)} ms after the one before, not after ${floors[i]} ms`));
    assert.ok(at.length >= 2 && at.length <= 9, `${at.length} attempts in 1.5 s`);
    // One draw per attempt scheduled; the last attempt may have been under way when the call gave up.
    assert.ok(draws === at.length || draws === at.length - 1, `${draws} draws for ${at.length} attempts`);
    // The call gave up and nothing else waits: no more attempts.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const settled = at.length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(at.length, settled, 'no reconnecting while nothing waits');
  });

  it('refuses a wrong token with unauthorized, and works with the right one', async (t) => {
    const { origin, service } = await setup(t, ['--client-token', 'sesame-open-up-please']);
    const url = `${origin.url}/img/token.jpg`;
    for (const token of [undefined, 'wrong']) {
      const refused = client(t, service.wsUrl, token === undefined ? {} : { token });
      const error = await rejection(refused.check([url]));
      assert.ok(error instanceof CoverClientError);
      assert.equal(error.code, 'unauthorized');
    }
    const allowed = client(t, service.wsUrl, { token: 'sesame-open-up-please' });
    assert.ok(isCover((await allowed.check([url]))[0], url));
  });
});

describe('CoverClient: calls', () => {
  it('aborts or times out one call while the others on the same URL and beside it are answered', async (t) => {
    const { origin, service } = await setup(t);
    const covers = client(t, service.wsUrl);
    const slow = `${origin.url}/half/abort.jpg`;
    const fast = `${origin.url}/img/abort-fast.jpg`;
    const controller = new AbortController();
    const aborted = rejection(covers.check([slow], { signal: controller.signal }));
    const timedOut = rejection(covers.check([slow, fast], { timeoutMs: 300 }));
    const patient = covers.check([slow, fast]);
    const beside = covers.check([fast]);
    await waitUntil(() => origin.hits.get('/half/abort.jpg') === 1, 'the held download');
    controller.abort(new Error('the reader left'));
    const abortError = await aborted;
    assert.ok(abortError instanceof CoverClientError);
    assert.equal(abortError.code, 'aborted');
    assert.equal((abortError.cause as Error).message, 'the reader left');
    const timeoutError = await timedOut;
    assert.ok(timeoutError instanceof CoverClientError);
    assert.equal(timeoutError.code, 'timeout');
    assert.ok(isCover((await beside)[0], fast));
    origin.release();
    const [a, b] = await patient;
    assert.ok(isCover(a, slow) && isCover(b, fast));
    assert.equal(covers.stats.outstanding, 0);

    // An already aborted signal fails at once; the client goes on.
    const error = await rejection(covers.check([fast], { signal: AbortSignal.abort() }));
    assert.equal((error as CoverClientError).code, 'aborted');
    assert.ok(isCover((await covers.check([fast]))[0], fast));
  });

  it('keeps at most maxInFlight URLs outstanding; the rest wait in the client', async (t) => {
    const { origin, service } = await setup(t, ['--workers', '20']);
    const covers = client(t, service.wsUrl, { maxInFlight: 5 });
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/half/inflight-${i}.jpg`);
    const before = await checksTotal(service.url);
    const first = covers.check(urls.slice(0, 12));
    const second = covers.check(urls.slice(8));
    await waitUntil(() => hitsUnder(origin, '/half/') === 5, 'five held downloads');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(hitsUnder(origin, '/half/'), 5, 'the service was asked for 5 URLs, no more');
    assert.deepEqual([covers.stats.outstanding, covers.stats.waiting], [5, 15]);
    origin.release();
    const [a, b] = await Promise.all([first, second]);
    a.forEach((r, i) => assert.ok(isCover(r, urls[i]!)));
    b.forEach((r, i) => assert.ok(isCover(r, urls[i + 8]!)));
    assert.equal(hitsUnder(origin, '/half/'), 20);
    assert.ok((await checksTotal(service.url)) - before >= 4, 'at least 20 / 5 frames');
    assert.deepEqual([covers.stats.outstanding, covers.stats.waiting], [0, 0]);
  });

  it('gives results with the service\'s codes, and refuses bad input with clear errors', async (t) => {
    const { origin, service } = await setup(t);
    const covers = client(t, service.wsUrl);
    const missing = `${origin.url}/status/404`;
    const skipped = 'ftp://example.com/a.jpg';
    const good = `${origin.url}/img/codes.jpg`;
    const [failed, skip, ok] = await covers.check([missing, skipped, good]);
    assert.equal(failed?.status, 'error');
    assert.equal(failed?.error?.code, 'http_status');
    assert.equal(failed?.error?.status, 404, 'the client package passes the status on, typed');
    assert.equal(skip?.status, 'skipped');
    assert.match(skip?.reason ?? '', /\S/);
    assert.ok(isCover(ok, good));
    assert.equal(await covers.coverUrl(skipped), skipped, 'coverUrl: the URL itself when skipped');
    assert.equal(await covers.coverUrl(missing), missing, 'coverUrl: the URL itself when failed');
    assert.equal(await covers.coverUrl(good), ok?.coverUrl);

    // A URL the service would refuse fails its own call only, before anything is sent.
    const long = `${origin.url}/img/${'x'.repeat(9000)}.jpg`;
    const [tooLong, beside] = await Promise.allSettled([covers.check([long, good]), covers.check([good])]);
    assert.equal(tooLong.status === 'rejected' && (tooLong.reason as CoverClientError).code, 'bad_request');
    assert.ok(beside.status === 'fulfilled' && isCover(beside.value[0], good));
    await assert.rejects(covers.check('not an array' as unknown as string[]), TypeError);
    await assert.rejects(covers.check([42 as unknown as string]), /urls\[0\] is not a string/);
    await assert.rejects(covers.check([good], { timeoutMs: -1 }), RangeError);
    assert.deepEqual(await covers.check([]), []);
    assert.throws(() => new CoverClient('http://127.0.0.1/ws'), /not a ws:\/\/ or wss:\/\/ URL/);
    assert.throws(() => new CoverClient('nonsense'), /not a URL/);
    assert.throws(() => new CoverClient('ws://127.0.0.1/ws', { maxBatch: 0 }), RangeError);
    assert.throws(() => new CoverClient('ws://127.0.0.1/ws', { maxInFlight: 1.5 }), RangeError);
    assert.throws(() => new CoverClient('ws://127.0.0.1/ws', { frameUrls: -3 }), /frameUrls must be a positive integer/);
  });

  it('close() fails the calls still waiting with closed, and later calls too', async (t) => {
    const { origin, service } = await setup(t);
    const covers = client(t, service.wsUrl);
    const waiting = rejection(covers.check([`${origin.url}/half/closing.jpg`]));
    await waitUntil(() => origin.hits.get('/half/closing.jpg') === 1, 'the held download');
    const disconnected = new Promise<DisconnectEvent>((resolve) => covers.once('disconnect', resolve));
    await covers.close();
    const error = await waiting;
    assert.ok(error instanceof CoverClientError);
    assert.equal(error.code, 'closed');
    assert.equal((await disconnected).willReconnect, false);
    assert.equal(((await rejection(covers.check(['https://example.com/x.jpg']))) as CoverClientError).code, 'closed');
    assert.equal(covers.connected, false);
    origin.release();
  });
});

describe('CoverClient: a peer that goes silent', () => {
  it('replaces a connection on which nothing is heard for heartbeatMs, and one that never says hello', async (t) => {
    // The real service cannot be made to go silent on a live connection (a dropped
    // network leaves no FIN, a killed process closes its sockets), so a bare `ws`
    // server plays that peer: it greets with the protocol module's hello (or not),
    // then answers nothing and sends no ping.
    let greet = true;
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(server, 'listening');
    server.on('connection', (socket) => {
      if (greet) socket.send(helloFrame({ version: '0.0.0-silent', maxBatch: 100, maxFrameBytes: MAX_FRAME_BYTES }));
    });
    const url = `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/ws`;
    const silent = client(t, url, { heartbeatMs: 1500, reconnectMinMs: 50, reconnectMaxMs: 100 });
    const drops: DisconnectEvent[] = [];
    silent.on('disconnect', (e) => drops.push(e));
    const waiting = rejection(silent.check(['https://example.com/silent.jpg'], { timeoutMs: 30_000 }));
    await waitUntil(() => drops.length >= 1, 'the silent connection replaced', 20_000);
    assert.match(drops[0]!.error?.message ?? '', /nothing heard from the service for 1500 ms/);
    assert.deepEqual([drops[0]!.wasConnected, drops[0]!.willReconnect], [true, true]);

    greet = false;
    const mute = client(t, url, { connectTimeoutMs: 500, reconnectMinMs: 50, reconnectMaxMs: 100 });
    const muteDrops: DisconnectEvent[] = [];
    mute.on('disconnect', (e) => muteDrops.push(e));
    const muteWaiting = rejection(mute.check(['https://example.com/mute.jpg'], { timeoutMs: 30_000 }));
    await waitUntil(() => muteDrops.length >= 1, 'the connection without hello given up', 20_000);
    assert.match(muteDrops[0]!.error?.message ?? '', /no hello from the service within 500 ms/);
    assert.deepEqual([muteDrops[0]!.wasConnected, muteDrops[0]!.willReconnect], [false, true]);

    await Promise.all([silent.close(), mute.close()]);
    assert.equal(((await waiting) as CoverClientError).code, 'closed');
    assert.equal(((await muteWaiting) as CoverClientError).code, 'closed');
    for (const socket of server.clients) socket.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
