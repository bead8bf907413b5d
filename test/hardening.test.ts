/**
 * Faults and hostile input found when the service was attacked from outside,
 * each against the real service process: links in the covers folder, local
 * storage faults, a corrupt database, and askers waiting at shutdown.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readTasks, waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { runService, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];

async function setup(t: TestContext) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const db = path.join(dir, 'data', 'coverhelper.sqlite');
  const covers = path.join(dir, 'covers');
  const args = (...extra: string[]) => ['--data-dir', path.join(dir, 'data'), '--covers-dir', covers, '--allow-private-network', '--allow-hosts', '127.0.0.1', ...extra];
  return { origin, dir, db, covers, args };
}

describe('shutdown answers every waiting asker', () => {
  it('a check waiting on a download still running when the grace period ends gets its done, with shutting_down, before the socket closes', async (t) => {
    const { origin, db, args } = await setup(t);
    const service = await startService(args('--workers', '2'));
    t.after(() => service.kill());
    const ws = await connect(service.wsUrl);
    const urls = [`${origin.url}/half/grace-a.jpg`, `${origin.url}/half/grace-b.jpg`, `${origin.url}/half/grace-c.jpg`];
    const frames: Frame[] = [];
    ws.ws.on('message', (data: Buffer) => frames.push(JSON.parse(data.toString()) as Frame));
    ws.ws.send(JSON.stringify({ type: 'check', id: 'grace', urls }));
    await waitUntil(() => readTasks(db).filter((r) => r.status === 'downloading' && r.bytes_done > 0).length === 2, 'two downloads running, held by the origin');

    // The origin never finishes them: the 5 s grace period runs out.
    const exit = service.stop();
    const closed = await ws.closed;
    assert.equal(closed.code, 1001);
    const done = frames.find((f) => f.type === 'done');
    assert.ok(done, `a done frame before the close; got ${JSON.stringify(frames.map((f) => f.type))}`);
    const results = done.results as { status: string; error?: { code: string } }[];
    assert.deepEqual(
      results.map((r) => r.error?.code),
      ['shutting_down', 'shutting_down', 'shutting_down'],
    );
    assert.equal(await exit, 0);
    const rows = readTasks(db);
    assert.deepEqual(rows.map((r) => r.status).sort(), ['downloading', 'downloading', 'queued'], 'the tasks stay resumable');
  });
});

describe('links in the covers folder', () => {
  it('serves only regular files whose real path is inside the covers folder', async (t) => {
    const { covers, args } = await setup(t);
    const outside = await tempDir(t);
    await writeFile(path.join(outside, 'secret.jpg'), 'outside the covers folder');
    await mkdir(path.join(covers, 'x'), { recursive: true });
    await writeFile(path.join(covers, 'x', 'real.jpg'), 'a real cover');
    await symlink('/etc/passwd', path.join(covers, 'x', 'passwd.jpg'));
    await symlink(outside, path.join(covers, 'evil'));
    await symlink(path.join(covers, 'x', 'real.jpg'), path.join(covers, 'x', 'alias.jpg'));
    execFileSync('mkfifo', [path.join(covers, 'x', 'fifo.jpg')]);
    const service = await startService(args());
    t.after(() => service.stop());

    const real = await fetch(`${service.url}/covers/x/real.jpg`);
    assert.equal(real.status, 200);
    assert.equal(await real.text(), 'a real cover');
    for (const link of ['x/passwd.jpg', 'evil/secret.jpg', 'x/alias.jpg', 'x/fifo.jpg']) {
      const res = await fetch(`${service.url}/covers/${link}`);
      assert.equal(res.status, 404, link);
      assert.doesNotMatch(await res.text(), /root:|outside the covers/, link);
    }
  });

  it('never writes a cover through a folder link that leaves the covers folder', async (t) => {
    const { origin, covers, db, args } = await setup(t);
    const outside = await tempDir(t);
    await mkdir(covers, { recursive: true });
    await symlink(outside, path.join(covers, '127.0.0.1'));
    const service = await startService(args('--retries', '2'));
    t.after(() => service.stop());
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const { done } = await ws.check('link', [`${origin.url}/img/linked.jpg`]);
    const [result] = done.results as { status: string; error?: { code: string; message: string } }[];
    assert.equal(result?.error?.code, 'disk_full', JSON.stringify(result));
    assert.match(result.error.message, /refusing to follow a link: .*127\.0\.0\.1 is a link/);
    assert.deepEqual(await readdir(outside), [], 'nothing written outside');
    assert.equal(origin.hits.get('/img/linked.jpg'), 1, 'a local fault is not retried against the origin');
    assert.equal(readTasks(db)[0]?.error_code, 'disk_full');
  });
});

describe('local storage faults', () => {
  it('an unwritable covers folder is disk_full: not retried against the origin, not remembered, downloaded once it is fixed', async (t) => {
    const { origin, covers, args } = await setup(t);
    const service = await startService(args('--retries', '2', '--fail-ttl', '300'));
    t.after(() => service.stop());
    // A file where the host's folder should be: every write there fails (root ignores a read-only mode, a file does not).
    await mkdir(covers, { recursive: true });
    await writeFile(path.join(covers, '127.0.0.1'), 'not a folder');
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const url = `${origin.url}/img/blocked.jpg`;
    const first = await ws.check('blocked', [url]);
    const [failed] = first.done.results as { status: string; error?: { code: string; message: string } }[];
    assert.equal(failed?.error?.code, 'disk_full', JSON.stringify(failed));
    assert.match(failed.error.message, /could not store the cover file/);
    assert.equal(origin.hits.get('/img/blocked.jpg'), 1, 'not retried against the origin');

    await rm(path.join(covers, '127.0.0.1'));
    const second = await ws.check('fixed', [url]);
    assert.equal((second.done.results as { status: string }[])[0]?.status, 'ok', 'not answered from a remembered failure');
    assert.equal(origin.hits.get('/img/blocked.jpg'), 2);
  });

  it('a covers or data folder that cannot be written stops the start with one line naming it', async (t) => {
    const dir = await tempDir(t);
    await writeFile(path.join(dir, 'covers'), 'a file, not a folder');
    const run = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--log-format', 'json']);
    assert.equal(run.code, 1);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: string; message: string });
    const errors = lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, run.stdout);
    assert.match(errors[0]!.message, new RegExp(`covers folder ${path.join(dir, 'covers')} is not writable .*--covers-dir`));
    await assert.rejects(readdir(path.join(dir, 'data')), /ENOENT/, 'nothing made in the data folder');
  });
});

describe('start failures say what, where and what to do', () => {
  it('a corrupt database: one line with the file and what to do; the admin token is not written', async (t) => {
    const dir = await tempDir(t);
    await mkdir(path.join(dir, 'data'), { recursive: true });
    const file = path.join(dir, 'data', 'coverhelper.sqlite');
    await writeFile(file, 'this is not a database, only text that fills the first page of one '.repeat(100));
    const run = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--log-format', 'json']);
    assert.equal(run.code, 1);
    const errors = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: string; message: string }).filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, run.stdout);
    assert.match(errors[0]!.message, new RegExp(`the database ${file} is not a SQLite database .*SQLITE_NOTADB.*move the file away`));
    assert.deepEqual((await readdir(path.join(dir, 'data'))).filter((f) => f === 'admin-token'), []);
  });

  it('a port in use stops the start before the database is made or the admin token is written', async (t) => {
    const dir = await tempDir(t);
    const holder = http.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => holder.close(() => resolve())));
    const port = (holder.address() as AddressInfo).port;
    const run = await runService(['--port', String(port), '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--log-format', 'json']);
    assert.equal(run.code, 1);
    const errors = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: string; message: string }).filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, run.stdout);
    assert.match(errors[0]!.message, new RegExp(`port 127\\.0\\.0\\.1:${port} is already in use; stop the other process or choose another --port`));
    assert.deepEqual(await readdir(path.join(dir, 'data')), [], 'no database, no admin token');
  });
});
