/**
 * One administrator's live stream on `/admin/ws`.
 *
 * First a snapshot, then every task change, then stats once a second. A socket
 * that reads slowly (or not at all) never holds anything else up: while its
 * send buffer is above `highWaterBytes`, changes are kept as the latest state
 * per URL (a map, not a queue) and the latest stats only; if more than
 * `maxPending` URLs pile up, they are dropped and the socket gets a fresh
 * snapshot when it drains. Memory per socket is bounded either way.
 */
import type { WebSocket } from 'ws';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { TaskChange } from '../store/index.js';
import type { AdminFrame, JobUpdate, JobFrame, SnapshotFrame, StatsBody, StatsFrame, TaskEvent, TaskFrame } from '../wire/adminStream.js';

/** A task change, as the admin stream's `task` frame shows it (without `type`): declared by the wire contract. */
export type { TaskEvent };

/** The frame of a task change written by any node. */
export function taskEvent(change: TaskChange): TaskEvent {
  const { patch } = change;
  return {
    url: change.url,
    node: change.node,
    status: patch.status ?? 'ok',
    bytes: patch.bytesDone ?? 0,
    total: patch.bytesTotal ?? null,
    error: patch.errorCode ? { code: patch.errorCode, message: patch.errorMessage ?? '' } : null,
    ...(change.removed ? { removed: true as const } : {}),
    at: new Date(change.at).toISOString(),
  };
}

export interface AdminFeed {
  /** The first frame (and the one after a dropped backlog). */
  snapshot(): Promise<SnapshotFrame>;
  /** The current counters. */
  stats(): StatsBody;
  /** Registers a task listener; returns the function that removes it. */
  onTask(listener: (event: TaskEvent) => void): () => void;
  /** Registers a listener of archive job changes (`job` frames); returns the function that removes it. */
  onJob?(listener: (event: JobUpdate) => void): () => void;
}

export interface AdminSocketOptions {
  highWaterBytes?: number;
  maxPending?: number;
  statsIntervalMs?: number;
  /** The one clock (default the system's): the pump's and the stats frame's timers. */
  clock?: Clock;
}

export function serveAdminSocket(ws: WebSocket, feed: AdminFeed, options: AdminSocketOptions = {}): { pending: () => number } {
  const highWater = options.highWaterBytes ?? 256 * 1024;
  const maxPending = options.maxPending ?? 10_000;
  /** The latest frame per task URL (and per job, keyed `job <id>`: no URL has a space). */
  const pending = new Map<string, AdminFrame>();
  let stats: StatsBody | undefined;
  let needSnapshot = true;
  let sendingSnapshot = false;
  let timer: ClockTimer | undefined;
  const clock = options.clock ?? systemClock;

  const open = () => ws.readyState === ws.OPEN;
  const roomy = () => ws.bufferedAmount < highWater;
  const schedule = (delayMs = 0) => {
    if (timer === undefined && open()) timer = clock.setTimeout(pump, delayMs);
  };

  function pump(): void {
    timer = undefined;
    if (!open() || sendingSnapshot) return;
    if (needSnapshot) {
      if (!roomy()) return schedule(50);
      needSnapshot = false;
      sendingSnapshot = true;
      // Changes that arrive while the snapshot is read stay pending and follow it.
      feed
        .snapshot()
        .then((frame) => {
          if (open()) ws.send(JSON.stringify(frame));
        })
        .catch(() => ws.close(1011, 'snapshot failed'))
        .finally(() => {
          sendingSnapshot = false;
          schedule();
        });
      return;
    }
    for (const [key, frame] of pending) {
      if (!roomy()) break;
      pending.delete(key);
      ws.send(JSON.stringify(frame));
    }
    if (stats !== undefined && roomy()) {
      ws.send(JSON.stringify({ type: 'stats', ...stats } satisfies StatsFrame));
      stats = undefined;
    }
    if (pending.size > 0 || stats !== undefined) schedule(50);
  }

  const changed = (key: string, frame: AdminFrame) => {
    if (!needSnapshot && !sendingSnapshot && pending.size === 0 && open() && roomy()) {
      // Keeping up: every change goes out as it happens.
      ws.send(JSON.stringify(frame));
      return;
    }
    pending.delete(key); // keep the map in order of the latest change
    pending.set(key, frame);
    if (pending.size > maxPending) {
      pending.clear();
      needSnapshot = true;
    }
    schedule();
  };
  const stopTasks = feed.onTask((event) => changed(event.url, { type: 'task', ...event } satisfies TaskFrame));
  const stopJobs = feed.onJob?.((event) => changed(`job ${event.id}`, { type: 'job', ...event } satisfies JobFrame));
  const stopListening = () => {
    stopTasks();
    stopJobs?.();
  };
  const statsTimer = clock.setInterval(() => {
    stats = feed.stats();
    schedule();
  }, options.statsIntervalMs ?? 1000);

  ws.on('close', () => {
    stopListening();
    clock.clearInterval(statsTimer);
    clock.clearTimeout(timer);
    pending.clear();
  });
  ws.on('error', () => undefined);
  ws.on('message', () => {
    // The stream is one-way; anything the admin sends is ignored.
  });
  schedule();
  return { pending: () => pending.size };
}
