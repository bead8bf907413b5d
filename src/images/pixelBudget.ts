/**
 * A semaphore counted in pixels: how much image may be decoded at once.
 *
 *   const release = await budget.acquire(width * height, signal);
 *   try { decode } finally { release(); }
 *
 * Callers are served first come, first served: one that does not fit waits,
 * and so does everyone behind it, so a large image is never starved by a
 * stream of small ones. A waiter whose signal aborts leaves the queue at once,
 * rejected with the signal's reason, having taken nothing. Asking for more
 * than the whole budget takes the whole budget (it then runs alone).
 *
 * Written here rather than taken from a package: the maintained ones either
 * count calls rather than weights (p-limit, p-queue) or take weights but cancel
 * only every waiter at once, not one by its AbortSignal (async-mutex).
 */

interface Waiter {
  pixels: number;
  grant: () => void;
}

export class PixelBudget {
  #inUse = 0;
  readonly #queue: Waiter[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError(`a pixel budget must be positive, not ${capacity}`);
  }

  /** Pixels taken now by decodes that have not released them. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Callers waiting for pixels. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Resolves with a release function once `pixels` are free (at once if they
   * are and nobody waits). The release function gives them back; calling it
   * again does nothing.
   */
  acquire(pixels: number, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const wanted = Math.min(Math.max(1, Math.ceil(pixels)), this.capacity);
    if (this.#queue.length === 0 && this.#inUse + wanted <= this.capacity) return Promise.resolve(this.#take(wanted));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pixels: wanted,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#take(wanted));
        },
      };
      const onAbort = () => {
        const at = this.#queue.indexOf(waiter);
        if (at >= 0) this.#queue.splice(at, 1);
        reject(signal!.reason as Error);
        // The one that left may have held back smaller ones behind it.
        this.#grantWaiting();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #take(pixels: number): () => void {
    this.#inUse += pixels;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inUse -= pixels;
      this.#grantWaiting();
    };
  }

  #grantWaiting(): void {
    while (this.#queue.length > 0 && this.#inUse + this.#queue[0]!.pixels <= this.capacity) {
      this.#queue.shift()!.grant();
    }
  }
}
