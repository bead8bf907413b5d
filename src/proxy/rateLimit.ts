/**
 * How much work one client may start through the proxy: at most
 * `--proxy-rate` downloads (and renders) per 10 minutes per client address.
 * Answers from stored covers are never counted; the route calls `take` only
 * when a request is about to start work.
 *
 * Counting: per client, the starts of the current minute and of the ten
 * minutes before it, in a ring of 11 one-minute buckets. A start is allowed
 * when the buckets hold fewer than the limit, so no 10-minute span ever holds
 * more than the limit (the 11 buckets cover every span that ends now); the
 * price is that a client at its limit may wait up to a minute longer than an
 * exact log of timestamps would make it. `retryAfterSeconds` is exact for this
 * count: the first moment the buckets that are then counted hold fewer.
 *
 * Clients: an IPv4 address, or the /64 prefix of an IPv6 address (one
 * subscriber usually holds a whole /64; counting per /128 would let one client
 * take 2^64 shares). IPv4-mapped IPv6 is its IPv4 address.
 *
 * Bounded memory: at most `maxClients` clients are tracked (default 100,000:
 * about 16 MB of heap by count: 52 bytes a slot in the typed arrays, and a Map
 * entry with its key string, ~100 bytes, a client). The counts live in one pool of typed arrays (11
 * counters and a bucket number per slot, grown by doubling up to the cap); a
 * Map from client key to slot is kept in the order clients were last asked
 * about (re-inserted on each `take`). A new client at the cap first drops every
 * client at the head whose buckets have all left the window (they hold
 * nothing), then if still full the least recently asked-about one, which then
 * starts again from nothing.
 *
 * Time comes from `now()` (milliseconds), so tests drive a fake clock.
 */
import ipaddr from 'ipaddr.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';

export const RATE_WINDOW_SECONDS = 600;
const BUCKET_MS = 60_000;
/** The buckets of the window plus the current one. */
const BUCKETS = RATE_WINDOW_SECONDS / (BUCKET_MS / 1000) + 1;

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface ProxyRateLimiterOptions {
  /** Starts allowed per client per 10 minutes (`--proxy-rate`). */
  limit: number;
  /** Clients tracked at most. Default 100,000. */
  maxClients?: number;
  /** The one clock (default the system's): which 10-minute window a start falls in. */
  clock?: Clock;
}

/** The key a client is counted under: an IPv4 address, an IPv6 /64 prefix, or the text itself if it is no address. */
export function clientKey(address: string): string {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(address);
  } catch {
    return address;
  }
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts;
  return `${parts.slice(0, 4).map((p) => p.toString(16)).join(':')}::/64`;
}

export class ProxyRateLimiter {
  /** Client key → its slot in the pool, least recently counted first. */
  private readonly clients = new Map<string, number>();
  /** Starts per bucket: slot `i`'s bucket `b` is at `i * BUCKETS + b % BUCKETS`. */
  private counts: Uint32Array;
  /** The newest bucket written, per slot. */
  private last: Float64Array;
  /** Slots given back by evicted clients. */
  private readonly free: number[] = [];
  /** Slots handed out so far (in use or free). */
  private slotsUsed = 0;
  private readonly limit: number;
  private readonly maxClients: number;
  private readonly clock: Clock;

  constructor(options: ProxyRateLimiterOptions) {
    this.limit = options.limit;
    this.maxClients = Math.max(1, Math.floor(options.maxClients ?? 100_000));
    this.clock = options.clock ?? systemClock;
    const initial = Math.min(this.maxClients, 1024);
    this.counts = new Uint32Array(initial * BUCKETS);
    this.last = new Float64Array(initial);
  }

  /** Clients tracked now. */
  get size(): number {
    return this.clients.size;
  }

  /** Moves `slot` to `bucket`, zeroing the buckets that fell out of the window. */
  private advance(slot: number, bucket: number): void {
    const last = this.last[slot]!;
    if (bucket <= last) return;
    const base = slot * BUCKETS;
    if (bucket - last >= BUCKETS) this.counts.fill(0, base, base + BUCKETS);
    else for (let b = last + 1; b <= bucket; b++) this.counts[base + (b % BUCKETS)] = 0;
    this.last[slot] = bucket;
  }

  private total(slot: number): number {
    let sum = 0;
    for (let i = slot * BUCKETS, end = i + BUCKETS; i < end; i++) sum += this.counts[i]!;
    return sum;
  }

  /**
   * Counts one start for `address` if it is within its limit. Denied: nothing is
   * counted, and `retryAfterSeconds` (at least 1) says when a start will be allowed.
   */
  take(address: string): RateDecision {
    const nowMs = this.clock.now();
    const bucket = Math.floor(nowMs / BUCKET_MS);
    const key = clientKey(address);
    let slot = this.clients.get(key);
    if (slot !== undefined) {
      this.advance(slot, bucket);
      // Re-inserted: the Map's order is the order clients were last counted.
      this.clients.delete(key);
      this.clients.set(key, slot);
      if (this.total(slot) >= this.limit) return { allowed: false, retryAfterSeconds: this.retryAfter(slot, bucket, nowMs) };
    } else {
      if (this.limit <= 0) return { allowed: false, retryAfterSeconds: RATE_WINDOW_SECONDS };
      slot = this.newSlot(bucket);
      this.clients.set(key, slot);
    }
    this.counts[slot * BUCKETS + (bucket % BUCKETS)]! += 1;
    return { allowed: true };
  }

  /** Seconds until the buckets counted then hold fewer starts than the limit. */
  private retryAfter(slot: number, bucket: number, nowMs: number): number {
    // Bucket `bucket - BUCKETS + 1 + k` leaves the count when bucket `bucket + 1 + k` begins.
    let total = this.total(slot);
    for (let k = 0; k < BUCKETS; k++) {
      total -= this.counts[slot * BUCKETS + ((bucket + 1 + k) % BUCKETS)]!;
      if (total < this.limit) return Math.max(1, Math.ceil(((bucket + 1 + k) * BUCKET_MS - nowMs) / 1000));
    }
    return RATE_WINDOW_SECONDS + BUCKET_MS / 1000;
  }

  /** A zeroed slot at `bucket` for a new client, evicting if the pool is full. */
  private newSlot(bucket: number): number {
    if (this.clients.size >= this.maxClients) this.evict(bucket);
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.slotsUsed++;
      if (slot >= this.last.length) this.grow();
    }
    this.counts.fill(0, slot * BUCKETS, (slot + 1) * BUCKETS);
    this.last[slot] = bucket;
    return slot;
  }

  /** Doubles the pool, up to `maxClients`. */
  private grow(): void {
    const size = Math.min(this.maxClients, this.last.length * 2);
    const counts = new Uint32Array(size * BUCKETS);
    counts.set(this.counts);
    const last = new Float64Array(size);
    last.set(this.last);
    this.counts = counts;
    this.last = last;
  }

  /** Makes room for one more client: first every one with nothing left in the window, then the least recently counted. */
  private evict(bucket: number): void {
    // The least recently counted come first; every one whose newest bucket has left
    // the window holds nothing and goes (each client is dropped once: amortised O(1)).
    for (const [key, slot] of this.clients) {
      if (bucket - this.last[slot]! < BUCKETS) break;
      this.clients.delete(key);
      this.free.push(slot);
    }
    if (this.clients.size >= this.maxClients) {
      const [key, slot] = this.clients.entries().next().value as [string, number];
      this.clients.delete(key);
      this.free.push(slot);
    }
  }
}
