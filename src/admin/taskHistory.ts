/**
 * The per-task timeline the dashboard's detail shows, read from the database
 * (`task_events`, written by the task ledger with each batch): status changes
 * with their try number, each failed try's error, the final status with its
 * error or bytes, and the node that made each. It survives restarts, is shared
 * by every node of a shared database, keeps the newest `TASK_EVENTS_PER_URL`
 * per URL, and goes when the task row is removed. Progress updates are not kept.
 */
import type { TaskEventRow } from '../store/index.js';
import type { TimelineEvent } from '../wire/adminStream.js';

/** One entry of `GET /admin/api/task`'s `timeline`: declared by the wire contract. */
export type { TimelineEvent };

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
