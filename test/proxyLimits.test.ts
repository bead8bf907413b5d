/**
 * The proxy's per-client bound (`ProxyRateLimiter`, driven by the test clock) and
 * which client a request is counted against (`clientAddress`, `--trust-proxy`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../src/clock.js';
import { clientAddress, clientKey, ProxyRateLimiter, TrustedProxies } from '../src/proxy/index.js';

const MINUTE = 60_000;

/** The test clock, starting at a minute boundary plus `offset` ms. */
function fakeClock(offset = 0) {
  return new TestClock(1_000 * MINUTE + offset);
}

describe('proxy rate limit: downloads one client may start per 10 minutes', () => {
  it('allows the limit, then answers retryAfterSeconds, and allows again once the window has passed', async () => {
    const clock = fakeClock();
    const limiter = new ProxyRateLimiter({ limit: 600, clock });
    for (let i = 0; i < 600; i++) assert.deepEqual(limiter.take('203.0.113.7'), { allowed: true }, `start ${i + 1}`);
    const denied = limiter.take('203.0.113.7');
    assert.equal(denied.allowed, false);
    // All 600 started in the first minute: allowed again when that minute leaves the count (11 minutes on).
    assert.deepEqual(denied, { allowed: false, retryAfterSeconds: 660 });
    assert.deepEqual(limiter.take('198.51.100.1'), { allowed: true }, 'another client is not limited');
    await clock.advance(5 * MINUTE + 30_000);
    assert.deepEqual(limiter.take('203.0.113.7'), { allowed: false, retryAfterSeconds: 330 }, 'denied starts are not counted');
    await clock.advance(330_000 - 1);
    assert.equal(limiter.take('203.0.113.7').allowed, false, 'one ms early');
    await clock.advance(1);
    assert.deepEqual(limiter.take('203.0.113.7'), { allowed: true });
  });

  it('never allows more than the limit in any 10 minutes, and answers when the oldest starts leave', async () => {
    const clock = fakeClock(12_345);
    const limiter = new ProxyRateLimiter({ limit: 3, clock });
    const started: number[] = [];
    // One try every 20 seconds for an hour; record the allowed ones.
    for (let i = 0; i < 180; i++) {
      const decision = limiter.take('192.0.2.1');
      if (decision.allowed) started.push(clock.now());
      else assert.ok(decision.retryAfterSeconds >= 1 && decision.retryAfterSeconds <= 660, String(decision.retryAfterSeconds));
      await clock.advance(20_000);
    }
    for (let i = 3; i < started.length; i++) assert.ok(started[i]! - started[i - 3]! >= 600_000, `no 4 starts within 10 minutes (${i})`);
    assert.ok(started.length >= 15, `it keeps allowing at about the limit (${started.length} in an hour)`);
  });

  it('retryAfterSeconds is exact for the count: denied just before, allowed at it', async () => {
    for (const offset of [0, 1, 29_999, 59_999]) {
      const clock = fakeClock(offset);
      const limiter = new ProxyRateLimiter({ limit: 2, clock });
      limiter.take('192.0.2.9');
      await clock.advance(3 * MINUTE);
      limiter.take('192.0.2.9');
      await clock.advance(MINUTE);
      const denied = limiter.take('192.0.2.9');
      assert.equal(denied.allowed, false);
      if (denied.allowed) continue;
      await clock.advance(denied.retryAfterSeconds * 1000 - 1000);
      assert.equal(limiter.take('192.0.2.9').allowed, false, `offset ${offset}: a second early`);
      await clock.advance(1000);
      assert.equal(limiter.take('192.0.2.9').allowed, true, `offset ${offset}: at retryAfterSeconds`);
    }
  });

  it('counts an IPv6 client per /64 and an IPv4-mapped address as its IPv4 address', () => {
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:bbbb::2'));
    assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
    assert.equal(clientKey('::ffff:192.0.2.1'), '192.0.2.1');
    const clock = fakeClock();
    const limiter = new ProxyRateLimiter({ limit: 2, clock });
    assert.equal(limiter.take('2001:db8::1').allowed, true);
    assert.equal(limiter.take('2001:db8::ffff:2').allowed, true);
    assert.equal(limiter.take('2001:db8::3').allowed, false, 'the third from one /64');
    assert.equal(limiter.take('192.0.2.1').allowed, true);
    assert.equal(limiter.take('::ffff:192.0.2.1').allowed, true);
    assert.equal(limiter.take('192.0.2.1').allowed, false);
  });

  it('keeps at most maxClients clients: a flood of distinct addresses evicts the oldest, memory stays bounded', () => {
    const clock = fakeClock();
    const limiter = new ProxyRateLimiter({ limit: 1, maxClients: 1000, clock });
    assert.equal(limiter.take('198.51.100.200').allowed, true);
    assert.equal(limiter.take('198.51.100.200').allowed, false);
    for (let i = 0; i < 100_000; i++) limiter.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(limiter.size, 1000);
    // The first client was evicted long ago: it starts afresh (the price of bounded memory).
    assert.equal(limiter.take('198.51.100.200').allowed, true);
    // A client counted recently survives a smaller flood.
    const recent = new ProxyRateLimiter({ limit: 1, maxClients: 10, clock });
    for (let i = 0; i < 9; i++) recent.take(`10.0.0.${i}`);
    recent.take('198.51.100.7');
    assert.equal(recent.take('198.51.100.7').allowed, false);
    for (let i = 0; i < 5; i++) recent.take(`10.0.1.${i}`);
    assert.equal(recent.take('198.51.100.7').allowed, false, 'still counted');
    assert.equal(recent.size, 10);
  });

  it('forgets idle clients first when full', async () => {
    const clock = fakeClock();
    const limiter = new ProxyRateLimiter({ limit: 1, maxClients: 3, clock });
    limiter.take('192.0.2.1');
    limiter.take('192.0.2.2');
    await clock.advance(30 * MINUTE);
    limiter.take('192.0.2.3');
    limiter.take('192.0.2.4');
    assert.equal(limiter.size, 2, 'both idle clients were dropped when one had to go');
    assert.equal(limiter.take('192.0.2.3').allowed, false, 'the counted one kept its count');
  });
});

describe('client address: the peer, or X-Forwarded-For from --trust-proxy', () => {
  it('is the peer when nothing is trusted, whatever X-Forwarded-For says', () => {
    const none = new TrustedProxies([]);
    assert.equal(clientAddress('203.0.113.5', '1.2.3.4', none), '203.0.113.5');
    assert.equal(clientAddress('::ffff:203.0.113.5', undefined, none), '203.0.113.5');
    assert.equal(clientAddress('2001:db8::5', '1.2.3.4', none), '2001:db8::5');
    assert.equal(clientAddress(undefined, '1.2.3.4', none), 'unknown');
  });

  it('takes the right-most untrusted entry when the peer is trusted (addresses, CIDRs, IPv6, ::ffff: mapped)', () => {
    const trusted = new TrustedProxies(['127.0.0.1', '10.0.0.0/8', '2001:db8:ffff::/48', '[::1]']);
    const cases: [string, string | string[] | undefined, string][] = [
      ['127.0.0.1', '198.51.100.9', '198.51.100.9'],
      ['::ffff:127.0.0.1', '198.51.100.9', '198.51.100.9'],
      ['::1', '2001:db8:1::9', '2001:db8:1::9'],
      ['10.1.2.3', 'spoofed, 198.51.100.9', '198.51.100.9'],
      ['10.1.2.3', '6.6.6.6, 198.51.100.9, 10.9.9.9', '198.51.100.9'],
      ['10.1.2.3', ['6.6.6.6, 198.51.100.9', '10.9.9.9'], '198.51.100.9'],
      ['10.1.2.3', '198.51.100.9:51234', '198.51.100.9'],
      ['10.1.2.3', '[2001:db8:1::9]:443', '2001:db8:1::9'],
      ['10.1.2.3', '::ffff:198.51.100.9', '198.51.100.9'],
      ['2001:db8:ffff:1::1', '198.51.100.9', '198.51.100.9'],
      ['10.1.2.3', '10.0.0.5, 10.0.0.6', '10.0.0.5'],
      ['10.1.2.3', 'unknown, 10.0.0.6', '10.0.0.6'],
      ['10.1.2.3', 'garbage', '10.1.2.3'],
      ['10.1.2.3', '127.1', '10.1.2.3'],
      ['10.1.2.3', '', '10.1.2.3'],
      ['10.1.2.3', undefined, '10.1.2.3'],
      ['11.0.0.1', '198.51.100.9', '11.0.0.1'],
      ['2001:db8:fffe::1', '198.51.100.9', '2001:db8:fffe::1'],
    ];
    for (const [peer, xff, expected] of cases) assert.equal(clientAddress(peer, xff, trusted), expected, `${peer} ${JSON.stringify(xff)}`);
  });

  it('an IPv4 range trusts IPv4-mapped peers; a mapped entry is read as IPv4', () => {
    const mapped = new TrustedProxies(['::ffff:192.168.0.0/112']);
    assert.equal(clientAddress('192.168.3.4', '198.51.100.9', mapped), '198.51.100.9');
    assert.equal(clientAddress('::ffff:192.168.3.4', '198.51.100.9', mapped), '198.51.100.9');
    assert.equal(clientAddress('192.169.0.1', '198.51.100.9', mapped), '192.169.0.1');
  });
});
