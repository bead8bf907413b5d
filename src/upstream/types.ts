/**
 * The words shared by the per-host gate (src/upstream/) and the fetch path:
 * who is asking (interactive or bulk) and how an upstream says "too much".
 */

/** Interactive askers (`/ws`, the door, `/api/check`, the proxy, the 2019 port) come before bulk work (jobs, retry-all, background re-resolves). */
export type Priority = 'interactive' | 'bulk';

/**
 * An upstream refused for rate or risk reasons (HTTP 412/429/503, or a bilibili
 * API answer with code -412, -352, -799 or -509). Not the URL's failure: its
 * host cools down and the URL is fetched again when the host reopens.
 */
export class UpstreamRefusal extends Error {
  constructor(
    /** The host that refused (lower case, no port). */
    readonly host: string,
    /** What it answered, for the log and the operator: `HTTP 429`, `API code -352`. */
    readonly why: string,
    /** Its `Retry-After`, in ms, when it sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(`${host} refused: ${why}`);
    this.name = 'UpstreamRefusal';
  }
}

/** One host's state as the operator sees it (`/healthz` `upstream`, metrics, the dashboard). */
export interface HostStatus {
  host: string;
  state: 'open' | 'cooling';
  /** When a cooling host reopens (epoch ms). */
  retryAt?: number;
  /** Why it cooled last (`HTTP 429`, `API code -352`). */
  reason?: string;
  /** When it last started cooling (epoch ms). */
  cooledAt?: number;
}
