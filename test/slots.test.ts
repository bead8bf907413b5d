/**
 * The packing slots: never more than `size` at once, every piece of work run in
 * the order it waited, and a waiter whose signal aborts leaves without running.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { Slots } from '../src/jobs/slots.js';

describe('Slots', () => {
  it('runs at most `size` pieces of work at once, all of them, in the order they came', async () => {
    // Each piece of work ends when the test releases it, not after a timer, so a
    // slow machine cannot finish one before the test has counted the line.
    const slots = new Slots(2);
    let now = 0;
    let most = 0;
    const started: number[] = [];
    const release: Array<() => void> = [];
    const all = Array.from({ length: 9 }, (_, i) =>
      slots.run(async () => {
        started.push(i);
        most = Math.max(most, ++now);
        await new Promise<void>((resolve) => (release[i] = resolve));
        now--;
        return i * 10;
      }),
    );
    await setImmediate();
    assert.deepEqual([slots.running, slots.waiting], [2, 7]);
    assert.deepEqual(started, [0, 1]);
    // Release out of order: the second ends first, and the next in line starts.
    for (const i of [1, 0, 3, 2, 5, 4, 7, 6, 8]) {
      while (!release[i]) await setImmediate();
      release[i]();
    }
    assert.deepEqual(await Promise.all(all), [0, 10, 20, 30, 40, 50, 60, 70, 80]);
    assert.equal(most, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([slots.running, slots.waiting], [0, 0]);
  });

  it('lets a waiter whose signal aborts leave the line without running, and frees its place', async () => {
    const slots = new Slots(1);
    let release!: () => void;
    const first = slots.run(() => new Promise<string>((resolve) => (release = () => resolve('first'))));
    const controller = new AbortController();
    let ran = false;
    const aborted = slots.run(async () => {
      ran = true;
    }, controller.signal);
    const third = slots.run(async () => 'third');
    await setImmediate();
    assert.equal(slots.waiting, 2);
    controller.abort(new Error('job stopped'));
    await assert.rejects(aborted, /job stopped/);
    assert.equal(slots.waiting, 1);
    release();
    assert.deepEqual(await Promise.all([first, third]), ['first', 'third']);
    assert.equal(ran, false);
    // A signal already aborted does not even wait.
    await assert.rejects(new Slots(1).run(async () => 1, AbortSignal.abort(new Error('gone'))), /gone/);
    assert.throws(() => new Slots(0), RangeError);
  });

  it('frees the slot when the work throws', async () => {
    const slots = new Slots(1);
    await assert.rejects(slots.run(async () => Promise.reject(new Error('disk'))), /disk/);
    assert.equal(await slots.run(async () => 'next'), 'next');
  });
});
