/**
 * Which URLs are handled (SPEC §4), and which addresses count as private.
 *
 * - `classifyUrl` sorts an input URL into an image to download, a bilibili video
 *   page to resolve, or something to skip.
 * - `hostAllowed` matches a hostname against `--allow-hosts` patterns.
 * - `isPrivateAddress` / `isPrivateHost` say whether an address or host literal
 *   is loopback, private, link-local or otherwise not a public origin. The HTTP
 *   client's connector uses them on every connection (see `httpClient.ts`).
 */
import { isIP } from 'node:net';

/** A bilibili video page, by the parameter the view API takes. */
export interface VideoRef {
  kind: 'video';
  /** `bvid` for `/video/BV…` pages, `aid` for `/video/av123` pages. */
  param: 'bvid' | 'aid';
  /** The id as the API wants it: `BV1xx411c7mD` or `170001`. */
  id: string;
}

/**
 * What to do with an input URL.
 *
 * `video` is `{ kind: 'video', param: 'bvid' | 'aid', id }` rather than two shapes
 * keyed by `bvid` / `aid`: one field tells the resolver which query parameter to send.
 */
export type UrlKind = { kind: 'image'; url: URL } | VideoRef | { kind: 'skip' };

const bilibiliHosts = new Set(['www.bilibili.com', 'bilibili.com', 'm.bilibili.com']);
const bvPath = /^\/video\/(bv[0-9a-z]{10})\/?$/i;
const avPath = /^\/video\/av([1-9][0-9]{0,18})\/?$/i;

/** Lower case, without the trailing dot of a fully qualified name. */
function normalHost(hostname: string): string {
  const h = hostname.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/**
 * Sorts an input URL (SPEC §4).
 *
 * - bilibili video pages (`http(s)://[www.|m.]bilibili.com/video/BV…` or `…/video/av123`,
 *   with or without trailing slash, query or fragment) are `video`, whatever the allow list;
 * - other http(s) URLs whose host matches `allowHosts` are `image`;
 * - everything else (unparsable, other schemes, hosts not allowed, URLs carrying
 *   user:password) is `skip`.
 */
export function classifyUrl(input: string, allowHosts: readonly string[]): UrlKind {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { kind: 'skip' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { kind: 'skip' };
  if (url.username !== '' || url.password !== '') return { kind: 'skip' };
  if (url.hostname === '') return { kind: 'skip' };

  if (bilibiliHosts.has(normalHost(url.hostname))) {
    const bv = bvPath.exec(url.pathname);
    if (bv) return { kind: 'video', param: 'bvid', id: `BV${bv[1]!.slice(2)}` };
    const av = avPath.exec(url.pathname);
    if (av) return { kind: 'video', param: 'aid', id: av[1]! };
  }

  if (hostAllowed(url.hostname, allowHosts)) return { kind: 'image', url };
  return { kind: 'skip' };
}

/**
 * Whether `hostname` (as `URL.hostname` gives it; IPv6 in brackets) matches one of
 * the `--allow-hosts` patterns: `host` exactly, `*.domain` any subdomain of domain
 * (not domain itself), `*` anything. Case-insensitive; a trailing dot is ignored.
 */
export function hostAllowed(hostname: string, patterns: readonly string[]): boolean {
  const host = normalHost(hostname);
  if (host === '') return false;
  for (const raw of patterns) {
    const pattern = normalHost(raw.trim());
    if (pattern === '*') return true;
    if (pattern.startsWith('*.')) {
      const suffix = pattern.slice(1); // ".domain"
      if (host.length > suffix.length && host.endsWith(suffix)) return true;
    } else if (pattern !== '' && pattern === host) {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Private addresses

/** IPv4 ranges that are not public origins: [network, prefix length]. */
const privateV4: readonly [string, number][] = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata lives here)
  ['172.16.0.0', 12], // private
  ['192.168.0.0', 16], // private
  ['224.0.0.0', 4], // multicast
  ['255.255.255.255', 32], // broadcast
];

function parseV4(address: string): number | undefined {
  if (isIP(address) !== 4) return undefined;
  const parts = address.split('.').map(Number);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

const privateV4Masks = privateV4.map(([net, prefix]) => {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { net: (parseV4(net)! & mask) >>> 0, mask };
});

function isPrivateV4(value: number): boolean {
  return privateV4Masks.some(({ net, mask }) => ((value & mask) >>> 0) === net);
}

/** Parses an IPv6 address (optionally with a `%zone`) into 8 16-bit groups. */
function parseV6(address: string): number[] | undefined {
  const zone = address.indexOf('%');
  const text = zone === -1 ? address : address.slice(0, zone);
  if (isIP(text) !== 6) return undefined;
  let head = text;
  const tailGroups: number[] = [];
  // An embedded dotted quad at the end takes the last two groups.
  const lastColon = head.lastIndexOf(':');
  const last = head.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = parseV4(last);
    if (v4 === undefined) return undefined;
    tailGroups.push(v4 >>> 16, v4 & 0xffff);
    head = head.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const toGroups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  let groups: number[];
  const gap = head.indexOf('::');
  if (gap === -1) {
    groups = [...toGroups(head), ...tailGroups];
  } else {
    const left = toGroups(head.slice(0, gap));
    const right = [...toGroups(head.slice(gap + 2)), ...tailGroups];
    const missing = 8 - left.length - right.length;
    if (missing < 0) return undefined;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  }
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  return groups;
}

function isPrivateV6(g: number[]): boolean {
  const embeddedV4 = ((g[6]! << 16) | g[7]!) >>> 0;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // ::/96 — `::`, `::1` and the old IPv4-compatible form; judged by the low 32 bits,
  // which puts `::` (0.0.0.0) and `::1` (0.0.0.1) in 0/8.
  if (zeros(0, 6)) return isPrivateV4(embeddedV4);
  // ::ffff:a.b.c.d, IPv4-mapped.
  if (zeros(0, 5) && g[5] === 0xffff) return isPrivateV4(embeddedV4);
  // 64:ff9b::/96 NAT64 and 64:ff9b:1::/48 local-use NAT64: the IPv4 address is the low 32 bits.
  if (g[0] === 0x64 && g[1] === 0xff9b && (zeros(2, 6) || g[2] === 1)) return isPrivateV4(embeddedV4);
  // 2002::/16 6to4: the IPv4 address is groups 1–2.
  if (g[0] === 0x2002) return isPrivateV4(((g[1]! << 16) | g[2]!) >>> 0);
  const first = g[0]!;
  if ((first & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((first & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((first & 0xffc0) === 0xfec0) return true; // fec0::/10 old site-local
  if ((first & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  return false;
}

/**
 * Whether an IP address (IPv4 dotted quad, or IPv6 without brackets, optionally
 * with a zone) is loopback, private, link-local, CGNAT, multicast, broadcast or
 * unspecified. IPv4-mapped (`::ffff:…`), NAT64 (`64:ff9b::…`), 6to4 (`2002:…`)
 * and IPv4-compatible (`::a.b.c.d`) IPv6 addresses are judged by the IPv4
 * address inside. A string that is not an IP address is not private.
 */
export function isPrivateAddress(address: string): boolean {
  const v4 = parseV4(address);
  if (v4 !== undefined) return isPrivateV4(v4);
  const v6 = parseV6(address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address);
  if (v6 !== undefined) return isPrivateV6(v6);
  return false;
}

/**
 * Whether a hostname (as `URL.hostname` gives it) names a private origin without
 * a DNS lookup: a private IP literal (IPv6 with or without brackets), or
 * `localhost` / `*.localhost`. Names that need DNS answer false here; the
 * connector checks what they resolve to.
 */
export function isPrivateHost(hostname: string): boolean {
  const host = normalHost(hostname);
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isPrivateAddress(host);
}
