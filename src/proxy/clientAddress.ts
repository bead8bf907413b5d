/**
 * Which client a request comes from: the socket's peer, unless the
 * peer is a reverse proxy named by `--trust-proxy`; then the right-most entry
 * of `X-Forwarded-For` that is not itself a trusted proxy. Entries to the left
 * of it were written by the client (or whoever it claims to be) and are never
 * believed.
 *
 * Addresses are compared after `ipaddr.process`, so an IPv4-mapped peer
 * (`::ffff:10.0.0.1`, what a dual-stack socket reports) is its IPv4 address and
 * matches `10.0.0.0/8`. An `X-Forwarded-For` entry may carry a port
 * (`1.2.3.4:5678`, `[2001:db8::1]:443`), which is dropped. An entry that is no
 * address (`unknown`, garbage) stops the walk: the answer is then the nearest
 * address known, the last trusted hop.
 */
import ipaddr from 'ipaddr.js';
import { trustEntry } from '../config.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** One `--trust-proxy` entry parsed: an address is a /32 or /128 range. */
type Range = [Address, number];

/** Whether an address is in one of the trusted ranges. */
export class TrustedProxies {
  private readonly ranges: Range[];

  /** `entries`: `--trust-proxy` entries (addresses or CIDRs; read as config.ts reads them, so a bad one throws). */
  constructor(entries: readonly string[]) {
    this.ranges = entries.map((entry) => {
      const text = trustEntry(entry);
      if (text.includes('/')) return ipaddr.parseCIDR(text);
      const address = ipaddr.parse(text);
      return [address, address.kind() === 'ipv4' ? 32 : 128] as Range;
    });
  }

  /** Whether nothing is trusted (then `X-Forwarded-For` is never read). */
  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** Whether `address` (text, or parsed) is a trusted proxy. */
  has(address: string | Address): boolean {
    const parsed = typeof address === 'string' ? parseAddress(address) : address;
    if (parsed === undefined) return false;
    return this.ranges.some(([base, bits]) => base.kind() === parsed.kind() && parsed.match(base, bits));
  }
}

/** An address as a socket or an `X-Forwarded-For` entry gives it (a port, brackets or a zone allowed), processed (IPv4-mapped → IPv4); undefined if it is none. */
export function parseAddress(text: string): Address | undefined {
  let s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(s)) s = s.slice(0, s.lastIndexOf(':'));
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (!ipaddr.isValid(s)) return undefined;
  // ipaddr.isValid takes IPv4 shorthands (`127.1`, `0x7f.1`); an address on the wire is four decimal parts.
  if (!s.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(s)) return undefined;
  try {
    return ipaddr.process(s);
  } catch {
    return undefined;
  }
}

/**
 * The client address of a request: `peer` (the socket's `remoteAddress`) unless it
 * is trusted, then the right-most untrusted `X-Forwarded-For` entry (`forwardedFor`:
 * the header as node gives it; several headers are read as one list). Returned in
 * normal text (IPv4-mapped as IPv4). A missing peer (a socket already closed)
 * is `'unknown'`: such requests share one count.
 */
export function clientAddress(peer: string | undefined, forwardedFor: string | readonly string[] | undefined, trusted: TrustedProxies): string {
  const peerAddress = peer === undefined ? undefined : parseAddress(peer);
  if (peerAddress === undefined) return peer === undefined || peer === '' ? 'unknown' : peer;
  if (trusted.empty || !trusted.has(peerAddress) || forwardedFor === undefined) return peerAddress.toString();
  const entries = (typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(','))
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  let nearest: Address = peerAddress;
  for (let i = entries.length - 1; i >= 0; i--) {
    const hop = parseAddress(entries[i]!);
    if (hop === undefined) break;
    nearest = hop;
    if (!trusted.has(hop)) break;
  }
  return nearest.toString();
}
