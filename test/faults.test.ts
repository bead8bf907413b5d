/**
 * No fault kills the process: the real service (`node --import tsx
 * src/main.ts`, what `npm start` runs) under the faults an attack or a bad day
 * brings.
 *
 *   - PostgreSQL connections killed under traffic (`pg_terminate_backend` on
 *     every connection of the database, again and again, as a failover or an
 *     idle-connection killer does): every check is answered (ok, or an error
 *     with a code), no node exits, and after the storm every node answers a
 *     fresh check ok. Needs COVERHELPER_TEST_PG.
 *   - A covers folder with no space left (a small tmpfs, as root): an archive
 *     job that cannot be written ends `failed` with `disk_full`, its temp file
 *     removed, the process alive, and the next start does not crash. Skipped
 *     with the reason when not root or the mount fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { freshPgDatabase, rawSql, skipWithoutPg } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Answer {
  node: string;
  id: string;
  /** `done`, `error`, or why no answer came. */
  kind: string;
  results: Frame[];
  done?: Frame;
}

describe('no fault kills the process', () => {
  it('PostgreSQL connections killed again and again under traffic: every check answered, no node exits, every node answers after', { skip: skipWithoutPg }, async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const db = await freshPgDatabase(t);
    const dir = await tempDir(t);
    const nodes: Service[] = [];
    t.after(async () => {
      await Promise.all(nodes.map((node) => node.kill()));
    });
    const ids = ['p1', 'p2', 'p3'];
    for (const service of await Promise.all(
      ids.map((id) =>
        startService([
          '--db', db,
          '--node-id', id,
          '--data-dir', path.join(dir, `data-${id}`),
          '--covers-dir', path.join(dir, 'covers'),
          '--public-url', 'http://covers.example/',
          '--allow-private-network', '--allow-hosts', '127.0.0.1',
          '--lease', '5',
          // Nodes of one database share their secrets (a node whose secrets differ is refused).
          '--admin-token', 'faults-admin-token', '--callback-secret', 'faults-callback-secret-0123456789',
        ]),
      ),
    )) nodes.push(service);
    const exits: string[] = [];
    nodes.forEach((node, i) => void node.exit.then(({ code, signal }) => exits.push(`${ids[i]} exited (${code ?? signal}): ${node.stderr().slice(-20000)}`)));

    const clients: TestClient[] = [];
    for (const node of nodes) clients.push(await connect(node.wsUrl));
    t.after(() => Promise.all(clients.map((client) => client.close().catch(() => undefined))));

    // Light traffic: on every node, one check after the other, each of a few new URLs and one asked before.
    const answers: Answer[] = [];
    let storming = true;
    const traffic = clients.map(async (client, n) => {
      for (let round = 0; storming; round++) {
        const id = `${ids[n]}-${round}`;
        const urls = [0, 1, 2].map((i) => `${origin.url}/img/storm-${id}-${i}.jpg?delay=${20 * i}`);
        if (round > 0) urls.push(`${origin.url}/img/storm-${ids[n]}-0-0.jpg?delay=0`);
        try {
          const { results, done } = await client.check(id, urls, 60_000);
          answers.push({ node: ids[n]!, id, kind: done.type, results, done });
        } catch (error) {
          answers.push({ node: ids[n]!, id, kind: `no answer: ${(error as Error).message}`, results: [] });
          return;
        }
        await sleep(50);
      }
    });

    await sleep(1000);
    let storms = 0;
    for (const pause of [400, 300, 1000, 200, 200, 1500]) {
      const killed = await rawSql<{ ok: boolean }>(
        db,
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()',
        new URL(db).pathname.slice(1),
      );
      if (killed.length > 0) storms++;
      await sleep(pause);
    }
    await sleep(2000);
    storming = false;
    await Promise.all(traffic);

    assert.deepEqual(exits, [], 'no node exited');
    assert.ok(storms >= 4, `connections of the nodes were there to kill, ${storms} times`);
    assert.ok(answers.length >= 6, `traffic went on: ${answers.length} checks`);
    const unanswered = answers.filter((answer) => answer.kind !== 'done' && answer.kind !== 'error');
    assert.deepEqual(unanswered.map((a) => `${a.id}: ${a.kind}`), [], 'every check is answered');
    for (const answer of answers) {
      for (const result of answer.results) {
        if (result.type !== 'result') continue;
        const status = result.status as string;
        const code = (result.error as { code?: unknown } | undefined)?.code;
        assert.ok(status === 'ok' || (status === 'error' && typeof code === 'string' && code !== ''), `${answer.id}: ${JSON.stringify(result)}`);
      }
    }

    // After the storm: each node, still running, answers a fresh check ok (the pool and the listener are back).
    for (const [i, client] of clients.entries()) {
      const url = `${origin.url}/img/after-storm-${ids[i]}.jpg`;
      let last = '';
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { done, results } = await client.check(`after-${ids[i]}-${Date.now()}`, [url], 60_000);
        last = JSON.stringify({ done, results });
        if (done.type === 'done' && done.ok === 1) break;
        assert.ok(Date.now() < deadline, `${ids[i]} answers ok after the storm: ${last}`);
        await sleep(500);
      }
    }
    assert.deepEqual(exits, [], 'no node exited');
    for (const node of nodes) assert.equal(node.child.exitCode, null);
    // Each node logged its lost listener and its return.
    for (const node of nodes) {
      await node.waitForLog((line) => line.message === 'database notifications heard again', 30_000);
    }
  });

  it('a job whose archive finds no space left ends failed with disk_full, leaves no .part, and the process lives on and starts again', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('mounting a small tmpfs needs root');
    // A folder of its own (not tempDir's): the service is stopped and the tmpfs unmounted before it is removed.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'coverhelper-full-'));
    const covers = path.join(dir, 'covers');
    const services: Service[] = [];
    let mounted = false;
    t.after(async () => {
      await Promise.all(services.map((started) => started.kill()));
      if (mounted) execFileSync('umount', ['-l', covers], { stdio: 'pipe' });
      await rm(dir, { recursive: true, force: true });
    });
    await mkdir(covers);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'tmpfs', covers], { stdio: 'pipe' });
      mounted = true;
    } catch (error) {
      return t.skip(`could not mount a tmpfs on ${covers}: ${(error as Error).message.split('\n')[0]}`);
    }
    const origin = await startOrigin();
    t.after(() => origin.close());
    const args = ['--data-dir', path.join(dir, 'data'), '--covers-dir', covers, '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0'];
    let service = await startService(args);
    services.push(service);

    // Covers that fit, stored the way a blog asks for them.
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/img/full-disk-${i}.jpg`);
    const client = await connect(service.wsUrl);
    const { done } = await client.check('store', urls, 60_000);
    await client.close();
    assert.equal(done.ok, urls.length, JSON.stringify(done));
    await mkdir(path.join(covers, '.jobs'), { recursive: true });

    // The rest of the folder's space taken.
    const filler = await open(path.join(covers, 'filler'), 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (;;) await filler.write(chunk);
    } catch (error) {
      assert.equal((error as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      await filler.close();
    }
    // Down to the last bytes.
    const last = await open(path.join(covers, 'filler-last'), 'w');
    try {
      for (;;) await last.write(Buffer.alloc(512, 1));
    } catch {
      // full
    } finally {
      await last.close();
    }

    const created = await fetch(`${service.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls, name: 'no space' }) });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as { id: string };
    let job: { status: string; error?: { code: string; message: string } } | undefined;
    const deadline = Date.now() + 60_000;
    for (;;) {
      assert.equal(service.child.exitCode, null, `the service died: ${service.stderr().slice(-3000)}`);
      const answer = await fetch(`${service.url}/api/jobs/${id}`).catch((error: unknown) => assert.fail(`the service does not answer: ${(error as Error).message}; ${service.stderr().slice(-3000)}`));
      job = (await answer.json()) as typeof job;
      if (job?.status === 'failed' || job?.status === 'ready') break;
      assert.ok(Date.now() < deadline, `job ${JSON.stringify(job)}`);
      await sleep(100);
    }
    assert.equal(job?.status, 'failed', JSON.stringify(job));
    assert.equal(job?.error?.code, 'disk_full', JSON.stringify(job));
    assert.equal((await fetch(`${service.url}/healthz`)).status, 200);
    assert.equal(service.child.exitCode, null);
    const leftovers = (await readdir(path.join(covers, '.tmp'))).filter((name) => name.endsWith('.part'));
    assert.deepEqual(leftovers, [], 'no temp archive left');
    assert.deepEqual((await readdir(path.join(covers, '.jobs'))).filter((name) => name.startsWith(id)), [], 'no archive published');

    // Still full: the next start neither crashes nor takes the job up again.
    assert.equal(await service.stop(), 0);
    service = await startService(args);
    services.push(service);
    await sleep(1500);
    assert.equal(service.child.exitCode, null, service.stderr());
    const again = (await (await fetch(`${service.url}/api/jobs/${id}`)).json()) as { status: string; error?: { code: string } };
    assert.deepEqual([again.status, again.error?.code], ['failed', 'disk_full']);
    assert.ok(!service.logs.some((line) => line.message === 'resuming an archive job'), 'the failed job is not resumed');
  });
});
