/**
 * A download many checks wait on answers them all from one reaction
 * (src/checks/checkCovers.ts, `whenDone`): in the order they asked, each check
 * only once per position, and a check whose answer fails (its sink throws) fails
 * alone. The whole path with real sockets is test/coalescing.test.ts; here the
 * downloads and the cover index are test doubles, because a sink that throws
 * and a download settled at a moment of the test's choosing cannot be made to
 * happen through the real service.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoverChecks } from '../src/checks/checkCovers.js';
import type { CheckDeps } from '../src/checks/checkCovers.js';
import { Stats } from '../src/stats.js';
import type { DownloadOutput } from '../machines/types.js';

function doubles() {
  let settle!: (output: DownloadOutput) => void;
  const done = new Promise<DownloadOutput>((resolve) => (settle = resolve));
  const asked: string[][] = [];
  const deps = {
    config: { allowHosts: [] },
    covers: { findInMemory: (urls: readonly string[]) => urls.map(() => undefined), findMany: () => Promise.resolve(new Map()) },
    // Every URL joins the same download in flight.
    downloads: {
      inFlight: () => ({ url: 'x', state: 'running', done }),
      askMany: (urls: readonly string[]) => {
        asked.push([...urls]);
        return urls.map(() => ({ done, coalesced: true }));
      },
      leave: () => {},
    },
    stats: new Stats(),
    publicUrl: () => 'http://covers.test/',
  } as unknown as CheckDeps;
  return { deps, settle, asked };
}

const URL_A = 'https://i0.hdslb.com/bfs/archive/a.jpg';

describe('one download, many checks', () => {
  it('answers every waiting check, each position once, in the order they asked; a throwing sink fails its own check only', async () => {
    const { deps, settle } = doubles();
    const checks = new CoverChecks(deps);
    const heard: string[] = [];
    const runs = Array.from({ length: 50 }, (_, k) =>
      checks.check([URL_A, URL_A], (index) => {
        heard.push(`${k}:${index}`);
        if (k === 7) throw new Error('this sink is broken');
      }),
    );
    const outcomes = Promise.allSettled(runs);
    // Nothing is answered before the download settles.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(heard, []);
    settle({ url: URL_A, status: 'ok', cover: { path: 'i0.hdslb.com/a.jpg', width: 640, height: 400, bytes: 1, contentType: 'image/jpeg' } as never, source: 'download' });
    const settled = await outcomes;
    // Check 7 threw at its first position: it fails, and its second position is not heard.
    const expected = Array.from({ length: 50 }, (_, k) => (k === 7 ? ['7:0'] : [`${k}:0`, `${k}:1`])).flat();
    assert.deepEqual(heard, expected);
    assert.equal(settled[7]!.status, 'rejected');
    for (const [k, outcome] of settled.entries()) {
      if (k === 7) continue;
      assert.equal(outcome.status, 'fulfilled');
      const results = outcome.value;
      assert.deepEqual(
        results.map((r) => [r.status, r.coverUrl]),
        [
          ['ok', 'http://covers.test/i0.hdslb.com/a.jpg'],
          ['ok', 'http://covers.test/i0.hdslb.com/a.jpg'],
        ],
      );
    }
  });

  it('a check asked after the download settled is answered too (a new reaction for a new promise)', async () => {
    const { deps, settle } = doubles();
    const checks = new CoverChecks(deps);
    const first = checks.check([URL_A]);
    settle({ url: URL_A, status: 'error', error: { code: 'http_status', message: 'HTTP 404' } });
    assert.equal((await first)[0]!.status, 'error');
    // The same (settled) promise handed out again: its entry was removed, so this registers anew.
    const second = await checks.check([URL_A]);
    assert.deepEqual(second.map((r) => r.error?.code), ['http_status']);
  });
});
