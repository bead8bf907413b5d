/**
 * What the operator is shown of the per-host gates (src/upstream/shown.ts and
 * the `/metrics` families), from real gates on the test clock and a real
 * prom-client registry: the shapes, the order, and the bound on hosts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../src/clock.js';
import { createMetrics } from '../src/servers/metrics.js';
import { Stats } from '../src/stats.js';
import { HostGates } from '../src/upstream/hostGates.js';
import { parseHostLimits } from '../src/upstream/hostLimits.js';
import { MAX_SHOWN_HOSTS, metricHosts, upstreamFrame, upstreamHealth } from '../src/upstream/shown.js';
import { UpstreamRefusal } from '../src/upstream/types.js';

const bulk = () => 'bulk' as const;

function gatesOn(clock: TestClock) {
  return new HostGates({ limits: parseHostLimits('*=1000/s:1000:100'), clock });
}

function metricsOf(gates: HostGates) {
  return createMetrics({
    stats: new Stats(),
    version: 'test',
    status: () => 'ready',
    counts: () => ({ queued: 0, downloading: 0, actors: 0 }),
    resources: () => undefined,
    upstream: { counts: () => gates.counts(), status: () => gates.status() },
  });
}

describe('the upstream as the operator sees it', () => {
  it('healthz and frame shapes: cooling with retryAt, open without; why and when in the frame only; a host named __proto__ stays a key', async () => {
    const clock = new TestClock();
    const gates = gatesOn(clock);
    const t0 = clock.now();
    (await gates.acquire('a.example', bulk))(new UpstreamRefusal('a.example', 'HTTP 429', 5000));
    (await gates.acquire('__proto__', bulk))(new UpstreamRefusal('__proto__', 'API code -352'));
    (await gates.acquire('quiet.example', bulk))('ok');
    assert.deepEqual(upstreamHealth(gates.status()), {
      'a.example': { state: 'cooling', retryAt: new Date(t0 + 5000).toISOString() },
      ['__proto__']: { state: 'cooling', retryAt: new Date(t0 + 30_000).toISOString() },
    });
    assert.equal(Object.getPrototypeOf(upstreamHealth(gates.status())), Object.prototype);
    assert.ok(Object.hasOwn(upstreamHealth(gates.status()), '__proto__'));
    await clock.advance(5000);
    (await gates.acquire('a.example', bulk))('ok');
    const frame = upstreamFrame(gates.status());
    assert.deepEqual(frame['a.example'], { state: 'open', reason: 'HTTP 429', cooledAt: new Date(t0).toISOString() });
    const parsed = JSON.parse(JSON.stringify({ upstream: frame })) as { upstream: Record<string, { reason?: string }> };
    assert.equal(parsed.upstream['__proto__']?.reason, 'API code -352');
  });

  it('at most 200 hosts shown and labelled, cooling ones first, then the recently cooled, then the busiest', async () => {
    const clock = new TestClock();
    const gates = gatesOn(clock);
    // 150 hosts that cooled and reopened, then 150 busy open hosts (3 requests each), then 100 cooling now.
    for (let i = 0; i < 150; i++) {
      const host = `reopened-${i}.example`;
      (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 429', 1000));
    }
    await clock.advance(1000);
    for (let i = 0; i < 150; i++) (await gates.acquire(`reopened-${i}.example`, bulk))('ok');
    for (let i = 0; i < 150; i++) for (let k = 0; k < 3; k++) (await gates.acquire(`busy-${i}.example`, bulk))('ok');
    for (let i = 0; i < 100; i++) {
      const host = `cooling-${i}.example`;
      (await gates.acquire(host, bulk))(new UpstreamRefusal(host, 'HTTP 503', 60_000));
    }
    const health = upstreamHealth(gates.status());
    assert.equal(Object.keys(health).length, MAX_SHOWN_HOSTS);
    assert.equal(Object.values(health).filter((h) => h.state === 'cooling').length, 100, 'every cooling host is shown');
    const labelled = metricHosts(gates.counts(), gates.status());
    assert.equal(labelled.length, MAX_SHOWN_HOSTS);
    assert.deepEqual(labelled.slice(0, 100).map((h) => h.cooling), Array(100).fill(true));
    assert.ok(labelled.slice(100).every((h) => h.host.startsWith('reopened-')), 'then the hosts that cooled within the hour');

    const text = await metricsOf(gates).render();
    const cooling = text.split('\n').filter((line) => line.startsWith('coverhelper_upstream_cooling{'));
    assert.equal(cooling.length, MAX_SHOWN_HOSTS);
    assert.equal(cooling.filter((line) => line.endsWith(' 1')).length, 100);
    const requests = text.split('\n').filter((line) => line.startsWith('coverhelper_upstream_requests_total{'));
    assert.equal(requests.length, MAX_SHOWN_HOSTS * 3, 'ok, refused and error per host');
    assert.ok(requests.includes('coverhelper_upstream_requests_total{host="reopened-0.example",outcome="ok"} 1'));
    assert.ok(requests.includes('coverhelper_upstream_requests_total{host="reopened-0.example",outcome="refused"} 1'));
    assert.ok(requests.includes('coverhelper_upstream_requests_total{host="cooling-3.example",outcome="refused"} 1'));
    assert.ok(!text.includes('busy-'), 'the busy open hosts come after, past the bound');
    // After the hour, none is cooling (the cooling ones' time ended long ago and no probe is out: open too) and
    // none cooled within the hour: the busiest hosts come first (busy 3 requests, reopened 2, the others 1).
    await clock.advance(60 * 60_000 + 1);
    assert.deepEqual(gates.status(), [], 'nothing cooled within the hour');
    const later = metricHosts(gates.counts(), gates.status());
    assert.ok(later.every((h) => !h.cooling));
    assert.ok(later.slice(0, 150).every((h) => h.host.startsWith('busy-')), later.slice(0, 3).map((h) => h.host).join());
    assert.ok(later.slice(150).every((h) => h.host.startsWith('reopened-')), later.slice(150, 153).map((h) => h.host).join());
    gates.close();
  });

  it('a host whose cooling ended and no request came is shown open (why and when kept), its gauge 0, and is forgotten after the hour', async () => {
    const clock = new TestClock();
    const gates = gatesOn(clock);
    const t0 = clock.now();
    (await gates.acquire('quiet.example', bulk))(new UpstreamRefusal('quiet.example', 'HTTP 429', 2000));
    assert.deepEqual(upstreamFrame(gates.status())['quiet.example'], { state: 'cooling', retryAt: new Date(t0 + 2000).toISOString(), reason: 'HTTP 429', cooledAt: new Date(t0).toISOString() });
    await clock.advance(2000);
    // Its probe may go, but no request comes: not cooling, no past retryAt.
    assert.deepEqual(gates.status(), [{ host: 'quiet.example', state: 'open', reason: 'HTTP 429', cooledAt: t0 }]);
    assert.deepEqual(upstreamHealth(gates.status()), { 'quiet.example': { state: 'open' } });
    assert.equal(gates.anyCooling, false);
    const gauge = (await metricsOf(gates).render()).split('\n').find((line) => line.startsWith('coverhelper_upstream_cooling{host="quiet.example"}'));
    assert.equal(gauge, 'coverhelper_upstream_cooling{host="quiet.example"} 0');
    // While its probe is out it is shown cooling (reopening); once answered, open.
    const probe = await gates.acquire('quiet.example', bulk);
    assert.equal(gates.status()[0]!.state, 'cooling');
    probe('ok');
    assert.equal(gates.status()[0]!.state, 'open');
    // Another that cooled and never saw a request again: forgotten with the idle hosts after the hour.
    (await gates.acquire('stuck.example', bulk))(new UpstreamRefusal('stuck.example', 'HTTP 503', 1000));
    await clock.advance(60 * 60_000 + 1000);
    assert.ok(gates.counts().has('stuck.example'));
    for (let i = 0; i < 1100; i++) (await gates.acquire(`idle-${i}.example`, bulk))('ok');
    await clock.advance(1000);
    for (let i = 0; i < 1100; i++) (await gates.acquire(`later-${i}.example`, bulk))('ok');
    assert.ok(!gates.counts().has('stuck.example'), 'forgotten');
    assert.ok(gates.counts().size <= 2300);
    gates.close();
  });
});
