/**
 * Per-host limits and cooling against the real service process and a real
 * origin on 127.0.0.1: the origin counts what reaches it (when, how many at
 * once, per URL), and refuses on demand.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { countingOrigin } from './helpers/countingOrigin.js';
import type { Hit } from './helpers/countingOrigin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

async function service(t: TestContext, args: string[]): Promise<Service> {
  const dir = await tempDir(t);
  const started = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', ...args]);
  t.after(async () => void (await started.stop()));
  return started;
}

/** The most arrivals within any closed window of `windowMs`. */
function busiest(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! > windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

const resultsOf = (done: Frame) => done.results as { url: string; status: string; error?: { code: string }; retryAt?: string }[];

describe('per-host limits (real process)', () => {
  it('60 URLs asked at once: the origin never sees more than burst + rate in a second, nor more than 2 at once', async (t) => {
    const origin = await countingOrigin(t, { delayMs: 50 });
    const svc = await service(t, ['--host-limits', '127.0.0.1=5/s:5:2,*=100/s:100:50', '--workers', '20']);
    const client = await connect(svc.wsUrl);
    t.after(() => client.close());
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/img/rate-${i}.jpg`);
    const { done } = await client.check('rate', urls, 30_000);
    assert.equal(done.ok, 60);
    const times = origin.hits.map((hit) => hit.at);
    assert.equal(times.length, 60, 'one request per URL');
    assert.ok(busiest(times, 1000) <= 10, `at most 5 + 5 in any second (saw ${busiest(times, 1000)})`);
    assert.ok(origin.maxOpen() <= 2, `at most 2 at once (saw ${origin.maxOpen()})`);
    // 60 requests at 5/s after a burst of 5 take at least 11 s.
    assert.ok(Math.max(...times) - Math.min(...times) >= 10_000, 'the rate held the requests back');
  });
});

describe('cooling on refusal (real process)', () => {
  for (const [name, status, headers] of [
    ['429 with Retry-After', 429, { 'retry-after': '1' }],
    ['503 with Retry-After', 503, { 'retry-after': '1' }],
  ] as const) {
    it(`${name}: askers answered at once with upstream_limited and retryAt, nothing sent while cooling, every URL stored once after reopening`, async (t) => {
      // Refuses from the 6th request for 1.5 s: the first probe (after 1 s) is refused again, the second reopens.
      let refusingSince: number | undefined;
      const origin = await countingOrigin(t, {
        delayMs: 20,
        refuse: (hit) => {
          if (hit <= 5) return undefined;
          refusingSince ??= Date.now();
          return Date.now() - refusingSince < 1500 ? { status, headers } : undefined;
        },
      });
      const svc = await service(t, ['--host-limits', '127.0.0.1=100/s:100:1', '--fail-ttl', '300']);
      const client = await connect(svc.wsUrl);
      t.after(() => client.close());
      const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/img/cool-${i}.jpg`);
      const { done } = await client.check('first', urls, 15_000);
      const answeredAt = Date.now();
      const results = resultsOf(done);
      const limited = results.filter((r) => r.status === 'error');
      assert.equal(done.ok, 5);
      assert.equal(limited.length, 15);
      for (const r of limited) {
        assert.equal(r.error!.code, 'upstream_limited');
        assert.ok(r.retryAt !== undefined && Date.parse(r.retryAt) > Date.now() - 1000, `retryAt ${r.retryAt}`);
      }
      const retryAt = Math.min(...limited.map((r) => Date.parse(r.retryAt!)));
      assert.ok(answeredAt < retryAt, 'answered before the host reopened: nobody waited for it');
      // Asked again while cooling: answered at once, nothing sent.
      const before = origin.hits.length;
      const again = await client.check('again', urls.slice(5, 10), 5000);
      if (Date.now() < retryAt) {
        assert.ok(resultsOf(again.done).every((r) => r.error?.code === 'upstream_limited'));
        assert.equal(origin.hits.length, before);
      }
      // One refusal was sent before the cooling began; nothing reached the origin until the reopening time.
      const refusedAt = origin.hits.find((hit) => hit.status !== 200)!.at;
      const whileCooling = origin.hits.filter((hit) => hit.at > refusedAt + 5 && hit.at < retryAt - 5);
      assert.deepEqual(whileCooling, [], 'no request while cooling');
      await svc.waitForLog((line) => line.message === 'upstream host cooling: nothing is sent to it until then' && line.why === `HTTP ${status}`);
      // The parked URLs are fetched after reopening, by themselves.
      await svc.waitForLog((line) => line.message === 'upstream host reopened', 15_000);
      const deadline = Date.now() + 15_000;
      while (origin.served.size < 20 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      const after = await client.check('after', urls, 15_000);
      assert.equal(after.done.ok, 20, JSON.stringify(resultsOf(after.done).filter((r) => r.status !== 'ok')));
      assert.ok(resultsOf(after.done).every((r) => r.status === 'ok'));
      for (const url of urls) assert.equal(origin.served.get(new URL(url).pathname), 1, `${url} downloaded once`);
      // Two coolings (the first probe was refused too), one reopening, each said once.
      assert.equal(svc.logs.filter((line) => line.message === 'upstream host cooling: nothing is sent to it until then').length, 2);
      assert.equal(svc.logs.filter((line) => line.message === 'upstream host reopened').length, 1);
      assert.equal(svc.logs.filter((line) => line.message === 'download failed').length, 0, 'a refusal is not a failure');
    });
  }

  it('412 without Retry-After: cools for the 30 s backoff; asks meanwhile answered at once, nothing sent, the task stays queued', async (t) => {
    const origin = await countingOrigin(t, { refuse: (hit) => (hit >= 3 ? { status: 412 } : undefined) });
    const svc = await service(t, ['--host-limits', '127.0.0.1=100/s:100:1', '--admin-token', 'a'.repeat(32)]);
    const client = await connect(svc.wsUrl);
    t.after(() => client.close());
    const urls = Array.from({ length: 6 }, (_, i) => `${origin.url}/img/b-${i}.jpg`);
    const { done } = await client.check('first', urls, 10_000);
    const now = Date.now();
    assert.equal(done.ok, 2);
    const limited = resultsOf(done).filter((r) => r.status === 'error');
    assert.equal(limited.length, 4);
    for (const r of limited) {
      assert.equal(r.error!.code, 'upstream_limited');
      const wait = Date.parse(r.retryAt!) - now;
      assert.ok(wait > 25_000 && wait <= 30_000, `about 30 s (${wait} ms)`);
    }
    const sent = origin.hits.length;
    assert.equal(sent, 3);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const again = await client.check('again', urls, 5000);
    assert.ok(resultsOf(again.done).slice(2).every((r) => r.error?.code === 'upstream_limited'));
    assert.equal(origin.hits.length, sent, 'nothing sent while cooling');
    // The tasks stay queued: not an error, nothing remembered.
    const tasksIn = async (status: string) => JSON.stringify(await (await fetch(`${svc.url}/admin/api/tasks?status=${status}`, { headers: { authorization: `Bearer ${'a'.repeat(32)}` } })).json());
    assert.ok(!(await tasksIn('error')).includes('/img/b-'), 'no task in error');
    const queued = await tasksIn('queued');
    for (const url of urls.slice(2)) assert.ok(queued.includes(url), `${url} queued: ${queued}`);
  });
});

describe('interactive before bulk (real process)', () => {
  it('a 2,000-URL job on a slow host, then /ws checks: each starts within one free worker slot, and the job gets at most half the rate meanwhile', async (t) => {
    const origin = await countingOrigin(t, { delayMs: 100 });
    const rate = 10;
    const workers = 10;
    const svc = await service(t, ['--host-limits', `127.0.0.1=${rate}/s:1:2`, '--workers', String(workers), '--max-batch', '2000']);
    const urls = Array.from({ length: 2000 }, (_, i) => `${origin.url}/img/job-${i}.jpg`);
    const created = await fetch(`${svc.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls }) });
    assert.equal(created.status, 201);
    const isJob = (hit: Hit) => hit.path.startsWith('/img/job-');
    while (origin.hits.filter(isJob).length < 20) await new Promise((resolve) => setTimeout(resolve, 50));
    const client = await connect(svc.wsUrl);
    t.after(() => client.close());
    const arrivals: number[] = [];
    for (let i = 0; i < 5; i++) {
      const sentAt = Date.now();
      const jobBefore = origin.hits.filter(isJob).length;
      const { done } = await client.check(`live-${i}`, [`${origin.url}/img/live-${i}.jpg`], 10_000);
      assert.equal(done.ok, 1);
      const hit = origin.hits.find((h) => h.path === `/img/live-${i}.jpg`)!;
      assert.ok(hit.at >= sentAt - 5);
      arrivals.push(hit.at);
      const jobMeanwhile = origin.hits.filter((h) => isJob(h) && h.at <= hit.at).length - jobBefore;
      assert.ok(jobMeanwhile <= workers, `the check started within one free worker slot (${jobMeanwhile} job requests before it)`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // While interactive work was present (from the first check's request to the last's plus the hold), the job had at most half the rate.
    const from = arrivals[0]!;
    const to = arrivals.at(-1)! + 900;
    const jobDuring = origin.hits.filter((h) => isJob(h) && h.at > from && h.at <= to).length;
    const allowed = 1 + (rate * (to - from)) / 2000;
    assert.ok(jobDuring <= allowed + 1, `the job sent ${jobDuring} requests in ${to - from} ms of interactive work; half the rate allows ${allowed.toFixed(1)}`);
    // Before the checks it had the whole rate.
    const firstJob = origin.hits.find(isJob)!.at;
    const jobBeforeChecks = origin.hits.filter((h) => isJob(h) && h.at >= firstJob + 500 && h.at < firstJob + 1500).length;
    assert.ok(jobBeforeChecks >= rate - 2, `alone the job had the rate (${jobBeforeChecks} in 1 s)`);
  });
});
