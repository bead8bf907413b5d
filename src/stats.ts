/**
 * Counters since start, for `/healthz`, the admin stream and `/metrics`.
 * Plain numbers bumped where things happen; read as a snapshot.
 */
export class Stats {
  /** Check requests (JSON or short form). */
  checks = 0;
  /** URLs asked for in checks. */
  urls = 0;
  /** URLs answered from the cover index at once. */
  hits = 0;
  /** URLs that had to wait for a download. */
  misses = 0;
  /** Askers that joined a download already in flight. */
  coalesced = 0;
  downloadsOk = 0;
  downloadsError = 0;
  downloadsTle = 0;
  /** Bytes of cover files written by downloads. */
  bytes = 0;
  /** Open connections by kind: blog WebSockets (`client`), admin streams, 2019-protocol TCP sockets (`legacy`). */
  readonly connections = { client: 0, admin: 0, legacy: 0 };

  /** Counts a connection of `kind` open until `closed` fires. */
  connected(kind: keyof Stats['connections'], closed: (listener: () => void) => void): void {
    this.connections[kind]++;
    closed(() => this.connections[kind]--);
  }
  /** Upper bounds (seconds) of the download-duration histogram's buckets. */
  readonly durationBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
  /** Downloads per bucket (not cumulative); the last slot is +Inf. */
  readonly durationCounts = new Array<number>(11).fill(0);
  durationSum = 0;
  durationCount = 0;

  /** Records how long one finished download took. */
  observeDuration(ms: number): void {
    const seconds = ms / 1000;
    const index = this.durationBuckets.findIndex((bound) => seconds <= bound);
    this.durationCounts[index === -1 ? this.durationBuckets.length : index]! += 1;
    this.durationSum += seconds;
    this.durationCount++;
  }

  snapshot() {
    return {
      checks: this.checks,
      urls: this.urls,
      hits: this.hits,
      misses: this.misses,
      coalesced: this.coalesced,
      downloads: { ok: this.downloadsOk, error: this.downloadsError, tle: this.downloadsTle },
      bytes: this.bytes,
      connections: this.connections.client + this.connections.admin + this.connections.legacy,
      connectionsByKind: { ...this.connections },
    };
  }
}
