/**
 * A stand-in for the real `fetchCover` actor, for machine tests only: the
 * machines are pure declarations and their tests check the state logic, with a
 * simulated clock, without the network. The real fetch is tested against real
 * servers in fetch.test.ts and the service tests.
 */
import { fromPromise } from 'xstate';
import type { FetchCoverInput, FetchCoverOutput, StoredCover } from '../../machines/types.js';

export interface PendingFetch {
  input: FetchCoverInput;
  signal: AbortSignal;
  resolve: (output: FetchCoverOutput) => void;
  reject: (error: unknown) => void;
}

export function coverFor(url: string): StoredCover {
  return { path: `x/${encodeURIComponent(url)}.jpg`, contentType: 'image/jpeg', bytes: 10, width: 1, height: 1, sha256: 'ab' };
}

/** A fetchCover whose tries stay pending until the test settles them. */
export function controllableFetch() {
  const pending: PendingFetch[] = [];
  const started: FetchCoverInput[] = [];
  const logic = fromPromise<FetchCoverOutput, FetchCoverInput>(
    ({ input, signal }) =>
      new Promise<FetchCoverOutput>((resolve, reject) => {
        started.push(input);
        pending.push({ input, signal, resolve, reject });
      }),
  );
  /** Settles the oldest pending try for url (or the oldest of all). */
  const take = (url?: string): PendingFetch => {
    const index = url === undefined ? 0 : pending.findIndex((p) => p.input.url === url);
    const [found] = index === -1 ? [] : pending.splice(index, 1);
    if (!found) throw new Error(`no pending fetch${url ? ` for ${url}` : ''}`);
    return found;
  };
  return {
    logic,
    pending,
    started,
    succeed(url?: string) {
      const p = take(url);
      p.resolve({ cover: coverFor(p.input.url), source: 'download' });
    },
    fail(error: { code: string; message: string; detail?: number; retryAt?: number }, url?: string) {
      take(url).reject(Object.assign(new Error(error.message), error));
    },
  };
}

/** Lets promise callbacks run (the fake fetch settles through promises). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
