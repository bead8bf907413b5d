/**
 * WAL checkpoints off the event loop. SQLite's own checkpoint runs inside the
 * commit that passes `wal_autocheckpoint` pages (1,000 by default): on the
 * service's one connection, that commit copied the WAL into the database file
 * and synced both on the event loop's thread, holding it 15–45 ms (a cached
 * check waited that long behind a last-asked-for write), and it was over half
 * of what SQLite writes cost the loop (`bench/lib/walStall.ts`).
 *
 * Here a worker thread with a connection of its own runs a PASSIVE checkpoint
 * every `CHECKPOINT_INTERVAL_MS`; the service's connection checkpoints itself
 * only past `FALLBACK_PAGES` (a far bound that holds the WAL's size should the
 * thread fall behind or fail; a checkpoint that finds the pages already copied
 * costs little). A thread that fails is reported (`onProblem`) and the
 * connection goes back to SQLite's default bound.
 */
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

/** What the thread (walCheckpointWorker.mjs) is given. */
interface CheckpointWorkerData {
  file: string;
  intervalMs: number;
}

/** What the thread tells its owner. */
type CheckpointMessage = { kind: 'ready' } | { kind: 'failing'; message: string } | { kind: 'recovered' };

/** How often the thread checkpoints. */
export const CHECKPOINT_INTERVAL_MS = 200;
/** Past this many WAL pages (4 KiB each), the service's connection checkpoints itself. */
export const FALLBACK_PAGES = 16_000;
/** SQLite's own bound, given back when the thread is gone. */
const DEFAULT_PAGES = 1000;

export class WalCheckpoints {
  private stopping = false;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    private readonly db: BetterSqlite3.Database,
    onProblem: (message: string) => void,
  ) {
    this.exited = new Promise((resolve) => {
      worker.once('exit', () => {
        if (!this.stopping) {
          this.fallBack();
          onProblem('the WAL checkpoint thread ended; the service checkpoints the database itself');
        }
        resolve();
      });
    });
    worker.on('error', (error) => onProblem(`the WAL checkpoint thread failed: ${error.message}`));
    worker.on('message', (message: CheckpointMessage) => {
      if (message.kind === 'failing') onProblem(`WAL checkpoints fail: ${message.message}`);
      else if (message.kind === 'recovered') onProblem('WAL checkpoints succeed again');
    });
  }

  /**
   * Starts the thread for the file `db` has open (in WAL mode), once it has
   * opened its connection; the connection's own checkpoints are pushed back to
   * the far bound then. Undefined, with `db` as it was, if it cannot start.
   */
  static async start(db: BetterSqlite3.Database, onProblem: (message: string) => void, intervalMs = CHECKPOINT_INTERVAL_MS): Promise<WalCheckpoints | undefined> {
    if (db.memory || String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return undefined;
    // Plain JavaScript, copied beside this module by the build; no loader in the thread (execArgv empty).
    const worker = new Worker(new URL('./walCheckpointWorker.mjs', import.meta.url), { execArgv: [], workerData: { file: db.name, intervalMs } satisfies CheckpointWorkerData });
    const ready = await new Promise<boolean>((resolve) => {
      worker.once('message', (message: CheckpointMessage) => resolve(message.kind === 'ready'));
      worker.once('error', () => resolve(false));
      worker.once('exit', () => resolve(false));
    });
    if (!ready) {
      await worker.terminate();
      return undefined;
    }
    worker.unref();
    db.pragma(`wal_autocheckpoint = ${FALLBACK_PAGES}`);
    return new WalCheckpoints(worker, db, onProblem);
  }

  /** Ends the thread (its connection closed) and gives the connection SQLite's default bound back. */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.fallBack();
      // Held open until the thread has closed its connection.
      this.worker.ref();
      this.worker.postMessage('stop');
      const timer = setTimeout(() => void this.worker.terminate(), 5000).unref();
      await this.exited;
      clearTimeout(timer);
    }
    await this.exited;
  }

  private fallBack(): void {
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${DEFAULT_PAGES}`);
  }
}
