/**
 * The link attacks of issue 21 against the real service process: links found
 * outside the covers code (job archives, `.jobs`, `.tmp`, the start sweep, the
 * expiry runner) and a host folder swapped for a link while the service runs.
 * Each is refused by the one path guard: nothing read, written or deleted
 * outside the covers folder, and a write that is refused is `disk_full`.
 */
import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { runService, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];

interface Job {
  id: string;
  status: string;
  error?: { code: string; message: string };
}

interface Result {
  status: string;
  path?: string;
  error?: { code: string; message: string };
}

async function setup(t: TestContext) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const covers = path.join(dir, 'covers');
  const outside = path.join(dir, 'outside');
  await mkdir(covers, { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(outside, 'keep.txt'), 'outside the covers folder');
  const args = (...extra: string[]) => ['--data-dir', path.join(dir, 'data'), '--covers-dir', covers, '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', ...extra];
  const start = async (...extra: string[]) => {
    const service = await startService(args(...extra));
    t.after(async () => void (await service.stop()));
    return service;
  };
  return { origin, dir, covers, outside, args, start };
}

/** Every name made in `dir` from now on (inotify), so a file written there and moved away at once is still seen. */
function recordWrites(t: TestContext, dir: string): string[] {
  const seen: string[] = [];
  const watcher = watch(dir, (_event, name) => seen.push(String(name)));
  t.after(async () => watcher.close());
  return seen;
}

async function postJob(service: Service, urls: string[]): Promise<Job> {
  const response = await fetch(`${service.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls }) });
  assert.equal(response.status, 201);
  return (await response.json()) as Job;
}

async function untilDone(service: Service, id: string, statuses: string[], timeoutMs = 60_000): Promise<Job> {
  let last: Job | undefined;
  return waitUntil(
    async () => {
      last = (await (await fetch(`${service.url}/api/jobs/${id}`)).json()) as Job;
      return statuses.includes(last.status) ? last : undefined;
    },
    `job ${id} ${statuses.join(' or ')} (last: ${JSON.stringify(last)})`,
    timeoutMs,
  );
}

async function check(service: Service, id: string, url: string): Promise<Result> {
  const ws = await connect(service.wsUrl);
  try {
    const { done } = await ws.check(id, [url]);
    return (done.results as Result[])[0]!;
  } finally {
    void ws.close();
  }
}

describe('links outside the covers code', () => {
  it('.jobs/<id>.tar swapped for a link to /etc/passwd: GET /api/jobs/<id>/archive does not serve it (410)', async (t) => {
    const { origin, covers, start } = await setup(t);
    const service = await start();
    const job = await postJob(service, [`${origin.url}/img/passwd-job.jpg`]);
    assert.equal((await untilDone(service, job.id, ['ready', 'failed'])).status, 'ready');
    const archive = path.join(covers, '.jobs', `${job.id}.tar`);
    await rm(archive);
    await symlink('/etc/passwd', archive);
    const answer = await fetch(`${service.url}/api/jobs/${job.id}/archive`);
    const body = await answer.text();
    assert.doesNotMatch(body, /root:/, 'nothing of /etc/passwd is served');
    assert.equal(answer.status, 410, body);
    assert.equal((JSON.parse(body) as { code: string }).code, 'expired');
  });

  it('a .jobs link leading out: no archive is written outside, the job fails with disk_full naming the link, nothing is served', async (t) => {
    const { origin, covers, outside, start } = await setup(t);
    await symlink(outside, path.join(covers, '.jobs'));
    const service = await start();
    const job = await postJob(service, [`${origin.url}/img/jobs-link.jpg`]);
    const done = await untilDone(service, job.id, ['ready', 'failed']);
    assert.deepEqual(await readdir(outside), ['keep.txt'], 'no archive written outside');
    assert.equal(done.status, 'failed', JSON.stringify(done));
    assert.equal(done.error?.code, 'disk_full');
    assert.match(done.error.message, /refusing to follow a link: .*\.jobs is a link/);
    assert.notEqual((await fetch(`${service.url}/api/jobs/${job.id}/archive`)).status, 200);
    assert.equal(service.child.exitCode, null, 'the service runs on');
  });

  it('.jobs swapped for a link leading out while a job is ready: its archive is not served from there, and expiry deletes nothing through the link', async (t) => {
    const { origin, covers, outside, start } = await setup(t);
    // 0.004 h: about 14 s to make the job and swap the folder before it expires.
    const service = await start('--job-ttl', '0.004');
    const job = await postJob(service, [`${origin.url}/img/expiry-link.jpg`]);
    assert.equal((await untilDone(service, job.id, ['ready', 'failed'])).status, 'ready');
    const moved = path.join(outside, 'jobs');
    await rename(path.join(covers, '.jobs'), moved);
    await symlink(moved, path.join(covers, '.jobs'));
    const answer = await fetch(`${service.url}/api/jobs/${job.id}/archive`);
    await answer.arrayBuffer();

    await untilDone(service, job.id, ['expired'], 90_000);
    await service.waitForLog((line) => line.url === job.id && (line.message === 'deleted' || /not removed/.test(line.message)), 60_000);
    assert.deepEqual(await readdir(moved), [`${job.id}.tar`], 'the file behind the link is not deleted');
    assert.ok(service.logs.some((line) => /file not removed: a folder on its path is a link/.test(line.message) && line.url === job.id));
    assert.equal(answer.status, 410, 'not served through the link');
  });

  it('a .tmp link leading out at start: the start sweep deletes nothing outside (the start stops, naming the link)', async (t) => {
    const { covers, outside, args } = await setup(t);
    await writeFile(path.join(outside, 'second.txt'), 'also outside');
    await symlink(outside, path.join(covers, '.tmp'));
    const run = await runService(['--port', '0', '--log-format', 'json', ...args()]);
    assert.deepEqual((await readdir(outside)).sort(), ['keep.txt', 'second.txt'], 'nothing outside deleted');
    assert.equal(run.code, 1, run.stdout);
    const errors = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: string; message: string }).filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, run.stdout);
    assert.match(errors[0]!.message, /covers folder .* is not writable \(ELOOP: refusing to follow a link: .*\.tmp is a link/);
    assert.ok((await lstat(path.join(covers, '.tmp'))).isSymbolicLink(), 'the link is left for the operator');
  });

  it('.tmp swapped for a link leading out while the service runs: no cover and no archive is written through it', async (t) => {
    const { origin, covers, outside, dir, start } = await setup(t);
    const service = await start();
    // A first cover: the temp and host folders are in use.
    assert.equal((await check(service, 'first', `${origin.url}/img/tmp-first.jpg`)).status, 'ok');
    await rename(path.join(covers, '.tmp'), path.join(dir, 'old-tmp'));
    await symlink(outside, path.join(covers, '.tmp'));
    const written = recordWrites(t, outside);

    const second = await check(service, 'second', `${origin.url}/img/tmp-second.jpg`);
    assert.deepEqual(written, [], 'no temp file made outside for the cover');
    assert.equal(second.error?.code, 'disk_full', JSON.stringify(second));
    assert.match(second.error.message, /refusing to follow a link: .*\.tmp is a link/);

    const job = await postJob(service, [`${origin.url}/img/tmp-first.jpg`]);
    const done = await untilDone(service, job.id, ['ready', 'failed']);
    assert.deepEqual(written, [], 'no archive packed outside');
    assert.deepEqual(await readdir(outside), ['keep.txt']);
    assert.equal(done.status, 'failed', JSON.stringify(done));
    assert.equal(done.error?.code, 'disk_full');
  });

  it('a host folder swapped for a link leading out while the service runs: the next cover of that host is disk_full, nothing written outside', async (t) => {
    const { origin, covers, outside, dir, start } = await setup(t);
    const service = await start();
    const first = await check(service, 'first', `${origin.url}/img/host-first.jpg`);
    assert.equal(first.status, 'ok');
    // The host folder goes and a link leading out takes its place.
    await rename(path.join(covers, '127.0.0.1'), path.join(dir, 'moved-host'));
    await symlink(outside, path.join(covers, '127.0.0.1'));
    const written = recordWrites(t, outside);

    const second = await check(service, 'second', `${origin.url}/img/host-second.jpg`);
    assert.deepEqual(written, [], 'nothing written outside');
    assert.deepEqual(await readdir(outside), ['keep.txt']);
    assert.notEqual(second.status, 'ok', `never ok with the file outside: ${JSON.stringify(second)}`);
    assert.equal(second.error?.code, 'disk_full');
    assert.match(second.error.message, /refusing to follow a link: .*127\.0\.0\.1 is a link/);
    // The cover stored before is not served through the link either.
    assert.equal((await fetch(`${service.url}/covers/${first.path ?? ''}`)).status, 404);
  });
});
