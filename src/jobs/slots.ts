/**
 * A few slots for work that must not run too many at once (archive packing:
 * each job packing holds up to nine cover files in memory, the one packed and
 * eight read ahead, so a burst of jobs must not pack all at once). Waiters take
 * the slots in order; an aborted waiter leaves the line with the signal's reason.
 */
export class Slots {
  private busy = 0;
  private readonly line: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`slots: a positive integer, not ${size}`);
  }

  /** Work running now. */
  get running(): number {
    return this.busy;
  }

  /** Waiting for a slot now. */
  get waiting(): number {
    return this.line.length;
  }

  /** Runs `work` in a slot, after waiting for one; rejects without running it if `signal` aborts first. */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    while (this.busy >= this.size) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', wake);
          const at = this.line.indexOf(wake);
          if (at !== -1) this.line.splice(at, 1);
          resolve();
        };
        this.line.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
    signal?.throwIfAborted();
    this.busy++;
    try {
      return await work();
    } finally {
      this.busy--;
      this.line[0]?.();
    }
  }
}
