/**
 * Schema migrations, in order. Written with TypeORM's `Table` API so the same
 * migration runs on SQLite and PostgreSQL. Add a new class for every change;
 * never edit one that has shipped.
 */
import { Table, TableColumn, TableIndex } from 'typeorm';
import type { MigrationInterface, QueryRunner } from 'typeorm';

export class CreateCoversAndTasks1763780000000 implements MigrationInterface {
  name = 'CreateCoversAndTasks1763780000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'covers',
        columns: [
          { name: 'url', type: 'varchar', isPrimary: true },
          { name: 'path', type: 'varchar' },
          { name: 'source', type: 'varchar', length: '16' },
          { name: 'bytes', type: 'bigint' },
          { name: 'content_type', type: 'varchar', length: '64' },
          { name: 'width', type: 'integer' },
          { name: 'height', type: 'integer' },
          { name: 'sha256', type: 'varchar', length: '64' },
          { name: 'created_at', type: 'bigint' },
          { name: 'last_asked_at', type: 'bigint' },
        ],
      }),
      true,
    );
    await queryRunner.createIndex('covers', new TableIndex({ name: 'idx_covers_last_asked', columnNames: ['source', 'last_asked_at'] }));
    await queryRunner.createTable(
      new Table({
        name: 'tasks',
        columns: [
          { name: 'url', type: 'varchar', isPrimary: true },
          { name: 'status', type: 'varchar', length: '16' },
          { name: 'attempts', type: 'integer', default: 0 },
          { name: 'error_code', type: 'varchar', length: '32', isNullable: true },
          { name: 'error_message', type: 'text', isNullable: true },
          { name: 'bytes_done', type: 'bigint', default: 0 },
          { name: 'bytes_total', type: 'bigint', isNullable: true },
          { name: 'created_at', type: 'bigint' },
          { name: 'updated_at', type: 'bigint' },
          { name: 'started_at', type: 'bigint', isNullable: true },
          { name: 'finished_at', type: 'bigint', isNullable: true },
        ],
      }),
      true,
    );
    await queryRunner.createIndex('tasks', new TableIndex({ name: 'idx_tasks_status', columnNames: ['status', 'updated_at'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('tasks', true);
    await queryRunner.dropTable('covers', true);
  }
}

export class CreateDeletions1763790000000 implements MigrationInterface {
  name = 'CreateDeletions1763790000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'deletions',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          { name: 'url', type: 'varchar' },
          { name: 'path', type: 'varchar' },
          { name: 'kind', type: 'varchar', length: '8' },
          { name: 'reason', type: 'varchar', length: '16' },
          { name: 'created_at', type: 'bigint' },
          { name: 'claimed_at', type: 'bigint', isNullable: true },
        ],
      }),
      true,
    );
    await queryRunner.createIndex('deletions', new TableIndex({ name: 'uq_deletions_target', columnNames: ['url', 'path', 'kind'], isUnique: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('deletions', true);
  }
}

/** Several nodes on one database: claims on task rows, the nodes' heartbeats, shared switches. */
export class AddClusterTables1764300000000 implements MigrationInterface {
  name = 'AddClusterTables1764300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('tasks', [
      new TableColumn({ name: 'claimed_by', type: 'varchar', length: '128', isNullable: true }),
      new TableColumn({ name: 'claim_expires', type: 'bigint', isNullable: true }),
    ]);
    await queryRunner.createIndex('tasks', new TableIndex({ name: 'idx_tasks_claims', columnNames: ['claimed_by', 'claim_expires'] }));
    await queryRunner.createTable(
      new Table({
        name: 'nodes',
        columns: [
          { name: 'id', type: 'varchar', length: '128', isPrimary: true },
          { name: 'started_at', type: 'bigint' },
          { name: 'last_seen', type: 'bigint' },
          { name: 'queued', type: 'integer' },
          { name: 'downloading', type: 'integer' },
          { name: 'status', type: 'varchar', length: '16' },
        ],
      }),
      true,
    );
    await queryRunner.createTable(
      new Table({
        name: 'settings',
        columns: [
          { name: 'key', type: 'varchar', length: '64', isPrimary: true },
          { name: 'value', type: 'text' },
        ],
      }),
      true,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('settings', true);
    await queryRunner.dropTable('nodes', true);
    await queryRunner.dropIndex('tasks', 'idx_tasks_claims');
    await queryRunner.dropColumns('tasks', ['claimed_by', 'claim_expires']);
  }
}

/** Archive jobs (docs/JOBS.md): one row per job, claimed by the node that runs it. */
export class CreateJobs1764400000000 implements MigrationInterface {
  name = 'CreateJobs1764400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'jobs',
        columns: [
          { name: 'id', type: 'varchar', length: '64', isPrimary: true },
          { name: 'name', type: 'varchar', length: '200' },
          { name: 'status', type: 'varchar', length: '16' },
          { name: 'urls', type: 'text' },
          { name: 'total', type: 'integer' },
          { name: 'ok', type: 'integer', default: 0 },
          { name: 'failed', type: 'integer', default: 0 },
          { name: 'callback_url', type: 'text', isNullable: true },
          { name: 'callback_started', type: 'text', isNullable: true },
          { name: 'callback_finished', type: 'text', isNullable: true },
          { name: 'archive_bytes', type: 'bigint', isNullable: true },
          { name: 'error_code', type: 'varchar', length: '32', isNullable: true },
          { name: 'error_message', type: 'text', isNullable: true },
          { name: 'created_at', type: 'bigint' },
          { name: 'updated_at', type: 'bigint' },
          { name: 'expires_at', type: 'bigint' },
          { name: 'finished_at', type: 'bigint', isNullable: true },
          { name: 'node', type: 'varchar', length: '128', isNullable: true },
          { name: 'claimed_by', type: 'varchar', length: '128', isNullable: true },
          { name: 'claim_expires', type: 'bigint', isNullable: true },
        ],
      }),
      true,
    );
    await queryRunner.createIndex('jobs', new TableIndex({ name: 'idx_jobs_created', columnNames: ['created_at'] }));
    await queryRunner.createIndex('jobs', new TableIndex({ name: 'idx_jobs_status', columnNames: ['status', 'expires_at'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('jobs', true);
  }
}

/**
 * The digests of the secrets every node of a shared database must be given
 * alike (`ClusterSecretRow`): a node whose secret differs refuses to start.
 */
export class CreateClusterSecrets1764500000000 implements MigrationInterface {
  name = 'CreateClusterSecrets1764500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'cluster_secrets',
        columns: [
          { name: 'name', type: 'varchar', length: '32', isPrimary: true },
          { name: 'salt', type: 'varchar', length: '64' },
          { name: 'digest', type: 'varchar', length: '128', isNullable: true },
          { name: 'recorded_by', type: 'varchar', length: '128' },
          { name: 'recorded_at', type: 'bigint' },
        ],
      }),
      true,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('cluster_secrets', true);
  }
}

/**
 * When a video page was last resolved and the `pic` it answered: a cover that
 * changes upstream is found by re-resolving the page after `--resolve-ttl`.
 * Rows stored before have neither (resolved at their `created_at`).
 */
export class AddCoverResolved1764600000000 implements MigrationInterface {
  name = 'AddCoverResolved1764600000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('covers', [
      new TableColumn({ name: 'resolved_at', type: 'bigint', isNullable: true }),
      new TableColumn({ name: 'resolved_pic', type: 'text', isNullable: true }),
    ]);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumns('covers', ['resolved_at', 'resolved_pic']);
  }
}

/** How many of a fetching job's URLs wait for a cooling upstream host (shown on the job as `waiting`). */
export class AddJobWaiting1764700000000 implements MigrationInterface {
  name = 'AddJobWaiting1764700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('jobs', new TableColumn({ name: 'waiting', type: 'integer', default: 0 }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('jobs', 'waiting');
  }
}

/**
 * The original kept beside each cover (scaled down once past `--original-max`):
 * its path, size and bytes. Rows stored before have none.
 */
export class AddCoverOriginal1764800000000 implements MigrationInterface {
  name = 'AddCoverOriginal1764800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('covers', [
      new TableColumn({ name: 'original_path', type: 'varchar', isNullable: true }),
      new TableColumn({ name: 'original_width', type: 'integer', isNullable: true }),
      new TableColumn({ name: 'original_height', type: 'integer', isNullable: true }),
      new TableColumn({ name: 'original_bytes', type: 'bigint', isNullable: true }),
    ]);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumns('covers', ['original_path', 'original_width', 'original_height', 'original_bytes']);
  }
}

/**
 * The bytes of each cover's variants (counted in `--max-cache-bytes`), and an
 * index on the path: variants are asked for by a cover's path.
 */
export class AddCoverVariants1764900000000 implements MigrationInterface {
  name = 'AddCoverVariants1764900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('covers', new TableColumn({ name: 'variant_bytes', type: 'bigint', default: 0 }));
    await queryRunner.createIndex('covers', new TableIndex({ name: 'idx_covers_path', columnNames: ['path'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex('covers', 'idx_covers_path');
    await queryRunner.dropColumn('covers', 'variant_bytes');
  }
}

/**
 * Each cover's dominant colour (`#rrggbb`), computed when it is stored. Rows
 * stored before have none until the colour pass reads their files.
 */
export class AddCoverColor1764910000000 implements MigrationInterface {
  name = 'AddCoverColor1764910000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('covers', new TableColumn({ name: 'color', type: 'varchar', length: '7', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('covers', 'color');
  }
}

/** Rows of the tasks table read and given their host per round of the host backfill. */
export const HOST_BACKFILL_BATCH = 2000;

/** The host name `host=` filters on: `URL.hostname` (lower case), or null for a URL that does not parse. */
export function hostOfUrl(url: string): string | null {
  try {
    const host = new URL(url).hostname;
    return host === '' ? null : host.slice(0, 255);
  } catch {
    return null;
  }
}

/** The admin list's indexes on tasks (filter by host or error code, sort by tries or change): name and columns. */
export const TASK_HOST_INDEXES: readonly (readonly [string, readonly string[]])[] = [
  ['idx_tasks_host', ['host', 'updated_at']],
  ['idx_tasks_error_code', ['error_code', 'updated_at']],
  ['idx_tasks_attempts', ['attempts', 'updated_at']],
  ['idx_tasks_updated', ['updated_at']],
];

/**
 * The task timeline kept in the database (`task_events`: status changes, tries
 * and errors, bounded per URL), and what the admin list filters and sorts on:
 * each task's host (given to the rows already there), its error code, its tries.
 */
export class AddTaskEvents1765000000000 implements MigrationInterface {
  name = 'AddTaskEvents1765000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const postgres = queryRunner.connection.options.type === 'postgres';
    await queryRunner.createTable(
      new Table({
        name: 'task_events',
        columns: [
          // Ids are never reused: 64-bit on PostgreSQL (BIGSERIAL); SQLite's INTEGER PRIMARY KEY is 64-bit already.
          { name: 'id', type: postgres ? 'bigint' : 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          { name: 'url', type: 'varchar' },
          { name: 'at', type: 'bigint' },
          { name: 'node', type: 'varchar', length: '128' },
          { name: 'status', type: 'varchar', length: '16' },
          { name: 'attempt', type: 'integer', isNullable: true },
          { name: 'error_code', type: 'varchar', length: '32', isNullable: true },
          { name: 'error_message', type: 'text', isNullable: true },
          { name: 'bytes', type: 'bigint', isNullable: true },
        ],
      }),
      true,
    );
    await queryRunner.createIndex('task_events', new TableIndex({ name: 'idx_task_events_url', columnNames: ['url', 'id'] }));
    await queryRunner.addColumn('tasks', new TableColumn({ name: 'host', type: 'varchar', length: '255', isNullable: true }));
    // PostgreSQL: the column is added (nullable, no default: no row rewritten) and the rest is
    // done after the start, outside this transaction, so nodes sharing the database are not held
    // on the tasks table while rows get their host and indexes are built (TASK_HOST_INDEXES,
    // PostgresDialect.finishTaskHosts: CONCURRENTLY, batches of their own).
    if (postgres) return;
    // SQLite (one process, which is the one migrating): rows made before get their host here,
    // a batch at a time (by URL, so each round starts where the last ended).
    let after = '';
    for (;;) {
      const rows = (await queryRunner.query('SELECT url FROM tasks WHERE url > ? ORDER BY url LIMIT ?', [after, HOST_BACKFILL_BATCH])) as { url: string }[];
      if (rows.length === 0) break;
      const urls = rows.map((row) => row.url);
      const hosts = urls.map(hostOfUrl);
      const pairs = JSON.stringify(urls.map((url, i) => [url, hosts[i]]));
      await queryRunner.query(
        "UPDATE tasks SET host = u.host FROM (SELECT json_extract(value, '$[0]') AS url, json_extract(value, '$[1]') AS host FROM json_each(?)) AS u WHERE tasks.url = u.url",
        [pairs],
      );
      after = urls.at(-1)!;
      if (rows.length < HOST_BACKFILL_BATCH) break;
    }
    for (const [name, columns] of TASK_HOST_INDEXES) await queryRunner.createIndex('tasks', new TableIndex({ name, columnNames: [...columns] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const [name] of TASK_HOST_INDEXES) await queryRunner.query(`DROP INDEX IF EXISTS ${name}`);
    await queryRunner.dropColumn('tasks', 'host');
    await queryRunner.dropTable('task_events', true);
  }
}

export const migrations = [CreateCoversAndTasks1763780000000, CreateDeletions1763790000000, AddClusterTables1764300000000, CreateJobs1764400000000, CreateClusterSecrets1764500000000, AddCoverResolved1764600000000, AddJobWaiting1764700000000, AddCoverOriginal1764800000000, AddCoverVariants1764900000000, AddCoverColor1764910000000, AddTaskEvents1765000000000];
