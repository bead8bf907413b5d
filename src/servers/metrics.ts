/**
 * `GET /metrics` in Prometheus' text format (version 0.0.4).
 */
import type { GateStatus } from '../../machines/index.js';
import type { ResourceSample } from '../maintenance/index.js';
import type { Stats } from '../stats.js';

export interface MetricsInput {
  stats: Stats;
  status: GateStatus;
  queued: number;
  downloading: number;
  /** Download actors alive: one per running download (a URL waiting for a worker has none). */
  actors: number;
  resources: ResourceSample | undefined;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function renderMetrics({ stats, status, queued, downloading, actors, resources }: MetricsInput): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric('coverhelper_checks_total', 'counter', 'Check requests answered.', [['', stats.checks]]);
  metric('coverhelper_check_urls_total', 'counter', 'URLs asked for in checks.', [['', stats.urls]]);
  metric('coverhelper_cache_hits_total', 'counter', 'URLs answered from the cover index at once.', [['', stats.hits]]);
  metric('coverhelper_cache_misses_total', 'counter', 'URLs that waited for a download.', [['', stats.misses]]);
  metric('coverhelper_coalesced_askers_total', 'counter', 'Askers that joined a download already in flight.', [['', stats.coalesced]]);
  metric('coverhelper_downloads_total', 'counter', 'Finished downloads by outcome.', [
    ['{outcome="ok"}', stats.downloadsOk],
    ['{outcome="error"}', stats.downloadsError],
    ['{outcome="tle"}', stats.downloadsTle],
  ]);
  metric('coverhelper_downloaded_bytes_total', 'counter', 'Bytes of cover files written by downloads.', [['', stats.bytes]]);
  let cumulative = 0;
  const buckets: [string, number][] = stats.durationBuckets.map((bound, i) => {
    cumulative += stats.durationCounts[i]!;
    return [`_bucket{le="${bound}"}`, cumulative];
  });
  buckets.push(['_bucket{le="+Inf"}', stats.durationCount], ['_sum', Number(stats.durationSum.toFixed(6))], ['_count', stats.durationCount]);
  metric('coverhelper_download_duration_seconds', 'histogram', 'Wall-clock time of finished downloads.', buckets);
  metric('coverhelper_queued', 'gauge', 'Downloads waiting for a worker.', [['', queued]]);
  metric('coverhelper_downloading', 'gauge', 'Downloads running.', [['', downloading]]);
  metric('coverhelper_download_actors', 'gauge', 'Download actors alive: one per running download.', [['', actors]]);
  metric(
    'coverhelper_connections',
    'gauge',
    'Open connections by kind: client WebSockets, admin streams, 2019-protocol sockets.',
    Object.entries(stats.connections).map(([kind, n]) => [`{kind="${kind}"}`, n]),
  );
  const memory = process.memoryUsage();
  metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', [['', memory.rss]]);
  metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use.', [['', memory.heapUsed]]);
  metric('nodejs_heap_total_bytes', 'gauge', 'V8 heap committed.', [['', memory.heapTotal]]);
  metric('nodejs_external_memory_bytes', 'gauge', 'Memory outside the V8 heap held by JavaScript objects (Buffers among them).', [['', memory.external]]);
  metric(
    'coverhelper_status',
    'gauge',
    'The service status: 1 for the current one.',
    (['ready', 'tardy', 'paused'] as const).map((s) => [`{status="${s}"}`, s === status ? 1 : 0]),
  );
  if (resources) {
    metric('coverhelper_disk_used_percent', 'gauge', 'Disk used on the covers filesystem.', [['', resources.diskPercent]]);
    metric('coverhelper_memory_used_percent', 'gauge', 'Memory used on this machine.', [['', resources.memPercent]]);
    metric('coverhelper_load5', 'gauge', 'Five-minute load average.', [['', resources.load5]]);
  }
  return `${lines.join('\n')}\n`;
}
