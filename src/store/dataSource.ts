/**
 * The one TypeORM DataSource factory: `--db` picks the database, a
 * `postgres://…` URL (several nodes share it) or a SQLite file through the
 * `better-sqlite3` driver with WAL on. The schema is built by the migrations in
 * src/store/migrations.ts, never by `synchronize`. The store opens it
 * (openStore.ts); the root ormconfig.ts hands it to the TypeORM CLI.
 */
import { DataSource } from 'typeorm';
import { ClusterSecretEntity, CoverEntity, DeletionEntity, JobEntity, NodeEntity, SettingEntity, TaskEntity, TaskEventEntity } from './entities.js';
import { migrations } from './migrations.js';

export interface DataSourceSettings {
  /** `postgres://…`, a SQLite file path, `sqlite:PATH`, or `:memory:`. */
  db: string;
}

const entities = [CoverEntity, TaskEntity, DeletionEntity, NodeEntity, SettingEntity, JobEntity, ClusterSecretEntity, TaskEventEntity];

/** Whether `db` names a PostgreSQL database. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

export function createDataSource(settings: DataSourceSettings): DataSource {
  if (isPostgresUrl(settings.db)) {
    return new DataSource({
      type: 'postgres',
      url: settings.db,
      entities,
      migrations,
      migrationsRun: false,
      synchronize: false,
      logging: false,
      extra: { max: 10, application_name: 'coverhelper' },
    });
  }
  const database = settings.db.replace(/^sqlite:(\/\/)?/, '');
  return new DataSource({
    type: 'better-sqlite3',
    database,
    enableWAL: database !== ':memory:',
    timeout: 10_000,
    // Queries differ by their IN-list lengths; a larger cache keeps them prepared.
    statementCacheSize: 1000,
    prepareDatabase: (db: { pragma: (sql: string) => unknown }) => {
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
    },
    entities,
    migrations,
    migrationsRun: false,
    synchronize: false,
    logging: false,
  });
}
