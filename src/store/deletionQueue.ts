/**
 * The deletion queue (`DeletionQueue`): records (see `DeletionRow`) scheduled
 * first, claimed by one runner at a time (on any node), removed when carried
 * out. TypeORM alone: the same statements on every database. All writes go
 * through the serial writer.
 */
import type { Clock } from '../clock.js';
import { In, IsNull, LessThan } from 'typeorm';
import type { DataSource, Repository } from 'typeorm';
import { DeletionEntity } from './entities.js';
import type { DeletionRow } from './entities.js';
import type { DeletionQueue, NewDeletion } from './ports.js';
import type { SerialWriter } from './serialWriter.js';

export class SqlDeletionQueue implements DeletionQueue {
  private readonly repo: Repository<DeletionRow>;

  constructor(
    dataSource: DataSource,
    private readonly writer: SerialWriter,
    private readonly clock: Clock,
  ) {
    this.repo = dataSource.getRepository(DeletionEntity);
  }

  /** Records deletions to carry out; one already recorded for the same target is kept as it is. */
  async schedule(deletions: readonly NewDeletion[], now = this.clock.now()): Promise<void> {
    if (deletions.length === 0) return;
    await this.writer.run(async () => {
      for (let i = 0; i < deletions.length; i += 200) {
        await this.repo
          .createQueryBuilder()
          .insert()
          .values(deletions.slice(i, i + 200).map((d) => ({ ...d, createdAt: now, claimedAt: null })))
          .orIgnore()
          .execute();
      }
    });
  }

  /**
   * Claims up to `limit` records that nobody holds (or whose claim is older than
   * `leaseMs`). A record is claimed by one statement that only succeeds while it
   * is unclaimed, so two runners never hold the same record.
   */
  async claim(limit: number, now: number, leaseMs: number): Promise<DeletionRow[]> {
    const candidates = await this.repo.find({
      where: [{ claimedAt: IsNull() }, { claimedAt: LessThan(now - leaseMs) }],
      order: { id: 'ASC' },
      take: limit,
    });
    const claimed: DeletionRow[] = [];
    for (const row of candidates) {
      const result = await this.writer.run(() =>
        this.repo
          .createQueryBuilder()
          .update()
          .set({ claimedAt: now })
          .where('id = :id', { id: row.id })
          .andWhere(row.claimedAt === null ? 'claimed_at IS NULL' : 'claimed_at = :old', { old: row.claimedAt })
          .execute(),
      );
      if (result.affected === 1) claimed.push({ ...row, claimedAt: now });
    }
    return claimed;
  }

  async remove(id: number): Promise<void> {
    await this.writer.run(() => this.repo.delete({ id }));
  }

  /** Drops every claim (at start, when this process is the only one using the database). */
  async releaseClaims(): Promise<void> {
    await this.writer.run(() => this.repo.update({ claimedAt: LessThan(Number.MAX_SAFE_INTEGER) }, { claimedAt: null }));
  }

  async pending(): Promise<DeletionRow[]> {
    return this.repo.find({ order: { id: 'ASC' } });
  }

  async pendingFor(urls: readonly string[]): Promise<DeletionRow[]> {
    return urls.length === 0 ? [] : this.repo.findBy({ url: In([...urls]) });
  }
}
