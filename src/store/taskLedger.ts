/**
 * The task ledger (`TaskLedger`): one row per URL with its download's status,
 * the same class on every database.
 *
 * Every change is handed to `update()` the moment it happens. Changes are merged
 * per URL and written through the serial writer, a batch per event-loop turn in
 * one transaction, so 10,000 URLs arriving at once cost one transaction, not
 * 10,000. Once a batch is written, each change in it is published, in the order
 * it was made, as a `task` change: to this node's listeners (the admin stream)
 * and, on a shared database, to every other node (NOTIFY, in the batch's
 * transaction). A change is built only when someone can hear it.
 *
 * The timeline (`task_events`) is written with the batch, in its transaction:
 * one event per status change, try and error, never one per progress update
 * (a `downloading` patch that only carries byte counts), so a download costs
 * three or four small inserts; the dialect keeps the newest
 * `TASK_EVENTS_PER_URL` per URL and deletes them with the row.
 */
import type { Clock, ClockTimer } from '../clock.js';
import type { EventEmitter } from 'node:events';
import { In, IsNull, LessThan, MoreThan, Raw } from 'typeorm';
import type { FindOptionsWhere, Repository } from 'typeorm';
import type { TaskStatus } from '../../machines/types.js';
import { TASK_EVENT_MESSAGE_MAX, TASK_EVENTS_PER_URL } from './dialect.js';
import type { CoverWrite, Dialect, Published, TaskEventWrite, TaskWrite } from './dialect.js';
import { TaskEntity, TaskEventEntity } from './entities.js';
import type { CoverRow, TaskEventRow, TaskRow } from './entities.js';
import type { StoreEventMap, TaskChange, TaskLedger, TaskListOptions, TaskPatch } from './ports.js';
import type { SerialWriter } from './serialWriter.js';
import { atTurnEndLast } from '../turnEnd.js';

const UNFINISHED: TaskStatus[] = ['waiting', 'queued', 'downloading'];

/**
 * How long a download's start (its `downloading` row) may wait to be written
 * with its end, on a database one node uses: a download that ends within it
 * costs one write of its row, not two (each rewrites the row's six indexes;
 * docs/BENCHMARKS.md, Issue 27, session 5). Every read of the ledger, and
 * `flush`, writes what is held first; its timeline event and its change to
 * listeners are not held.
 */
export const START_HOLD_MS = 250;

/** A cover row waiting for the batch's transaction, and who awaits its outcome. */
interface PendingCover {
  write: CoverWrite;
  resolve: (custom: CoverRow | null) => void;
  reject: (error: unknown) => void;
}
/** Most URLs remembered as waiting (their first wait recorded), for `worthAnEvent`. */
const MAX_WAITING_REMEMBERED = 100_000;

export class SqlTaskLedger implements TaskLedger {
  private readonly repo: Repository<TaskRow>;
  private readonly eventRepo: Repository<TaskEventRow>;
  private pending = new Map<string, TaskWrite>();
  /** The timeline events of the pending batch, in the order they were made. */
  private pendingEvents: TaskEventWrite[] = [];
  /** URLs whose last timeline event is a wait (waiting or queued). */
  private readonly waiting = new Set<string>();
  /** The changes of the pending batch, in the order they were made (only when someone listens). */
  private changes: TaskChange[] = [];
  /** Cover rows to be written in the pending batch's transaction (`writeCover`). */
  private pendingCovers: PendingCover[] = [];
  /** Downloads' starts not yet written (`START_HOLD_MS`), in the order they came, with when. */
  private readonly held = new Map<string, { write: TaskWrite; since: number }>();
  private holdTimer: ClockTimer | undefined;
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dialect: Dialect,
    private readonly writer: SerialWriter,
    private readonly events: EventEmitter<StoreEventMap>,
    private readonly node: string,
    private readonly onError: (error: unknown) => void,
    private readonly clock: Clock,
  ) {
    this.repo = dialect.dataSource.getRepository(TaskEntity);
    this.eventRepo = dialect.dataSource.getRepository(TaskEventEntity);
  }

  /** Whether a patch is only a running download's byte counts (not kept in the timeline). */
  private static progressOnly(patch: TaskPatch): boolean {
    if (patch.status !== 'downloading') return false;
    for (const key in patch) if (key !== 'status' && key !== 'bytesDone' && key !== 'bytesTotal') return false;
    return true;
  }

  /** Whether a patch is a download's start (what `reportStatus` writes on START). */
  private static isStart(patch: TaskPatch): boolean {
    return patch.status === 'downloading' && patch.startedAt !== undefined;
  }

  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      // After the supervisor has heard the turn's finished downloads: the ones it starts come in this batch.
      atTurnEndLast(() => {
        this.scheduled = false;
        void this.writePending();
      });
    }
  }

  update(url: string, patch: TaskPatch): void {
    const at = this.clock.now();
    const entry = this.pending.get(url);
    if (entry) {
      Object.assign(entry.patch, patch);
      entry.at = at;
    } else {
      const held = this.held.size > 0 ? this.held.get(url) : undefined;
      if (held !== undefined) {
        Object.assign(held.write.patch, patch);
        held.write.at = at;
        // Its end (anything but a byte count) goes in this batch, with its start: one write of the row.
        if (!SqlTaskLedger.progressOnly(patch)) {
          this.held.delete(url);
          this.pending.set(url, held.write);
        }
      } else if (!this.dialect.shared && SqlTaskLedger.isStart(patch)) {
        // Held by the monotonic clock: a wall clock stepped back must not hold it longer.
        this.held.set(url, { write: { url, patch: { ...patch }, at }, since: this.clock.monotonic() });
        this.holdTimer ??= this.clock.setTimeout(this.releaseHeld, START_HOLD_MS).unref();
      } else {
        this.pending.set(url, { url, patch: { ...patch }, at });
      }
    }
    // The admin streams listen; other nodes always may. With neither, a change costs no object.
    if (this.dialect.shared || this.events.listenerCount('task') > 0) this.changes.push({ url, node: this.node, at, patch, remote: false });
    if (patch.status !== undefined && !SqlTaskLedger.progressOnly(patch) && this.worthAnEvent(url, patch.status)) {
      this.pendingEvents.push({
        url,
        at,
        node: this.node,
        status: patch.status,
        attempt: patch.attempts ?? null,
        errorCode: patch.errorCode ?? null,
        errorMessage: patch.errorMessage?.slice(0, TASK_EVENT_MESSAGE_MAX) ?? null,
        bytes: patch.status === 'ok' ? (patch.bytesDone ?? null) : null,
      });
    }
    this.schedule();
  }

  /**
   * Whether a status change goes into the timeline: a URL's first wait is kept,
   * but moving between waiting and queued (the gate closing and opening, which
   * re-reports every waiting URL) is not, or a flapping gate would push a task's
   * tries and errors out of its window.
   */
  private worthAnEvent(url: string, status: TaskStatus): boolean {
    const waits = status === 'waiting' || status === 'queued';
    if (!waits) {
      this.waiting.delete(url);
      return true;
    }
    if (this.waiting.has(url)) return false;
    // Bounded: past the bound the oldest URL forgets it waited (at worst one more event for it).
    if (this.waiting.size >= MAX_WAITING_REMEMBERED) this.waiting.delete(this.waiting.values().next().value!);
    this.waiting.add(url);
    return true;
  }

  noteTry(url: string, attempt: number, error: { code: string; message: string }): void {
    this.pendingEvents.push({ url, at: this.clock.now(), node: this.node, status: 'downloading', attempt, errorCode: error.code.slice(0, 32), errorMessage: error.message.slice(0, TASK_EVENT_MESSAGE_MAX), bytes: null });
    this.schedule();
  }

  /**
   * A cover row written in the pending batch's transaction (the cover index's
   * downloads: one commit per turn for them all, with the task rows). Resolves
   * once committed: null when written, else the custom row that kept its place;
   * rejects with its statement's error, or the batch's.
   */
  writeCover(write: CoverWrite): Promise<CoverRow | null> {
    return new Promise<CoverRow | null>((resolve, reject) => {
      this.pendingCovers.push({ write, resolve, reject });
      this.schedule();
    });
  }

  /** Hands the pending batch to the writer now if it holds cover rows: a cover write after them must not pass them. */
  flushCovers(): void {
    if (this.pendingCovers.length > 0) void this.writePending();
  }

  /** Moves the starts held since `before` or earlier (all, by default) into the pending batch. */
  private release(before = Infinity): boolean {
    let moved = false;
    for (const [url, { write, since }] of this.held) {
      // In the order they came: the first not yet due ends the walk.
      if (since > before) break;
      this.held.delete(url);
      const entry = this.pending.get(url);
      if (entry) entry.patch = { ...write.patch, ...entry.patch };
      else this.pending.set(url, write);
      moved = true;
    }
    return moved;
  }

  private readonly releaseHeld = (): void => {
    this.holdTimer = undefined;
    if (this.release(this.clock.monotonic() - START_HOLD_MS)) this.schedule();
    const first = this.held.values().next().value;
    if (first !== undefined) this.holdTimer = this.clock.setTimeout(this.releaseHeld, Math.min(START_HOLD_MS, Math.max(0, first.since + START_HOLD_MS - this.clock.monotonic()))).unref();
  };

  /** Writes everything handed in so far (held starts too); resolves when written. */
  flush(): Promise<void> {
    this.release();
    return this.writePending();
  }

  /** Writes the pending batch (not the held starts). */
  private writePending(): Promise<void> {
    if (this.pending.size === 0 && this.pendingEvents.length === 0 && this.pendingCovers.length === 0) return this.chain;
    const rows = [...this.pending.values()];
    const changes = this.changes;
    const events = this.pendingEvents;
    // Taken now, not when the writer gets to it: rows handed in meanwhile are the next batch's.
    const covers = this.pendingCovers;
    const coverWrites = covers.length > 0 ? covers.map((cover) => cover.write) : undefined;
    if (coverWrites !== undefined) this.pendingCovers = [];
    this.pending = new Map();
    this.changes = [];
    this.pendingEvents = [];
    const publish: Published[] = this.dialect.shared ? changes.map(({ url, at, patch }) => ({ kind: 'task', url, at, patch })) : [];
    const tasksToo = rows.length > 0 || events.length > 0;
    this.chain = this.writer
      .run(() => this.dialect.writeTasks(rows, events, publish, coverWrites))
      .then(
        (outcomes) => {
          for (let i = 0; i < (coverWrites?.length ?? 0); i++) {
            const outcome = outcomes[i];
            if (outcome === undefined) covers[i]!.reject(new Error('the batch wrote no outcome for this cover row'));
            else if ('error' in outcome) covers[i]!.reject(outcome.error);
            else covers[i]!.resolve(outcome.row);
          }
          for (const change of changes) this.events.emit('task', change);
        },
        (error: unknown) => {
          if (coverWrites !== undefined) for (const cover of covers) cover.reject(error);
          // A batch of cover rows alone failed its callers, who report it.
          if (tasksToo) throw error;
        },
      )
      .catch(this.onError);
    return this.chain;
  }

  async remove(url: string): Promise<void> {
    await this.flush();
    const at = this.clock.now();
    // Published with the status the row had: known only once it is deleted, so the dialect fills it in.
    const publish: Published[] = this.dialect.shared ? [{ kind: 'taskRemoved', url, at, status: 'ok' }] : [];
    this.waiting.delete(url);
    const status = await this.writer.run(() => this.dialect.deleteTask(url, publish));
    if (status !== null) this.events.emit('task', { url, node: this.node, at, patch: { status }, removed: true, remote: false });
  }

  async removeUnstarted(urls: readonly string[], wanted: (url: string) => boolean): Promise<string[]> {
    await this.flush();
    const at = this.clock.now();
    const removed = await this.writer.run(() => this.dialect.deleteUnstartedTasks(urls.filter((url) => !wanted(url)), at));
    for (const { url, status } of removed) {
      this.waiting.delete(url);
      this.events.emit('task', { url, node: this.node, at, patch: { status }, removed: true, remote: false });
    }
    return removed.map((row) => row.url);
  }

  async get(url: string): Promise<TaskRow | null> {
    await this.flush();
    return this.repo.findOneBy({ url });
  }

  async getMany(urls: readonly string[]): Promise<TaskRow[]> {
    await this.flush();
    return urls.length === 0 ? [] : this.repo.findBy({ url: In([...urls]) });
  }

  async failedSince(since: number): Promise<TaskRow[]> {
    await this.flush();
    return this.repo.find({ where: { status: In(['error', 'tle']), finishedAt: MoreThan(since) } });
  }

  async removeFailed(limit: number): Promise<string[]> {
    await this.flush();
    const at = this.clock.now();
    const removed = await this.writer.run(() => this.dialect.deleteFailedTasks(limit, at));
    for (const { url, status } of removed) this.events.emit('task', { url, node: this.node, at, patch: { status }, removed: true, remote: false });
    return removed.map((row) => row.url);
  }

  async timeline(url: string): Promise<TaskEventRow[]> {
    await this.flush();
    const newest = await this.eventRepo.find({ where: { url }, order: { id: 'DESC' }, take: TASK_EVENTS_PER_URL });
    return newest.reverse();
  }

  async list(options: TaskListOptions): Promise<{ tasks: TaskRow[]; total: number }> {
    await this.flush();
    const where: FindOptionsWhere<TaskRow> = {};
    if (options.status) where.status = options.status;
    if (options.errorCode) where.errorCode = options.errorCode;
    if (options.host) where.host = options.host;
    if (options.search) {
      // A substring, taken literally: LIKE's own wildcards are escaped.
      const pattern = `%${options.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      where.url = Raw((column) => `${column} LIKE :pattern ESCAPE '\\'`, { pattern });
    }
    const order = options.sort === 'tries' ? ({ attempts: 'DESC', updatedAt: 'DESC', url: 'ASC' } as const) : ({ updatedAt: 'DESC', url: 'ASC' } as const);
    const [tasks, total] = await this.repo.findAndCount({ where, order, take: options.limit, skip: options.offset });
    return { tasks, total };
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    await this.flush();
    const counts: Record<TaskStatus, number> = { waiting: 0, queued: 0, downloading: 0, ok: 0, error: 0, tle: 0 };
    const rows = await this.repo.createQueryBuilder('task').select('task.status', 'status').addSelect('COUNT(*)', 'n').groupBy('task.status').getRawMany<{ status: TaskStatus; n: string | number }>();
    for (const row of rows) if (row.status in counts) counts[row.status] = Number(row.n);
    return counts;
  }

  async unfinished(): Promise<TaskRow[]> {
    await this.flush();
    const status = In(UNFINISHED);
    // On a shared database a task another live node holds is that node's to resume.
    const where: FindOptionsWhere<TaskRow>[] = this.dialect.shared
      ? [
          { status, claimedBy: IsNull() },
          { status, claimedBy: this.node },
          { status, claimExpires: LessThan(this.clock.now()) },
        ]
      : [{ status }];
    return this.repo.find({ where, order: { createdAt: 'ASC' } });
  }
}
