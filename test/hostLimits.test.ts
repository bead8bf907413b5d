/**
 * The per-host gate (src/upstream/hostGates.ts) on the test clock: rate,
 * concurrency, interactive before bulk, bulk at most half the rate while
 * interactive work is present, cooling, backoff and the probe.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../src/clock.js';
import { CoverError } from '../src/errors.js';
import { HOLD_MS, HostGates } from '../src/upstream/hostGates.js';
import type { Release } from '../src/upstream/hostGates.js';
import { canonicalHost, limitFor, parseHostLimits } from '../src/upstream/hostLimits.js';
import { UpstreamRefusal } from '../src/upstream/types.js';
import type { Priority } from '../src/upstream/types.js';

const host = 'i0.hdslb.com';

function gatesWith(limits: string, clock = new TestClock()) {
  const warnings: { message: string; meta: Record<string, unknown> | undefined }[] = [];
  const infos: { message: string; meta: Record<string, unknown> | undefined }[] = [];
  const logger = { warn: (message: string, meta?: Record<string, unknown>) => warnings.push({ message, meta }), info: (message: string, meta?: Record<string, unknown>) => infos.push({ message, meta }) };
  const gates = new HostGates({ limits: parseHostLimits(limits), clock, logger });
  return { gates, clock, warnings, infos };
}

/** The most starts within any closed window of `windowMs` (starts sorted). */
function busiestWindow(starts: readonly number[], windowMs: number): number {
  let most = 0;
  let j = 0;
  for (let i = 0; i < starts.length; i++) {
    while (starts[i]! - starts[j]! > windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

const bulk = (): Priority => 'bulk';
const interactive = (): Priority => 'interactive';

async function rejection(promise: Promise<unknown>): Promise<CoverError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CoverError, `a CoverError, not ${String(error)}`);
    return error;
  }
  assert.fail('resolved');
}

describe('--host-limits matching', () => {
  it('takes the first entry that matches: exact, *.domain (subdomains only), then *', () => {
    const limits = parseHostLimits('a.example=1/s:1:1,*.example=3/s:3:3');
    assert.equal(limitFor('a.example', limits).rate, 1);
    assert.equal(limitFor('b.a.example', limits).rate, 3);
    assert.equal(limitFor('example', limits).rate, 20, 'the domain itself is not its own subdomain: the default *');
    assert.equal(limitFor('API.bilibili.com', limits).rate, 2, 'the default API entry still applies');
  });

  it('naming * (or *.bilibili.com) keeps the API default in front of it: api.bilibili.com stays at 2/s:4:2', () => {
    for (const text of ['*=10/s:20:8', '*.bilibili.com=10/s:20:8', 'a.example=1/s:1:1,*=10/s:20:8']) {
      const limits = parseHostLimits(text);
      assert.deepEqual(limitFor('api.bilibili.com', limits), { pattern: 'api.bilibili.com', rate: 2, burst: 4, concurrency: 2 }, text);
      assert.equal(limitFor('i0.hdslb.com', limits).rate, text.startsWith('*.') ? 20 : 10, text);
    }
    assert.equal(limitFor('s1.bilibili.com', parseHostLimits('*.bilibili.com=10/s:20:8')).rate, 10);
    assert.equal(limitFor('api.bilibili.com', parseHostLimits('*=10/s:20:8,api.bilibili.com=5/s:5:5')).rate, 10, 'given entries: first match wins');
  });

  it('one name per host: case, trailing dots and IPv6 brackets do not make another host', () => {
    assert.equal(canonicalHost('I0.HDSLB.COM.'), 'i0.hdslb.com');
    assert.equal(canonicalHost('i0.hdslb.com..'), 'i0.hdslb.com');
    assert.equal(canonicalHost('::1'), '[::1]');
    assert.equal(canonicalHost('[::1]'), '[::1]');
    const limits = parseHostLimits('a.example=1/s:1:1,[::1]=7/s:7:7');
    assert.equal(limitFor('A.Example.', limits).rate, 1);
    assert.equal(limitFor('::1', limits).rate, 7);
    assert.equal(limitFor('api.bilibili.com.', limits).rate, 2);
  });
});

describe('HostGates', () => {
  it('1,000 requests to one host: no closed window of T s holds more than burst + rate·T starts, and never more than CONCURRENCY at once', async () => {
    const rate = 5;
    const burst = 10;
    const concurrency = 3;
    const { gates, clock } = gatesWith(`${host}=${rate}/s:${burst}:${concurrency}`);
    const starts: number[] = [];
    let active = 0;
    let mostActive = 0;
    let finished = 0;
    const one = async (i: number) => {
      const release = await gates.acquire(host, bulk);
      starts.push(clock.monotonic());
      active++;
      mostActive = Math.max(mostActive, active);
      // Each request takes its own time (50 ms to 1 s), so slots and tokens both bind by turns.
      await clock.sleep(50 + ((i * 37) % 950));
      active--;
      release('ok');
      finished++;
    };
    const all = Array.from({ length: 1000 }, (_, i) => one(i));
    while (finished < 1000) await clock.advance(250);
    await Promise.all(all);
    assert.equal(starts.length, 1000);
    assert.ok(mostActive <= concurrency, `at most ${concurrency} at once (saw ${mostActive})`);
    assert.equal(mostActive, concurrency, 'the slots were used');
    for (const seconds of [0, 0.5, 1, 2, 10]) {
      const most = busiestWindow(starts, seconds * 1000);
      assert.ok(most <= burst + rate * seconds, `${most} starts in a window of ${seconds} s; the bucket allows ${burst + rate * seconds}`);
    }
    // The whole run: at least as long as the rate says.
    const span = (starts.at(-1)! - starts[0]!) / 1000;
    assert.ok(1000 <= burst + rate * span, `1000 starts in ${span} s`);
    assert.ok(busiestWindow(starts, 1000) >= rate, 'the rate was reached');
  });

  it('serves interactive waiters first (first come within a priority), reading the priority when served', async () => {
    const { gates, clock } = gatesWith(`${host}=1/s:1:1`);
    const order: string[] = [];
    const take = (name: string, priority: () => Priority) =>
      gates.acquire(host, priority).then((release) => {
        order.push(name);
        release('ok');
      });
    const first = await gates.acquire(host, bulk);
    let promoted: Priority = 'bulk';
    const waits = [take('b1', bulk), take('b2', () => promoted), take('b3', bulk), take('i1', interactive), take('i2', interactive)];
    promoted = 'interactive'; // b2's flight was joined by an interactive asker
    first('ok');
    for (let i = 0; i < 10 && order.length < 5; i++) await clock.advance(1000);
    await Promise.all(waits);
    assert.deepEqual(order, ['b2', 'i1', 'i2', 'b1', 'b3']);
  });

  it('while interactive work is present bulk starts at most rate·T/2 (+1 in a window inside it); without it bulk has the whole rate', async () => {
    const rate = 10;
    const { gates, clock } = gatesWith(`${host}=${rate}/s:${rate}:50`);
    const bulkStarts: number[] = [];
    const interactiveWaits: number[] = [];
    let stop = false;
    // Bulk: always 20 waiting (a job).
    const bulkLoop = async () => {
      while (!stop) {
        const release = await gates.acquire(host, bulk);
        bulkStarts.push(clock.monotonic());
        release('ok');
      }
    };
    const loops = Array.from({ length: 20 }, bulkLoop);
    // 5 s of bulk alone.
    await clock.advance(5000);
    const alone = bulkStarts.filter((t) => t < 5000).length;
    assert.ok(alone >= rate * 5, `bulk alone had the whole rate (${alone} starts in 5 s)`);
    // 10 s with an interactive request every 400 ms.
    const presenceStart = clock.monotonic();
    let presenceEnd = 0;
    const interactiveLoop = (async () => {
      for (let i = 0; i < 25; i++) {
        const asked = clock.monotonic();
        const release = await gates.acquire(host, interactive);
        interactiveWaits.push(clock.monotonic() - asked);
        presenceEnd = clock.monotonic();
        release('ok');
        if (i < 24) await clock.sleep(400);
      }
    })();
    while (interactiveWaits.length < 25) await clock.advance(100);
    await interactiveLoop;
    const during = bulkStarts.filter((t) => t > presenceStart && t <= presenceEnd);
    const seconds = (presenceEnd - presenceStart) / 1000;
    assert.ok(during.length <= (rate * seconds) / 2, `bulk started ${during.length} times in ${seconds} s of interactive work; half the rate allows ${(rate * seconds) / 2}`);
    assert.ok(during.length >= (rate * seconds) / 2 - 2 * seconds, `bulk was not starved (${during.length})`);
    for (const windowS of [0.5, 1, 3]) {
      const most = busiestWindow(during, windowS * 1000);
      assert.ok(most <= 1 + (rate * windowS) / 2, `${most} bulk starts in a window of ${windowS} s`);
    }
    assert.ok(interactiveWaits.every((ms) => ms <= 1000 / rate), `interactive requests waited at most one token's time: ${interactiveWaits.join(',')}`);
    // After the presence ends (HOLD_MS later), bulk has the whole rate again.
    await clock.advance(presenceEnd + HOLD_MS + 5000 - clock.monotonic());
    const after = bulkStarts.filter((t) => t > presenceEnd + HOLD_MS).length;
    assert.ok(after >= rate * 4, `bulk had the whole rate back (${after} in 5 s)`);
    stop = true;
    await clock.advance(5000);
    await Promise.all(loops);
  });

  it('tryAcquire takes a slot at once only when acquire would serve it at once: never before a waiter, without a token or a slot, while cooling, or for a host not seen yet', async () => {
    const { gates, clock } = gatesWith(`${host}=1/s:2:2`);
    assert.equal(gates.tryAcquire(host, bulk), undefined, 'a host not seen yet: acquire makes its state');
    const first = await gates.acquire(host, bulk);
    const second = gates.tryAcquire(host, bulk);
    assert.ok(second, 'a token and a slot are free');
    assert.equal(gates.tryAcquire(host, interactive), undefined, 'both slots are held');
    first('ok');
    assert.equal(gates.tryAcquire(host, bulk), undefined, 'a slot is free but the bucket (burst 2) is empty');
    const waiting = gates.acquire(host, bulk);
    await clock.advance(1000);
    const third = await waiting;
    second('ok');
    await clock.advance(1000);
    const queued = gates.acquire(host, bulk);
    const fourth = await queued;
    assert.equal(gates.tryAcquire(host, interactive), undefined, 'both slots are held again');
    fourth('ok');
    // A waiter first (waiting for a token): tryAcquire does not pass it.
    const behind = gates.acquire(host, bulk);
    assert.equal(gates.tryAcquire(host, interactive), undefined);
    third('ok');
    await clock.advance(1000);
    (await behind)('ok');
    await clock.advance(2000);
    const refused = gates.tryAcquire(host, bulk)!;
    refused(new UpstreamRefusal(host, 'HTTP 429'));
    assert.ok(gates.coolingUntil(host) !== undefined, 'a release from tryAcquire cools the host like any other');
    assert.equal(gates.tryAcquire(host, bulk), undefined, 'cooling');
    assert.deepEqual(gates.counts().get(host), { ok: 5, refused: 1, error: 0 });
  });

  it('an aborted waiter leaves at once; past the waiter cap acquire is refused with a clear error', async () => {
    const clock = new TestClock();
    const gates = new HostGates({ limits: parseHostLimits(`${host}=1/s:1:1`), clock, maxWaiters: 2 });
    const held = await gates.acquire(host, bulk);
    const controller = new AbortController();
    const aborted = gates.acquire(host, bulk, controller.signal);
    const next = gates.acquire(host, bulk);
    const refused = await rejection(gates.acquire(host, bulk));
    assert.equal(refused.code, 'upstream_limited');
    assert.match(refused.message, /2 requests already wait for i0\.hdslb\.com/);
    controller.abort(new Error('gone'));
    await assert.rejects(aborted, /gone/);
    held('ok');
    await clock.advance(1000);
    const release = await next; // the aborted one took nothing
    release('ok');
  });

  it('cools on a refusal: acquire rejects at once with upstream_limited and retryAt, waiters too; one probe reopens', async () => {
    const { gates, clock, warnings } = gatesWith(`${host}=100/s:100:2`);
    const changes: string[] = [];
    gates.onChange((name) => changes.push(`${name}:${gates.coolingUntil(name) === undefined ? 'open' : 'closed'}`));
    const a = await gates.acquire(host, bulk);
    const b = await gates.acquire(host, bulk);
    const waiting = gates.acquire(host, interactive);
    const cooledAt = clock.now();
    a(new UpstreamRefusal(host, 'HTTP 429'));
    const waiterError = await rejection(waiting);
    assert.equal(waiterError.code, 'upstream_limited');
    assert.equal(waiterError.retryAt, cooledAt + 30_000);
    const error = await rejection(gates.acquire(host, interactive));
    assert.equal(error.retryAt, cooledAt + 30_000);
    assert.match(error.message, /i0\.hdslb\.com is cooling after HTTP 429/);
    assert.equal(gates.coolingUntil(host), cooledAt + 30_000);
    // A request sent before the cooling, refused too: no second cooling, no second line.
    b(new UpstreamRefusal(host, 'HTTP 429'));
    assert.equal(gates.coolingUntil(host), cooledAt + 30_000);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.meta!.host, host);
    assert.equal(warnings[0]!.meta!.why, 'HTTP 429');
    assert.equal(warnings[0]!.meta!.until, new Date(cooledAt + 30_000).toISOString());
    assert.deepEqual(gates.status(), [{ host, state: 'cooling', retryAt: cooledAt + 30_000, reason: 'HTTP 429', cooledAt }]);
    await clock.advance(29_999);
    await rejection(gates.acquire(host, bulk));
    await clock.advance(1);
    // Reopening time: one probe goes, the others wait behind it (not refused).
    const probe = await gates.acquire(host, bulk);
    let second: Release | undefined;
    const behind = gates.acquire(host, interactive).then((r) => (second = r));
    await clock.advance(100);
    assert.equal(second, undefined, 'waits behind the probe');
    probe('ok');
    await behind;
    second!('ok');
    assert.equal(gates.coolingUntil(host), undefined);
    assert.equal(warnings.length, 2);
    assert.equal(warnings[1]!.message, 'upstream host reopened');
    assert.equal(warnings[1]!.meta!.afterS, 30);
    assert.deepEqual(changes, [`${host}:closed`, `${host}:open`, `${host}:open`], 'cooling, probe let through, reopened');
    assert.deepEqual(gates.status(), [{ host, state: 'open', reason: 'HTTP 429', cooledAt }]);
    assert.deepEqual(gates.counts().get(host), { ok: 2, refused: 2, error: 0 });
    await clock.advance(60 * 60_000 + 1);
    assert.deepEqual(gates.status(), [], 'shown for an hour');
  });

  it('the log: one warn line when a host starts cooling and one when it reopens; a refused probe (still cooling) is an info line', async () => {
    const { gates, clock, warnings, infos } = gatesWith(`${host}=100/s:100:2`);
    const first = clock.now();
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429', 2000));
    await clock.advance(2000);
    // The probe is refused too, without Retry-After: the host never reopened; the backoff is still the first (a Retry-After cooling does not double it).
    const probeAt = clock.now();
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 503'));
    assert.deepEqual(warnings.map((w) => w.message), ['upstream host cooling: nothing is sent to it until then']);
    assert.deepEqual(warnings[0]!.meta, { host, why: 'HTTP 429', until: new Date(first + 2000).toISOString(), seconds: 2 });
    assert.deepEqual(infos, [{ message: 'upstream host still cooling: its probe was refused', meta: { host, why: 'HTTP 503', until: new Date(probeAt + 30_000).toISOString(), seconds: 30 } }]);
    await clock.advance(30_000);
    (await gates.acquire(host, bulk))('ok');
    assert.deepEqual(warnings.map((w) => w.message), ['upstream host cooling: nothing is sent to it until then', 'upstream host reopened']);
    assert.deepEqual(warnings[1]!.meta, { host, why: 'HTTP 503', afterS: 32 });
    // A later refusal is a new start: a warn line again.
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 412'));
    assert.equal(warnings.length, 3);
    assert.equal(warnings[2]!.message, 'upstream host cooling: nothing is sent to it until then');
    assert.equal(warnings[2]!.meta!.why, 'HTTP 412');
    assert.equal(infos.length, 1);
  });

  it('backoff: 30 s doubling to 30 min while probes are refused, back to 30 s after a success; Retry-After wins (capped at 1 h, at least 1 s)', async () => {
    const { gates, clock } = gatesWith(`${host}=100/s:100:2`);
    const refuseOnce = async (retryAfterMs?: number): Promise<number> => {
      const release = await gates.acquire(host, bulk);
      const at = clock.now();
      release(new UpstreamRefusal(host, 'HTTP 412', retryAfterMs));
      const until = gates.coolingUntil(host)!;
      await clock.advance(until - clock.now());
      return until - at;
    };
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) waits.push(await refuseOnce());
    assert.deepEqual(waits, [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_800_000, 1_800_000]);
    (await gates.acquire(host, bulk))('ok');
    assert.equal(gates.coolingUntil(host), undefined);
    assert.equal(await refuseOnce(), 30_000, 'a success resets the backoff');
    (await gates.acquire(host, bulk))('ok');
    assert.equal(await refuseOnce(5000), 5000);
    (await gates.acquire(host, bulk))('ok');
    assert.equal(await refuseOnce(10 * 3_600_000), 3_600_000);
    (await gates.acquire(host, bulk))('ok');
    assert.equal(await refuseOnce(0), 1000);
    // A refusal heard after its slot was given back (an API answer's code) cools the host too.
    (await gates.acquire(host, bulk))('ok');
    gates.refused(new UpstreamRefusal(host, 'API code -352'));
    assert.equal(gates.coolingUntil(host), clock.now() + 30_000);
    // Other hosts are not touched.
    (await gates.acquire('other.example', bulk))('ok');
  });

  it('a host spelled with capitals or a trailing dot is the same host: one bucket, one cooling', async () => {
    const { gates, clock } = gatesWith(`${host}=1/s:1:5`);
    const spelled = 'I0.HDSLB.COM.';
    const first = await gates.acquire(host, bulk);
    let second: Release | undefined;
    const secondWait = gates.acquire(spelled, bulk).then((r) => (second = r));
    await clock.advance(500);
    assert.equal(second, undefined, 'the bucket is shared: no second token within the first second');
    await clock.advance(500);
    await secondWait;
    first('ok');
    second!('ok');
    await clock.advance(1000);
    // Cooling under one spelling refuses every other at once, and a refusal named with a dot cools the same host.
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429'));
    const until = gates.coolingUntil(host);
    assert.ok(until !== undefined);
    assert.equal(gates.coolingUntil(spelled), until);
    assert.equal(gates.coolingUntil('i0.hdslb.com.'), until);
    assert.equal((await rejection(gates.acquire(spelled, interactive))).retryAt, until);
    assert.equal((await rejection(gates.acquire('i0.hdslb.com.', bulk))).retryAt, until);
    gates.refused(new UpstreamRefusal('OTHER.example.', 'API code -352'));
    assert.ok(gates.coolingUntil('other.example') !== undefined);
    assert.deepEqual([...gates.counts().keys()].sort(), [host, 'other.example']);
    assert.deepEqual(gates.status().map((s) => s.host).sort(), [host, 'other.example']);
  });

  it('20,000 hosts that each refuse (--allow-hosts * under attack): at most 10,000 host states; past them a new host is refused for 1 s, not kept', async () => {
    const clock = new TestClock();
    const gates = new HostGates({ limits: parseHostLimits('*=100/s:100:2'), clock });
    const cap = 10_000;
    const api = 'api.bilibili.com';
    let admitted = 0;
    let turnedAway = 0;
    let most = 0;
    const attack = async (prefix: string, count: number, stepMs: number) => {
      for (let i = 0; i < count; i++) {
        const name = `${prefix}-${i}.attacker.example`;
        try {
          (await gates.acquire(name, bulk))(new UpstreamRefusal(name, 'HTTP 429', 3_600_000));
          admitted++;
        } catch (error) {
          assert.ok(error instanceof CoverError && error.code === 'upstream_limited', String(error));
          assert.equal(error.retryAt, clock.now() + 1000);
          assert.match(error.message, /10000 upstream hosts are busy or cooling/);
          turnedAway++;
        }
        if (i % 500 === 0) most = Math.max(most, gates.counts().size);
        if (stepMs > 0) await clock.advance(stepMs);
      }
    };
    // Real hosts in use before the attack: an image host (the * entry) and the API (named exactly by the default entries).
    (await gates.acquire(host, bulk))('ok');
    (await gates.acquire(api, bulk))('ok');
    // Each cools for an hour (its Retry-After): none can be forgotten, so once 10,000 are kept new ones are turned away.
    await attack('a', 20_000, 0);
    most = Math.max(most, gates.counts().size);
    assert.ok(most <= cap, `at most ${cap} host states (saw ${most})`);
    assert.equal(admitted, cap, 'the idle real hosts, the least recently used, made room');
    assert.equal(turnedAway, 20_000 - admitted);
    // A cooling host kept says its own time; a new image host waits with the others; the API is never shut out.
    assert.equal((await rejection(gates.acquire('a-0.attacker.example', bulk))).retryAt, gates.coolingUntil('a-0.attacker.example'));
    assert.equal((await rejection(gates.acquire(host, bulk))).retryAt, clock.now() + 1000);
    (await gates.acquire(api, bulk))('ok');
    assert.ok(gates.counts().size <= cap + 1);
    // When the coolings end, idle hosts make room for new ones, the least recently used first.
    await clock.advance(3_600_000);
    admitted = turnedAway = 0;
    await attack('b', 5000, 0);
    assert.equal(turnedAway, 0);
    assert.ok(gates.counts().size <= cap + 1, `${gates.counts().size}`);
    assert.ok(gates.counts().has('b-4999.attacker.example'));
    const kept = [...gates.counts().keys()];
    assert.equal(kept.filter((name) => name.startsWith('b-')).length, 5000);
    assert.ok(kept.filter((name) => name.startsWith('a-')).length <= cap - 5000, 'idle ones made room');
    gates.close();
  });

  it('outcomes of requests let through before a cooling change nothing (counted only); only the probe decides; a Retry-After cooling does not double the backoff', async () => {
    const { gates, clock, warnings, infos } = gatesWith(`${host}=100/s:100:4`);
    // Two requests go out; one is refused (no Retry-After): 30 s, the next backoff 60 s.
    const early = await gates.acquire(host, bulk);
    const late = await gates.acquire(host, bulk);
    const earlyOk = await gates.acquire(host, bulk);
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429'));
    assert.equal(gates.coolingUntil(host), clock.now() + 30_000);
    await clock.advance(30_000);
    // Reopening time, no probe out yet: a refusal of a request sent before the cooling does not cool the host again.
    const lateRefusal = new UpstreamRefusal(host, 'HTTP 429');
    early(lateRefusal);
    assert.equal(gates.coolingUntil(host), undefined, 'not cooled again by a request from before');
    gates.refused(lateRefusal); // the fetch path hears it again outside the slot: still nothing
    assert.equal(gates.coolingUntil(host), undefined);
    // The probe goes; a success from before the cooling neither reopens the host nor resets the backoff.
    const probe = await gates.acquire(host, bulk);
    earlyOk('ok');
    assert.equal(gates.status()[0]!.state, 'cooling', 'the probe is still out');
    let behind: Release | undefined;
    const behindWait = gates.acquire(host, bulk).then((r) => (behind = r));
    await clock.advance(10);
    assert.equal(behind, undefined, 'still waiting behind the probe');
    probe(new UpstreamRefusal(host, 'HTTP 429'));
    await assert.rejects(behindWait);
    const probedAt = clock.now();
    assert.equal(gates.coolingUntil(host), probedAt + 60_000, 'the backoff doubled once: the success from before did not reset it');
    // A success from before, heard while cooling: nothing.
    late('ok');
    assert.equal(gates.coolingUntil(host), probedAt + 60_000);
    await clock.advance(60_000);
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 503'));
    assert.equal(gates.coolingUntil(host) ?? 0, clock.now() + 120_000, 'and again: 120 s');
    assert.deepEqual(gates.counts().get(host), { ok: 2, refused: 4, error: 0 }, 'every outcome counted once');
    assert.equal(warnings.length, 1, 'one cooling, never reopened');
    assert.equal(infos.length, 2);
    // A Retry-After cooling leaves the backoff as it was.
    await clock.advance(120_000);
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429', 5000));
    await clock.advance(5000);
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429'));
    assert.equal(gates.coolingUntil(host), clock.now() + 240_000, 'the backoff doubled by the 120 s cooling only');
    void behind;
  });

  it('a probe that is aborted lets the next waiter probe; an error answer reopens', async () => {
    const { gates, clock } = gatesWith(`${host}=100/s:100:4`);
    (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 503', 2000));
    await clock.advance(2000);
    const probe = await gates.acquire(host, bulk);
    let next: Release | undefined;
    const nextWait = gates.acquire(host, bulk).then((r) => (next = r));
    await clock.advance(10);
    assert.equal(next, undefined);
    probe('aborted');
    await nextWait;
    let third: Release | undefined;
    const thirdWait = gates.acquire(host, bulk).then((r) => (third = r));
    await clock.advance(10);
    assert.equal(third, undefined, 'the second waiter is now the probe');
    next!('error');
    await thirdWait;
    third!('ok');
    assert.equal(gates.coolingUntil(host), undefined);
  });
});
