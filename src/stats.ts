/**
 * Counters since start, for `/healthz`, the admin stream and `/metrics`.
 * Plain numbers bumped where things happen, read as a snapshot; the download
 * durations are a prom-client histogram that `/metrics` registers.
 */
import { Histogram } from 'prom-client';

export class Stats {
  /** Check requests (JSON, short form, TCP, HTTP). */
  checks = 0;
  /** URLs asked for in checks. */
  urls = 0;
  /** URLs answered from the cover index at once. */
  hits = 0;
  /** URLs that had to wait for a download. */
  misses = 0;
  /** Askers that joined a download already in flight. */
  coalesced = 0;
  /** Queued downloads dropped before they started because nobody waited for them any more. */
  dropped = 0;
  downloadsOk = 0;
  downloadsError = 0;
  downloadsTle = 0;
  /** Failed downloads (error and tle) by error code. */
  readonly failuresByCode = new Map<string, number>();
  /** Bytes of cover bodies downloaded (as they came from the origin). */
  bytes = 0;
  /** Open connections by kind: blog WebSockets (`client`), admin streams, 2019-protocol TCP sockets (`legacy`). */
  readonly connections = { client: 0, admin: 0, legacy: 0 };
  /** Wall-clock time of finished downloads (registered by `/metrics`). */
  readonly downloadDurations = new Histogram({
    name: 'coverhelper_download_duration_seconds',
    help: 'Wall-clock time of finished downloads.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [],
  });

  /** Counts a connection of `kind` open until `closed` fires. */
  connected(kind: keyof Stats['connections'], closed: (listener: () => void) => void): void {
    this.connections[kind]++;
    closed(() => this.connections[kind]--);
  }

  /** Records how long one finished download took. */
  observeDuration(ms: number): void {
    this.downloadDurations.observe(ms / 1000);
  }

  /** Counts a failed download by its code. */
  failed(code: string): void {
    if (code === 'tle') this.downloadsTle++;
    else this.downloadsError++;
    this.failuresByCode.set(code, (this.failuresByCode.get(code) ?? 0) + 1);
  }

  snapshot() {
    return {
      checks: this.checks,
      urls: this.urls,
      hits: this.hits,
      misses: this.misses,
      coalesced: this.coalesced,
      dropped: this.dropped,
      downloads: { ok: this.downloadsOk, error: this.downloadsError, tle: this.downloadsTle },
      bytes: this.bytes,
      connections: this.connections.client + this.connections.admin + this.connections.legacy,
      connectionsByKind: { ...this.connections },
    };
  }
}
