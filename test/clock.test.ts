import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, createMachine } from 'xstate';
import { TestClock, systemClock } from '../src/clock.js';

describe('TestClock', () => {
  it('stands still until advanced, then fires due timers in order of due time, ties in the order set', async () => {
    const clock = new TestClock(1_000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
    const late = clock.setTimeout(() => fired.push('never'), 5);
    clock.clearTimeout(late);
    assert.equal(clock.now(), 1_000);
    await clock.advance(15);
    assert.deepEqual(fired, ['a@1010']);
    assert.equal(clock.now(), 1_015);
    await clock.advance(100);
    assert.deepEqual(fired, ['a@1010', 'b@1020', 'c@1020']);
    assert.equal(clock.now(), 1_115);
    assert.equal(clock.monotonic(), 115);
    assert.equal(clock.pending, 0);
  });

  it('fires timers set while advancing when they fall due within the same advance, and repeats intervals', async () => {
    const clock = new TestClock(0);
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 30);
    }, 10);
    const every = clock.setInterval(() => fired.push(-clock.now()), 25);
    await clock.advance(60);
    assert.deepEqual(fired, [10, -25, 40, -50]);
    clock.clearInterval(every);
    await clock.advance(100);
    assert.deepEqual(fired, [10, -25, 40, -50]);
  });

  it('lets promise chains woken by one timer settle before the next fires', async () => {
    const clock = new TestClock(0);
    const order: string[] = [];
    void clock.sleep(10).then(async () => {
      order.push('slept 10');
      await Promise.resolve();
      order.push('continued');
    });
    clock.setTimeout(() => order.push('timer 11'), 11);
    await clock.advance(20);
    assert.deepEqual(order, ['slept 10', 'continued', 'timer 11']);
  });

  it('rejects a sleep at once when its signal aborts, and clears its timer', async () => {
    const clock = new TestClock(0);
    const controller = new AbortController();
    const slept = clock.sleep(1_000, controller.signal);
    assert.equal(clock.pending, 1);
    controller.abort(new Error('stop'));
    await assert.rejects(slept, /stop/);
    assert.equal(clock.pending, 0);
    await assert.rejects(clock.sleep(1, controller.signal), /stop/);
  });

  it('draws the same random sequence for the same seed, in [0, 1)', () => {
    const a = new TestClock(0, 7);
    const b = new TestClock(0, 7);
    const drawsA = Array.from({ length: 100 }, () => a.random());
    assert.deepEqual(drawsA, Array.from({ length: 100 }, () => b.random()));
    assert.ok(drawsA.every((x) => x >= 0 && x < 1));
    assert.ok(new Set(drawsA).size > 90, 'not stuck');
  });

  it('drives XState delayed transitions through the public clock option', async () => {
    const clock = new TestClock(0);
    const machine = createMachine({ initial: 'waiting', states: { waiting: { after: { 30_000: 'done' } }, done: { type: 'final' } } });
    const actor = createActor(machine, { clock });
    actor.start();
    await clock.advance(29_999);
    assert.equal(actor.getSnapshot().value, 'waiting');
    await clock.advance(1);
    assert.equal(actor.getSnapshot().value, 'done');
  });

  it('the system clock reads real time and its timers really fire', async () => {
    const before = Date.now();
    assert.ok(Math.abs(systemClock.now() - before) < 1_000);
    const start = systemClock.monotonic();
    await systemClock.sleep(5);
    assert.ok(systemClock.monotonic() - start >= 4);
    const r = systemClock.random();
    assert.ok(r >= 0 && r < 1);
  });
});
