/**
 * The touch batcher's slices (src/store/touchBatcher.ts), sized by how long
 * the last one held the event loop. The database is a function here that
 * records each slice and reports a hold in proportion to its URLs: the store
 * tests (store.test.ts) run the same batcher against real SQLite and
 * PostgreSQL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextSlice, SLICE_HOLD_MS, TouchBatcher } from '../src/store/touchBatcher.js';

describe('touch slices', () => {
  it('are sized so that each holds the loop about SLICE_HOLD_MS, between 8 and 200 URLs', () => {
    assert.equal(nextSlice(32, SLICE_HOLD_MS / 4), 128, 'a quarter of the time: four times the URLs');
    assert.equal(nextSlice(100, SLICE_HOLD_MS * 2), 50);
    assert.equal(nextSlice(100, SLICE_HOLD_MS * 1000), 8, 'never fewer than 8');
    assert.equal(nextSlice(100, SLICE_HOLD_MS / 1000), 200, 'never more than 200');
    assert.equal(nextSlice(100, 0), 200, 'no measurable hold');
    assert.equal(nextSlice(100, undefined), 200, 'a database whose writes do not hold the loop');
  });

  it('follow the holds the database reports, slice after slice, and write every URL once', async () => {
    const slices: string[][] = [];
    let msPerUrl = 0.01;
    const batcher = new TouchBatcher(async (urls) => {
      slices.push(urls);
      return urls.length * msPerUrl;
    });
    const urls = Array.from({ length: 1000 }, (_, i) => `u${i}`);
    batcher.touch(urls);
    await batcher.flush();
    // 32 first (0.32 ms), then 100 a slice (1 ms each).
    assert.deepEqual(slices.map((slice) => slice.length).slice(0, 4), [32, 100, 100, 100]);
    assert.deepEqual(slices.flat(), urls);

    slices.length = 0;
    msPerUrl = 0.5;
    batcher.touch(urls.slice(0, 100));
    await batcher.flush();
    // From 100 (the last size): 50 ms held, so 8 a slice after it.
    assert.deepEqual(
      slices.map((slice) => slice.length),
      [100],
    );
    batcher.touch(urls.slice(0, 20));
    await batcher.flush();
    assert.deepEqual(slices.slice(1).map((slice) => slice.length), [8, 8, 4]);
  });

  it('keeps a slice that fails, and the rest, for the next flush', async () => {
    const written: string[] = [];
    let fail = true;
    const batcher = new TouchBatcher(async (urls) => {
      if (fail && written.length > 0) throw new Error('disk full');
      written.push(...urls);
      return undefined;
    });
    const urls = Array.from({ length: 500 }, (_, i) => `u${i}`);
    batcher.touch(urls);
    await assert.rejects(batcher.flush(), /disk full/);
    assert.equal(written.length, 32, 'the first slice');
    fail = false;
    await batcher.flush();
    assert.deepEqual(written.sort(), [...urls].sort(), 'every URL written once, the failed ones on the next flush');
  });
});
