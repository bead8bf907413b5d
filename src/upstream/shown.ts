/**
 * How the per-host gates' state is shown to the operator: `/healthz`
 * `upstream`, the admin stream's `upstream`, and the hosts `/metrics` labels.
 * Each is bounded: at most `MAX_SHOWN_HOSTS` hosts, cooling ones first.
 */
import type { HostCounts } from './hostGates.js';
import type { HostStatus } from './types.js';
import type { UpstreamHost } from '../wire/adminStream.js';

/** Most hosts shown in `/healthz`, in a stats frame, and labelled in `/metrics`. */
export const MAX_SHOWN_HOSTS = 200;

/** `/healthz` `upstream`: per host, its state and, while cooling, when it reopens. */
export interface UpstreamHealth {
  state: 'open' | 'cooling';
  retryAt?: string;
}

/** A stats frame's `upstream`: the health's fields, why it cooled last and when (declared by the admin stream's wire contract). */
export type UpstreamFrame = UpstreamHost;

/** Cooling hosts first, then the most recently cooled; at most `MAX_SHOWN_HOSTS`. */
export function shownHosts(status: readonly HostStatus[]): HostStatus[] {
  return [...status]
    .sort((a, b) => Number(b.state === 'cooling') - Number(a.state === 'cooling') || (b.cooledAt ?? 0) - (a.cooledAt ?? 0) || (a.host < b.host ? -1 : 1))
    .slice(0, MAX_SHOWN_HOSTS);
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The `/healthz` `upstream` object (own properties only: a host named `__proto__` stays a key). */
export function upstreamHealth(status: readonly HostStatus[]): Record<string, UpstreamHealth> {
  return Object.fromEntries(
    shownHosts(status).map((host): [string, UpstreamHealth] => [host.host, { state: host.state, ...(host.state === 'cooling' && host.retryAt !== undefined ? { retryAt: iso(host.retryAt) } : {}) }]),
  );
}

/** The stats frame's `upstream` object. */
export function upstreamFrame(status: readonly HostStatus[]): Record<string, UpstreamFrame> {
  return Object.fromEntries(
    shownHosts(status).map((host): [string, UpstreamFrame] => [
      host.host,
      {
        state: host.state,
        ...(host.state === 'cooling' && host.retryAt !== undefined ? { retryAt: iso(host.retryAt) } : {}),
        ...(host.reason === undefined ? {} : { reason: host.reason }),
        ...(host.cooledAt === undefined ? {} : { cooledAt: iso(host.cooledAt) }),
      },
    ]),
  );
}

/**
 * The hosts `/metrics` labels: cooling ones, then those that cooled within the
 * hour (the most recent first), then the busiest; at most `MAX_SHOWN_HOSTS`, so a service that fetched
 * from many hosts keeps its label sets bounded.
 */
export function metricHosts(counts: ReadonlyMap<string, HostCounts>, status: readonly HostStatus[]): { host: string; counts: HostCounts; cooling: boolean }[] {
  const shown = new Map(status.map((host) => [host.host, host]));
  const rank = (host: string) => {
    const s = shown.get(host);
    return s === undefined ? 0 : s.state === 'cooling' ? 2 : 1;
  };
  const cooledAt = (host: string) => shown.get(host)?.cooledAt ?? 0;
  const total = (c: HostCounts) => c.ok + c.refused + c.error;
  return [...counts]
    .sort(([a, ca], [b, cb]) => rank(b) - rank(a) || cooledAt(b) - cooledAt(a) || total(cb) - total(ca) || (a < b ? -1 : 1))
    .slice(0, MAX_SHOWN_HOSTS)
    .map(([host, c]) => ({ host, counts: c, cooling: shown.get(host)?.state === 'cooling' }));
}
