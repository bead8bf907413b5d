/**
 * `GET /metrics`: a prom-client registry (the maintained library) with Node's
 * default process metrics, `coverhelper_build_info`, and the service's own,
 * read from `Stats` and the supervisor when scraped.
 *
 *   coverhelper_build_info{version,nodejs_version}      1
 *   coverhelper_http_requests_total{route,status}       HTTP requests by route pattern ("none": no route) and status
 *   coverhelper_http_request_duration_seconds{route}    histogram, to the end of the answer
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
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
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
  /** One HTTP request answered: its route's pattern ("none" without one), its status, its time. */
  observeRequest(route: string, status: number, seconds: number): void;
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

/** The render supervisor's counters and gauges. */
function renderMetrics(registry: Registry, renders: NonNullable<MetricsSources['renders']>): void {
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

/** The archive jobs' counters and gauges. */
function jobMetrics(registry: Registry, jobs: NonNullable<MetricsSources['jobs']>): void {
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

/** Per upstream host: requests by outcome, and whether it cools. */
function upstreamMetrics(registry: Registry, upstream: NonNullable<MetricsSources['upstream']>): void {
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

export function createMetrics(sources: MetricsSources): Metrics {
  const { stats } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's gauges named `…_total` (the sums of nodejs_active_handles and the like,
  // by type) break the convention that `_total` is a counter: `promtool check metrics`
  // refuses them. Their by-type gauges stay, and sum to the same.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  // `node` is a cluster node everywhere else in this service: Node.js's version is `nodejs_version`.
  new Gauge({ name: 'coverhelper_build_info', help: 'The running version: 1, labelled with it and the Node.js version.', labelNames: ['version', 'nodejs_version'], registers: [registry] })
    .labels({ version: sources.version, nodejs_version: process.version })
    .set(1);
  const httpRequests = new Counter({
    name: 'coverhelper_http_requests_total',
    help: 'HTTP requests answered, by route (the route table\'s pattern: /covers/*, /c/*, / and /proxy/* for the proxy prefix, /api/check, …; "none" for no route) and status.',
    labelNames: ['route', 'status'],
    registers: [registry],
  });
  const httpDurations = new Histogram({
    name: 'coverhelper_http_request_duration_seconds',
    help: 'Time from a request to the end of its answer, by route (as coverhelper_http_requests_total).',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });

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
  if (renders) renderMetrics(registry, renders);
  if (jobs) jobMetrics(registry, jobs);

  const upstream = sources.upstream;
  if (upstream) upstreamMetrics(registry, upstream);

  const requestChildren = new Map<string, ReturnType<typeof httpRequests.labels>>();
  const durationChildren = new Map<string, ReturnType<typeof httpDurations.labels>>();
  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    observeRequest(route, status, seconds) {
      // The label children are kept (routes × statuses are few): no label hashing per request.
      const key = `${route} ${status}`;
      let counted = requestChildren.get(key);
      if (counted === undefined) requestChildren.set(key, (counted = httpRequests.labels({ route, status: String(status) })));
      counted.inc();
      let timed = durationChildren.get(route);
      if (timed === undefined) durationChildren.set(route, (timed = httpDurations.labels({ route })));
      timed.observe(seconds);
    },
  };
}
