/**
 * The per-task timeline the dashboard's detail shows, read from the database
 * (`task_events`, written by the task ledger with each batch): status changes
 * with their try number, each failed try's error, the final status with its
 * error or bytes, and the node that made each. It survives restarts, is shared
 * by every node of a shared database, keeps the newest `TASK_EVENTS_PER_URL`
 * per URL, and goes when the task row is removed. Progress updates are not kept.
 */
import type { TaskStatus } from '../../machines/types.js';
import type { Store, TaskEventRow } from '../store/index.js';

/** One entry of `GET /admin/api/task`'s `timeline`. */
export interface TimelineEvent {
  url: string;
  /** The node that made the change. */
  node: string;
  status: TaskStatus;
  /** The try it belongs to (1 for the first), when known. */
  try: number | null;
  /** The bytes stored, for an `ok`; else 0. */
  bytes: number;
  total: null;
  error: { code: string; message: string } | null;
  at: string;
}

export function timelineEvent(row: TaskEventRow): TimelineEvent {
  return {
    url: row.url,
    node: row.node,
    status: row.status,
    try: row.attempt,
    bytes: row.bytes ?? 0,
    total: null,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    at: new Date(row.at).toISOString(),
  };
}

export class TaskHistory {
  constructor(private readonly store: Pick<Store, 'tasks'>) {}

  /** The changes kept for `url`, oldest first. */
  async timeline(url: string): Promise<TimelineEvent[]> {
    return (await this.store.tasks.timeline(url)).map(timelineEvent);
  }

  /** Nothing to let go of: kept for the shutdown sequence. */
  close(): void {}
}
