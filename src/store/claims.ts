/**
 * Claims on task rows (`Claims`), across nodes: a node downloads a URL only
 * after claiming its row, in one statement for a batch of URLs. A claim lasts
 * `leaseMs` unless renewed (one statement per heartbeat for all of a node's
 * claims but its strays: rows it holds and no longer works on) and is released
 * when the download ends (by the ledger's write of the final status). A node that dies loses its claims when they run out; a living
 * node then finds the rows among the `orphaned` and claims them.
 *
 * On a database one node uses, every claim is this node's and nothing is written.
 */
import type { Clock } from '../clock.js';
import type { Dialect } from './dialect.js';
import type { ClaimOutcome, Claims } from './ports.js';
import type { SerialWriter } from './serialWriter.js';

export class SqlClaims implements Claims {
  constructor(
    private readonly dialect: Dialect,
    private readonly writer: SerialWriter,
    private readonly node: string,
    private readonly leaseMs: number,
    private readonly clock: Clock,
  ) {}

  get shared(): boolean {
    return this.dialect.shared;
  }

  claim(urls: readonly string[], status: 'queued' | 'waiting'): Promise<ClaimOutcome> {
    if (!this.dialect.shared || urls.length === 0) return Promise.resolve({ mine: [...urls], elsewhere: [] });
    return this.writer.run(() => {
      const now = this.clock.now();
      return this.dialect.claimTasks(urls, status, this.node, now, now + this.leaseMs);
    });
  }

  renew(except: readonly string[] = []): Promise<number> {
    if (!this.dialect.shared) return Promise.resolve(0);
    return this.writer.run(() => this.dialect.renewClaims(this.node, this.clock.now() + this.leaseMs, except));
  }

  held(): Promise<string[]> {
    if (!this.dialect.shared) return Promise.resolve([]);
    return this.dialect.heldTasks(this.node);
  }

  release(urls: readonly string[]): Promise<void> {
    if (!this.dialect.shared || urls.length === 0) return Promise.resolve();
    return this.writer.run(() => this.dialect.releaseClaims(this.node, urls));
  }

  orphaned(limit: number): Promise<string[]> {
    if (!this.dialect.shared) return Promise.resolve([]);
    return this.dialect.orphanedTasks(this.node, this.clock.now(), limit);
  }

  releaseAll(): Promise<void> {
    if (!this.dialect.shared) return Promise.resolve();
    return this.writer.run(() => this.dialect.releaseClaims(this.node));
  }
}
