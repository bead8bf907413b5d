/**
 * Which addresses the private-network guard refuses (`isPrivateAddress`,
 * `isPrivateHost`), range by range.
 *
 * The tables below are written from IANA's registries, not read from the code
 * under test: the IPv4 and IPv6 Special-Purpose Address Registries, the IPv4
 * multicast block and the IPv6 Address Space (only 2000::/3 is global unicast).
 * For every range its first, middle and last address must be refused, and the
 * address just outside each end allowed when nothing in the tables covers it.
 * Every IPv4 address is also tried in each IPv6 form that carries an IPv4
 * address. The arithmetic on addresses is done here with plain integers, so the
 * test does not lean on ipaddr.js, which the code under test uses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPrivateAddress, isPrivateHost } from '../src/fetch/index.js';

// ---------------------------------------------------------------------------
// address arithmetic

interface Range {
  cidr: string;
  name: string;
}

function v4ToInt(text: string): number {
  const parts = text.split('.').map(Number);
  assert.equal(parts.length, 4, text);
  return parts.reduce((n, p) => n * 256 + p, 0);
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

function v6ToBig(text: string): bigint {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  assert.equal(groups.length, 8, text);
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** All eight groups, no `::` (a form `net.isIP` and every parser accept). */
function bigToV6(n: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}

interface Span<T> {
  first: T;
  last: T;
}

function spanV4(cidr: string): Span<number> {
  const [net, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const first = v4ToInt(net!);
  assert.equal(first % size, 0, `${cidr} is not a network address`);
  return { first, last: first + size - 1 };
}

function spanV6(cidr: string): Span<bigint> {
  const [net, bits] = cidr.split('/');
  const size = 1n << BigInt(128 - Number(bits));
  const first = v6ToBig(net!);
  assert.equal(first % size, 0n, `${cidr} is not a network address`);
  return { first, last: first + size - 1n };
}

/** First, middle and last, without repeats (a /32 or /128 is one address). */
function samples<T extends number | bigint>({ first, last }: Span<T>, half: (a: T, b: T) => T): T[] {
  return [...new Set([first, half(first, last), last])];
}

const within = <T>(value: T, { first, last }: Span<T>) => value >= first && value <= last;

// ---------------------------------------------------------------------------
// the tables

/** IPv4 ranges every address of which is refused. */
const v4Ranges: Range[] = [
  // IANA IPv4 Special-Purpose Address Registry, "Globally Reachable" False.
  { cidr: '0.0.0.0/8', name: '"this network"' },
  { cidr: '0.0.0.0/32', name: '"this host on this network"' },
  { cidr: '10.0.0.0/8', name: 'private-use' },
  { cidr: '100.64.0.0/10', name: 'shared address space (CGNAT)' },
  { cidr: '127.0.0.0/8', name: 'loopback' },
  { cidr: '169.254.0.0/16', name: 'link-local' },
  { cidr: '172.16.0.0/12', name: 'private-use' },
  { cidr: '192.0.0.0/24', name: 'IETF protocol assignments' },
  { cidr: '192.0.0.0/29', name: 'IPv4 service continuity prefix' },
  { cidr: '192.0.0.8/32', name: 'IPv4 dummy address' },
  { cidr: '192.0.0.170/32', name: 'NAT64/DNS64 discovery' },
  { cidr: '192.0.0.171/32', name: 'NAT64/DNS64 discovery' },
  { cidr: '192.0.2.0/24', name: 'documentation (TEST-NET-1)' },
  { cidr: '192.168.0.0/16', name: 'private-use' },
  { cidr: '198.18.0.0/15', name: 'benchmarking' },
  { cidr: '198.51.100.0/24', name: 'documentation (TEST-NET-2)' },
  { cidr: '203.0.113.0/24', name: 'documentation (TEST-NET-3)' },
  { cidr: '240.0.0.0/4', name: 'reserved' },
  { cidr: '255.255.255.255/32', name: 'limited broadcast' },
  // In the registry as globally reachable (or deprecated), refused all the same:
  // ipaddr.js names them, and no image host lives there.
  { cidr: '192.0.0.9/32', name: 'PCP anycast' },
  { cidr: '192.0.0.10/32', name: 'TURN anycast' },
  { cidr: '192.31.196.0/24', name: 'AS112-v4' },
  { cidr: '192.52.193.0/24', name: 'AMT' },
  { cidr: '192.88.99.0/24', name: 'deprecated 6to4 relay anycast' },
  { cidr: '192.88.99.2/32', name: '6a44 relay anycast' },
  { cidr: '192.175.48.0/24', name: 'direct delegation AS112' },
  // Not in the special-purpose registry: IANA's multicast block.
  { cidr: '224.0.0.0/4', name: 'multicast' },
];

/** IPv6 ranges every address of which is refused. */
const v6Ranges: Range[] = [
  // IANA IPv6 Special-Purpose Address Registry, "Globally Reachable" False or N/A.
  // (::ffff:0:0/96 and 2002::/16 are judged by the IPv4 address inside; see below.)
  { cidr: '::1/128', name: 'loopback' },
  { cidr: '::/128', name: 'unspecified' },
  { cidr: '64:ff9b:1::/48', name: 'local-use IPv4/IPv6 translation' },
  { cidr: '100::/64', name: 'discard-only' },
  { cidr: '100:0:0:1::/64', name: 'dummy IPv6 prefix' },
  { cidr: '2001::/23', name: 'IETF protocol assignments' },
  { cidr: '2001::/32', name: 'Teredo' },
  { cidr: '2001:2::/48', name: 'benchmarking' },
  { cidr: '2001:10::/28', name: 'deprecated ORCHID' },
  { cidr: '2001:db8::/32', name: 'documentation' },
  { cidr: '3fff::/20', name: 'documentation' },
  { cidr: '5f00::/16', name: 'segment routing (SRv6) SIDs' },
  { cidr: 'fc00::/7', name: 'unique-local' },
  { cidr: 'fe80::/10', name: 'link-local' },
  // In the registry as globally reachable, refused all the same (ipaddr.js names
  // them, or they sit inside 2001::/23).
  { cidr: '2001:1::1/128', name: 'PCP anycast' },
  { cidr: '2001:1::2/128', name: 'TURN anycast' },
  { cidr: '2001:1::3/128', name: 'DNS-SD SRP anycast' },
  { cidr: '2001:3::/32', name: 'AMT' },
  { cidr: '2001:4:112::/48', name: 'AS112-v6' },
  { cidr: '2001:20::/28', name: 'ORCHIDv2' },
  { cidr: '2001:30::/28', name: 'drone remote ID entity tags' },
  { cidr: '2620:4f:8000::/48', name: 'direct delegation AS112' },
  // IANA IPv6 Address Space: multicast, and what is not global unicast (2000::/3).
  { cidr: 'ff00::/8', name: 'multicast' },
  { cidr: 'fec0::/10', name: 'deprecated site-local' },
  { cidr: '100::/8', name: 'reserved by IETF' },
  { cidr: '200::/7', name: 'reserved by IETF' },
  { cidr: '400::/6', name: 'reserved by IETF' },
  { cidr: '800::/5', name: 'reserved by IETF' },
  { cidr: '1000::/4', name: 'reserved by IETF' },
  { cidr: '4000::/3', name: 'reserved by IETF' },
  { cidr: '6000::/3', name: 'reserved by IETF' },
  { cidr: '8000::/3', name: 'reserved by IETF' },
  { cidr: 'a000::/3', name: 'reserved by IETF' },
  { cidr: 'c000::/3', name: 'reserved by IETF' },
  { cidr: 'e000::/4', name: 'reserved by IETF' },
  { cidr: 'f000::/5', name: 'reserved by IETF' },
  { cidr: 'f800::/6', name: 'reserved by IETF' },
  { cidr: 'fe00::/9', name: 'reserved by IETF' },
];

const v4Spans = v4Ranges.map((r) => spanV4(r.cidr));
const v6Spans = v6Ranges.map((r) => spanV6(r.cidr));
const globalUnicast = spanV6('2000::/3');
const sixToFour = spanV6('2002::/16');

/** Public by the tables: in no IPv4 range. */
const publicV4 = (n: number) => n >= 0 && n <= 0xffffffff && !v4Spans.some((s) => within(n, s));

/** Public by the tables: global unicast, in no IPv6 range, and not 6to4 (judged by its IPv4). */
const publicV6 = (n: bigint) => within(n, globalUnicast) && !within(n, sixToFour) && !v6Spans.some((s) => within(n, s));

/** Each IPv6 form that carries an IPv4 address, and the IPv4 form itself. */
const v4Forms: [string, (n: number) => string][] = [
  ['IPv4', intToV4],
  ['IPv4-mapped ::ffff:a.b.c.d', (n) => `::ffff:${intToV4(n)}`],
  ['IPv4-mapped in hex (as URL.hostname writes it)', (n) => `::ffff:${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`],
  ['NAT64 64:ff9b::/96', (n) => `64:ff9b::${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`],
  ['IPv4-compatible ::a.b.c.d', (n) => `::${intToV4(n)}`],
  ['IPv4-translated ::ffff:0:a.b.c.d', (n) => `::ffff:0:${intToV4(n)}`],
  ['6to4 2002:AABB:CCDD::/48', (n) => `2002:${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}::1`],
];

/** The addresses of `span` that must be refused and its outside neighbours that must be allowed. */
function cases<T extends number | bigint>(
  span: Span<T>,
  half: (a: T, b: T) => T,
  step: (a: T, by: -1 | 1) => T,
  isPublic: (a: T) => boolean,
): { refused: T[]; allowed: T[] } {
  const refused = samples(span, half);
  const allowed = [step(span.first, -1), step(span.last, 1)].filter(isPublic);
  return { refused, allowed };
}

/** Runs `isPrivateAddress` on each and returns the ones it answers wrongly. */
function wrong(refused: string[], allowed: string[]): string[] {
  return [
    ...refused.filter((a) => !isPrivateAddress(a)).map((a) => `${a} allowed`),
    ...allowed.filter((a) => isPrivateAddress(a)).map((a) => `${a} refused`),
  ];
}

// ---------------------------------------------------------------------------
// the tests

for (const [form, write] of v4Forms) {
  describe(`IPv4 special-purpose ranges, as ${form}`, () => {
    v4Ranges.forEach((range, i) => {
      it(`refuses ${range.cidr} (${range.name}) and allows its public neighbours`, () => {
        const { refused, allowed } = cases(
          v4Spans[i]!,
          (a, b) => a + Math.floor((b - a + 1) / 2),
          (a, by) => a + by,
          publicV4,
        );
        assert.deepEqual(wrong(refused.map(write), allowed.map(write)), []);
      });
    });
  });
}

describe('IPv6 special-purpose and reserved ranges', () => {
  v6Ranges.forEach((range, i) => {
    it(`refuses ${range.cidr} (${range.name}) and allows its public neighbours`, () => {
      const { refused, allowed } = cases(
        v6Spans[i]!,
        (a, b) => a + (b - a + 1n) / 2n,
        (a, by) => a + BigInt(by),
        publicV6,
      );
      assert.deepEqual(wrong(refused.map(bigToV6), allowed.map(bigToV6)), []);
    });
  });

  it('refuses the rest of ::/8 that carries no IPv4 address', () => {
    assert.deepEqual(wrong(['::1:0:0:0', '80::1', 'ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::1:0:0:0:1'], []), []);
  });

  it('allows the public neighbours of 2002::/16 (6to4)', () => {
    assert.deepEqual(wrong([], ['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '2003::']), []);
  });
});

describe('IPv6 forms carrying an IPv4 address that cannot be judged by it', () => {
  it('refuses Teredo (2001::/32) whatever the server and client addresses', () => {
    // Server 8.8.8.8, client 8.8.8.8 (stored inverted: f7f7:f7f7), both public.
    assert.deepEqual(wrong(['2001:0:808:808::f7f7:f7f7', '2001:0:4136:e378:8000:63bf:3fff:fdd2'], []), []);
  });

  it('refuses local-use NAT64 (64:ff9b:1::/48) even with a public IPv4 address in the low bits', () => {
    assert.deepEqual(wrong(['64:ff9b:1::808:808', '64:ff9b:1::8.8.8.8', '64:ff9b:1:7f00:1:0:808:808'], []), []);
  });
});

describe('public addresses', () => {
  it('allows public IPv4 and IPv6 addresses, and public IPv4 in every IPv6 form', () => {
    const allowed = [
      '8.8.8.8',
      '1.1.1.1',
      '140.82.112.3',
      '2606:4700:4700::1111',
      '2001:4860:4860::8888',
      '2400:cb00::1',
      '2a00:1450:4001:82b::200e',
      ...v4Forms.map(([, write]) => write(v4ToInt('8.8.8.8'))),
    ];
    assert.deepEqual(wrong([], allowed), []);
  });
});

describe('what isPrivateAddress accepts', () => {
  it('takes IPv6 with brackets or a zone id, and judges the address without the zone', () => {
    assert.deepEqual(wrong(['[::1]', '[::ffff:7f00:1]', 'fe80::1%eth0', '[fe80::1%eth0]', 'FE80::1%en0', '::FFFF:7F00:1'], []), []);
    assert.deepEqual(wrong([], ['[2606:4700:4700::1111]', '2606:4700:4700::1111%eth0', '[::ffff:808:808]']), []);
  });

  it('says a string that is not an IP address is not private', () => {
    for (const text of ['example.com', '', 'localhost', '127.1', '0x7f.0.0.1', '2130706433', '1.2.3.4.5', ':::1', '[127.0.0.1]', '127.0.0.1%eth0']) {
      assert.equal(isPrivateAddress(text), false, JSON.stringify(text));
    }
  });
});

describe('isPrivateHost', () => {
  it('treats localhost and private literals as private hosts, and names needing DNS as not', () => {
    assert.equal(isPrivateHost('localhost'), true);
    assert.equal(isPrivateHost('LOCALHOST.'), true);
    assert.equal(isPrivateHost('a.localhost'), true);
    assert.equal(isPrivateHost('[::1]'), true);
    assert.equal(isPrivateHost('[::ffff:7f00:1]'), true);
    assert.equal(isPrivateHost('192.168.0.10'), true);
    assert.equal(isPrivateHost('198.18.0.1'), true);
    assert.equal(isPrivateHost('[64:ff9b::c612:1]'), true);
    assert.equal(isPrivateHost('i0.hdslb.com'), false);
    assert.equal(isPrivateHost('8.8.8.8'), false);
    assert.equal(isPrivateHost('[2606:4700:4700::1111]'), false);
  });

  it('reads host names as URL.hostname gives them', () => {
    for (const [url, expected] of [
      ['http://198.18.0.1/', true],
      ['http://[::ffff:198.18.0.1]/', true],
      ['http://0xc6120001/', true], // the WHATWG parser writes it 198.18.0.1
      ['http://203.0.113.7:8080/', true],
      ['http://8.8.8.8/', false],
    ] as const) {
      assert.equal(isPrivateHost(new URL(url).hostname), expected, url);
    }
  });
});
