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
import { relaxedLimits, runService, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { freshPgDatabase, rawSql, skipWithoutPg } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'cluster-admin-token';
const CALLBACK_SECRET = 'cluster-callback-secret-0123456789';

interface Cluster {
  db: string;
  dir: string;
  origin: Origin;
  nodes: Service[];
  /** Starts one more node (or the named one again). */
  start: (id: string, extra?: string[]) => Promise<Service>;
  /** The command line of node `id` (later options win). */
  args: (id: string, extra?: string[]) => string[];
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
  const args = (id: string, more: string[] = []) => [
    '--db', db,
    '--node-id', id,
    '--data-dir', path.join(dir, `data-${id}`),
    '--covers-dir', path.join(dir, 'covers'),
    '--public-url', 'http://covers.example/',
    '--admin-token', TOKEN,
    '--callback-secret', CALLBACK_SECRET,
    '--allow-private-network', '--allow-hosts', '127.0.0.1',
    ...extra,
    ...more,
  ];
  const start = async (id: string, more: string[] = []) => {
    const service = await startService(args(id, more));
    started.push(service);
    return service;
  };
  // Started together, on an empty database.
  const nodes = await Promise.all(ids.map((id) => start(id)));
  return { db, dir, origin, nodes, start, args };
}

function admin(service: Service, method: string, route: string, body?: Buffer): Promise<Response> {
  return fetch(`${service.url}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}` }, ...(body ? { body } : {}) });
}

/** Runs a node that is expected not to start: its exit code, and every line it wrote (stdout and stderr). */
async function refused(args: string[]): Promise<{ code: number | null; lines: string[]; output: string }> {
  const { code, stdout, stderr } = await runService(['--port', '0', '--log-format', 'json', ...relaxedLimits, ...args]);
  const output = `${stdout}${stderr}`;
  return { code, output, lines: output.split('\n').filter((line) => line.trim() !== '') };
}

/** The one line saying why the start failed. */
function cannotStart(lines: string[]): string {
  const found = lines.filter((line) => line.includes('cannot start'));
  assert.equal(found.length, 1, `one line says why: ${lines.join('\n')}`);
  return (JSON.parse(found[0]!) as { message: string }).message;
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
    for (const { done } of answers) assert.equal(done.ok, urls.length, JSON.stringify(results(done).filter((r) => r.status !== 'ok')));
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
  it('a node started with the --node-id of a live node exits 2 with one line naming the id and when that node was last seen; the live node keeps serving; a graceful stop frees the id at once, and a killed node started again at once comes back within a lease', async (t) => {
    const lease = 12;
    const { origin, nodes, db, start, args } = await cluster(t, ['d1'], ['--lease', String(lease)]);
    const [live] = nodes as [Service];
    const { code, lines } = await refused(args('d1', ['--data-dir', path.join(await tempDir(t), 'twin')]));
    assert.equal(code, 2, lines.join('\n'));
    t.diagnostic(cannotStart(lines));
    assert.match(cannotStart(lines), /^coverhelper cannot start: --node-id d1 is held by a live node \(last seen \d{4}-\d\d-\d\dT[\d:.]+Z, [\d.]+ s ago; .*lease, 12 s\); give this node another --node-id/);
    // The live node was not disturbed: it answers, and it is the one row.
    const onLive = await connect(live.wsUrl);
    t.after(() => onLive.close());
    assert.equal((await onLive.check('still', [`${origin.url}/img/still-serving.jpg`])).done.ok, 1);
    const listed = (await (await admin(live, 'GET', '/admin/api/nodes')).json()) as { nodes: { id: string; status: string }[] };
    assert.deepEqual(listed.nodes.map((n) => [n.id, n.status]), [['d1', 'ready']]);
    assert.equal(live.child.exitCode, null, 'still running');

    // Stopped gracefully, the node marks itself stopped: it starts again at once, without waiting.
    assert.equal(await live.stop(), 0);
    assert.deepEqual(await rawSql(db, "SELECT status FROM nodes WHERE id = 'd1'"), [{ status: 'stopped' }]);
    const again = await start('d1');
    assert.equal(((await (await fetch(`${again.url}/healthz`)).json()) as { node: string }).node, 'd1');
    assert.ok(!again.logs.some((line) => line.message.startsWith('a node with this --node-id was seen')), 'no wait after a graceful stop');

    // Killed, and started again at once (a supervisor restarting it): its heartbeat stops, so it starts within a lease.
    await again.kill();
    const killedAt = Date.now();
    const back = await start('d1');
    assert.ok(back.logs.some((line) => line.message.startsWith('a node with this --node-id was seen')), 'it waited for the old heartbeat to run out');
    assert.ok(Date.now() - killedAt < (lease + 15) * 1000);
    assert.equal(((await (await fetch(`${back.url}/healthz`)).json()) as { node: string }).node, 'd1');
  });

  it('a node whose shared secret differs from the other nodes’ exits 2 with one line naming which, never the secret; after every node stopped, a new secret is recorded', async (t) => {
    const URL_KEY = 'cluster-url-key-0123456789abcdef';
    const { nodes, args, start } = await cluster(t, ['e1'], ['--url-key', URL_KEY]);
    const [first] = nodes as [Service];
    const dir = await tempDir(t);
    const cases: [string, string[], RegExp, string[]][] = [
      ['admin token', ['--admin-token', 'another-admin-token-4242'], /--admin-token differs from the one the other nodes of this database use \(recorded by node e1 at \d{4}-/, ['another-admin-token-4242', TOKEN]],
      ['client token', ['--client-token', 'a-client-token-4242'], /--client-token is set on this node, but the other nodes of this database use none/, ['a-client-token-4242']],
      ['url key', ['--url-key', 'another-url-key-0123456789abcdef'], /--url-key differs from the one the other nodes/, ['another-url-key-0123456789abcdef', URL_KEY]],
      ['callback secret', ['--callback-secret', 'another-callback-secret-4242'], /--callback-secret differs from the one the other nodes/, ['another-callback-secret-4242', CALLBACK_SECRET]],
    ];
    for (const [what, flags, line, secrets] of cases) {
      const { code, lines, output } = await refused(args(`e-${what.replace(' ', '-')}`, ['--data-dir', path.join(dir, what.replace(' ', '-')), ...flags]));
      assert.equal(code, 2, `${what}: ${output}`);
      const message = cannotStart(lines);
      t.diagnostic(message);
      assert.match(message, line, what);
      assert.match(message, /give every node the same --/);
      for (const secret of secrets) assert.ok(!output.includes(secret), `${what}: no secret in the output`);
    }
    // A node without a URL key, where the others have one, is told too.
    const without = args('e-none').filter((arg, i, all) => arg !== '--url-key' && all[i - 1] !== '--url-key');
    const missing = await refused([...without, '--data-dir', path.join(dir, 'none')]);
    assert.equal(missing.code, 2);
    assert.match(cannotStart(missing.lines), /--url-key is not set on this node, but the other nodes of this database use one/);
    // The first node serves on, with the recorded secrets.
    assert.equal((await admin(first, 'GET', '/admin/api/nodes')).status, 200);

    // Changing a secret: stop every node, start them with the new one; a node with the old one is then refused.
    assert.equal(await first.stop(), 0);
    const rotated = await start('e1', ['--admin-token', 'the-new-admin-token-4242']);
    await rotated.waitForLog((l) => l.message.startsWith('shared secrets changed') && JSON.stringify(l.secrets) === '["admin-token"]');
    const old = await refused(args('e2', ['--data-dir', path.join(dir, 'old')]));
    assert.equal(old.code, 2);
    assert.match(cannotStart(old.lines), /--admin-token differs from the one the other nodes of this database use \(recorded by node e1/);
  });

  it('a claim the node holds on a task it is not working on is not renewed: settled ok when the cover is stored, else released and taken over', async (t) => {
    const lease = 3;
    const { origin, nodes, db } = await cluster(t, ['w1', 'w2'], ['--lease', String(lease)]);
    const [a] = nodes as [Service, Service];
    const onA = await connect(a.wsUrl);
    t.after(() => onA.close());
    const stored = `${origin.url}/img/stuck-stored.jpg`;
    const never = `${origin.url}/img/stuck-never-asked.jpg`;
    assert.equal((await onA.check('first', [stored])).done.ok, 1);
    // What a lost final write (or a claim written after the supervisor gave up on the URL) leaves:
    // rows w1 holds, unfinished, that w1's supervisor does not have.
    const now = Date.now();
    await rawSql(db, "UPDATE tasks SET status = 'queued', finished_at = NULL, claimed_by = 'w1', claim_expires = $1 WHERE url = $2", now + lease * 1000, stored);
    await rawSql(
      db,
      "INSERT INTO tasks (url, status, attempts, bytes_done, created_at, updated_at, claimed_by, claim_expires) VALUES ($1, 'queued', 0, 0, $2, $2, 'w1', $3)",
      never,
      now,
      now + lease * 1000,
    );
    const rows = await waitUntil(
      async () => {
        const found = await rawSql<{ url: string; status: string; claimed_by: string | null }>(db, 'SELECT url, status, claimed_by FROM tasks WHERE url = ANY($1::text[]) ORDER BY url', [never, stored]);
        return found.every((row) => row.status === 'ok' && row.claimed_by === null) ? found : undefined;
      },
      'both rows settled and released',
      lease * 4 * 1000,
    );
    assert.equal(rows.length, 2);
    assert.equal(origin.hits.get('/img/stuck-stored.jpg'), 1, 'a stored cover is settled, not fetched again');
    assert.equal(origin.hits.get('/img/stuck-never-asked.jpg'), 1, 'a released one is taken over and downloaded once');
    await a.waitForLog((line) => line.message === 'settled claims this node held on tasks it was not working on');
  });
});
