/**
 * Which IP addresses may be fetched from: only globally reachable unicast ones.
 *
 * The classification is ipaddr.js's `range()`, which names the ranges of IANA's
 * IPv4 and IPv6 special-purpose address registries (and multicast, broadcast,
 * 240.0.0.0/4, …); an address is public only if it names none of them (`unicast`).
 * On top of it:
 *
 * - IPv6 outside 2000::/3 is refused: IANA assigns global unicast only from there
 *   (the IPv6 Address Space registry calls the rest reserved, unique-local,
 *   link-local or multicast).
 * - `extraRefusedV6` lists what ipaddr.js 2.5 does not name from the IPv6
 *   special-purpose registry where "Globally Reachable" is False.
 * - IPv6 forms that carry an IPv4 address are judged by that IPv4 address:
 *   IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
 *   `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`.
 *   Teredo (2001::/32) and local-use NAT64 (64:ff9b:1::/48) are refused outright:
 *   a Teredo address names a relay server as well as an obfuscated client, and
 *   where a local-use NAT64 prefix puts the IPv4 address depends on the prefix
 *   length its operator chose, so neither can be judged from the address alone.
 *
 * Some ranges refused here are globally reachable by the registry (AS112, AMT,
 * ORCHIDv2, the anycast addresses inside 192.0.0.0/24 and 2001::/23): none
 * serves images, and refusing them keeps the rule "ipaddr.js says unicast".
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;

function cidrV6(text: string): [IPv6, number] {
  return ipaddr.IPv6.parseCIDR(text);
}

/** IPv6 global unicast space (IANA IPv6 Address Space registry). */
const globalUnicastV6 = cidrV6('2000::/3');

/**
 * IPv6 special-purpose ranges with "Globally Reachable" False that ipaddr.js 2.5
 * does not name. (Also outside 2000::/3, so refused twice; listed so that the
 * rule does not hang on that alone.)
 */
const extraRefusedV6: readonly [IPv6, number][] = [
  cidrV6('100:0:0:1::/64'), // Dummy IPv6 Prefix, RFC 9780
];

/** The NAT64 well-known prefix (RFC 6052); its IPv4 address is the low 32 bits. */
const nat64WellKnown = cidrV6('64:ff9b::/96');

/** The old IPv4-compatible form `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated). */
const ipv4Compatible = cidrV6('::/96');

function isPublicV4(address: IPv4): boolean {
  return address.range() === 'unicast';
}

/** The IPv4 address in 16-bit groups `high` and `low` of an IPv6 address. */
function v4From(address: IPv6, high: number): IPv4 {
  const a = address.parts[high]!;
  const b = address.parts[high + 1]!;
  return new ipaddr.IPv4([a >> 8, a & 0xff, b >> 8, b & 0xff]);
}

function isPublicV6(address: IPv6): boolean {
  switch (address.range()) {
    case 'ipv4Mapped': // ::ffff:a.b.c.d
    case 'rfc6145': // ::ffff:0:a.b.c.d
      return isPublicV4(v4From(address, 6));
    case 'rfc6052': // 64:ff9b::/96 and 64:ff9b:1::/48
      return address.match(nat64WellKnown) && isPublicV4(v4From(address, 6));
    case '6to4': // 2002:AABB:CCDD::/48
      return isPublicV4(v4From(address, 1));
    case 'unicast':
      // `::` and `::1` are `unspecified` / `loopback`, so this is ::0.0.0.2 and up.
      if (address.match(ipv4Compatible)) return isPublicV4(v4From(address, 6));
      if (!address.match(globalUnicastV6)) return false;
      return !extraRefusedV6.some((range) => address.match(range));
    default:
      // Teredo, unique-local, link-local, multicast, documentation, … (see above).
      return false;
  }
}

/**
 * Whether an IP address is not a public origin: anything but a globally reachable
 * unicast address (see the module comment). Takes an IPv4 dotted quad, or IPv6
 * with or without brackets, with or without a `%zone`. A string that is not an IP
 * address (by `net.isIP`, so `127.1` or `0x7f.0.0.1` are not) is not private.
 */
export function isPrivateAddress(address: string): boolean {
  if (isIP(address) === 4) return !isPublicV4(ipaddr.IPv4.parse(address));
  let text = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  if (isIP(text) !== 6) return false;
  let parsed: IPv6;
  try {
    parsed = ipaddr.IPv6.parse(text);
  } catch {
    return true; // an IPv6 address ipaddr.js cannot read is not one it can call public
  }
  return !isPublicV6(parsed);
}
