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
import type { TaskStatus } from '../../machines/types.js';
import type { TaskChange } from '../store/index.js';

/** A task change, as the admin stream's `task` frame shows it (without `type`). */
export interface TaskEvent {
  url: string;
  /** The node that made the change. */
  node: string;
  status: TaskStatus;
  bytes: number;
  total: number | null;
  error: { code: string; message: string } | null;
  /** The entry was deleted (the frame carries the status it had). */
  removed?: true;
  at: string;
}

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
  snapshot(): Promise<Record<string, unknown>>;
  /** The current counters. */
  stats(): Record<string, unknown>;
  /** Registers a task listener; returns the function that removes it. */
  onTask(listener: (event: TaskEvent) => void): () => void;
  /** Registers a listener of archive job changes (`job` frames); returns the function that removes it. */
  onJob?(listener: (event: { id: string; at: string; [key: string]: unknown }) => void): () => void;
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
  const pending = new Map<string, Record<string, unknown>>();
  let stats: Record<string, unknown> | undefined;
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
      ws.send(JSON.stringify({ type: 'stats', ...stats }));
      stats = undefined;
    }
    if (pending.size > 0 || stats !== undefined) schedule(50);
  }

  const changed = (key: string, frame: Record<string, unknown>) => {
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
  const stopTasks = feed.onTask((event) => changed(event.url, { type: 'task', ...event }));
  const stopJobs = feed.onJob?.((event) => changed(`job ${event.id}`, { type: 'job', ...event }));
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
