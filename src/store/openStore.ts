/**
 * Opens the store `--db` names: the data source, its dialect, the migrations
 * (once across nodes), the classes behind the ports, and, on a shared
 * database, the listener that turns other nodes' notifications into the same
 * `Store.events` this node's own writes emit (with `remote: true`).
 */
import { EventEmitter } from 'node:events';
import { createDataSource, isPostgresUrl } from './dataSource.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { SqlClaims } from './claims.js';
import { SqlClusterState } from './clusterState.js';
import { SqlCoverIndex } from './coverIndex.js';
import type { CoverIndexOptions } from './coverIndex.js';
import { SqlDeletionQueue } from './deletionQueue.js';
import { SqlJobStore } from './jobStore.js';
import type { Dialect, Heard } from './dialect.js';
import type { Store, StoreEventMap } from './ports.js';
import { PostgresDialect } from './postgresDialect.js';
import { SerialWriter } from './serialWriter.js';
import { SqliteDialect } from './sqliteDialect.js';
import { SqlTaskLedger } from './taskLedger.js';

export interface StoreOptions {
  /** `postgres://…`, or a SQLite file path. */
  db: string;
  /** This node's id. */
  node: string;
  /** How long a claim lasts unless renewed, in ms. */
  leaseMs: number;
  /** A task batch that could not be written (logged; the batch is lost). */
  onTaskWriteError: (error: unknown) => void;
  /** The background schema work after the start (a shared database's): what it did, or why it stopped. */
  onSchemaFinished?: (outcome: { rows: number } | { error: unknown }) => void;
  /** The one clock (default the system's): every time the store writes, leases, the touch flush. */
  clock?: Clock;
  covers?: CoverIndexOptions;
}

/** A store that is open, with the names of the migrations this start ran. */
export type OpenStore = Store & { migrated: string[] };

/** How long a file whose row was removed is kept on a shared database: every node drops the row from memory within a second. */
const SHARED_FILE_GRACE_MS = 1500;

export async function openStore(options: StoreOptions): Promise<OpenStore> {
  const dataSource = createDataSource({ db: options.db });
  await dataSource.initialize();
  const dialect: Dialect = isPostgresUrl(options.db) ? new PostgresDialect(dataSource, options.db, options.node) : new SqliteDialect(dataSource, options.db);
  try {
    const migrated = await dialect.migrate();
    const clock = options.clock ?? systemClock;
    const writer = new SerialWriter();
    const events = new EventEmitter<StoreEventMap>();
    // Every admin stream listens: no leak warning for many of them.
    events.setMaxListeners(0);
    const tasks = new SqlTaskLedger(dialect, writer, events, options.node, options.onTaskWriteError, clock);
    // On SQLite a download's cover row is written with the turn's task batch: one commit for both.
    // Not on a shared database: there nodes' batches lock task and cover rows in their own orders
    // (a deadlock fails every download of the turn), and a commit is not what a download pays most.
    const covers = new SqlCoverIndex(dialect, writer, events, options.node, { clock, ...(dialect.shared ? {} : { batch: tasks }), ...options.covers });
    const jobs = new SqlJobStore(dialect, writer, events, options.node, options.leaseMs, clock);
    let closed = false;
    const store: OpenStore = {
      covers,
      tasks,
      deletions: new SqlDeletionQueue(dataSource, writer, clock),
      claims: new SqlClaims(dialect, writer, options.node, options.leaseMs, clock),
      cluster: new SqlClusterState(dialect, writer, events, options.node, clock),
      jobs,
      events,
      location: dialect.location,
      fileGraceMs: dialect.shared ? SHARED_FILE_GRACE_MS : 0,
      migrated,
      async close() {
        closed = true;
        await covers.flushTouches().catch(() => undefined);
        await tasks.flush();
        await writer.idle();
        await dialect.close();
      },
    };
    await dialect.listen({
      heard: (message) => emitHeard(store, covers, jobs, message),
      lost: () => {
        covers.suspendMemory();
        events.emit('lost');
      },
      resync: () => {
        covers.resumeMemory();
        events.emit('resync');
      },
    });
    // Not awaited: the start goes on; other nodes are not held while it runs.
    dialect.finishSchema?.(() => closed).then(
      (rows) => options.onSchemaFinished?.({ rows }),
      (error: unknown) => {
        if (!closed) options.onSchemaFinished?.({ error });
      },
    );
    return store;
  } catch (error) {
    await dialect.close().catch(() => undefined);
    throw error;
  }
}

/** Another node's changes, emitted as this node's own are (with `remote: true`). */
function emitHeard(store: Store, covers: SqlCoverIndex, jobs: SqlJobStore, { node, changes }: Heard): void {
  for (const change of changes) {
    switch (change.kind) {
      case 'task':
        store.events.emit('task', { url: change.url, node, at: change.at, patch: change.patch, remote: true });
        break;
      case 'taskRemoved':
        store.events.emit('task', { url: change.url, node, at: change.at, patch: { status: change.status }, removed: true, remote: true });
        break;
      case 'cover':
        covers.forgetRemote(change.url);
        store.events.emit('cover', { url: change.url, node, removed: change.removed, remote: true });
        break;
      case 'gate':
        store.events.emit('gate', { paused: change.paused, node, remote: true });
        break;
      case 'job':
        jobs.heard(change.id, node);
        break;
    }
  }
}
