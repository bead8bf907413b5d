/**
 * `--host-limits`: how fast and how many at once each upstream host is asked.
 *
 *   api.bilibili.com=2/s:4:2,*=20/s:40:16
 *   │                │   │ └ at most 2 requests to the host at once
 *   │                │   └── bursts of 4 (the token bucket's size)
 *   │                └────── 2 requests per second on average (the bucket's refill)
 *   └─────────────────────── the host: exact, `*.example.com` (its subdomains) or `*` (any)
 *
 * Entries are comma-separated and read in order: the first whose pattern
 * matches a host gives its limit. A default entry whose pattern a list does not
 * name is kept, placed just before the first given entry that would also cover
 * its hosts (the `api.bilibili.com` default goes before a given `*` or
 * `*.bilibili.com`), else at the end: so every host has a limit, and naming `*`
 * or another host does not lift the API's. Name `api.bilibili.com` to change it.
 */

export interface HostLimit {
  /** `host`, `*.domain` (its subdomains) or `*` (any), lower case. */
  pattern: string;
  /** Requests per second, on average (the token bucket's refill rate). */
  rate: number;
  /** Requests that may go at once after a quiet while (the bucket's size). */
  burst: number;
  /** Requests to the host open at once. */
  concurrency: number;
}

export const DEFAULT_HOST_LIMITS_TEXT = 'api.bilibili.com=2/s:4:2,*=20/s:40:16';

const MAX_RATE = 10_000;
const MAX_BURST = 100_000;
const MAX_CONCURRENCY = 1000;
const MAX_ENTRIES = 256;

const hostPattern = /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;

const shape = 'pattern=RATE/s:BURST:CONCURRENCY (such as api.bilibili.com=2/s:4:2)';

/** Per-minute and per-hour rates said the way a limit is written: per second. */
const perUnit: Record<string, number> = { s: 1, sec: 1, second: 1, m: 60, min: 60, minute: 60, h: 3600, hour: 3600 };

function round(n: number): string {
  return String(Number(n.toPrecision(4)));
}

function parseRate(text: string, entry: string): number {
  const match = /^(\d+(?:\.\d+)?)(?:\/([a-z]+))?$/i.exec(text);
  if (!match) throw new Error(`${JSON.stringify(entry)}: the rate ${JSON.stringify(text)} is not a number per second; expected ${shape}`);
  const n = Number(match[1]);
  const unit = match[2]?.toLowerCase();
  if (unit === undefined) throw new Error(`${JSON.stringify(entry)}: the rate needs its unit; did you mean ${text}/s?`);
  if (unit !== 's') {
    const seconds = perUnit[unit];
    if (seconds === undefined) throw new Error(`${JSON.stringify(entry)}: the rate is per second (RATE/s), not per ${JSON.stringify(unit)}`);
    throw new Error(`${JSON.stringify(entry)}: the rate is written per second; did you mean ${round(n / seconds)}/s?`);
  }
  if (!(n > 0) || n > MAX_RATE) throw new Error(`${JSON.stringify(entry)}: the rate must be more than 0 and at most ${MAX_RATE}/s, got ${text}`);
  return n;
}

function parseWhole(text: string | undefined, what: string, max: number, entry: string): number {
  if (text === undefined || !/^\d+$/.test(text)) {
    throw new Error(`${JSON.stringify(entry)}: the ${what} must be a whole number, got ${JSON.stringify(text ?? '')}; expected ${shape}`);
  }
  const n = Number(text);
  if (n < 1 || n > max) throw new Error(`${JSON.stringify(entry)}: the ${what} must be between 1 and ${max}, got ${n}`);
  return n;
}

/** One entry, `pattern=RATE/s:BURST:CONCURRENCY`. Throws a message naming the entry and what is wrong. */
export function parseHostLimit(entry: string): HostLimit {
  const text = entry.trim();
  const eq = text.indexOf('=');
  if (eq === -1) throw new Error(`${JSON.stringify(text)} has no "="; expected ${shape}`);
  const pattern = text.slice(0, eq).trim().toLowerCase();
  if (!hostPattern.test(pattern)) throw new Error(`${JSON.stringify(text)}: not a host pattern: ${JSON.stringify(pattern)} (use host, *.domain or *)`);
  const parts = text
    .slice(eq + 1)
    .split(':')
    .map((part) => part.trim());
  if (parts.length !== 3) throw new Error(`${JSON.stringify(text)} has ${parts.length} part${parts.length === 1 ? '' : 's'} after "="; expected ${shape}`);
  const rate = parseRate(parts[0]!, text);
  const burst = parseWhole(parts[1], 'burst', MAX_BURST, text);
  const concurrency = parseWhole(parts[2], 'concurrency', MAX_CONCURRENCY, text);
  return { pattern, rate, burst, concurrency };
}

/** An entry as it is written. */
export function formatHostLimit(limit: HostLimit): string {
  return `${limit.pattern}=${limit.rate}/s:${limit.burst}:${limit.concurrency}`;
}

function parseEntries(text: string): HostLimit[] {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw new Error(`expected comma-separated ${shape}`);
  if (entries.length > MAX_ENTRIES) throw new Error(`at most ${MAX_ENTRIES} entries, got ${entries.length}`);
  const limits: HostLimit[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const limit = parseHostLimit(entry);
    if (seen.has(limit.pattern)) throw new Error(`the pattern ${JSON.stringify(limit.pattern)} is given twice (the first would always win)`);
    seen.add(limit.pattern);
    limits.push(limit);
  }
  return limits;
}

/** The default entries. */
export const DEFAULT_HOST_LIMITS: readonly HostLimit[] = Object.freeze(parseEntries(DEFAULT_HOST_LIMITS_TEXT));

/** Whether every host `inner` matches is matched by `outer` too (`*` covers all; `*.d` covers `d`'s subdomains and their `*.` patterns). */
function covers(outer: string, inner: string): boolean {
  if (outer === '*') return true;
  if (inner === '*') return false;
  if (outer.startsWith('*.')) return hostMatches(inner.startsWith('*.') ? inner.slice(2) : inner, outer);
  return outer === inner;
}

/**
 * A `--host-limits` value: its entries in order, with each default entry whose
 * pattern it does not name placed before the first given entry that would cover
 * that entry's hosts (else at the end). Throws a one-line message for a bad value.
 */
export function parseHostLimits(text: string): HostLimit[] {
  const given = parseEntries(text);
  const named = new Set(given.map((limit) => limit.pattern));
  const before = new Map<number, HostLimit[]>();
  const after: HostLimit[] = [];
  for (const limit of DEFAULT_HOST_LIMITS) {
    if (named.has(limit.pattern)) continue;
    const at = given.findIndex((entry) => covers(entry.pattern, limit.pattern));
    if (at === -1) after.push({ ...limit });
    else before.set(at, [...(before.get(at) ?? []), { ...limit }]);
  }
  return [...given.flatMap((entry, i) => [...(before.get(i) ?? []), entry]), ...after];
}

/**
 * The one name a host goes by in the gates and their limits: lower case, without
 * the trailing dot(s) of a fully qualified name, and an IPv6 literal in brackets
 * (`I0.HDSLB.COM.` is `i0.hdslb.com`; `::1` and `[::1]` are `[::1]`).
 */
export function canonicalHost(host: string): string {
  let name = host.trim().toLowerCase();
  while (name.endsWith('.')) name = name.slice(0, -1);
  if (name.includes(':') && !name.startsWith('[')) name = `[${name}]`;
  return name;
}

/** Whether `host` (lower case) matches `pattern`: exact, `*.domain` (a subdomain, not the domain itself), or `*`. */
export function hostMatches(host: string, pattern: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1);
    return host.length > suffix.length && host.endsWith(suffix);
  }
  return host === pattern;
}

/** The limit of `host` (any spelling: see `canonicalHost`): the first entry that matches it (the last default, `*`, matches any). */
export function limitFor(host: string, limits: readonly HostLimit[]): HostLimit {
  const name = canonicalHost(host);
  for (const limit of limits) if (hostMatches(name, limit.pattern)) return limit;
  return DEFAULT_HOST_LIMITS[DEFAULT_HOST_LIMITS.length - 1]!;
}
