import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, fromPromise, toPromise } from 'xstate';
import { renderMachine } from '../machines/renderMachine.js';
import type { RenderedVariant, RenderOutput } from '../machines/renderMachine.js';
import { TestClock } from '../src/clock.js';

const VARIANT: RenderedVariant = { path: 'h/a.jpg.variants/w320-inside-webp.webp', contentType: 'image/webp', bytes: 10, width: 320, height: 200 };

/** A render machine whose `render` the test settles by hand. */
function setup(timeLimitMs = 10_000) {
  const clock = new TestClock();
  const finished: RenderOutput[] = [];
  const started: { resolve: (v: RenderedVariant) => void; reject: (e: unknown) => void; signal: AbortSignal }[] = [];
  const logic = renderMachine.provide({
    actors: {
      render: fromPromise<RenderedVariant, { path: string }>(({ signal }) => new Promise((resolve, reject) => started.push({ resolve, reject, signal }))),
    },
    actions: { reportFinished: (_, { output }) => finished.push(output) },
  });
  const actor = createActor(logic, { input: { path: VARIANT.path, timeLimitMs, clock }, clock });
  actor.start();
  return { actor, clock, finished, started };
}

describe('renderMachine', () => {
  it('waits queued until START, renders once and ends done with the variant and its time', async () => {
    const { actor, clock, finished, started } = setup();
    assert.ok(actor.getSnapshot().matches('queued'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started.length, 0, 'nothing renders before START');
    actor.send({ type: 'START' });
    assert.ok(actor.getSnapshot().matches('rendering'));
    await clock.advance(250);
    started[0]!.resolve(VARIANT);
    const output = await toPromise(actor);
    assert.deepEqual(output, { path: VARIANT.path, status: 'ok', variant: VARIANT, ms: 250 });
    assert.deepEqual(finished, [output]);
    assert.equal(started.length, 1);
  });

  it('DROP while queued ends dropped without rendering; DROP while rendering changes nothing', async () => {
    const queued = setup();
    queued.actor.send({ type: 'DROP' });
    assert.deepEqual(await toPromise(queued.actor), { path: VARIANT.path, status: 'dropped' });
    assert.equal(queued.started.length, 0);

    const running = setup();
    running.actor.send({ type: 'START' });
    running.actor.send({ type: 'DROP' });
    assert.ok(running.actor.getSnapshot().matches('rendering'));
    running.started[0]!.resolve(VARIANT);
    assert.equal((await toPromise(running.actor)).status, 'ok');
  });

  it('a failed render ends failed with its code and message', async () => {
    const { actor, started } = setup();
    actor.send({ type: 'START' });
    started[0]!.reject(Object.assign(new Error('the body is not a decodable image'), { code: 'not_image' }));
    assert.deepEqual(await toPromise(actor), { path: VARIANT.path, status: 'error', error: { code: 'not_image', message: 'the body is not a decodable image' } });
  });

  it('the time limit, on the clock, ends it timedOut and aborts the render', async () => {
    const { actor, clock, started, finished } = setup(5000);
    actor.send({ type: 'START' });
    await clock.advance(4999);
    assert.ok(actor.getSnapshot().matches('rendering'));
    await clock.advance(1);
    assert.deepEqual(actor.getSnapshot().output, { path: VARIANT.path, status: 'error', error: { code: 'tle', message: 'rendering took longer than 5 s' } });
    assert.equal(started[0]!.signal.aborted, true, 'the render was aborted');
    assert.equal(finished.length, 1);
  });

  it('CANCEL (shutdown) ends it from queued or rendering as shutting_down', async () => {
    for (const start of [false, true]) {
      const { actor, started } = setup();
      if (start) actor.send({ type: 'START' });
      actor.send({ type: 'CANCEL' });
      assert.deepEqual(actor.getSnapshot().output, { path: VARIANT.path, status: 'error', error: { code: 'shutting_down', message: 'the service is shutting down' } });
      if (start) assert.equal(started[0]!.signal.aborted, true);
    }
  });
});
