/**
 * Archive jobs (`JobStore`), the same class on every database: TypeORM
 * repositories and query builders only, every write through the serial writer.
 *
 * Every write is published after it is written: to this node's listeners as a
 * `job` change carrying the row, and, on a shared database, to every other node
 * as the job's id (a NOTIFY; the listener there reads the row again, so a
 * notification never has to carry a job's URL list or outgrow its payload).
 *
 * Claims: the node that runs a job holds it until `claim_expires` and renews it
 * while it works. On a database only one node uses, every claim is this node's
 * (whatever node id an earlier run had).
 */
import type { Clock } from '../clock.js';
import type { EventEmitter } from 'node:events';
import { In, IsNull, LessThan, LessThanOrEqual } from 'typeorm';
import type { FindOptionsSelect, FindOptionsWhere, Repository } from 'typeorm';
import type { JobStatus } from '../../machines/jobMachine.js';
import type { Dialect } from './dialect.js';
import { JobEntity } from './entities.js';
import type { JobRow } from './entities.js';
import type { JobPatch, JobStore, JobSummary, StoreEventMap } from './ports.js';
import type { SerialWriter } from './serialWriter.js';

const UNFINISHED: JobStatus[] = ['queued', 'fetching', 'packing'];

/** Every column but the URL list. */
const SUMMARY: FindOptionsSelect<JobRow> = {
  id: true,
  name: true,
  status: true,
  total: true,
  ok: true,
  failed: true,
  waiting: true,
  callbackUrl: true,
  callbackStarted: true,
  callbackFinished: true,
  archiveBytes: true,
  errorCode: true,
  errorMessage: true,
  createdAt: true,
  updatedAt: true,
  expiresAt: true,
  finishedAt: true,
  node: true,
  claimedBy: true,
  claimExpires: true,
};

function summary(row: JobRow): JobSummary {
  const { urls: _urls, ...rest } = row;
  return rest;
}

export class SqlJobStore implements JobStore {
  private readonly repo: Repository<JobRow>;

  constructor(
    private readonly dialect: Dialect,
    private readonly writer: SerialWriter,
    private readonly events: EventEmitter<StoreEventMap>,
    private readonly node: string,
    private readonly leaseMs: number,
    private readonly clock: Clock,
  ) {
    this.repo = dialect.dataSource.getRepository(JobEntity);
  }

  private async published(id: string): Promise<JobSummary | null> {
    const row = await this.repo.findOne({ where: { id }, select: SUMMARY });
    if (row === null) return null;
    if (this.dialect.shared) await this.dialect.publish([{ kind: 'job', id }]).catch(() => undefined);
    this.events.emit('job', { job: row, node: this.node, remote: false });
    return row;
  }

  async create(row: Omit<JobRow, 'updatedAt' | 'claimedBy' | 'claimExpires' | 'node' | 'waiting'>): Promise<JobSummary> {
    const full: JobRow = { ...row, waiting: 0, updatedAt: row.createdAt, node: null, claimedBy: null, claimExpires: null };
    await this.writer.run(() => this.repo.insert(full));
    return (await this.published(row.id)) ?? summary(full);
  }

  async get(id: string): Promise<JobRow | null> {
    return this.repo.findOneBy({ id });
  }

  async list(options: { limit: number; offset: number }): Promise<{ jobs: JobSummary[]; total: number }> {
    const [jobs, total] = await this.repo.findAndCount({ select: SUMMARY, order: { createdAt: 'DESC', id: 'ASC' }, take: options.limit, skip: options.offset });
    return { jobs, total };
  }

  async update(id: string, patch: JobPatch): Promise<JobSummary | null> {
    const result = await this.writer.run(() => this.repo.update({ id }, { ...patch, updatedAt: this.clock.now() }));
    if (result.affected === 0) return null;
    return this.published(id);
  }

  async claim(id: string): Promise<boolean> {
    const now = this.clock.now();
    const query = this.repo
      .createQueryBuilder()
      .update()
      .set({ claimedBy: this.node, claimExpires: now + this.leaseMs, node: this.node })
      .where('id = :id', { id })
      .andWhere('status IN (:...unfinished)', { unfinished: UNFINISHED });
    if (this.dialect.shared) query.andWhere('(claimed_by IS NULL OR claimed_by = :node OR claim_expires < :now)', { node: this.node, now });
    const result = await this.writer.run(() => query.execute());
    return result.affected === 1;
  }

  async claimable(limit: number): Promise<string[]> {
    const status = In(UNFINISHED);
    const where: FindOptionsWhere<JobRow>[] = this.dialect.shared
      ? [
          { status, claimedBy: IsNull() },
          { status, claimedBy: this.node },
          { status, claimExpires: LessThan(this.clock.now()) },
        ]
      : [{ status }];
    const rows = await this.repo.find({ where, select: { id: true }, order: { createdAt: 'ASC' }, take: limit });
    return rows.map((row) => row.id);
  }

  async renew(): Promise<number> {
    const result = await this.writer.run(() => this.repo.update({ claimedBy: this.node, status: In(UNFINISHED) }, { claimExpires: this.clock.now() + this.leaseMs }));
    return result.affected ?? 0;
  }

  async releaseAll(): Promise<void> {
    await this.writer.run(() => this.repo.update({ claimedBy: this.node }, { claimedBy: null, claimExpires: null }));
  }

  async claimUndelivered(limit: number): Promise<JobSummary[]> {
    const now = this.clock.now();
    const candidates = await this.repo
      .createQueryBuilder('job')
      .select('job.id', 'id')
      .where('job.status IN (:...finished)', { finished: ['ready', 'failed'] })
      .andWhere('job.callback_url IS NOT NULL')
      .andWhere("(job.callback_finished IS NULL OR job.callback_finished LIKE '%\"pending\":true%')")
      .andWhere('job.expires_at > :now', { now })
      .orderBy('job.created_at', 'ASC')
      .limit(limit)
      .getRawMany<{ id: string }>();
    const claimed: JobSummary[] = [];
    for (const { id } of candidates) {
      const query = this.repo
        .createQueryBuilder()
        .update()
        .set({ claimedBy: this.node, claimExpires: now + this.leaseMs })
        .where('id = :id', { id });
      if (this.dialect.shared) query.andWhere('(claimed_by IS NULL OR claimed_by = :node OR claim_expires < :now)', { node: this.node, now });
      const result = await this.writer.run(() => query.execute());
      if (result.affected !== 1) continue;
      const row = await this.repo.findOne({ where: { id }, select: SUMMARY });
      if (row) claimed.push(row);
    }
    return claimed;
  }

  async expiredBy(now: number, limit: number): Promise<JobSummary[]> {
    return this.repo.find({ where: { status: In(['ready', 'failed']), expiresAt: LessThanOrEqual(now) }, select: SUMMARY, order: { expiresAt: 'ASC' }, take: limit });
  }

  async countByStatus(): Promise<Record<JobStatus, number>> {
    const counts: Record<JobStatus, number> = { queued: 0, fetching: 0, packing: 0, ready: 0, failed: 0, expired: 0 };
    const rows = await this.repo.createQueryBuilder('job').select('job.status', 'status').addSelect('COUNT(*)', 'n').groupBy('job.status').getRawMany<{ status: JobStatus; n: string | number }>();
    for (const row of rows) if (row.status in counts) counts[row.status] = Number(row.n);
    return counts;
  }

  /** Another node wrote the job: its row, read again, emitted as a remote change. */
  heard(id: unknown, node: string): void {
    if (typeof id !== 'string' || id.length > 64) return;
    void this.repo
      .findOne({ where: { id }, select: SUMMARY })
      .then((row) => {
        if (row !== null) this.events.emit('job', { job: row, node, remote: true });
      })
      .catch(() => undefined);
  }
}
