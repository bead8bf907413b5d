/**
 * When the `result` frames gathered on client sockets are written.
 *
 * A socket that hears of a result now and then gets it at the end of the turn
 * in which it became known. When results come fast they are written in rounds:
 * each socket that gathered results since the last round is written once, with
 * all of them. A round follows the one before after
 *
 *     sockets written in the round before × ROUND_MS_PER_SOCKET,
 *     at least MIN_ROUND_MS (10) and at most MAX_ROUND_MS (100)
 *
 * so a result waits at most 10 ms while up to 50 sockets are being answered at
 * once, 100 ms with 500 or more; and up to 500 sockets the service makes at most
 * 1 / ROUND_MS_PER_SOCKET = 5,000 result writes a second however many sockets
 * wait. Each write is a system call of 5–15 µs on the one thread (on loopback
 * the kernel does the receiver's part too): with a fixed 10 ms per socket, a
 * herd of 500 sockets waiting on the same 200 downloads made ~38,000 write
 * calls, a quarter of the thread's time; in rounds of 0.1 ms per socket,
 * ~13,000–15,000; of 0.2 ms, ~11,800 with the covers' own writes, and a fifth
 * less service CPU beyond its one-socket round (docs/BENCHMARKS.md, herd).
 */
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';

export const MIN_ROUND_MS = 10;
export const ROUND_MS_PER_SOCKET = 0.2;
export const MAX_ROUND_MS = 100;

/** A socket with results gathered: writes them all when its round comes. */
export interface Gatherer {
  writeGathered(): void;
}

export class ResultRounds {
  private readonly waiting = new Set<Gatherer>();
  private scheduled = false;
  private lastRound = -Infinity;
  private lastRoundSize = 0;

  constructor(private readonly clock: Clock = systemClock) {}

  /** The shortest time from the last round to the next, in ms. */
  interval(): number {
    return Math.min(MAX_ROUND_MS, Math.max(MIN_ROUND_MS, this.lastRoundSize * ROUND_MS_PER_SOCKET));
  }

  /** `gatherer` now holds results: it is written in the next round. */
  add(gatherer: Gatherer): void {
    this.waiting.add(gatherer);
    if (this.scheduled) return;
    this.scheduled = true;
    const wait = this.lastRound + this.interval() - this.clock.monotonic();
    if (wait <= 0) setImmediate(this.round);
    else this.clock.setTimeout(this.round, wait);
  }

  /** `gatherer` wrote its results itself (a frame that must follow them) or closed. */
  remove(gatherer: Gatherer): void {
    this.waiting.delete(gatherer);
  }

  private readonly round = () => {
    this.scheduled = false;
    this.lastRound = this.clock.monotonic();
    this.lastRoundSize = this.waiting.size;
    const gatherers = [...this.waiting];
    this.waiting.clear();
    for (const gatherer of gatherers) gatherer.writeGathered();
  };
}
