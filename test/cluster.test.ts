/**
 * Several nodes on one PostgreSQL database, as an operator runs them: real
 * service processes (`node --import tsx src/main.ts`, what `npm start` runs),
 * each test on a fresh database with one covers folder all nodes share, a real
 * origin, real WebSocket clients. Skipped with a message when
 * COVERHELPER_TEST_PG names no server.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { migrations } from '../src/store/index.js';
import { waitUntil } from './helpers/db.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { freshPgDatabase, rawSql, skipWithoutPg } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'cluster-admin-token';

interface Cluster {
  db: string;
  dir: string;
  origin: Origin;
  nodes: Service[];
  /** Starts one more node (or the named one again). */
  start: (id: string, extra?: string[]) => Promise<Service>;
}

async function cluster(t: TestContext, ids: string[], extra: string[] = []): Promise<Cluster> {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const db = await freshPgDatabase(t);
  const dir = await tempDir(t);
  const started: Service[] = [];
  t.after(async () => {
    await Promise.all(started.map((service) => service.kill()));
  });
  const start = async (id: string, more: string[] = []) => {
    const service = await startService([
      '--db', db,
      '--node-id', id,
      '--data-dir', path.join(dir, `data-${id}`),
      '--covers-dir', path.join(dir, 'covers'),
      '--public-url', 'http://covers.example/',
      '--admin-token', TOKEN,
      '--allow-private-network', '--allow-hosts', '127.0.0.1',
      ...extra,
      ...more,
    ]);
    started.push(service);
    return service;
  };
  // Started together, on an empty database.
  const nodes = await Promise.all(ids.map((id) => start(id)));
  return { db, dir, origin, nodes, start };
}

function admin(service: Service, method: string, route: string, body?: Buffer): Promise<Response> {
  return fetch(`${service.url}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}` }, ...(body ? { body } : {}) });
}

function results(done: Frame): { url: string; status: string; path?: string; source?: string; error?: { code: string } }[] {
  return done.results as never;
}

describe('several nodes on one PostgreSQL database', { skip: skipWithoutPg }, () => {
  it('start together on an empty database: migrations run once, every node comes up and lists the others', async (t) => {
    const { db, nodes } = await cluster(t, ['n1', 'n2', 'n3']);
    const migrated = nodes.filter((node) => node.logs.some((line) => line.message === 'database migrated'));
    assert.equal(migrated.length, 1, 'one node ran the migrations');
    const ran = await rawSql<{ name: string }>(db, 'SELECT name FROM migrations ORDER BY id');
    assert.deepEqual(ran.map((r) => r.name), migrations.map((Migration) => new Migration().name));
    assert.equal(ran[0]?.name, 'CreateCoversAndTasks1763780000000');
    for (const node of nodes) {
      const health = (await (await fetch(`${node.url}/healthz`)).json()) as { node: string };
      assert.match(health.node, /^n[123]$/);
    }
    const listed = (await (await admin(nodes[0]!, 'GET', '/admin/api/nodes')).json()) as { self: string; nodes: { id: string; status: string }[] };
    assert.deepEqual(listed.nodes.map((n) => n.id).sort(), ['n1', 'n2', 'n3']);
    assert.ok(listed.nodes.every((n) => n.status === 'ready'), JSON.stringify(listed));
  });

  it('a herd of sockets spread over three nodes asking the same new URLs makes exactly one origin request per URL', async (t) => {
    const { origin, nodes } = await cluster(t, ['h1', 'h2', 'h3']);
    origin.delayMs = 150; // downloads stay in flight while every node's askers arrive
    const urls = Array.from({ length: 40 }, (_, i) => `${origin.url}/img/herd-${i}.jpg`);
    const clients: TestClient[] = [];
    for (let i = 0; i < 30; i++) clients.push(await connect(nodes[i % 3]!.wsUrl));
    t.after(() => Promise.all(clients.map((client) => client.close())));
    const answers = await Promise.all(clients.map((client, i) => client.check(`herd-${i}`, i % 2 ? urls : [...urls].reverse(), 60_000)));
    for (const { done } of answers) assert.equal(done.ok, urls.length);
    for (const url of urls) assert.equal(origin.hits.get(new URL(url).pathname), 1, `${url} fetched once across the cluster`);
    assert.equal(origin.total(), urls.length);
    // Every node answers the same path for a URL.
    const paths = answers.map(({ done }) => new Map(results(done).map((r) => [r.url, r.path])));
    for (const url of urls) assert.equal(new Set(paths.map((p) => p.get(url))).size, 1);
  });

  it('a node killed during downloads: its claims run out, another node finishes them, every asker on the living nodes is answered, and the dead node back does not fetch again', async (t) => {
    const lease = 3;
    const { origin, nodes, start, db } = await cluster(t, ['k1', 'k2', 'k3'], ['--lease', String(lease)]);
    const [victim, second, third] = nodes as [Service, Service, Service];
    const urls = Array.from({ length: 4 }, (_, i) => `${origin.url}/half/takeover-${i}.jpg`);
    const onVictim = await connect(victim.wsUrl);
    void onVictim.check('victim', urls, 60_000).catch(() => undefined);
    await waitUntil(async () => (await rawSql(db, "SELECT url FROM tasks WHERE claimed_by = 'k1' AND status = 'downloading' AND bytes_done > 0")).length === urls.length, 'k1 downloading them all, held by the origin', 20_000);
    const askers = [await connect(second.wsUrl), await connect(third.wsUrl)];
    t.after(() => Promise.all(askers.map((a) => a.close())));
    const waiting = askers.map((asker, i) => asker.check(`after-${i}`, urls, 60_000));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(origin.total(), urls.length, 'the other nodes wait on k1, they do not fetch');

    const killedAt = Date.now();
    await victim.kill();
    origin.release();
    const answered = await Promise.all(waiting);
    const took = Date.now() - killedAt;
    for (const { done } of answered) assert.deepEqual(results(done).map((r) => r.status), ['ok', 'ok', 'ok', 'ok']);
    assert.ok(took < (lease + 10) * 1000, `answered ${took} ms after the kill (lease ${lease} s)`);
    const rows = await rawSql<{ status: string; claimed_by: string | null }>(db, 'SELECT status, claimed_by FROM tasks');
    assert.deepEqual(rows.map((r) => [r.status, r.claimed_by]), urls.map(() => ['ok', null]), 'finished by a living node, claims released');
    for (const url of urls) assert.equal(origin.hits.get(new URL(url).pathname), 2, 'fetched once by k1 (cut off) and once by the node that took over');

    const back = await start('k1', ['--lease', String(lease)]);
    const again = await connect(back.wsUrl);
    t.after(() => again.close());
    const { done } = await again.check('back', urls);
    assert.ok(results(done).every((r) => r.status === 'ok' && r.source === 'cache'), 'stored by another node: answered from the index');
    assert.equal(origin.total(), urls.length * 2, 'nothing fetched again');
  });

  it('custom covers, deletions, retries and the pause switch made on one node hold on every node', async (t) => {
    const { origin, nodes, dir } = await cluster(t, ['c1', 'c2', 'c3'], ['--retries', '0', '--fail-ttl', '300']);
    const [a, b, c] = nodes as [Service, Service, Service];
    const onA = await connect(a.wsUrl);
    const onB = await connect(b.wsUrl);
    t.after(() => Promise.all([onA.close(), onB.close()]));

    // A cover node B holds in memory is replaced by an upload on node A: B answers the custom one within a second.
    const url = `${origin.url}/img/shared.jpg`;
    const first = results((await onB.check('b1', [url])).done)[0]!;
    assert.equal(first.source, 'download');
    assert.equal(results((await onB.check('b2', [url])).done)[0]!.path, first.path, 'in node B’s memory');
    const upload = await admin(a, 'PUT', `/admin/api/covers?url=${encodeURIComponent(url)}`, await makeImage('custom-upload', 'png', 64, 40));
    assert.equal(upload.status, 200);
    const custom = (await upload.json()) as { path: string };
    await waitUntil(async () => results((await onB.check(`b3-${Date.now()}`, [url])).done)[0]!.path === custom.path, 'node B answers the custom cover', 1000);

    // Deleted on node A: no node answers the path of the deleted file.
    assert.equal((await admin(a, 'DELETE', `/admin/api/covers?url=${encodeURIComponent(url)}`)).status, 202);
    await waitUntil(async () => access(path.join(dir, 'covers', custom.path)).then(() => false, () => true), 'the file removed', 10_000);
    const after = results((await onB.check('b4', [url])).done)[0]!;
    assert.notEqual(after.path, custom.path, 'not the deleted file');
    assert.equal(after.source, 'download', 'downloaded again');

    // A failure is remembered on every node once heard; a retry on node C forgets it everywhere.
    const streamB = await connect(`${b.url.replace('http:', 'ws:')}/admin/ws?token=${TOKEN}`);
    t.after(() => streamB.close());
    const broken = `${origin.url}/flaky/broken.jpg?fails=1`;
    assert.equal(results((await onA.check('f1', [broken])).done)[0]!.error?.code, 'http_status');
    await streamB.next((f) => f.type === 'task' && f.url === broken && f.status === 'error' && f.node === 'c1', 2000);
    assert.equal(results((await onB.check('f2', [broken])).done)[0]!.error?.code, 'http_status', 'node B answers the remembered failure');
    assert.equal(origin.hits.get('/flaky/broken.jpg'), 1, 'remembered: not fetched again');
    assert.equal((await admin(c, 'POST', `/admin/api/retry?url=${encodeURIComponent(broken)}`)).status, 202);
    await waitUntil(async () => results((await onA.check(`f3-${Date.now()}`, [broken])).done)[0]!.status === 'ok', 'node A answers the retried download', 10_000);

    // Pause on node A holds node B; resume on node C releases it.
    assert.equal((await admin(a, 'POST', '/admin/api/pause')).status, 200);
    await waitUntil(async () => ((await (await fetch(`${b.url}/healthz`)).json()) as { status: string }).status === 'paused', 'node B paused', 2000);
    const held = onB.check('held', [`${origin.url}/img/held.jpg`], 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(origin.hits.get('/img/held.jpg'), undefined, 'nothing downloads while paused');
    assert.equal((await admin(c, 'POST', '/admin/api/resume')).status, 200);
    assert.equal((await held).done.ok, 1);
  });

  it('a node whose notifications were cut reads again what it awaits when it listens again', async (t) => {
    const { origin, nodes, db } = await cluster(t, ['l1', 'l2']);
    const [a, b] = nodes as [Service, Service];
    const url = `${origin.url}/half/missed.jpg`;
    const onA = await connect(a.wsUrl);
    const onB = await connect(b.wsUrl);
    t.after(() => Promise.all([onA.close(), onB.close()]));
    const first = onA.check('a', [url], 30_000);
    await waitUntil(async () => (await rawSql(db, "SELECT url FROM tasks WHERE claimed_by = 'l1' AND bytes_done > 0")).length === 1, 'l1 downloading, held by the origin');
    const waiting = onB.check('b', [url], 30_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Node B's listening connection is cut; node A finishes while B cannot hear it.
    const cut = await rawSql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'coverhelper-listen:l2'");
    assert.equal(cut.length, 1, 'node B’s listener found');
    origin.release();
    assert.equal((await first).done.ok, 1);
    const { done } = await waiting;
    assert.equal(results(done)[0]!.status, 'ok', 'answered after reading again');
    assert.equal(origin.hits.get('/half/missed.jpg'), 1);
    await b.waitForLog((line) => line.message === 'database notifications heard again', 10_000);
  });

  it('the admin stream of any node shows every node’s task changes, each with its node', async (t) => {
    const { origin, nodes } = await cluster(t, ['s1', 's2']);
    const [a, b] = nodes as [Service, Service];
    const stream = await connect(`${b.url.replace('http:', 'ws:')}/admin/ws?token=${TOKEN}`);
    t.after(() => stream.close());
    assert.equal((await stream.next()).type, 'snapshot');
    const onA = await connect(a.wsUrl);
    t.after(() => onA.close());
    const url = `${origin.url}/img/streamed.jpg`;
    await onA.check('s', [url]);
    const ok = await stream.next((f) => f.type === 'task' && f.url === url && f.status === 'ok', 5000);
    assert.equal(ok.node, 's1');
  });
});
