/**
 * The words shared by the per-host gate (src/upstream/) and the fetch path:
 * who is asking (interactive or bulk) and how an upstream says "too much".
 */

/** Interactive askers (`/ws`, the door, `/api/check`, the proxy, the 2019 port) come before bulk work (jobs, retry-all, background re-resolves). */
export type Priority = 'interactive' | 'bulk';

/** An upstream's refusal is an error of the service's own kind: declared with the others. */
export { UpstreamRefusal } from '../errors.js';

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
