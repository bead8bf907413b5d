/**
 * The nodes using the database and the switches they share (`ClusterState`).
 *
 * Each node writes its row in `nodes` at every heartbeat (id, started, last
 * seen, counts, status); a node whose last heartbeat is older than the lease is
 * gone. The administrator's pause is a row in `settings`, read at start and
 * published as a `gate` change when it flips, so pause on one node holds every
 * node and resume on any releases them.
 *
 * At start, `join` refuses a node whose id a live node holds or whose shared
 * secrets differ from the other nodes' (clusterJoin.ts). A row with this id
 * seen less than a lease ago may be a live twin or this node's own run that
 * was killed: `join` watches it, refusing at its next heartbeat and joining
 * once it is older than the lease (so a killed node restarted at once comes
 * back within a lease). At a graceful stop, `leave` marks the node `stopped`,
 * which frees its id at once.
 */
import type { Clock } from '../clock.js';
import type { EventEmitter } from 'node:events';
import type { Repository } from 'typeorm';
import { isLive, joinCluster } from './clusterJoin.js';
import type { JoinOutcome, SharedSecrets } from './clusterJoin.js';
import type { Dialect } from './dialect.js';
import { NodeEntity, SettingEntity } from './entities.js';
import type { NodeRow, SettingRow } from './entities.js';
import type { ClusterState, NodeReport, PauseSwitch, StoreEventMap } from './ports.js';
import type { SerialWriter } from './serialWriter.js';

const PAUSED = 'paused';
/** When the switch was last turned on, and from which node: for "paused since … by …" after a restart too. */
const PAUSED_AT = 'paused_at';
const PAUSED_BY = 'paused_by';

export class SqlClusterState implements ClusterState {
  private readonly nodesRepo: Repository<NodeRow>;
  private readonly settings: Repository<SettingRow>;
  private readonly startedAt: number;

  constructor(
    private readonly dialect: Dialect,
    private readonly writer: SerialWriter,
    private readonly events: EventEmitter<StoreEventMap>,
    readonly node: string,
    private readonly clock: Clock,
  ) {
    this.nodesRepo = dialect.dataSource.getRepository(NodeEntity);
    this.settings = dialect.dataSource.getRepository(SettingEntity);
    this.startedAt = clock.now();
  }

  async join(secrets: SharedSecrets, leaseMs: number, onWait?: (lastSeen: number) => void): Promise<JoinOutcome> {
    if (!this.dialect.shared) return { joined: true, recorded: [], replaced: [] };
    for (;;) {
      const outcome = await this.writer.run(() => joinCluster(this.dialect.dataSource, { node: this.node, startedAt: this.startedAt, leaseMs, now: this.clock.now(), secrets }));
      if (outcome.joined || outcome.clash !== 'node') return outcome;
      // A live node with this id, or this node's own run that died less than a lease ago? Its heartbeat tells.
      onWait?.(outcome.lastSeen);
      const beat = await this.nextHeartbeat(outcome.lastSeen, leaseMs);
      if (beat !== undefined) return { ...outcome, lastSeen: beat };
    }
  }

  /** Watches this id's row: the time of its next heartbeat after `seen` (a live node), or undefined once it is gone (stale or stopped). */
  private async nextHeartbeat(seen: number, leaseMs: number): Promise<number | undefined> {
    for (;;) {
      await this.clock.sleep(Math.max(50, Math.min(1000, leaseMs / 10)));
      const row = await this.nodesRepo.findOneBy({ id: this.node });
      if (row === null || !isLive(row, this.clock.now(), leaseMs)) return undefined;
      if (row.lastSeen !== seen) return row.lastSeen;
    }
  }

  async heartbeat(report: NodeReport): Promise<void> {
    const row: NodeRow = { id: this.node, startedAt: this.startedAt, lastSeen: this.clock.now(), ...report };
    await this.writer.run(() => this.nodesRepo.upsert(row, { conflictPaths: ['id'], skipUpdateIfNoValuesChanged: false }));
  }

  async nodes(): Promise<NodeRow[]> {
    return this.nodesRepo.find({ order: { lastSeen: 'DESC', id: 'ASC' } });
  }

  async paused(): Promise<boolean> {
    return (await this.settings.findOneBy({ key: PAUSED }))?.value === 'true';
  }

  async pauseSwitch(): Promise<PauseSwitch> {
    const rows = await this.settings.find({ where: [{ key: PAUSED }, { key: PAUSED_AT }, { key: PAUSED_BY }] });
    const value = (key: string) => rows.find((row) => row.key === key)?.value;
    const paused = value(PAUSED) === 'true';
    const at = Number(value(PAUSED_AT));
    // Within what a Date holds (a row edited by hand is not trusted).
    return { paused, since: paused && Number.isSafeInteger(at) && at > 0 && at <= 8.64e15 ? at : null, by: paused ? (value(PAUSED_BY) ?? null) : null };
  }

  async setPaused(paused: boolean): Promise<void> {
    await this.writer.run(async () => {
      const rows = [{ key: PAUSED, value: String(paused) }];
      // Turning it on records when and where; a second pause keeps the first one's time.
      if (paused && !(await this.paused())) rows.push({ key: PAUSED_AT, value: String(this.clock.now()) }, { key: PAUSED_BY, value: this.node });
      await this.settings.upsert(rows, { conflictPaths: ['key'], skipUpdateIfNoValuesChanged: false });
      await this.dialect.publish([{ kind: 'gate', paused }]);
    });
    this.events.emit('gate', { paused, node: this.node, remote: false });
  }

  async leave(): Promise<void> {
    await this.writer.run(() => this.nodesRepo.update({ id: this.node }, { status: 'stopped', lastSeen: this.clock.now() }));
  }
}
