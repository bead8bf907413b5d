/** Reads the service's SQLite file directly (read-only; WAL lets it read while the service writes). */
import Database from 'better-sqlite3';

export interface TaskSnapshot {
  url: string;
  status: string;
  attempts: number;
  error_code: string | null;
  error_message: string | null;
  bytes_done: number;
  bytes_total: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export function readTable<T>(file: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

export const readTasks = (file: string) => readTable<TaskSnapshot>(file, 'SELECT * FROM tasks ORDER BY url');

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitUntil<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
