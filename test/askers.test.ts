/**
 * Work follows its askers, against the real service process: queued downloads
 * nobody waits for any more are dropped (a socket closed, door requests and
 * `/api/check` given up, a restart nobody asks again after), and one client's
 * long queue does not hold back another client's new URL.
 *
 * The origin is slow (every image takes `DELAY_MS`) and the service has two
 * workers, so a flood of URLs would keep it busy for minutes if it were kept:
 * each test shows the queue emptied and a fresh asker answered at once.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { checkFrame } from '@coverhelper/client/protocol';
import { signCoverUrl } from '@coverhelper/client/sign';
import { readTasks, waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { relaxedLimits, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const DELAY_MS = 600;
const KEY = 'askers-test-key-0123456789abcdef';

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  origin.delayMs = DELAY_MS;
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const args = [
    '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--workers', '2', '--url-key', KEY,
    ...relaxedLimits, ...extra,
  ];
  const services: Service[] = [];
  const start = async () => {
    const service = await startService(args);
    services.push(service);
    return service;
  };
  t.after(async () => {
    for (const service of services) await service.stop();
  });
  return { origin, dir, start };
}

async function queued(service: Service): Promise<number> {
  const health = (await (await fetch(`${service.url}/healthz`)).json()) as { queued: number };
  return health.queued;
}

const flood = (origin: Origin, tag: string, n: number) => Array.from({ length: n }, (_, i) => `${origin.url}/img/${tag}-${i}.jpg`);

/** A new client's check of one new URL: how long its answer took, in ms. */
async function freshCheck(service: Service, url: string): Promise<number> {
  const client = await connect(service.wsUrl);
  try {
    const started = Date.now();
    const { done } = await client.check('fresh', [url], 60_000);
    assert.equal(done.ok, 1, `the fresh URL is answered ok: ${JSON.stringify(done)}`);
    return Date.now() - started;
  } finally {
    await client.close();
  }
}

describe('work follows its askers', () => {
  it('drops the queued downloads of a socket that closed; a fresh check is answered as soon as its download ends', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const client = await connect(service.wsUrl);
    for (let k = 0; k < 3; k++) client.ws.send(JSON.stringify({ type: 'check', id: `flood-${k}`, urls: flood(origin, `ws${k}`, 1000) }));
    await waitUntil(async () => (await queued(service)) > 2900, 'the flood to be queued');
    await client.close();
    await waitUntil(async () => (await queued(service)) === 0, 'the closed socket\'s queue to be dropped', 10_000);
    // At most what had started when the socket closed (and the fresh one below) reached the origin.
    const ms = await freshCheck(service, `${origin.url}/img/fresh-after-ws.jpg`);
    assert.ok(ms < DELAY_MS + 2000, `the fresh check took ${ms} ms (its download takes ${DELAY_MS} ms)`);
    assert.ok(origin.total() <= 10, `${origin.total()} origin requests for 3,000 URLs nobody waited for`);
  });

  it('sockets that send the same check share it: the queue stays while one of them still waits, and is dropped when the last one closes (the group leaves with its last member only)', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const urls = flood(origin, 'shared', 300);
    const clients = await Promise.all([0, 1, 2].map(() => connect(service.wsUrl)));
    for (const [k, client] of clients.entries()) client.ws.send(checkFrame(`same-${k}`, urls));
    await waitUntil(async () => (await queued(service)) > 290, 'the shared URLs to be queued');
    await clients[0]!.close();
    await clients[1]!.close();
    // The third still waits: the check it shares keeps the queue, and it is answered.
    const first = await clients[2]!.next((frame) => frame.type === 'result' && frame.id === 'same-2', 10_000);
    assert.equal(first.status, 'ok');
    assert.ok((await queued(service)) > 250, 'two of three sockets closed: the queue is kept for the third');
    await clients[2]!.close();
    await waitUntil(async () => (await queued(service)) === 0, 'the queue to be dropped once the last socket closed', 10_000);
    assert.ok(origin.total() <= 12, `${origin.total()} origin requests for 300 URLs`);
  });

  it('takes one turn per socket however many check frames it sends: a socket with ten frames queued and one with one share the workers', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const many = await connect(service.wsUrl);
    const one = await connect(service.wsUrl);
    t.after(() => Promise.all([many.close(), one.close()]));
    for (let k = 0; k < 10; k++) many.ws.send(checkFrame(`many-${k}`, flood(origin, `many${k}`, 20)));
    await waitUntil(async () => (await queued(service)) > 190, 'the ten frames to be queued');
    one.ws.send(checkFrame('one', flood(origin, 'one', 20)));
    const answered = (client: typeof one) => client.frames.filter((frame) => frame.type === 'result').length;
    await waitUntil(() => Promise.resolve(answered(many) + answered(one) >= 14), 'fourteen answers', 30_000);
    // Turn by turn with the other socket: about half of what came since it asked; one turn in eleven would be one or two.
    assert.ok(answered(one) >= 4, `the socket with one frame got ${answered(one)} of ${answered(many) + answered(one)} answers`);
  });

  it('a socket that sends the same check after its first answer came asks on its own: covers stored before it asked come from the cache, in done only', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const urls = flood(origin, 'late', 4);
    const early = await connect(service.wsUrl);
    const late = await connect(service.wsUrl);
    t.after(() => Promise.all([early.close(), late.close()]));
    const earlyCheck = early.check('early', urls);
    // Two workers: two covers are stored before the other two are fetched.
    await early.next((frame) => frame.type === 'result' && frame.id === 'early', 10_000);
    const lateCheck = await late.check('late', urls);
    await earlyCheck;
    assert.equal(lateCheck.done.ok, 4);
    const sources = (lateCheck.done.results as { source: string }[]).map((result) => result.source);
    assert.ok(sources.includes('cache'), `a cover stored before the late check is answered from the cache: ${sources.join(', ')}`);
    assert.ok(lateCheck.results.length < 4, `only what it waited for came as result frames (${lateCheck.results.length})`);
    assert.equal(origin.total(), 4, 'one download per URL');
  });

  it('starts another client\'s new URL at the next free worker while one client keeps 1,000 queued', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const bulk = await connect(service.wsUrl);
    t.after(() => bulk.close());
    bulk.ws.send(JSON.stringify({ type: 'check', id: 'bulk', urls: flood(origin, 'bulk', 1000) }));
    await waitUntil(async () => (await queued(service)) > 990, 'the bulk client\'s URLs to be queued');
    // First come, first served would make it wait for 1,000 downloads (5 minutes);
    // fair turns, for one download to free a worker and its own download.
    const ms = await freshCheck(service, `${origin.url}/img/fresh-beside-bulk.jpg`);
    assert.ok(ms < 2 * DELAY_MS + 2000, `the fresh check took ${ms} ms beside 1,000 queued URLs of another client`);
    assert.ok((await queued(service)) > 900, 'the bulk client\'s queue is kept: it still waits');
  });

  it('drops the queued downloads of door requests and /api/check calls that gave up', async (t) => {
    const { origin, start } = await setup(t);
    const service = await start();
    const signed = flood(origin, 'door', 200).map((url) => signCoverUrl(url, KEY, service.url));
    const gaveUp = signed.map((url) => fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(1500) }).catch(() => 'aborted'));
    const posted = fetch(`${service.url}/api/check`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ urls: flood(origin, 'api', 1000) }),
      signal: AbortSignal.timeout(1500),
    }).catch(() => 'aborted');
    await waitUntil(async () => (await queued(service)) > 1100, 'the door and /api/check URLs to be queued');
    assert.ok((await Promise.all(gaveUp)).filter((r) => r === 'aborted').length > 150, 'the door requests gave up');
    assert.equal(await posted, 'aborted');
    await waitUntil(async () => (await queued(service)) === 0, 'the queue of the requests that gave up to be dropped', 10_000);
    const ms = await freshCheck(service, `${origin.url}/img/fresh-after-door.jpg`);
    assert.ok(ms < DELAY_MS + 2000, `the fresh check took ${ms} ms`);
    assert.ok(origin.total() <= 12, `${origin.total()} origin requests for 1,200 URLs nobody waited for`);
  });

  it('resumes after a kill only what is asked for again within --resume-grace, not the flood nobody waits for', async (t) => {
    const { origin, dir, start } = await setup(t, ['--resume-grace', '3']);
    const first = await start();
    const client = await connect(first.wsUrl);
    const urls = flood(origin, 'kill', 1000);
    client.ws.send(JSON.stringify({ type: 'check', id: 'before-kill', urls }));
    await waitUntil(async () => (await queued(first)) > 990, 'the URLs to be queued');
    await first.kill();
    await client.close();
    const tasksBefore = readTasks(path.join(dir, 'data', 'coverhelper.sqlite')).filter((task) => task.status === 'queued').length;
    assert.ok(tasksBefore > 990, `${tasksBefore} queued task rows at the kill`);

    const second = await start();
    // A client that reconnects within the grace asks for one of them again and gets it.
    const again = await connect(second.wsUrl);
    t.after(() => again.close());
    const { done } = await again.check('again', [urls[700]!], 30_000);
    assert.equal(done.ok, 1);
    await waitUntil(async () => (await queued(second)) === 0, 'the resumed URLs nobody asked for again to be dropped', 15_000);
    const hits = origin.total();
    const left = readTasks(path.join(dir, 'data', 'coverhelper.sqlite')).filter((task) => task.status === 'queued' || task.status === 'waiting');
    assert.equal(left.length, 0, 'no task row is left for the next start to resume');
    // Three seconds of two workers at 600 ms a download, and the one asked for again.
    assert.ok(hits <= 30, `${hits} origin requests for 1,000 URLs nobody waited for`);
    assert.ok(second.logs.some((line) => /resum/i.test(line.message)), 'the start says it resumed downloads');
  });
});
