/**
 * The better-sqlite3 connection behind TypeORM, for the few statements that run
 * on every download or every check: prepared once and run directly, without
 * TypeORM's query builder. Only on the `better-sqlite3` driver; on any other the
 * stores keep their TypeORM code.
 *
 * These statements share TypeORM's one connection, so a write through them must
 * go through the serial writer like every other write.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { DataSource } from 'typeorm';

export type SqliteStatement = BetterSqlite3.Statement;

export class SqliteStatements {
  private readonly cache = new Map<string, SqliteStatement>();

  constructor(readonly db: BetterSqlite3.Database) {}

  /** The statement for `sql`, prepared on first use. */
  get(sql: string): SqliteStatement {
    let statement = this.cache.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.cache.set(sql, statement);
    }
    return statement;
  }
}

/** One statement cache per connection, shared by the stores. */
const byConnection = new WeakMap<BetterSqlite3.Database, SqliteStatements>();

/**
 * The prepared-statement cache of the data source's better-sqlite3 connection,
 * or null when the data source uses another driver. Call it when needed rather
 * than once: it follows the connection if the data source is initialized again.
 */
export function sqliteStatements(dataSource: DataSource): SqliteStatements | null {
  if (dataSource.options.type !== 'better-sqlite3') return null;
  const db = (dataSource.driver as unknown as { databaseConnection?: BetterSqlite3.Database }).databaseConnection;
  if (!db?.open) throw new Error('the SQLite data source is not initialized');
  let statements = byConnection.get(db);
  if (!statements) {
    statements = new SqliteStatements(db);
    byConnection.set(db, statements);
  }
  return statements;
}
