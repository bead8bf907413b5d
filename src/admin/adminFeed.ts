/**
 * What `/admin/ws` streams, gathered from the service: the snapshot (status,
 * the newest unfinished tasks, the counters), the counters once a second, and
 * every task change the store publishes, this node's and other nodes'.
 */
import type { Downloads } from '../downloads/index.js';
import type { Stats } from '../stats.js';
import { upstreamFrame } from '../upstream/shown.js';
import type { HostStatus } from '../upstream/types.js';
import type { JobChange, Store, TaskChange, TaskRow } from '../store/index.js';
import { jobJson } from '../jobs/index.js';
import { taskJson } from './adminApi.js';
import type { AdminFeed } from './adminSocket.js';
import { taskEvent } from './adminSocket.js';
import type { GateStatus as WireGateStatus, SnapshotTask, StatsBody } from '../wire/adminStream.js';
import type { Same } from '../sameType.js';
import type { GateStatus } from '../../machines/index.js';

/** The wire's gate statuses are the machines' own: one added on either side breaks the compile here. */
const _gateStatusesAgree: Same<GateStatus, WireGateStatus> = true;

/** Most jobs a snapshot lists (the newest). */
const SNAPSHOT_JOBS = 50;

/** Most unfinished tasks a snapshot lists, and the most bytes of URLs it carries. */
const SNAPSHOT_TASKS = 1000;
const SNAPSHOT_URL_BYTES = 256 * 1024;

/** The newest unfinished tasks, as task events, within the snapshot's bounds. */
function snapshotTasks(open: TaskRow[]): SnapshotTask[] {
  const picked: SnapshotTask[] = [];
  let bytes = 0;
  for (let i = open.length - 1; i >= 0 && picked.length < SNAPSHOT_TASKS; i--) {
    const row = open[i]!;
    bytes += row.url.length;
    if (bytes > SNAPSHOT_URL_BYTES) break;
    const { createdAt: _c, updatedAt, finishedAt: _f, ...task } = taskJson(row);
    picked.push({ ...task, at: updatedAt });
  }
  return picked.reverse();
}

export function createAdminFeed(deps: {
  store: Store;
  downloads: Downloads;
  stats: Stats;
  serviceUrl?: () => string;
  /** The upstream hosts that cooled within the hour (the per-host gates' `status()`). */
  upstream?: () => HostStatus[];
}): AdminFeed {
  const { store, downloads, stats } = deps;
  const serviceUrl = deps.serviceUrl ?? (() => '');
  const statsFrame = (): StatsBody => {
    const counts = downloads.counts();
    const { status, since, why } = downloads.statusDetail();
    // `upstream` as in /healthz (absent when no host cooled within the hour), with why and when each cooled.
    const upstream = upstreamFrame(deps.upstream?.() ?? []);
    return {
      status,
      ...(status === 'tardy' ? { reasons: downloads.tardyReasons() } : {}),
      // Since when this node's gate shows the status, and (tardy, paused) why: the limits passed, who paused.
      since: new Date(since).toISOString(),
      ...(why !== null ? { why } : {}),
      ...stats.snapshot(),
      queued: counts.queued,
      downloading: counts.downloading,
      ...(Object.keys(upstream).length > 0 ? { upstream } : {}),
    };
  };
  return {
    snapshot: async () => {
      const { status, reasons, since, why, ...rest } = statsFrame();
      const open = await store.tasks.unfinished();
      const { jobs } = await store.jobs.list({ limit: SNAPSHOT_JOBS, offset: 0 });
      const base = serviceUrl();
      return {
        type: 'snapshot',
        status,
        ...(reasons ? { reasons } : {}),
        since,
        ...(why !== undefined ? { why } : {}),
        tasks: snapshotTasks(open),
        jobs: jobs.map((job) => jobJson(job, base)),
        stats: { status, since, ...(why !== undefined ? { why } : {}), ...rest },
      };
    },
    stats: statsFrame,
    onTask: (listener) => {
      const onChange = (change: TaskChange) => listener(taskEvent(change));
      store.events.on('task', onChange);
      return () => store.events.off('task', onChange);
    },
    onJob: (listener) => {
      const onChange = (change: JobChange) => listener({ ...jobJson(change.job, serviceUrl()), at: new Date(change.job.updatedAt).toISOString() });
      store.events.on('job', onChange);
      return () => store.events.off('job', onChange);
    },
  };
}
