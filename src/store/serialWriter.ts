/**
 * One writer for the database. TypeORM on SQLite shares one connection, so two
 * writes in flight at once could land inside each other's transaction; every
 * write goes through `run`, one after the other. Reads do not need it.
 */
export class SerialWriter {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` after every write handed in before it; resolves or rejects with it. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work, work);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves when every write handed in so far has ended. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
