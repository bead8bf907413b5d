/**
 * Carries out deletion records, one at a time, in three idempotent steps:
 *
 *   1. (kind `entry`) delete the cover row if it still points at the record's
 *      path, and the URL's task row
 *      (kind `job`) mark the archive job `expired`
 *   2. remove the file and the original kept beside it, unless a cover row
 *      points at it (the same content was stored again meanwhile); for a job, its archive. Through the path
 *      guard: a link is removed itself, and nothing is removed through a
 *      folder that is a link or leads out (logged; the record is done)
 *   3. delete the record
 *
 * A crash between any two steps leaves the record in place, and the next run
 * repeats the steps: a row never points at a missing file (the row goes before
 * the file), and a file is never left without something that will remove it
 * (the record goes after the file). A record is claimed before it is worked on,
 * and runs never overlap, so no record is processed twice at once.
 *
 * On a database several nodes share, every node keeps recently asked-for rows in
 * memory and drops one when it hears of its removal (within a second). The
 * files of a claimed batch are removed only `fileGraceMs` after its rows, so no
 * node answers a path whose file is already gone.
 */
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import { removeCoverFiles } from '../store/index.js';
import type { CoverIndex, DeletionQueue, DeletionRow, RemoveOutcome, TaskLedger } from '../store/index.js';
import { crashPoint } from '../crashPoints.js';

export interface DeletionRunnerDeps {
  deletions: DeletionQueue;
  covers: CoverIndex;
  tasks: TaskLedger;
  coversDir: string;
  logger: Logger;
  /** A claim older than this may be taken over (another node died holding it). */
  leaseMs?: number;
  /** Archive jobs past `--job-ttl` (records of kind `job`): the row marked expired, then the archive removed. */
  jobs?: { markExpired(id: string): Promise<void>; removeArchive(id: string): Promise<RemoveOutcome> };
  /** How long a file outlives the row removed before it (0 on a database one node uses). */
  fileGraceMs?: number;
  /** The one clock (default the system's): claims, the file grace, the interval. */
  clock?: Clock;
}

export class DeletionRunner {
  private running: Promise<number> | undefined;
  private again = false;
  private timer: ClockTimer | undefined;
  private readonly clock: Clock;

  constructor(private readonly deps: DeletionRunnerDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /** Runs soon; a run already going runs once more after it. */
  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    void this.runOnce();
  }

  /** Carries out every claimable record. Resolves with how many were done. */
  runOnce(): Promise<number> {
    this.running ??= this.runAll().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
    return this.running;
  }

  private async runAll(): Promise<number> {
    const { deletions, logger } = this.deps;
    let done = 0;
    for (;;) {
      const batch = await deletions.claim(100, this.clock.now(), this.deps.leaseMs ?? 60_000);
      if (batch.length === 0) return done;
      try {
        for (const record of batch) await this.removeRows(record);
        // Every node forgets the rows before their files go.
        if ((this.deps.fileGraceMs ?? 0) > 0) await this.clock.sleep(this.deps.fileGraceMs ?? 0);
        for (const record of batch) {
          await this.removeFile(record);
          done++;
        }
      } catch (error) {
        logger.error('deletion failed; it stays recorded and is tried again', { error });
        return done;
      }
    }
  }

  /** Step 1: the rows (for an entry), each write published to every node. */
  private async removeRows(record: DeletionRow): Promise<void> {
    const { covers, tasks } = this.deps;
    crashPoint('deletion:claimed');
    if (record.kind === 'entry') {
      await covers.removeIfPath(record.url, record.path);
      await tasks.remove(record.url);
    }
    if (record.kind === 'job') await this.deps.jobs?.markExpired(record.url);
    crashPoint('deletion:rows-removed');
  }

  /** Steps 2 and 3: the file unless a row points at it again, then the record. */
  private async removeFile(record: DeletionRow): Promise<void> {
    const { covers, coversDir, deletions, logger } = this.deps;
    let outcome: RemoveOutcome | undefined;
    if (record.kind === 'job') {
      // Without the jobs wired in (never in the service), the record stays for a runner that has them.
      if (!this.deps.jobs) return;
      outcome = await this.deps.jobs.removeArchive(record.url);
    } else if (!(await covers.pathInUse(record.path))) outcome = await removeCoverFiles(coversDir, record.path);
    // The path guard removes nothing through a folder that is a link: what lies behind it is not the service's.
    if (outcome === 'refused') logger.warn('file not removed: a folder on its path is a link or leads out of the covers folder', { url: record.url, path: record.path, kind: record.kind });
    crashPoint('deletion:file-removed');
    await deletions.remove(record.id);
    logger.info('deleted', { url: record.url, path: record.path, kind: record.kind, reason: record.reason });
  }

  /** Runs every `intervalMs` as well as when kicked. */
  start(intervalMs: number): void {
    this.timer = this.clock.setInterval(() => this.kick(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.clock.clearInterval(this.timer);
    this.again = false;
    await this.running;
  }
}
