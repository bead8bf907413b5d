/**
 * The task table: one row per URL with its download's status.
 *
 * Every change is handed to `update()` the moment it happens. Changes are
 * merged per URL and written through the serial writer, a batch per event-loop
 * turn in one transaction, so writes never interleave on SQLite's single
 * connection and 10,000 URLs arriving at once cost one transaction, not 10,000.
 */
import { In, MoreThan } from 'typeorm';
import type { DataSource, EntityManager, Repository } from 'typeorm';
import { TaskEntity } from './entities.js';
import type { TaskRow } from './entities.js';
import type { TaskStatus } from '../../machines/types.js';
import type { SerialWriter } from './serialWriter.js';

export type TaskPatch = Partial<Omit<TaskRow, 'url' | 'createdAt' | 'updatedAt'>> & { status?: TaskStatus };

export class TaskStore {
  private readonly repo: Repository<TaskRow>;
  private pending = new Map<string, { patch: TaskPatch; at: number }>();
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dataSource: DataSource,
    private readonly writer: SerialWriter,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.repo = dataSource.getRepository(TaskEntity);
  }

  /** Records a change of the URL's task; written within this event-loop turn. */
  update(url: string, patch: TaskPatch): void {
    const entry = this.pending.get(url);
    if (entry) {
      Object.assign(entry.patch, patch);
      entry.at = this.now();
    } else {
      this.pending.set(url, { patch: { ...patch }, at: this.now() });
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.flush();
      });
    }
  }

  /** Writes everything recorded so far; resolves when it is on disk. */
  flush(): Promise<void> {
    if (this.pending.size === 0) return this.chain;
    const batch = this.pending;
    this.pending = new Map();
    this.chain = this.writer.run(() => this.dataSource.transaction((manager) => this.write(manager, batch))).catch(this.onError);
    return this.chain;
  }

  private async write(manager: EntityManager, batch: Map<string, { patch: TaskPatch; at: number }>): Promise<void> {
    const repo = manager.getRepository(TaskEntity);
    for (const [url, { patch, at }] of batch) {
      const result = await repo.update({ url }, { ...patch, updatedAt: at });
      if (!result.affected) {
        await repo.insert({
          url,
          status: 'queued',
          attempts: 0,
          errorCode: null,
          errorMessage: null,
          bytesDone: 0,
          bytesTotal: null,
          startedAt: null,
          finishedAt: null,
          ...patch,
          createdAt: at,
          updatedAt: at,
        });
      }
    }
  }

  /** Deletes the URL's task row (after writing any change still pending for it). */
  async remove(url: string): Promise<void> {
    await this.flush();
    await this.writer.run(() => this.repo.delete({ url }));
  }

  async get(url: string): Promise<TaskRow | null> {
    await this.flush();
    return this.repo.findOneBy({ url });
  }

  /** Tasks that failed (error or tle) and finished after `since` (epoch ms). */
  async failedSince(since: number): Promise<TaskRow[]> {
    await this.flush();
    return this.repo.find({ where: { status: In(['error', 'tle']), finishedAt: MoreThan(since) } });
  }

  /** Tasks, newest change first, optionally of one status. */
  async list(options: { status?: TaskStatus | undefined; limit: number; offset: number }): Promise<{ tasks: TaskRow[]; total: number }> {
    await this.flush();
    const where = options.status ? { status: options.status } : {};
    const [tasks, total] = await this.repo.findAndCount({ where, order: { updatedAt: 'DESC', url: 'ASC' }, take: options.limit, skip: options.offset });
    return { tasks, total };
  }

  /** Tasks that a restart must resume. */
  async unfinished(): Promise<TaskRow[]> {
    await this.flush();
    return this.repo.find({ where: { status: In(['waiting', 'queued', 'downloading']) }, order: { createdAt: 'ASC' } });
  }
}
