/**
 * `GET /metrics`: a prom-client registry (the maintained library) with Node's
 * default process metrics, `coverhelper_build_info`, and the service's own,
 * read from `Stats` and the supervisor when scraped.
 *
 *   coverhelper_checks_total, _check_urls_total, _cache_hits_total,
 *   _cache_misses_total, _coalesced_askers_total        counters
 *   coverhelper_downloads_total{outcome,code}           outcome ok | error | tle; code the error code ("" when ok)
 *   coverhelper_downloaded_bytes_total                  bytes of bodies downloaded
 *   coverhelper_download_duration_seconds               histogram
 *   coverhelper_queued, _downloading, _download_actors  gauges
 *   coverhelper_connections{kind}                       client | admin | legacy
 *   coverhelper_status{status}                          1 for the current one
 *   coverhelper_disk_used_ratio, _memory_used_ratio, _load5   the resource guard's last sample
 *   coverhelper_jobs_total{outcome}                     archive jobs this node finished: ready | failed | expired
 *   coverhelper_jobs{status}                            archive jobs in the database by status (every node's)
 *   coverhelper_upstream_requests_total{host,outcome}   requests to each upstream host (API, image, each redirect hop)
 *                                                       by outcome: ok | refused (412/429/503, a risk-control code) | error
 *   coverhelper_upstream_cooling{host}                  1 while the host cools (nothing is sent to it), 0 when open
 *   coverhelper_renders_total{outcome}                  variant renders: rendered | failed | dropped (before they started)
 *   coverhelper_renders{state}                          variant renders now: running | queued
 *
 * The upstream hosts labelled are at most 200: cooling ones first, then those
 * that cooled within the hour, then the busiest (the gates forget idle hosts, so
 * a host's counter can start again from 0, which Prometheus reads as a reset).
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { GateStatus } from '../../machines/index.js';
import type { ResourceSample } from '../maintenance/index.js';
import type { Stats } from '../stats.js';
import type { HostCounts } from '../upstream/hostGates.js';
import { metricHosts } from '../upstream/shown.js';
import type { HostStatus } from '../upstream/types.js';

export interface MetricsSources {
  stats: Stats;
  version: string;
  status: () => GateStatus;
  counts: () => { queued: number; downloading: number; actors: number };
  resources: () => ResourceSample | undefined;
  /** Archive jobs: this node's outcomes, and every job's status from the database. */
  jobs?: { outcomes: Record<string, number>; countByStatus(): Promise<Record<string, number>> };
  /** The per-host gates: requests by outcome per host, and the hosts that cooled within the hour. */
  upstream?: { counts(): ReadonlyMap<string, HostCounts>; status(): HostStatus[] };
  /** Variant renders (`Renders.counts()`). */
  renders?: () => { rendered: number; failed: number; dropped: number; running: number; queued: number };
}

export interface Metrics {
  contentType: string;
  render(): Promise<string>;
}

/** A counter whose value is read from the service when scraped. */
function readCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, read: () => number | undefined): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      const value = read();
      if (value === undefined) this.reset();
      else this.set(value);
    },
  });
}

export function createMetrics(sources: MetricsSources): Metrics {
  const { stats } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({ name: 'coverhelper_build_info', help: 'The running version: 1, labelled with it.', labelNames: ['version', 'node'], registers: [registry] })
    .labels({ version: sources.version, node: process.version })
    .set(1);

  readCounter(registry, 'coverhelper_checks_total', 'Check requests answered (WebSocket, short form, TCP, HTTP).', () => stats.checks);
  readCounter(registry, 'coverhelper_check_urls_total', 'URLs asked for in checks.', () => stats.urls);
  readCounter(registry, 'coverhelper_cache_hits_total', 'URLs answered from the cover index at once.', () => stats.hits);
  readCounter(registry, 'coverhelper_cache_misses_total', 'URLs that waited for a download.', () => stats.misses);
  readCounter(registry, 'coverhelper_coalesced_askers_total', 'Askers that joined a download already in flight.', () => stats.coalesced);
  readCounter(registry, 'coverhelper_dropped_downloads_total', 'Queued downloads dropped before they started: nobody waited for them any more.', () => stats.dropped);
  readCounter(registry, 'coverhelper_downloaded_bytes_total', 'Bytes of cover bodies downloaded.', () => stats.bytes);
  new Counter({
    name: 'coverhelper_downloads_total',
    help: 'Finished downloads by outcome (ok, error, tle) and error code.',
    labelNames: ['outcome', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      this.labels({ outcome: 'ok', code: '' }).inc(stats.downloadsOk);
      for (const [code, n] of stats.failuresByCode) this.labels({ outcome: code === 'tle' ? 'tle' : 'error', code }).inc(n);
    },
  });
  registry.registerMetric(stats.downloadDurations);

  readGauge(registry, 'coverhelper_queued', 'Downloads waiting for a worker.', () => sources.counts().queued);
  readGauge(registry, 'coverhelper_downloading', 'Downloads running.', () => sources.counts().downloading);
  readGauge(registry, 'coverhelper_download_actors', 'Download actors alive: one per running download.', () => sources.counts().actors);
  new Gauge({
    name: 'coverhelper_connections',
    help: 'Open connections by kind: client WebSockets, admin streams, 2019-protocol TCP sockets.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const [kind, n] of Object.entries(stats.connections)) this.labels({ kind }).set(n);
    },
  });
  new Gauge({
    name: 'coverhelper_status',
    help: 'The service status: 1 for the current one.',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      const current = sources.status();
      for (const status of ['ready', 'tardy', 'paused'] as const) this.labels({ status }).set(status === current ? 1 : 0);
    },
  });
  readGauge(registry, 'coverhelper_disk_used_ratio', 'Share of the covers filesystem used (0 to 1).', () => {
    const sample = sources.resources();
    return sample === undefined ? undefined : sample.diskPercent / 100;
  });
  readGauge(registry, 'coverhelper_memory_used_ratio', 'Share of this machine’s memory used (0 to 1).', () => {
    const sample = sources.resources();
    return sample === undefined ? undefined : sample.memPercent / 100;
  });
  readGauge(registry, 'coverhelper_load5', 'Five-minute load average.', () => sources.resources()?.load5);
  const jobs = sources.jobs;
  const renders = sources.renders;
  if (renders) {
    new Counter({
      name: 'coverhelper_renders_total',
      help: 'Variant renders this node finished, by outcome: rendered, failed (or out of time), dropped (nobody waited any more before it started).',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset();
        const counts = renders();
        for (const outcome of ['rendered', 'failed', 'dropped'] as const) this.labels({ outcome }).inc(counts[outcome]);
      },
    });
    new Gauge({
      name: 'coverhelper_renders',
      help: 'Variant renders now, by state: running (on a render worker), queued (waiting for one).',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const counts = renders();
        this.labels({ state: 'running' }).set(counts.running);
        this.labels({ state: 'queued' }).set(counts.queued);
      },
    });
  }
  if (jobs) {
    new Counter({
      name: 'coverhelper_jobs_total',
      help: 'Archive jobs this node finished, by outcome (ready, failed) and expired.',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [outcome, n] of Object.entries(jobs.outcomes)) this.labels({ outcome }).inc(n);
      },
    });
    new Gauge({
      name: 'coverhelper_jobs',
      help: 'Archive jobs in the database by status (those of every node).',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        const counts = await jobs.countByStatus().catch(() => undefined);
        if (counts === undefined) return;
        for (const [status, n] of Object.entries(counts)) this.labels({ status }).set(n);
      },
    });
  }

  const upstream = sources.upstream;
  if (upstream) {
    new Counter({
      name: 'coverhelper_upstream_requests_total',
      help: 'Requests to each upstream host (API, image, each redirect hop) by outcome: ok, refused (HTTP 412/429/503 or a risk-control code: the host cools), error. At most 200 hosts, cooling ones first.',
      labelNames: ['host', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { host, counts } of metricHosts(upstream.counts(), upstream.status())) {
          for (const outcome of ['ok', 'refused', 'error'] as const) this.labels({ host, outcome }).inc(counts[outcome]);
        }
      },
    });
    new Gauge({
      name: 'coverhelper_upstream_cooling',
      help: 'Per upstream host: 1 while it cools after a refusal (nothing is sent to it), 0 when open. At most 200 hosts, cooling ones first.',
      labelNames: ['host'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { host, cooling } of metricHosts(upstream.counts(), upstream.status())) this.labels({ host }).set(cooling ? 1 : 0);
      },
    });
  }

  return { contentType: registry.contentType, render: () => registry.metrics() };
}
