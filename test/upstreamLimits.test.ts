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
import { waitUntil } from './helpers/db.js';
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
      // Refuses the 6th and 7th requests: one at a time (concurrency 1), so the 7th is the first probe (after 1 s),
      // refused again, and the 8th, the second probe, reopens. By hit number, not by time: however late the probe
      // comes on a loaded machine, it is refused.
      const origin = await countingOrigin(t, {
        delayMs: 20,
        refuse: (hit) => (hit === 6 || hit === 7 ? { status, headers } : undefined),
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
      await waitUntil(() => origin.served.size >= 20, 'every parked URL fetched after the reopening', 15_000);
      const after = await client.check('after', urls, 15_000);
      assert.equal(after.done.ok, 20, JSON.stringify(resultsOf(after.done).filter((r) => r.status !== 'ok')));
      assert.ok(resultsOf(after.done).every((r) => r.status === 'ok'));
      for (const url of urls) assert.equal(origin.served.get(new URL(url).pathname), 1, `${url} downloaded once`);
      // One cooling (its first probe was refused too: still cooling, an info line) and one reopening, each said once at warn.
      const warned = svc.logs.filter((line) => line.level === 'warn' && line.message.startsWith('upstream host'));
      assert.deepEqual(warned.map((line) => line.message), ['upstream host cooling: nothing is sent to it until then', 'upstream host reopened']);
      assert.equal(svc.logs.filter((line) => line.message === 'upstream host still cooling: its probe was refused' && line.level === 'info').length, 1);
      assert.equal(svc.logs.filter((line) => line.message === 'download failed').length, 0, 'a refusal is not a failure');
    });
  }

  it('412 without Retry-After: cools for the 30 s backoff; asks meanwhile answered at once, nothing sent, the task stays queued', async (t) => {
    const origin = await countingOrigin(t, { refuse: (hit) => (hit >= 3 ? { status: 412 } : undefined) });
    const svc = await service(t, ['--host-limits', '127.0.0.1=100/s:100:1', '--admin-token', 'upstream-admin-token-0123456789']);
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
    const tasksIn = async (status: string) => JSON.stringify(await (await fetch(`${svc.url}/admin/api/tasks?status=${status}`, { headers: { authorization: 'Bearer upstream-admin-token-0123456789' } })).json());
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
    await waitUntil(() => origin.hits.filter(isJob).length >= 30, '30 job requests sent', 60_000);
    const checksFrom = Date.now();
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
    // Before the checks it had the whole rate: its busiest second of the 30 requests (3 s at the rate) it sent alone
    // holds more than half the rate's worth (a stall of the machine at the job's start does not decide it).
    const jobAlone = origin.hits.filter((h) => isJob(h) && h.at < checksFrom).map((h) => h.at);
    assert.ok(busiest(jobAlone, 1000) >= rate - 2, `alone the job had the rate (at most ${busiest(jobAlone, 1000)} in a second)`);
  });
});

/** Prometheus text: the value of the sample `name` whose labels are exactly `labels`, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = Object.fromEntries([...m[2]!.matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (JSON.stringify(Object.entries(found).sort()) === JSON.stringify(Object.entries(labels).sort())) return Number(m[3]);
  }
  return undefined;
}

describe('seen by the operator (real process)', () => {
  it('429 with Retry-After: 2 after 3 requests: /healthz, /metrics and the admin stream show the host cooling with retryAt, then open; one warn line for the start and one for the stop', async (t) => {
    const token = 'upstream-other-token-0123456789';
    // Refuses from the 4th request for 1.5 s: the one request in flight is refused; the probe (2 s later, the 5th)
    // is answered when the test says, so the test sees the host before it reopens whatever the machine's speed.
    let refusingSince: number | undefined;
    let answerProbe!: () => void;
    const probeAnswered = new Promise<void>((resolve) => (answerProbe = resolve));
    t.after(() => answerProbe());
    const origin = await countingOrigin(t, {
      refuse: (hit) => {
        if (hit <= 3) return undefined;
        refusingSince ??= Date.now();
        return Date.now() - refusingSince < 1500 ? { status: 429, headers: { 'retry-after': '2' } } : undefined;
      },
      hold: (hit) => (hit === 5 ? probeAnswered : undefined),
    });
    const svc = await service(t, ['--host-limits', '127.0.0.1=100/s:100:1', '--admin-token', token]);
    const health = async () => {
      const res = await fetch(`${svc.url}/healthz`);
      assert.equal(res.status, 200, 'a cooling host is not the node’s fault: /healthz stays 200');
      return (await res.json()) as { status: string; upstream?: Record<string, { state: string; retryAt?: string }> };
    };
    const metrics = async () => {
      const text = await (await fetch(`${svc.url}/metrics`)).text();
      return {
        ok: sample(text, 'coverhelper_upstream_requests_total', { host: '127.0.0.1', outcome: 'ok' }),
        refused: sample(text, 'coverhelper_upstream_requests_total', { host: '127.0.0.1', outcome: 'refused' }),
        error: sample(text, 'coverhelper_upstream_requests_total', { host: '127.0.0.1', outcome: 'error' }),
        cooling: sample(text, 'coverhelper_upstream_cooling', { host: '127.0.0.1' }),
      };
    };
    // Nothing cooled yet: no `upstream` at all, no host labelled.
    assert.equal((await health()).upstream, undefined);
    assert.deepEqual(await metrics(), { ok: undefined, refused: undefined, error: undefined, cooling: undefined });

    const admin = await connect(`${svc.url.replace('http:', 'ws:')}/admin/ws?token=${token}`);
    t.after(() => admin.close());
    const client = await connect(svc.wsUrl);
    t.after(() => client.close());
    const urls = Array.from({ length: 10 }, (_, i) => `${origin.url}/img/seen-${i}.jpg`);
    const { done } = await client.check('first', urls, 15_000);
    assert.equal(done.ok, 3);
    const limited = resultsOf(done).filter((r) => r.status === 'error');
    assert.equal(limited.length, 7);
    const retryAt = limited[0]!.retryAt!;
    assert.ok(limited.every((r) => r.error?.code === 'upstream_limited' && r.retryAt === retryAt), JSON.stringify(limited));

    // Cooling (2 s, then until the probe is answered): /healthz says so with the same retryAt, the status stays ready;
    // /metrics counts 3 ok and 1 refused and shows the host cooling; the admin stream carries it with why and since when.
    const seenCooling = async () => {
      const now = await health();
      assert.equal(now.status, 'ready');
      assert.deepEqual(now.upstream, { '127.0.0.1': { state: 'cooling', retryAt } });
      assert.deepEqual(await metrics(), { ok: 3, refused: 1, error: 0, cooling: 1 });
      const frame = await admin.next((f) => f.type === 'stats' && f.upstream !== undefined, 5000);
      const shown = (frame.upstream as Record<string, { state: string; retryAt?: string; reason?: string; cooledAt?: string }>)['127.0.0.1']!;
      assert.deepEqual({ ...shown, cooledAt: undefined }, { state: 'cooling', retryAt, reason: 'HTTP 429', cooledAt: undefined });
      const cooledFor = Date.parse(retryAt) - Date.parse(shown.cooledAt!);
      assert.ok(cooledFor === 2000, `cooledAt is the refusal, 2 s before retryAt: ${JSON.stringify(shown)}`);
      admin.frames.length = 0;
    };
    await seenCooling();
    // The probe is out (the origin holds its answer): still cooling, nothing else sent.
    await waitUntil(() => origin.hits.length >= 5, 'the probe sent', 60_000);
    await seenCooling();
    assert.equal(origin.hits.length, 5, 'nothing but the probe while cooling');

    // It reopens (the probe is answered) and the parked URLs are fetched.
    answerProbe();
    await svc.waitForLog((line) => line.message === 'upstream host reopened', 15_000);
    await waitUntil(() => origin.served.size >= 10, 'every URL fetched after the reopening', 15_000);
    assert.equal(origin.served.size, 10, 'every URL fetched after the reopening');
    // Shown for the hour as open, without retryAt; the gauge is 0.
    assert.deepEqual((await health()).upstream, { '127.0.0.1': { state: 'open' } });
    assert.deepEqual(await metrics(), { ok: 10, refused: 1, error: 0, cooling: 0 });
    const reopened = await admin.next((f) => f.type === 'stats' && (f.upstream as Record<string, { state: string }> | undefined)?.['127.0.0.1']?.state === 'open', 5000);
    assert.deepEqual(Object.keys((reopened.upstream as Record<string, { reason?: string }>)['127.0.0.1']!).sort(), ['cooledAt', 'reason', 'state']);
    assert.equal(origin.hits.filter((hit) => hit.status === 429).length, 1, 'one request refused: nothing was sent while cooling');

    // The log: one warn line when it started cooling (why, until) and one when it stopped, nothing else about it.
    const about = svc.logs.filter((line) => line.host === '127.0.0.1' && line.message.startsWith('upstream host'));
    assert.deepEqual(about.map((line) => [line.level, line.message]), [
      ['warn', 'upstream host cooling: nothing is sent to it until then'],
      ['warn', 'upstream host reopened'],
    ]);
    assert.equal(about[0]!.why, 'HTTP 429');
    assert.equal(about[0]!.until, retryAt);
    assert.equal(about[1]!.why, 'HTTP 429');
  });
});
